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


def test_an_older_time_does_not_refill_the_server_budget_twice():
    """mcast40's server-wide bucket (fuzz40b): it set its refill time to whatever time it was
    given, so an older reading (refused or not) rewound it and the next current one refilled the
    same seconds again -- 2 s back and forth gave 80,000 copies at once past its 40,000 a second."""
    from appliance.openvpn.datapath import BCAST_OVER_SERVER, BCAST_SERVER_BURST
    stats: dict[str, int] = {}
    b = ReplicationBudget(stats)
    recs = [SimpleNamespace(common_name=f"c{i}") for i in range(8)]
    allowed = sum(BCAST_COPY_BURST * b.allow(r, 10.0, int(BCAST_COPY_BURST)) for r in recs)
    assert allowed == BCAST_SERVER_BURST and b.server[0] == 0.0
    refused = stats[BCAST_OVER_SERVER]
    assert not b.allow(recs[7], 8.0) and stats[BCAST_OVER_SERVER] == refused + 1    # its own bucket is full
    assert not b.allow(recs[7], 10.0)            # no time passed since 10.0: nothing refilled
    assert b.server == [0.0, 10.0]
    assert not b.allow_device(8.0, 1) and not b.allow_device(10.0, 1) and b.server[0] == 0.0
