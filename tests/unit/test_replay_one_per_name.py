"""A reload to `duplicate-cn` off leaves at most one session of each name (helper authq48, after
review46a's note of a pending restart in place keeping the other session of its name).

The reload's verdict is count_checks.replay over the clients holding a place; a seeded sweep of
small client sets -- two names, established or with their connect pending, restarts in place of
earlier ones (same client ID, their predecessor handed as the session they restart), some already
told to go (not judged) -- checks that the clients it keeps (judged and not refused) hold each
name at most once, and that a restart in place, not its predecessor, is the one of its pair kept.
Not reproduced on this tree in memory either (tests/gateway/test_count_checks_agree.py's states:
restarts held at tls-verify or their connect, before and after another session of the name)."""
from __future__ import annotations

import random
from types import SimpleNamespace as NS

from appliance.openvpn.count_checks import replay


def _rec(name: str, established: bool, pending: bool, cid: int) -> NS:
    return NS(alive=True, common_name=name, connect_state="pending" if pending else "done",
              session=NS(established=established), cid=cid)


def _case(rng: random.Random) -> tuple[list, dict, set]:
    recs: list = []
    heir_of: dict[int, NS] = {}
    for i in range(rng.randint(1, 6)):
        prev = rng.choice(recs) if recs and rng.random() < 0.35 else None
        if prev is not None and id(prev) not in heir_of and prev not in heir_of.values():
            heir = _rec(prev.common_name, rng.random() < 0.3, True, prev.cid)
            heir_of[id(heir)] = prev
            recs.append(heir)
        else:
            recs.append(_rec(rng.choice("ab"), rng.random() < 0.7, rng.random() < 0.5, 10 + i))
    recs = [r for r in recs if r.session.established or r.connect_state == "pending"]
    going = {id(r) for r in recs if rng.random() < 0.2}
    return recs, heir_of, going


def test_a_reload_to_duplicate_cn_off_keeps_one_session_a_name():
    rng = random.Random(48)
    for _ in range(1500):
        recs, heir_of, going = _case(rng)
        out = replay(recs, False, 50, lambda r: r.cid,
                     lambda r: [heir_of[id(r)]] if id(r) in heir_of else [], lambda r: id(r) not in going)
        kept = [r for r in recs if id(r) not in out and id(r) not in going]
        names = [r.common_name for r in kept]
        assert len(names) == len(set(names)), [(r.common_name, r.cid, id(r) in heir_of, id(r) in going,
                                               out.get(id(r))) for r in recs]
        for r in kept:
            assert not any(heir_of.get(id(h)) is r and id(h) not in going for h in recs), \
                "a session kept beside its own restart in place"
