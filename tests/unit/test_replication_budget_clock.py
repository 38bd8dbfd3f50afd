"""The multicast replication budget (datapath.ReplicationBudget) given a time before its last
refill (fuzz40's mcast-budget target: a caller's older clock reading): it refills nothing and
takes nothing back. Before, `now - last` went negative and so did the buckets -- the next
packets were refused for as long as the refill took to climb back above zero."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.openvpn.datapath import BCAST_BURST, BCAST_COPY_BURST, BCAST_OVER_RATE, ReplicationBudget


def test_an_older_time_neither_refills_nor_drains_the_buckets():
    stats: dict[str, int] = {}
    b = ReplicationBudget(stats)
    rec = SimpleNamespace(common_name="alice")
    assert b.allow(rec, 10.0, copies=3)
    assert b.allow(rec, 7.5, copies=3)          # 2.5 s earlier: before, -500 packet tokens
    bucket = b.buckets[id(rec)]
    assert bucket[0] == BCAST_BURST - 2 and bucket[1] == BCAST_COPY_BURST - 6
    assert bucket[2] == 10.0                     # the refill goes on from the latest time
    assert b.allow(rec, 10.0) and stats[BCAST_OVER_RATE] == 0


def test_the_budget_still_refuses_past_its_burst_and_refills_with_time():
    stats: dict[str, int] = {}
    b = ReplicationBudget(stats)
    rec = SimpleNamespace(common_name="bob")
    allowed = sum(b.allow(rec, 1.0) for _ in range(int(BCAST_BURST) + 10))
    assert allowed == BCAST_BURST and stats[BCAST_OVER_RATE] == 10
    assert not b.allow(rec, 0.5)                 # earlier: nothing refilled, nothing taken
    assert min(b.buckets[id(rec)][:2]) >= 0.0
    assert b.allow(rec, 1.1)                     # 0.1 s later: 20 packets' worth again
