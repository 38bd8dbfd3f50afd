"""How long a `crl-verify` file change stalls the server's event loop, at a large CRL.

The loop is played by a thread that checks a certificate every millisecond (as handshakes would)
against a CRL file of N revoked serials, as the server's pump calls the checker; half a second
in, the file is replaced by a new one that also revokes a second certificate. Printed: the
longest gap between two ticks of that loop (the stall everyone's packets wait out, keepalives
included), the same with no file change (what the shared machine's scheduling costs anyway), and
how long until the new CRL refuses the newly revoked certificate. With `--baseline DIR`, another
checkout's `appliance` runs too (in a child process, interleaved round by round).

    python -m lab.crl_stall [--entries 100000] [--rounds 3] [--baseline DIR]

Not a test (no timed tests): figures for the README (Benchmarks, "crl-verify at 100,000 entries").
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in a child: argv = root crl.pem crl2.pem ca.pem revoked.pem clean.pem change(0|1).
_CHILD = r"""
import os, shutil, sys, time, json
root, crl_p, crl2_p, ca_p, rev_p, ok_p, change = sys.argv[1:8]
sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in (getattr(f, '__module__', '') or type(f).__module__)]
sys.path.insert(0, root)
from cryptography import x509
from appliance.openvpn import crl as crl_mod
ca, rev, ok = (x509.load_pem_x509_certificate(open(p, 'rb').read()) for p in (ca_p, rev_p, ok_p))
work = os.path.join(os.path.dirname(crl_p), 'live-%d.pem' % os.getpid())
shutil.copy(crl_p, work)
try:
    ch = crl_mod.CrlChecker('file', work, cas=[ca])
except TypeError:
    ch = crl_mod.CrlChecker('file', work)
if hasattr(crl_mod, 'background_reader'):
    ch.reader = crl_mod.background_reader
assert ch.revoked(ok, [ca]) is None and ch.revoked(rev, [ca]) is None
t0 = time.perf_counter(); last = t0; worst = 0.0; changed = None; in_force = None
while time.perf_counter() - t0 < 3.0:
    now = time.perf_counter()
    worst = max(worst, now - last)
    last = now
    if change == '1' and changed is None and now - t0 > 0.5:
        shutil.copy(crl2_p, work + '.new'); os.replace(work + '.new', work)
        changed = time.perf_counter(); last = changed
    ch.revoked(ok, [ca])
    if changed is not None and in_force is None and ch.revoked(rev, [ca]) is not None:
        in_force = time.perf_counter() - changed
    last_tick = time.perf_counter()
    time.sleep(max(0.0, 0.001 - (last_tick - now)))
os.unlink(work)
print(json.dumps({"stall_ms": round(worst * 1000, 1), "in_force_ms": None if in_force is None else round(in_force * 1000)}))
"""


def make_files(d: Path, entries: int) -> list[str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
    from appliance.certs import issue
    from appliance.openvpn.crl import make_crl
    ca = issue("Bench CA", None, None)
    rev, ok = issue("revoked", ca, EKU.CLIENT_AUTH), issue("clean", ca, EKU.CLIENT_AUTH)
    serials = list(range(10**6, 10**6 + entries - 1))
    (d / "crl.pem").write_bytes(make_crl(ca[0], ca[1], serials))
    (d / "crl2.pem").write_bytes(make_crl(ca[0], ca[1], serials + [rev[0].serial_number]))
    for name, c in (("ca", ca), ("revoked", rev), ("clean", ok)):
        (d / f"{name}.pem").write_bytes(c[0].public_bytes(serialization.Encoding.PEM))
    return [str(d / f) for f in ("crl.pem", "crl2.pem", "ca.pem", "revoked.pem", "clean.pem")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="directory holding another version's `appliance`")
    a = ap.parse_args(argv)
    roots = ([("before", Path(a.baseline))] if a.baseline else []) + [("now", REPO)]
    got: dict[str, list[dict]] = {f"{k} {c}": [] for k, _ in roots for c in ("change", "idle")}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), a.entries)
        for _ in range(a.rounds):
            for kind, root in roots:
                for change in ("1", "0"):
                    r = subprocess.run([sys.executable, "-c", _CHILD, str(root), *files, change],
                                       capture_output=True, text=True, timeout=600)
                    if r.returncode != 0:
                        raise RuntimeError(f"{kind}: {r.stderr[-2000:]}")
                    key = f"{kind} {'change' if change == '1' else 'idle'}"
                    got[key].append(json.loads(r.stdout.strip().splitlines()[-1]))
                    print(key, got[key][-1], flush=True)
    print(f"\ncrl-verify, {a.entries} revoked entries: the loop's longest stall (median of {a.rounds} rounds):")
    for key, rs in got.items():
        stall = statistics.median(r["stall_ms"] for r in rs)
        forces = [r["in_force_ms"] for r in rs if r["in_force_ms"] is not None]
        extra = f"; new CRL in force after {statistics.median(forces):.0f} ms" if forces else ""
        print(f"  {key:>13}: {stall:.1f} ms{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
