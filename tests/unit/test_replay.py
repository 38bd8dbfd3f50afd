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


# ------------------------------------------------------------------ time limit (replay-window N T)
def test_time_limit_expires_old_ids_as_openvpn_reaps():
    """OpenVPN packet_id_reap: once an id arrived more than T seconds ago, it and every older id
    are refused, even inside the window."""
    w = ReplayWindow(64, 15)
    assert w.accept(100, now=0.0)
    assert w.accept(98, now=10.0)            # inside the window and within T of id 100
    assert not w.check(99, now=15.5)         # id 100 arrived 15.5 s ago: 99 has expired
    assert not w.accept(97, now=15.5)
    assert w.accept(101, now=15.5)           # newer than the newest: always accepted
    assert not w.accept(99, now=15.6)        # still expired (the floor only rises)


def test_time_limit_follows_the_newest_id_with_continuous_traffic():
    w = ReplayWindow(64, 15)
    t = 0.0
    for pid in range(1, 200, 2):             # odd ids, 0.1 s apart: 10 s of traffic
        assert w.accept(pid, now=t)
        t += 0.1
    assert w.accept(198, now=t)              # even id near the newest: fresh
    # 30 s later nothing arrived in between: every id up to the newest expired.
    assert not w.accept(196, now=t + 30)
    assert w.accept(300, now=t + 30)


def test_no_time_limit_without_now_or_with_zero():
    w = ReplayWindow(64, 15)
    assert w.accept(100, now=0.0)
    assert w.accept(99)                      # no `now`: no time limit (control-channel callers)
    z = ReplayWindow(64, 0)                  # replay-window N 0: OpenVPN disables the time check
    assert z.accept(100, now=0.0)
    assert z.accept(99, now=1000.0)


def test_size_zero_allows_no_reordering():
    w = ReplayWindow(0)
    assert w.accept(5)
    assert not w.accept(4)
    assert not w.accept(5)
    assert w.accept(6)


def test_size_zero_is_openvpns_strict_mode_no_gap():
    """OpenVPN 2.6's packet_id_test without a backtrack list (replay-window 0): the first id is
    taken whatever it is, then only newest + 1; a gap is refused, and so is everything after it
    (the newest stays where it was), as 2.6.14's `!p->id || pin->id == p->id + 1`."""
    w = ReplayWindow(0)
    assert w.check(9) and w.accept(9)           # first: any id
    assert w.accept(10)
    assert not w.check(12) and not w.accept(12)  # a gap: 11 lost on the way
    assert not w.accept(13)
    assert w.highest == 10
    assert w.check(11) and w.accept(11)          # the next id still gets in
    w.update(12) if w.check(12) else None
    assert w.highest == 12
    assert not w.check(14)


def _openvpn_backtrack(n):
    """2.6.14's packet_id_test/packet_id_add (short form, no time limit) for window n >= 1: a list
    of the last n ids, newest first; an id above the newest restarts it past a jump of n or more."""
    state = {"id": 0, "seen": []}

    def accept(pid):
        if pid == 0:
            return False
        cur, seen = state["id"], state["seen"]
        if pid <= cur:
            diff = cur - pid
            if diff >= len(seen) or seen[diff]:
                return False
            seen[diff] = True
            return True
        if not seen or pid - n > cur:
            cur, seen = max(pid - n, 0), []
        while cur < pid:
            seen.insert(0, False)
            del seen[n:]
            cur += 1
        seen[0] = True
        state["id"], state["seen"] = cur, seen
        return True
    return accept


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(1, 40), max_size=80))
def test_small_windows_decide_as_openvpn(n, ids):
    """replay-window 1..6: every id accepted or refused exactly as 2.6's list of n entries does."""
    w, ref = ReplayWindow(n), _openvpn_backtrack(n)
    for pid in ids:
        assert w.accept(pid) == ref(pid), (n, pid)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=80))
def test_size_zero_decides_as_openvpn(ids):
    w, newest = ReplayWindow(0), 0
    for pid in ids:
        want = newest == 0 or pid == newest + 1
        assert w.check(pid) == want
        assert w.accept(pid) == want
        newest = pid if want else newest


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(1, 20),
       st.lists(st.tuples(st.integers(1, 300), st.floats(0, 3)), max_size=120))
def test_time_limit_never_accepts_what_the_window_refuses_and_never_refuses_fresh_ids(size, limit, seq):
    """Against the reference model: the time limit only ever refuses more, and an id newer than
    every id seen in the last T seconds (minus sampling slack) is never refused by it."""
    w, m = ReplayWindow(size, limit), _Model(size)
    now = 0.0
    arrivals: dict[int, float] = {}
    for pid, dt in seq:
        now += dt
        got = w.accept(pid, now)
        model_ok = pid > 0 and pid not in m.seen and pid > m.highest - size
        if got:
            assert model_ok
            m.accept(pid)
            arrivals[pid] = now
        elif model_ok:
            # Refused only by the time limit: some id >= pid arrived more than `limit` s ago.
            assert any(q >= pid and t + limit < now for q, t in arrivals.items())


def test_time_limit_samples_stay_bounded_when_every_id_comes_in_order():
    """The time limit's samples of (arrival, newest id) must not outgrow T: an authenticated peer
    sending one packet a second, always in order, never makes the window look back (no
    out-of-order id), and the samples grew by one a second for the key's life (~410 KB an hour,
    for ever with reneg-sec 0). The expiry they decide stays as it was."""
    w = ReplayWindow(64, 15)
    for i in range(1, 3601):                 # an hour, a packet a second, all in order (even ids)
        assert w.accept(2 * i, now=float(i))
    assert len(w._samples) <= 15 + 2
    assert not w.accept(2 * (3600 - 20) - 1, now=3600.5)  # its successor came 20 s ago: expired
    assert w.accept(2 * (3600 - 5) - 1, now=3600.5)       # 5 s ago: still inside T, as before
    u = ReplayWindow(64, 15)                     # update() (the compiled AEAD path's) likewise
    for i in range(1, 3601):
        u.update(i, now=float(i))
    assert len(u._samples) <= 15 + 2
