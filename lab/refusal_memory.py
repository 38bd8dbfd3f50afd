"""What a refused login's remnant (appliance/openvpn/refusals.py) holds, measured: N logins refused
in memory (a deferred verdict `0`, no tls-auth), their answers lost so each keeps a remnant; the
Python heap (tracemalloc) with the remnants kept, then after they are dropped. OpenSSL's own
allocations (a tls-auth or tls-crypt wrapper's contexts) are not seen by tracemalloc.

    .venv/bin/python -m lab.refusal_memory [N]
"""
from __future__ import annotations

import gc
import sys
import tracemalloc

from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.engine.test_refused_login_under_loss import _refused_with_reply_lost, _server
from tests.engine.test_server_dispatcher import _cert


def main(n: int = 40) -> None:
    ca = _cert("Test CA", ca=True)
    pki = {"ca": ca, "server": _cert("server", ca, eku=ExtendedKeyUsageOID.SERVER_AUTH),
           "clients": [_cert("client0", ca, eku=ExtendedKeyUsageOID.CLIENT_AUTH)]}
    d = _server(pki, True)
    _refused_with_reply_lost(pki, True, ("198.18.0.9", 40999), d=d)       # warm-up: imports, caches
    d.refusals.clear()
    d.refusals.next_deadline()                                             # (drops its stale timer entry)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for i in range(n):
        _refused_with_reply_lost(pki, True, ("198.18.0.10", 41000 + i), d=d)
    d.events.clear()
    gc.collect()
    kept = len(d.refusals)
    held = tracemalloc.take_snapshot()
    d.refusals.clear()
    d.refusals.next_deadline()
    gc.collect()
    gone = tracemalloc.take_snapshot()
    a = sum(s.size_diff for s in held.compare_to(base, "filename"))
    b = sum(s.size_diff for s in gone.compare_to(base, "filename"))
    print(f"{n} refused, {kept} remnants kept: {(a - b) / kept / 1024:.1f} KB of Python heap each")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
