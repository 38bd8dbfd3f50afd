"""The server's CPU per handshake in memory: N engine clients against one ServerDispatcher, no
I/O, only the dispatcher's calls timed (process CPU time), so a loaded machine moves the figure
little. With `--baseline DIR` another checkout's `appliance` runs too, in a child process,
interleaved round by round (before/after of an engine change).

    python -m lab.handshake_cpu [--clients 100] [--rounds 4] [--protection tls-crypt] [--baseline DIR]

TLS groups: X25519 only by default, as lab/capacity.py offers, so the key exchange is OpenVPN
2.6's; `--tls-groups default` leaves OpenSSL's own list (the hybrid post-quantum group).
Each round's packets are read as one batch at both ends, as the gateways read them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in a child: argv = root clients protection. Prints {"ok": n, "ms_per_hs": x}.
_CHILD = r"""
import sys, time
root, n, prot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in (getattr(f, '__module__', '') or type(f).__module__)]
sys.path.insert(0, root)
import json
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from appliance.certs import issue
from appliance.openvpn import events as ev, keyfiles, wrapping
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
kpem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
ca = issue("CA", None, None); srv = issue("server", ca, EKU.SERVER_AUTH); cli = issue("client", ca, EKU.CLIENT_AUTH)
key = keyfiles.parse_static_key(keyfiles.generate_static_key())
stls = TlsSettings(pem(ca[0]), pem(srv[0]), kpem(srv[1]), True, remote_cert_tls="client")
st = ServerSettings(session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60),
                    protection=prot, pool=AddressPool("198.19.0.0", "255.255.240.0", "subnet"), push=[],
                    static_key=key, key_direction=0, duplicate_cn=True)
d = ServerDispatcher(st, 0.0)
mk = {"tls-crypt": lambda: wrapping.TlsCryptWrapper(key, False), "tls-auth": lambda: wrapping.TlsAuthWrapper(key, 1),
      "none": wrapping.PlainWrapper}[prot]
ctls = TlsSettings(pem(ca[0]), pem(cli[0]), kpem(cli[1]), False, remote_cert_tls="server")
cpu = 0.0
def timed(fn, *a):
    global cpu
    t = time.process_time(); r = fn(*a); cpu += time.process_time() - t
    return r
ok = sent = 0
for b in range(0, n, 10):
    now = 0.5 + b * 0.01
    cs = []
    for i in range(min(10, n - b)):
        s = Session(SessionConfig(Role.CLIENT, ctls, mk), now); s.start(now)
        cs.append((s, (f"198.18.{b // 10 % 250}.{i + 2}", 40000)))
    # Each round's packets are read as one batch at both ends, as the gateways read them (when
    # the version under test has batches: ServerDispatcher.begin_batch, Session.begin_batch).
    batches = hasattr(d, "begin_batch")
    for _ in range(60):
        moved = 0
        if batches:
            timed(d.begin_batch)
        for s, a in cs:
            for p in s.take_outgoing():
                timed(d.receive, p, a, now); moved += 1
        if batches:
            timed(d.end_batch, now)
        got = {}
        for p, a in timed(d.take_outgoing):
            got.setdefault(a, []).append(p)
            sent += 1
        for s, a in cs:
            ps = got.get(a)
            if not ps:
                continue
            s.begin_batch()
            for p in ps:
                s.receive(p, now); moved += 1
            if s.end_batch(now):
                pass                  # the ACKs it sends first go out with the rest below
            s.settle(now)
        if not moved:
            break
    ok += sum(any(isinstance(e, ev.TunnelUp) for e in s.events) for s, _ in cs)
print(json.dumps({"ok": ok, "ms_per_hs": round(cpu / max(ok, 1) * 1000, 3),
                  "datagrams_per_hs": round(sent / max(ok, 1), 2)}))
"""


def run_one(root: Path, clients: int, protection: str, env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(clients), protection],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{root}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--protection", default="tls-crypt", choices=["none", "tls-auth", "tls-crypt"])
    ap.add_argument("--baseline", default=None, help="directory holding another version's `appliance`")
    ap.add_argument("--tls-groups", default="X25519",
                    help="OpenSSL's group list for both ends; `default`: OpenSSL's own (the hybrid "
                         "X25519MLKEM768 between our ends: a ClientHello of two packets)")
    a = ap.parse_args(argv)
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False) as f:
        if a.tls_groups != "default":
            f.write("openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\n"
                    f"Groups = {a.tls_groups}\n")
    env = {**os.environ, "OPENSSL_CONF": f.name}
    roots = ([("before", Path(a.baseline))] if a.baseline else []) + [("now", REPO)]
    got: dict[str, list[float]] = {k: [] for k, _ in roots}
    dgrams: dict[str, list[float]] = {k: [] for k, _ in roots}
    try:
        for _ in range(a.rounds):
            for kind, root in roots:
                r = run_one(root, a.clients, a.protection, env)
                if r["ok"] != a.clients:
                    raise RuntimeError(f"{kind}: only {r['ok']} of {a.clients} handshakes completed")
                got[kind].append(r["ms_per_hs"])
                dgrams[kind].append(r["datagrams_per_hs"])
                print(kind, r, flush=True)
    finally:
        os.unlink(f.name)
    print(f"\nServer CPU-ms per handshake in memory, {a.protection}, {a.clients} clients, {a.rounds} rounds:")
    for kind, xs in got.items():
        print(f"  {kind:>6}: median {statistics.median(xs):.3f} (min {min(xs):.3f}, max {max(xs):.3f}); "
              f"datagrams sent per handshake {statistics.median(dgrams[kind]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
