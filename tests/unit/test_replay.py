"""ReplayWindow: the sliding window that drops replayed and too-old packet ids."""
from hypothesis import given, settings, strategies as st

from appliance.openvpn.replay import ReplayWindow


def test_zero_and_negative_ids_are_never_valid():
    w = ReplayWindow()
    assert not w.check(0)
    assert not w.accept(0)
    assert not w.accept(-5)
    assert w.accept(1)


def test_duplicate_is_refused_after_update_only():
    w = ReplayWindow()
    assert w.check(7)
    assert w.check(7)          # check alone records nothing
    w.update(7)
    assert not w.check(7)
    assert not w.accept(7)


def test_out_of_order_inside_window_accepted_once():
    w = ReplayWindow(64)
    assert w.accept(100)
    for pid in (99, 50, 37):
        assert w.accept(pid)
        assert not w.accept(pid)
    assert w.accept(38)        # highest - 62
    assert not w.accept(36)    # highest - 64: one past the edge (OpenVPN: diff >= size is too old)


def test_too_old_is_refused():
    w = ReplayWindow(64)
    assert w.accept(100)
    assert not w.check(35)     # 65 behind the highest
    assert w.check(37)         # 63 behind: the oldest id still inside
    assert not w.accept(1)


def test_newer_packets_slide_the_window():
    w = ReplayWindow(8)
    for pid in (1, 2, 3):
        assert w.accept(pid)
    assert w.accept(10)        # slides by 7: 2 and 3 still remembered
    assert not w.accept(3)
    assert not w.accept(2)
    assert w.accept(4)
    assert w.accept(1000)      # slides by more than the window: old bits dropped
    assert not w.accept(10)    # too old now
    assert w.accept(999)


def test_big_start_values_work():
    w = ReplayWindow()
    assert w.accept(0x0F000001)     # tls-crypt-v2 early-negotiation counters start here
    assert w.accept(0x0F000002)
    assert not w.accept(0x0F000001)
    assert w.accept(0xFFFFFFFF)


class _Model:
    """Obviously-correct reference: a set of seen ids and the highest one."""

    def __init__(self, size: int) -> None:
        self.size, self.seen, self.highest = size, set(), 0

    def accept(self, pid: int) -> bool:
        if pid <= 0 or pid in self.seen or pid <= self.highest - self.size:
            return False
        self.seen.add(pid)
        self.highest = max(self.highest, pid)
        return True


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 80), st.lists(st.integers(-2, 400), max_size=200))
def test_matches_reference_model(size, pids):
    w, m = ReplayWindow(size), _Model(size)
    for pid in pids:
        assert w.check(pid) == (pid > 0 and pid not in m.seen and pid > m.highest - size)
        assert w.accept(pid) == m.accept(pid)
