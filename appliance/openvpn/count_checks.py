"""`duplicate-cn` and `max-clients`: the two admission checks that count the other clients,
decided here once for a client reaching its connect (clientpush.py) and for the clients a
reload keeps (gateway/reload_admission.py replays this decision over them, oldest first).

Why one place (admit45): the two paths had each their own count and drifted apart. A client
whose client-connect (script, plugin, management client-auth) was still pending counted at a
connect but not at a reload, so a reload that took duplicate-cn away or lowered max-clients let
it in beside the session it should have ended, or over the limit; and the reload ran the
duplicate-cn rule over everyone before max-clients, where a connect runs them per client, so a
name's newest session could be refused for a place the older ones of its name had held.

What OpenVPN 2.6.14 does, and where ours differs (multi.c): `max-clients` is checked when an
instance is created (hash_n_elements >= max_clients): every instance counts, half-open ones
included (UDP: once its cookie round trip is done; TCP: at accept); a reset from an existing
instance's address is that instance's, no newcomer. `duplicate-cn` off: at the start of the
client-connect stage (multi_client_connect_early_setup -> multi_delete_dup) every other
instance whose common name is locked -- everyone past that stage, their connect pending or done
-- with the same name is closed. Ours counts for max-clients the clients past their handshake
and login: established, or their connect pending (a handshake in progress holds no place: those
are bounded apart, max-half-open, so a flood of handshakes cannot lock real clients out, as it
can 2.6's); a cheaper early check at a handshake's start (admission.py refuse_new) only turns
away newcomers while the established ones alone fill the server. A session told RESTART (a
reload's restart, client-kill) holds its place until it is gone, as 2.6's instance until closed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

REPLACED_BY_RESTART = "replaced by a new session from the same address"


def holds_a_place(rec) -> bool:
    """Whether `rec` counts for max-clients and duplicate-cn: alive and past its handshake and
    login -- established, or its client-connect verdict awaited (it was let in by these checks,
    and it is in once the verdict comes)."""
    return bool(rec.alive and (rec.session.established or rec.connect_state == "pending"))


@dataclass
class CountVerdict:
    """What the checks say of a client reaching its connect: the others it ends (duplicate-cn
    off: the sessions of its name, (record, why)), then whether it is refused (max-clients)."""
    ends: list = field(default_factory=list)
    refused: str | None = None
    others: int = 0          # the clients it would be in beside (max-clients counts them)


def by_count(rec, n_present: int, same_name: Iterable, restarts: Iterable, duplicate_cn: bool,
             max_clients: int) -> CountVerdict:
    """The verdict on `rec` reaching its connect. `n_present`: how many clients hold a place
    besides it (holds_a_place); `same_name`: those of them with its common name; `restarts`:
    those of them it restarts (its own session at its address, or the one whose peer-id it
    inherits after a float: 2.6's one instance going on), which are no other client. As 2.6's
    order: the sessions of its name end first (their places free), then max-clients counts
    the rest. Counts, not lists, so a reload's replay stays one walk (~1,000 clients a pass)."""
    out = CountVerdict()
    own = {id(r) for r in restarts if r is not None and r is not rec}
    if not duplicate_cn and rec.common_name:
        out.ends = [(o, REPLACED_BY_RESTART if id(o) in own
                     else f"another client connected with common name {rec.common_name}")
                    for o in same_name if o is not rec and o.common_name == rec.common_name]
    out.others = n_present - len(own | {id(o) for o, _ in out.ends})
    if out.others >= max_clients:
        out.refused = "max-clients reached"
    return out


def full_for_a_newcomer(n_established: int, max_clients: int, replaces_client: bool) -> bool:
    """max-clients at a session's start (admission.py refuse_new), before its certificate or
    name is known: the established clients fill the server, and it comes from no established
    client's address (a restart in place is that client, as 2.6 hands its reset to the
    address's instance). As 2.6's check at an instance's creation, this comes before
    duplicate-cn: a client reconnecting from a new address to a full server is refused, not let
    in to end its old session (that session's end frees the place for its next try)."""
    return n_established >= max_clients and not replaces_client


def replay(clients: Iterable, duplicate_cn: bool, max_clients: int, order: Callable[[object], int],
           restarts_of: Callable[[object], Iterable], judged: Callable[[object], bool]) -> dict[int, str]:
    """id(record) -> why, for the `clients` holding a place whom a connect would end or refuse
    were they to connect again one by one, oldest first (`order`: when each connected, its
    client ID; ties keep the given order) -- each meeting the check at its start
    (full_for_a_newcomer, over those before it that are established) and then by_count: what a
    reload's changed settings do to the clients it keeps, as a connect would. Those not `judged`
    (told RESTART already: they are going) hold their place as they do at a connect, but get no
    verdict of their own. One walk: the clients in so far kept as counts and by name."""
    seen: set[int] = set()
    by_name: dict[object, dict[int, object]] = {}
    n_est = 0
    out: dict[int, str] = {}

    def leave(o) -> None:
        nonlocal n_est
        seen.discard(id(o))
        by_name.get(o.common_name, {}).pop(id(o), None)
        n_est -= 1 if o.session.established else 0

    def enter(o) -> None:
        nonlocal n_est
        seen.add(id(o))
        if o.common_name:
            by_name.setdefault(o.common_name, {})[id(o)] = o
        n_est += 1 if o.session.established else 0

    for rec in sorted(clients, key=order):
        own = [r for r in restarts_of(rec) if r is not None and r is not rec and id(r) in seen]
        est = n_est - sum(1 for r in own if r.session.established)
        if full_for_a_newcomer(est, max_clients, bool(own)):
            if judged(rec):
                out[id(rec)] = f"max-clients {max_clients} reached ({est} clients connected before it)"
            else:
                enter(rec)
            continue
        # Its name's sessions only where duplicate-cn off ends them: with it on, a name many
        # clients share (one certificate for all) was listed whole at each of them -- a pass
        # quadratic in that name's clients (8,000: ~1 s on the loop; review46a).
        same = list(by_name.get(rec.common_name, {}).values()) if rec.common_name and not duplicate_cn else []
        v = by_count(rec, len(seen), same, own, duplicate_cn, max_clients)
        for o, why in v.ends:
            leave(o)
            if judged(o):
                out[id(o)] = (f"a newer session has its common name {o.common_name} and duplicate-cn is off now"
                              if why != REPLACED_BY_RESTART else why)
        if v.refused is not None and judged(rec):
            out[id(rec)] = f"max-clients {max_clients} reached ({v.others} clients connected before it)"
        else:
            enter(rec)
    return out
