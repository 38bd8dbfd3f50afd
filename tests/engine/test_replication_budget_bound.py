"""The client-to-client budgets kept across reconnects by common name (ReplicationBudget.left,
review38) under churn of many distinct certificates (soak40): what a departed client's name
holds is bounded in count (BCAST_LEFT_MAX) whatever the churn, and in time -- a bucket full
again carries nothing and is dropped by the server's 5 s timer (prune), also when nobody
multicasts any more (forget() alone then kept them for good)."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.openvpn.datapath import (BCAST_BURST, BCAST_LEFT_MAX, BCAST_REFILL, ReplicationBudget)


def _rec(name: str):
    return SimpleNamespace(common_name=name)


def test_names_kept_never_exceed_the_cap_under_churn_of_distinct_certificates():
    b = ReplicationBudget({})
    n = BCAST_LEFT_MAX + 3000
    for i in range(n):                       # each connects, multicasts, leaves -- all within a second
        r = _rec(f"cn{i}")
        assert b.allow(r, 100.0 + i * 1e-4, copies=5)
        b.forget(r)
    assert len(b.left) <= BCAST_LEFT_MAX
    assert not b.buckets                     # no live client: nothing keyed by a record
    assert f"cn{n - 1}" in b.left and "cn0" not in b.left     # the oldest made room


def test_kept_buckets_full_again_are_pruned_even_when_nobody_multicasts_any_more():
    b = ReplicationBudget({})
    for i in range(500):
        r = _rec(f"cn{i}")
        b.allow(r, 10.0, copies=1)
        b.forget(r)
    assert len(b.left) == 500                # within the refill time: each still carries its spending
    b.prune(10.0 + BCAST_REFILL / 2)
    assert len(b.left) == 500
    b.prune(10.0 + BCAST_REFILL)
    assert not b.left


def test_an_old_bucket_behind_a_recent_one_is_pruned():
    """forget() stops at the first bucket not full again (oldest departure first): one whose
    client left later but last multicast long before stayed behind it."""
    b = ReplicationBudget({})
    old, recent = _rec("old"), _rec("recent")
    b.allow(old, 0.0)
    b.allow(recent, 50.0)
    b.forget(recent)                         # left first, its bucket still spent
    b.forget(old)                            # left next, its bucket long full again
    assert set(b.left) == {"recent", "old"}
    b.prune(50.0 + BCAST_REFILL / 4)
    assert set(b.left) == {"recent"}


def test_a_reconnect_within_the_refill_time_still_gets_the_spent_bucket_back():
    b = ReplicationBudget({})
    r = _rec("alice")
    for _ in range(int(BCAST_BURST)):
        assert b.allow(r, 1.0)
    b.forget(r)
    b.prune(1.0 + 0.001)                     # the timer in between keeps it: not full yet
    r2 = _rec("alice")
    assert not b.allow(r2, 1.0 + 0.001)      # no fresh burst for the reconnect
