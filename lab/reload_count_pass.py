"""How long a reload's duplicate-cn / max-clients pass (gateway/reload_admission.py
refused_by_count -> openvpn/count_checks.py replay) takes on the loop, by how many clients it
keeps and whether they share one common name (one certificate for all, duplicate-cn on) or
each has its own: the best of 5 runs per case, in ms. Plain records, no sessions: the pass
alone.

    .venv/bin/python -m lab.reload_count_pass [N ...]
"""
from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from appliance.gateway.reload_admission import refused_by_count


def _records(n: int, shared: bool) -> list:
    return [SimpleNamespace(common_name="shared" if shared else f"client{i}", n=i, alive=True,
                            connect_state="done", session=SimpleNamespace(established=True))
            for i in range(n)]


def main(sizes: list[int]) -> None:
    print(f"{'clients':>8} {'names':>9} {'dup-cn on':>10} {'dup-cn off':>11}")
    for n in sizes:
        for shared in (True, False):
            recs, row = _records(n, shared), []
            for dup in (True, False):
                best = float("inf")
                for _ in range(5):
                    t = time.perf_counter()
                    refused_by_count(recs, dup, n + 1, lambda r: r.n)
                    best = min(best, time.perf_counter() - t)
                row.append(best * 1000)
            print(f"{n:>8} {'one' if shared else 'distinct':>9} {row[0]:>9.1f}  {row[1]:>10.1f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 4000, 8000])
