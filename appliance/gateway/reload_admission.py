"""The kept clients a reload's config would refuse by a check no single client's record decides:
`duplicate-cn` taken away while sessions share a common name, `max-clients` lowered below the
clients connected.

Why: OpenVPN 2.6's SIGHUP has every client connect again, through every check of the new config;
ours keeps its clients across a reload and checks each one (gateway/ops.py's pass: the chain,
ccd file and what it would be given). These two checks count the other clients, so they are
worked out once, for all the clients the reload found, when it applies (on the loop: one walk
over the clients, ~0.4 ms at 1,000), and the pass refuses each such client at its verdict, as
it refuses a revoked one (ops.py _verdicts_in). Which ones go is what the connect path does with
them one by one: without duplicate-cn a newer connection of a name ends the older one (the newest
is kept); over max-clients the newest connections are the ones refused (the longest connected
are kept).
"""
from __future__ import annotations

from typing import Callable, Iterable


def refused_by_count(clients: Iterable, duplicate_cn: bool, max_clients: int,
                     order: Callable[[object], int]) -> dict[int, str]:
    """id(record) -> why, for the established `clients` (each with .common_name) the settings
    would refuse at a reconnect. `order(rec)`: when it connected (its client ID), oldest lowest."""
    recs = sorted(clients, key=order)
    out: dict[int, str] = {}
    if not duplicate_cn:
        newest: dict[str, object] = {}
        for rec in recs:
            if rec.common_name:
                newest[rec.common_name] = rec
        for rec in recs:
            if rec.common_name and newest[rec.common_name] is not rec:
                out[id(rec)] = (f"a newer session has its common name {rec.common_name} and duplicate-cn is "
                                "off now")
    left = [r for r in recs if id(r) not in out]
    for rec in left[max(max_clients, 0):]:
        out[id(rec)] = f"max-clients {max_clients} reached ({len(left)} clients connected)"
    return out
