"""The kept clients a reload's config would refuse by a check no single client's record decides:
`duplicate-cn` taken away while sessions share a common name, `max-clients` lowered below the
clients connected.

Why: OpenVPN 2.6's SIGHUP has every client connect again, through every check of the new config;
ours keeps its clients across a reload and checks each one (gateway/ops.py's pass: the chain,
ccd file and what it would be given). These two checks count the other clients, so they are
worked out once, for all the clients the reload found, when it applies (on the loop: one walk
over the clients, ~2-4 ms at 1,000 and ~70-120 ms at 8,000, whether they share a name or not:
lab/reload_count_pass.py), and the pass refuses each such client at its verdict, as
it refuses a revoked one (ops.py _verdicts_in). Which ones go is what the connect path decides,
by the same function (openvpn/count_checks.py by_count), replayed over the clients holding a place
(established, or their client-connect pending) oldest first: without duplicate-cn a newer
session of a name ends the older ones; over max-clients a client is refused when the ones before
it that are still in fill the server (admit45: the two paths agree by construction).
"""
from __future__ import annotations

from typing import Callable, Iterable

from ..openvpn.count_checks import holds_a_place, replay


def refused_by_count(clients: Iterable, duplicate_cn: bool, max_clients: int,
                     order: Callable[[object], int],
                     restarts_of: Callable[[object], Iterable] = lambda rec: (),
                     judged: Callable[[object], bool] = lambda rec: True) -> dict[int, str]:
    """id(record) -> why, for the `clients` holding a place (count_checks.holds_a_place; the
    others are left out here: a handshake in progress meets the checks at its own connect) that
    the settings would end or refuse at a reconnect. `order(rec)`: when it connected (its client
    ID), oldest lowest; `restarts_of(rec)`: the sessions it restarts (its predecessor at its
    address: no other client); `judged(rec)`: False for one already told to go."""
    return replay([r for r in clients if holds_a_place(r)], duplicate_cn, max_clients, order,
                  restarts_of, judged)
