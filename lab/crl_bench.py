"""What a `crl-verify` check costs at a large CRL: a client certificate (CA-issued, with its
CA as chain, as a handshake gives it) checked against a CRL file of N revoked serials, process
CPU time per check, after the file was loaded and its signature verified once. With `--baseline
DIR` another checkout's `appliance` runs too, in a child process, interleaved round by round.

    python -m lab.crl_bench [--entries 100000] [--checks 200] [--rounds 3] [--baseline DIR]

Not a test (no timed tests): a figure for the README ("Operating the server", Benchmarks).
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

# Runs in a child: argv = root crl.pem ca.pem revoked.pem clean.pem checks.
# Prints {"load_ms", "ok_us", "revoked_us"} (microseconds of process CPU per check).
_CHILD = r"""
import sys, time, json
root, crl_path, ca_p, rev_p, ok_p, n = sys.argv[1:7]
n = int(n)
sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in (getattr(f, '__module__', '') or type(f).__module__)]
sys.path.insert(0, root)
from cryptography import x509
from appliance.openvpn.crl import CrlChecker
ca, rev, ok = (x509.load_pem_x509_certificate(open(p, 'rb').read()) for p in (ca_p, rev_p, ok_p))
t = time.process_time(); ch = CrlChecker('file', crl_path); load = time.process_time() - t
assert ch.revoked(rev, [ca]) is not None and ch.revoked(ok, [ca]) is None   # also verifies the signature once
def per_check(cert):
    t = time.process_time()
    for _ in range(n):
        ch.revoked(cert, [ca])
    return (time.process_time() - t) / n * 1e6
print(json.dumps({"load_ms": round(load * 1000, 1), "ok_us": round(per_check(ok), 1),
                  "revoked_us": round(per_check(rev), 1)}))
"""


def make_files(d: Path, entries: int) -> list[str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
    from appliance.certs import issue
    from appliance.openvpn.crl import make_crl
    ca = issue("Bench CA", None, None)
    rev, ok = issue("revoked", ca, EKU.CLIENT_AUTH), issue("clean", ca, EKU.CLIENT_AUTH)
    # The revoked one last: a scan of the entries finds it at the end.
    (d / "crl.pem").write_bytes(make_crl(ca[0], ca[1], list(range(10**6, 10**6 + entries - 1)) + [rev[0].serial_number]))
    for name, c in (("ca", ca), ("revoked", rev), ("clean", ok)):
        (d / f"{name}.pem").write_bytes(c[0].public_bytes(serialization.Encoding.PEM))
    return [str(d / f) for f in ("crl.pem", "ca.pem", "revoked.pem", "clean.pem")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="directory holding another version's `appliance`")
    a = ap.parse_args(argv)
    roots = ([("before", Path(a.baseline))] if a.baseline else []) + [("now", REPO)]
    got: dict[str, list[dict]] = {k: [] for k, _ in roots}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), a.entries)
        for _ in range(a.rounds):
            for kind, root in roots:
                r = subprocess.run([sys.executable, "-c", _CHILD, str(root), *files, str(a.checks)],
                                   capture_output=True, text=True, timeout=600)
                if r.returncode != 0:
                    raise RuntimeError(f"{kind}: {r.stderr[-2000:]}")
                got[kind].append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(kind, got[kind][-1], flush=True)
    print(f"\ncrl-verify, {a.entries} revoked entries, CPU per certificate check (median of {a.rounds} rounds):")
    for kind, rs in got.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("ok_us", "revoked_us", "load_ms")}
        print(f"  {kind:>6}: not revoked {med['ok_us']:.0f} us, revoked {med['revoked_us']:.0f} us;"
              f" file load {med['load_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
