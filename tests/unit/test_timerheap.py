"""The dispatcher's deadline heap and the admission rate limiter, on their own."""
from __future__ import annotations

from dataclasses import dataclass

from appliance.openvpn.admission import FrequencyLimit
from appliance.openvpn.timerheap import TimerHeap


@dataclass(eq=False)
class Rec:
    name: str
    armed: float | None = None
    alive: bool = True


def test_earlier_deadline_replaces_later_one_lazily():
    h, a, b = TimerHeap(), Rec("a"), Rec("b")
    h.arm(a, 10.0)
    h.arm(b, 5.0)
    h.arm(a, 3.0)                        # earlier: the 10.0 entry becomes stale
    assert h.peek() == 3.0
    assert h.pop_due(4.0) == [a] and a.armed is None
    assert h.peek() == 5.0, "a's stale 10.0 entry must not surface as a deadline"
    assert h.pop_due(20.0) == [b]
    assert h.peek() is None


def test_later_deadline_keeps_the_earlier_entry_and_dead_records_vanish():
    h, a, b = TimerHeap(), Rec("a"), Rec("b")
    h.arm(a, 5.0)
    h.arm(a, 50.0)                       # later (data kept pings away): nothing pushed
    assert a.armed == 5.0 and len(h) == 1
    h.arm(b, 1.0)
    b.alive = False                      # forgotten client
    assert h.peek() == 5.0
    assert h.pop_due(100.0) == [a]
    h.arm(b, 2.0)
    assert h.peek() is None and len(h) == 0, "a dead record is never armed again"


def test_frequency_limit_fixed_windows_like_openvpn():
    f = FrequencyLimit(3, 10)
    assert [f.allow(t) for t in (0, 1, 2, 3, 9.9)] == [True, True, True, False, False]
    assert [f.allow(t) for t in (10, 11, 12, 13)] == [True, True, True, False]
    unlimited = FrequencyLimit(0, 0)
    assert all(unlimited.allow(t) for t in range(100))
