"""Where our client's CPU goes when the server's TLS flight arrives, in memory (no sockets, no
other process): issue 11's "flight -> our Finished" phase, split into OpenSSL and our Python.

    python -m lab.flight_cpu [--handshakes 40] [--protection none,tls-crypt] [--groups default,X25519]
                             [--fresh 8] [--json]

Each handshake: a new client Session, built from the profile lab.first_packet gives our client
(same PKI: lab.pki.make_pki's P-256 certificates, `remote-cert-tls server`), against our server
engine (ServerDispatcher) in the same process; the server's flight (ServerHello ..
Finished, its certificate with the CA after it, in 2-3 control packets) is read by the client as
one batch, as the gateway reads a burst (begin_batch, receive each, end_batch, settle). Only that
step is timed, on the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID: another process's load moves it
little), and split by wrapping the calls that leave Python:
  openssl    SSL_do_handshake / SSL_read / BIO_write / BIO_read (tls.py's direct bindings),
  checks     TlsEndpoint._verify_peer: our Python checks of the verified certificate (its
             conversion to a cryptography object, remote-cert-tls, the CN, the chain digests),
  python     the rest: unwrap (tls-crypt/tls-auth), control-packet parsing, the reliability layer,
             ACKs, our Finished wrapped and queued.
`--fresh N`: also N child processes that each time only their first handshake (what a client
process does once: first use of every path and of OpenSSL's algorithm fetches), after the same
start-up warm-up the client does (its context built, a ClientHello written by check_offer).

The second table is the same client part of TLS 1.3 on the system OpenSSL (stdlib ssl with
MemoryBIO, Debian's OpenSSL 3.x, what Debian's openvpn links) against pyOpenSSL's bundled OpenSSL,
both ends in memory with the same certificates, X25519 only (stdlib ssl cannot restrict groups;
OpenSSL 3.0's client offers one X25519 key share first by default): the client's read of the
server's flight (chain verify, CertificateVerify check, our CertificateVerify signature, the key
schedule, our Finished), nothing of ours around it.
"""
from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_clock = time.thread_time_ns


def _pki(d: Path):
    from .pki import make_pki
    return make_pki(d, ["client1"])


# ------------------------------------------------------------------ the engine replay
class _Timed:
    """Wraps the cffi lib object tls.py calls: the listed calls are timed (inclusive, ns)."""
    NAMES = ("SSL_do_handshake", "SSL_read", "BIO_write", "BIO_read", "SSL_get_error")

    def __init__(self, lib, acc: dict) -> None:
        self._lib = lib
        for name in self.NAMES:
            real = getattr(lib, name)

            def timed(*a, _real=real):
                t = _clock()
                try:
                    return _real(*a)
                finally:
                    acc["openssl"] += _clock() - t
            setattr(self, name, timed)

    def __getattr__(self, name):
        return getattr(self._lib, name)


def _engine_world(pki, protection: str, groups: str | None):
    """(make_client, dispatcher) for one protection."""
    from appliance.openvpn import keyfiles
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
    from appliance.openvpn.session import Role, SessionConfig
    from appliance.openvpn.settings import client_session_config
    from appliance.openvpn.tls import TlsSettings

    from .configs import client_profile
    from .netns import SRV_IP

    prof = client_profile(pki, "udp", protection=protection, remotes=[(SRV_IP, 1194, "udp")])
    if groups:
        prof += f"tls-groups {groups}\n"
    path = pki.dir / f"fc-{protection}-{groups}.conf"
    path.write_text(prof)
    opts = parse_config(prof, str(path))
    key = keyfiles.parse_static_key((pki.dir / "static.key").read_text()) if protection != "none" else None
    stls = TlsSettings(pki.ca.read_bytes(), pki.server_cert.read_bytes(), pki.server_key.read_bytes(), True,
                       remote_cert_tls="client")
    st = ServerSettings(session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10,
                                                                 ping_restart=60),
                        protection=protection, pool=AddressPool("198.19.0.0", "255.255.240.0", "subnet"), push=[],
                        static_key=key, key_direction=0 if protection == "tls-auth" else None, duplicate_cn=True)
    from appliance.openvpn.session import Session

    def make_client(now: float):
        s = Session(client_session_config(opts, "udp"), now)
        s.start(now)
        s.prime()               # as the gateway: ClientHello and key-method message made before the reset goes out
        return s
    return make_client, ServerDispatcher(st, 0.0)


def _one_flight(make_client, d, addr, acc: dict, now: float) -> dict | None:
    """Run one handshake; the client's batch in which its TLS handshake completes (the server's
    flight read, our Finished queued) is timed and returned."""
    c = make_client(now)
    row = None
    for _ in range(40):
        out = c.take_outgoing()
        for p in out:
            d.receive(p, addr, now)
        got = [p for p, a in d.take_outgoing() if a == addr]
        if not got and not out:
            break
        if not got:
            continue
        ks = c.keys.get(0)
        before = ks is not None and ks.tls is not None and not ks.tls.handshake_done
        for k in acc:
            acc[k] = 0
        t = _clock()
        c.begin_batch()
        for p in got:
            c.receive(p, now)
        c.end_batch(now)
        c.settle(now)
        total = _clock() - t
        if before and ks.tls.handshake_done:
            row = {"total_us": total / 1000, "openssl_us": acc["openssl"] / 1000,
                   "checks_us": acc["checks"] / 1000, "unwrap_us": acc["unwrap"] / 1000,
                   "pkts": len(got), "bytes": sum(len(p) for p in got)}
    up = any(type(e).__name__ == "TunnelUp" for e in c.events)
    return row if up else None


def _patch(acc: dict) -> None:
    from appliance.openvpn import tls as tlsmod
    from appliance.openvpn import wrapping
    tlsmod._lib = _Timed(tlsmod._lib, acc)

    def wrap(cls, name, label):
        real = getattr(cls, name)

        def timed(self, *a, **k):
            t = _clock()
            try:
                return real(self, *a, **k)
            finally:
                acc[label] += _clock() - t
        setattr(cls, name, timed)
    wrap(tlsmod.TlsEndpoint, "_verify_peer", "checks")
    for cls in vars(wrapping).values():
        if isinstance(cls, type) and "unwrap_untrusted" in vars(cls):
            wrap(cls, "unwrap_untrusted", "unwrap")


def engine_rows(pki_dir: str, protection: str, groups: str | None, n: int, warm: bool) -> list[dict]:
    from .pki import Pki
    d = Path(pki_dir)
    pki = Pki(d, d / "ca.crt", d / "server.crt", d / "server.key", {"client1": (d / "client1.crt", d / "client1.key")})
    acc = {"openssl": 0, "checks": 0, "unwrap": 0}
    make_client, disp = _engine_world(pki, protection, groups)
    if not warm:
        # What the client does at start (settings.check_key_material): its context built, a
        # ClientHello written; then the first handshake is timed, as a fresh process's.
        from appliance.openvpn import tls as tlsmod
        tlsmod.check_offer(make_client(0.0).cfg.tls)
    _patch(acc)
    rows = []
    for i in range(n):
        r = _one_flight(make_client, disp, (f"198.18.{i // 200}.{i % 200 + 2}", 40000 + i), acc, 1.0 + i)
        if r is not None:
            rows.append(r)
    return rows


# ------------------------------------------------------------------ bare TLS: stdlib ssl vs pyOpenSSL
def _stdlib_client_flight(pki, n: int) -> list[float]:
    """The client's read of the server's flight, stdlib ssl (the system OpenSSL), us per handshake."""
    # Each end's certificate file holds its certificate and the CA: the chain sent is given, as
    # build_context's own_chain gives it, so neither end builds it per handshake (auto-chain: a
    # verify of our own certificate, which our context does once at start).
    chains = {}
    for name, cert in (("server", pki.server_cert), ("client1", pki.clients["client1"][0])):
        chains[name] = pki.dir / f"{name}-chain.pem"
        chains[name].write_bytes(cert.read_bytes() + pki.ca.read_bytes())
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(chains["server"], pki.server_key)
    sctx.load_verify_locations(pki.ca)
    sctx.verify_mode = ssl.CERT_REQUIRED
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sctx.options |= ssl.OP_NO_TICKET
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.load_verify_locations(pki.ca)
    cctx.load_cert_chain(chains["client1"], pki.clients["client1"][1])
    cctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # The server sends its certificate and the CA (as ours and OpenVPN's with auto-chain do).
    out = []
    for _ in range(n):
        ci, co, si, so = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        c = cctx.wrap_bio(ci, co, server_side=False)
        s = sctx.wrap_bio(si, so, server_side=True)
        try:
            c.do_handshake()
        except ssl.SSLWantReadError:
            pass
        si.write(co.read())
        try:
            s.do_handshake()
        except ssl.SSLWantReadError:
            pass
        ci.write(so.read())
        t = _clock()
        c.do_handshake()            # the client's part: the server's flight read, our Finished written
        fin = co.read()
        out.append((_clock() - t) / 1000)
        si.write(fin)
        s.do_handshake()
        assert c.version() == "TLSv1.3"
    return out


def _pyopenssl_client_flight(pki, n: int, groups: str) -> list[float]:
    from OpenSSL import SSL

    from appliance.openvpn.tls import TlsSettings, build_context
    cli_cert, cli_key = pki.clients["client1"]
    cs = TlsSettings(pki.ca.read_bytes(), cli_cert.read_bytes(), cli_key.read_bytes(), False,
                     tls_groups=groups, tls_version_min="1.3")
    ss = TlsSettings(pki.ca.read_bytes(), pki.server_cert.read_bytes(), pki.server_key.read_bytes(), True,
                     tls_groups=groups)
    cctx, sctx = build_context(cs), build_context(ss)
    out = []
    for _ in range(n):
        c = SSL.Connection(cctx, None)
        c.set_connect_state()
        s = SSL.Connection(sctx, None)
        s.set_accept_state()
        for conn in (c, s):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
            src, dst = (c, s) if conn is c else (s, c)
            dst.bio_write(src.bio_read(65536))
        t = _clock()
        try:
            c.do_handshake()
        except SSL.WantReadError:
            pass
        fin = c.bio_read(65536)
        out.append((_clock() - t) / 1000)
        s.bio_write(fin)
        try:
            s.do_handshake()
        except SSL.WantReadError:
            pass
        assert c.get_protocol_version_name() == "TLSv1.3", c.get_protocol_version_name()
    return out


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0f}" if xs else "-"


_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from lab.flight_cpu import engine_rows
print(json.dumps(engine_rows(sys.argv[2], sys.argv[3], sys.argv[4] or None, 1, warm=False)))
"""


_CHILD_BARE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from lab.pki import Pki
from lab.flight_cpu import _pyopenssl_client_flight, _stdlib_client_flight
d = Path(sys.argv[2])
pki = Pki(d, d / "ca.crt", d / "server.crt", d / "server.key", {"client1": (d / "client1.crt", d / "client1.key")})
print(json.dumps(_stdlib_client_flight(pki, 1) if sys.argv[3] == "stdlib" else _pyopenssl_client_flight(pki, 1, "X25519")))
"""


def _fresh_bare(pki, kind: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        r = subprocess.run([sys.executable, "-c", _CHILD_BARE, str(Path(__file__).resolve().parents[1]), str(pki.dir),
                            kind], capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            out += json.loads(r.stdout.strip().splitlines()[-1])
        else:
            print(r.stderr[-2000:], file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=40)
    ap.add_argument("--protection", default="none,tls-crypt")
    ap.add_argument("--groups", default="default,X25519", help="'default' = OpenSSL's list (the hybrid share)")
    ap.add_argument("--fresh", type=int, default=8, help="child processes timing their first handshake")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flight-cpu-") as tmp:
        pki = _pki(Path(tmp))
        res = {}
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {open('/proc/loadavg').read().split()[:3]}, "
              f"pyOpenSSL's {__import__('OpenSSL').SSL.OpenSSL_version(0).decode()}, stdlib's {ssl.OPENSSL_VERSION}")
        print("client's read of the server's TLS flight (thread CPU, us, medians): total = openssl + checks + "
              "unwrap + other python")
        print(f"{'protection':<11} {'groups':<8} {'kind':<6} {'n':>3} {'total':>6} {'openssl':>7} {'checks':>6} "
              f"{'unwrap':>6} {'python':>6}  pkts")
        for prot in a.protection.split(","):
            for g in a.groups.split(","):
                groups = None if g == "default" else g
                kinds = [("warm", engine_rows(str(pki.dir), prot, groups, a.handshakes, warm=True)[2:])]
                if a.fresh:
                    cold = []
                    for _ in range(a.fresh):
                        r = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parents[1]),
                                            str(pki.dir), prot, groups or ""], capture_output=True, text=True,
                                           timeout=120)
                        if r.returncode != 0:
                            print(r.stderr[-2000:], file=sys.stderr)
                            continue
                        cold += json.loads(r.stdout.strip().splitlines()[-1])
                    kinds.append(("fresh", cold))
                for kind, rows in kinds:
                    res[f"{prot}/{g}/{kind}"] = rows
                    tot = [r["total_us"] for r in rows]
                    ossl = [r["openssl_us"] for r in rows]
                    chk = [r["checks_us"] for r in rows]
                    unw = [r["unwrap_us"] for r in rows]
                    py = [r["total_us"] - r["openssl_us"] - r["checks_us"] - r["unwrap_us"] for r in rows]
                    pk = sorted({r["pkts"] for r in rows})
                    print(f"{prot:<11} {g:<8} {kind:<6} {len(rows):>3} {_med(tot):>6} {_med(ossl):>7} {_med(chk):>6} "
                          f"{_med(unw):>6} {_med(py):>6}  {pk}")
        n = max(a.handshakes, 10)
        std = _stdlib_client_flight(pki, n)[2:]
        pyo = _pyopenssl_client_flight(pki, n, "X25519")[2:]
        std1 = _fresh_bare(pki, "stdlib", a.fresh)
        pyo1 = _fresh_bare(pki, "pyopenssl", a.fresh)
        print("bare TLS 1.3, X25519, the client's read of the flight + its Finished (thread CPU, us, median / min; "
              "warm, and first in a fresh process):")
        print(f"  system OpenSSL ({ssl.OPENSSL_VERSION}, stdlib ssl): warm {_med(std)} / {min(std):.0f}, "
              f"fresh {_med(std1)} / {min(std1, default=0):.0f}")
        print(f"  bundled OpenSSL ({__import__('OpenSSL').SSL.OpenSSL_version(0).decode()}, pyOpenSSL): warm {_med(pyo)} / "
              f"{min(pyo):.0f}, fresh {_med(pyo1)} / {min(pyo1, default=0):.0f}")
        res["bare"] = {"stdlib": std, "pyopenssl": pyo, "stdlib_fresh": std1, "pyopenssl_fresh": pyo1}
        if a.json:
            print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
