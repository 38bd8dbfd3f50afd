"""The WAN DHCP client's times and states (appliance/boot/dhcp_client.py), with the clock injected:
RFC 2131's T1/T2 and retransmission rules, the boot's backoff that never gives up, and the
renewal thread's RENEWING -> REBINDING -> INIT walk. The network side of the state machine is
the interop file's (tests/interop/test_wan_dhcp_client.py, dnsmasq in namespaces); here its
`request`/`acquire`/`bind` answer from a script, so a day-long lease runs in milliseconds."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from appliance.boot import dhcp_client as dc
from appliance.boot.dhcp_client import (BOUND, EXPIRED, NAKED, REBINDING, RENEWING, Lease, Offer, Policy, Timing,
                                        lease_timing, phase, retransmit_at)

DAY = 86400


# ---------------------------------------------------------------- T1, T2, the lease

def test_without_options_58_59_t1_is_half_the_lease_and_t2_seven_eighths():
    assert lease_timing(DAY) == Timing(DAY / 2, DAY * 7 / 8, DAY)
    assert lease_timing(600) == Timing(300, 525, 600)


def test_the_servers_t1_t2_are_used_when_sane():
    assert lease_timing(DAY, 3600, 7200) == Timing(3600, 7200, DAY)
    assert lease_timing(DAY, 3600, None) == Timing(3600, DAY * 7 / 8, DAY)       # T1 alone
    assert lease_timing(DAY, None, 80000) == Timing(DAY / 2, 80000, DAY)         # T2 alone


@pytest.mark.parametrize("t1, t2", [(0, 0), (DAY, None), (None, DAY + 1), (None, 100), (0xFFFFFFFF, 0xFFFFFFFF),
                                    (DAY * 7 // 8, None), (DAY, DAY)])
def test_t1_t2_that_break_t1_lt_t2_lt_lease_are_replaced_by_the_defaults(t1, t2):
    assert lease_timing(DAY, t1, t2) == Timing(DAY / 2, DAY * 7 / 8, DAY)


def test_of_t1_t2_that_do_not_fit_together_the_one_that_fits_the_defaults_is_kept():
    assert lease_timing(DAY, 7200, 3600) == Timing(7200, DAY * 7 / 8, DAY)     # T2 < T1: T2 is the default
    assert lease_timing(DAY, 3600, DAY) == Timing(3600, DAY * 7 / 8, DAY)      # T2 = the lease: the same
    assert lease_timing(DAY, DAY, 80000) == Timing(DAY / 2, 80000, DAY)        # T1 = the lease: T1 the default


@pytest.mark.parametrize("lease", [0, 1, 59])
def test_a_lease_of_under_a_minute_is_taken_as_a_minute(lease):
    """A 0 s lease would be expired on arrival and sent the client back to DISCOVER in a loop."""
    assert lease_timing(lease) == Timing(30, 52.5, 60)
    t = lease_timing(lease, 1, 2)                 # T1 raised to 30 s past the server's T2: T2 is the default
    assert t == Timing(30, 52.5, 60)


def test_an_infinite_lease_is_renewed_every_12_hours_and_never_runs_out():
    t = lease_timing(0xFFFFFFFF)
    assert t.t1 == 12 * 3600 and t.t2 > t.t1 and t.lease == 0xFFFFFFFF


def test_the_timing_bounds_are_the_policys():
    short = Policy(min_renew=1)
    assert lease_timing(120, 2, 6, short) == Timing(2, 6, 120)
    assert lease_timing(120, 2, 6) == Timing(30, 105, 120)                    # the appliance's: T1 >= 30 s


def test_t1_lt_t2_lt_lease_always():
    for lease in (0, 1, 30, 59, 60, 61, 119, 120, 3600, DAY, 40 * DAY, 0xFFFFFFFF):
        for t1 in (None, 0, 1, 29, 30, 31, lease // 2, lease - 1, lease, 0xFFFFFFFF):
            for t2 in (None, 0, 1, 31, lease // 2 + 1, lease - 1, lease, 0xFFFFFFFF):
                t = lease_timing(lease, t1, t2)
                assert dc.MIN_RENEW <= t.t1 < t.t2 < t.lease, (lease, t1, t2, t)
                assert t.t1 <= dc.MAX_RENEW


# ---------------------------------------------------------------- states and retransmissions

def test_the_state_follows_the_clock():
    at = dict(renew_at=100.0, rebind_at=175.0, expires=200.0)
    assert [phase(now, **at) for now in (0, 99.9, 100, 174.9, 175, 199.9, 200, 1e9)] == \
        [BOUND, BOUND, RENEWING, RENEWING, REBINDING, REBINDING, EXPIRED, EXPIRED]


def test_retransmissions_halve_the_time_left_down_to_a_minute_and_stop_at_the_end():
    """RFC 2131 4.4.5: wait one-half of the remaining time until T2 (RENEWING) or the expiry
    (REBINDING), down to a minimum of 60 s."""
    assert retransmit_at(0, 1000) == 500
    assert retransmit_at(900, 1000) == 960          # 50 s left: 60 s at least ...
    assert retransmit_at(980, 1000) == 1000         # ... but not past the end: the next state's turn


def test_an_infinite_lease_that_is_not_renewed_is_asked_again_within_12_hours():
    t = lease_timing(0xFFFFFFFF)
    assert retransmit_at(t.t1, t.t2) == t.t1 + dc.MAX_RENEW            # not half a century later


def test_a_day_lease_with_no_server_renews_and_rebinds_as_rfc_2131_then_expires():
    """The renewal thread's walk when nothing answers: unicast REQUESTs from T1 to T2, spaced by
    half the time left (>= 60 s); broadcast from T2 to the expiry; then INIT (acquire), where the
    address goes at the expiry (acquire's job, in the interop file)."""
    c = Scripted(answers=[])
    lease = c.lease(DAY)
    c.run(lease, until=lambda: c.acquired)
    renewing = [t for t, state in c.requests if state == RENEWING]
    rebinding = [t for t, state in c.requests if state == REBINDING]
    assert renewing[0] == DAY / 2 and rebinding[0] == DAY * 7 / 8
    assert all(DAY / 2 <= t < DAY * 7 / 8 for t in renewing) and all(DAY * 7 / 8 <= t < DAY for t in rebinding)
    gaps = [b - a for a, b in zip(renewing, renewing[1:])] + [b - a for a, b in zip(rebinding, rebinding[1:])]
    assert min(gaps) >= 60
    assert renewing[1] - renewing[0] == (DAY * 7 / 8 - DAY / 2) / 2         # half the time left
    assert 10 <= len(renewing) <= 20 and 8 <= len(rebinding) <= 16           # bounded: no loop
    assert c.acquired == [DAY]                                              # INIT at the expiry, not before


def test_an_ack_while_renewing_binds_the_new_times_from_when_the_request_was_sent():
    ack = Offer("198.18.60.10", 24, "198.18.60.1", (), "198.18.60.1", 3600)
    c = Scripted(answers=[ack])
    lease = c.lease(3600)
    c.run(lease, until=lambda: c.bound)
    assert c.requests == [(1800, RENEWING)] and c.bound == [(1800, "renewing")]
    assert (lease.renew_at, lease.rebind_at, lease.expires) == (1800 + 1800, 1800 + 3150, 1800 + 3600)


def test_an_unanswered_renewal_then_an_ack_while_rebinding():
    ack = Offer("198.18.60.10", 24, "198.18.60.1", (), "198.18.60.9", 600)     # another server may answer
    c = Scripted(answers=[None, None, ack])
    lease = c.lease(600)                                     # T1 300, T2 525: RENEWING at 300, 412.5, 472.5
    c.run(lease, until=lambda: c.bound)
    assert c.requests == [(300, RENEWING), (412.5, RENEWING), (472.5, RENEWING)]
    c2 = Scripted(answers=[None, None, None, ack])
    lease2 = c2.lease(600)
    c2.run(lease2, until=lambda: c2.bound)
    assert c2.requests[-1] == (525, REBINDING) and c2.bound == [(525, "rebinding")]
    # Another server's ACK renews the address on the lease's terms (held_terms): the next RENEWING
    # still goes to the server that gave the lease, its router stays.
    assert (lease2.server, lease2.router) == ("198.18.60.1", "198.18.60.1")


def test_a_nak_starts_one_round_of_discovers_at_once_with_the_address_kept():
    """RFC 2131 4.4.5: a NAK sends the client back to INIT. Not to acquire's wait (before: it took
    only the old address until the lease ran out, a day of a dead address when the ISP had really
    renumbered), but one round of DISCOVERs at once, the address on the NIC meanwhile."""
    c = Scripted(answers=[NAKED], rounds=[None])
    lease = c.lease(600)
    c.run(lease, until=lambda: len(c.requests) >= 2)
    assert c.rounds == [(300, "198.18.60.10")] and c.acquired == []
    assert lease.on_nic and lease.address == "198.18.60.10"
    assert c.requests[1][0] >= 300 + 60                       # no offer: the REQUESTs go on, spaced as ever


def test_a_forged_nak_gets_the_same_address_back_and_changes_nothing():
    same = Offer("198.18.60.10", 24, "198.18.60.1", (), "198.18.60.1", 600)
    c = Scripted(answers=[NAKED], rounds=[same])
    lease = c.lease(600)
    c.run(lease, until=lambda: c.bound)
    assert c.bound == [(306, "init after a NAK")] and c.offers == [same]
    assert lease.renew_at == 306 + 300                        # the lease's times run from the new REQUEST


def test_a_real_renumbering_moves_the_wan_to_the_servers_new_address_at_once():
    new = Offer("198.18.61.20", 24, "198.18.61.1", (), "198.18.60.1", 600)
    c = Scripted(answers=[NAKED], rounds=[new])
    lease = c.lease(DAY)
    c.run(lease, until=lambda: c.bound)
    assert c.bound == [(DAY / 2 + 6, "init after a NAK")] and c.offers == [new]   # at T1's NAK, not at DAY


def test_a_nak_storm_is_not_a_discover_storm():
    """Every REQUEST NAKed (a rogue that sees the REBINDING transaction, or a server that offers
    nothing usable): at most one round of DISCOVERs per nak_every (300 s), the REQUESTs between
    them spaced as when unanswered."""
    c = Scripted(answers=[NAKED] * 1000, rounds=[None] * 1000)
    lease = c.lease(DAY)
    c.run(lease, until=lambda: c.now >= DAY)
    starts = [t for t, _a in c.rounds]
    assert len(starts) >= 3 and all(b - a >= 300 for a, b in zip(starts, starts[1:]))
    assert len(c.requests) > len(starts)                       # NAKs inside the 300 s: no round
    assert len(c.requests) <= 40                                # spaced as when unanswered: no loop


def test_a_rebinding_ack_from_another_server_keeps_our_router_and_caps_the_lease():
    """REBINDING is broadcast: any server may answer, a rogue first. An ACK of our own address
    from a server other than the lease's renews the address on the lease's terms: its router
    (before: the rogue's became the default route), the lease no longer than ours (before: an
    'infinite' lease kept the address for good, however long the real server stayed silent)."""
    rogue = Offer("198.18.60.10", 24, "198.18.60.66", ("198.18.60.66",), "198.18.60.66", 0xFFFFFFFF)
    c = Scripted(answers=[None, None, None, rogue])
    lease = c.lease(600)
    c.run(lease, until=lambda: c.bound)
    got = c.offers[0]
    assert (got.router, got.server, got.dns, got.lease_time) == ("198.18.60.1", "198.18.60.1", (), 600)
    assert lease.expires == 525 + 600
    real = Offer("198.18.60.10", 24, "198.18.60.254", (), "198.18.60.1", 7200)
    assert dc.held_terms(lease, real) == real                  # the lease's own server may change the terms


def test_the_thread_survives_an_error_and_tries_again_a_minute_later():
    c = Scripted(answers=[RuntimeError("netlink said no"), None])
    lease = c.lease(600)
    c.run(lease, until=lambda: len(c.requests) >= 2)
    assert c.requests == [(300, RENEWING), (360, RENEWING)]


class Scripted(dc._Client):
    """_Client with a fake clock whose network side answers from `answers` (an Offer, NAKED,
    None: unanswered, or an exception to raise) and a round of DISCOVERs from `rounds` (an Offer
    or None); acquire records when INIT began."""

    def __init__(self, answers: list, rounds: list | None = None) -> None:
        self.now = 0.0
        self.round_answers = list(rounds or [])
        self.rounds: list[tuple[float, str | None]] = []
        self.offers: list[Offer] = []
        super().__init__("wan0", b"\x52\x54\0\0\0\1", (), Policy(), threading.Event(), clock=lambda: self.now,
                         rand=lambda: 0.5)
        self.answers = list(answers)
        self.requests: list[tuple[float, str]] = []
        self.bound: list[tuple[float, str]] = []
        self.acquired: list[float] = []

    def lease(self, seconds: int) -> Lease:
        t = lease_timing(seconds)
        return Lease("wan0", "198.18.60.10", 24, "198.18.60.1", [], "198.18.60.1", seconds,
                     expires=t.lease, renew_at=t.t1, rebind_at=t.t2, _stop=self.stop)

    def _sleep(self, seconds: float) -> bool:
        self.now += max(0.0, seconds)
        self.sleeps += 1
        if self.until() or self.sleeps > 1000:
            self.stop.set()
        return self.stop.is_set()

    def request(self, lease, state):
        self.requests.append((self.now, state))
        a = self.answers.pop(0) if self.answers else None
        if isinstance(a, Exception):
            raise a
        return a

    def acquire(self, lease=None):
        self.acquired.append(self.now)
        self.stop.set()                   # INIT is acquire's (below, and the interop file's): the walk ends here
        return None

    def _round(self, keep, say, held=None, nak_server=None, keep_server=None):
        """A round of DISCOVERs after a NAK: 6 s, its REQUEST sent at the end."""
        self.rounds.append((self.now, held.address if held is not None else None))
        self.now += 6
        a = self.round_answers.pop(0) if self.round_answers else None
        return (a, self.now) if a is not None else None

    def bind(self, lease, offer, sent, how):
        self.offers.append(offer)
        lease.router = offer.router
        t = lease_timing(offer.lease_time, offer.renew, offer.rebind, self.policy)
        lease.server, lease.renew_at, lease.rebind_at, lease.expires = (offer.server, sent + t.t1, sent + t.t2,
                                                                        sent + t.lease)
        self.bound.append((sent, how))

    def run(self, lease: Lease, until) -> None:
        """The real renewal thread's loop (keep_renewed), until `until()` or INIT."""
        self.until, self.sleeps = until, 0
        self.keep_renewed(lease)
        assert self.sleeps <= 1000, "no end in 1000 waits"


# ---------------------------------------------------------------- the boot's backoff

def test_the_pauses_double_to_a_minute_with_jitter():
    p = Policy()
    assert [p.pause(r, 0.5) for r in range(1, 8)] == [5, 10, 20, 40, 60, 60, 60]
    assert p.pause(3, 0.0) == pytest.approx(18) and p.pause(3, 0.999999) == pytest.approx(22, abs=1e-4)
    assert p.pause(10 ** 6, 0.5) == 60                    # a boot waiting for weeks: no overflow


def test_the_boot_asks_forever_logs_at_a_limited_rate_and_never_spins(caplog):
    """No server for an hour (fake clock): the client keeps asking -- it gave up after 5 tries,
    and PID 1 powered the VM off --, at most a round a minute, a log line a minute."""
    c = NoServer(hours=1.0)
    caplog.set_level("INFO", logger="vpn-appliance")
    assert c.acquire() is None                            # stopped at the hour
    assert 45 <= c.rounds <= 55 and c.now >= 3600
    lines = [r.getMessage() for r in caplog.records]
    assert sum("no DHCP lease yet" in m for m in lines) <= 60
    assert "wan0: no DHCP lease yet: 5 tries in 15 s" in lines[0] and "(replies dropped: none)" in lines[0]


def test_a_lease_that_ran_out_goes_after_one_more_round(monkeypatch):
    removed = []
    monkeypatch.setattr(dc, "_remove", lambda ifname, a, p: removed.append((ifname, a, p)))
    c = NoServer(hours=0.2)
    lease = Lease("wan0", "198.18.60.10", 24, None, [], None, 600, expires=100.0, _stop=c.stop)
    c.acquire(lease)
    holding = [k for t, k in c.keeps if t < 100]
    assert holding and all(k == ("198.18.60.10", 24) for k in holding)   # only its address while it holds
    assert removed == [("wan0", "198.18.60.10", 24)] and not lease.on_nic
    first_after = min(t for t, _k in c.keeps if t >= 100)
    assert first_after == 100                             # the pause ended at the expiry, not later
    assert c.removed_at == 115                             # one round (15 s) after it, with any lease welcome
    assert all(k is None for t, k in c.keeps if t >= 100)


class NoServer(dc._Client):
    """_Client with a fake clock where no round gets a lease; stopped after `hours`."""

    def __init__(self, hours: float) -> None:
        self.now, self.rounds, self.end = 0.0, 0, hours * 3600
        self.keeps: list = []
        self.removed_at = None
        super().__init__("wan0", b"\x52\x54\0\0\0\1", (), Policy(), threading.Event(), clock=lambda: self.now,
                         rand=lambda: 0.5)

    def _sleep(self, seconds: float) -> bool:
        self.now += max(0.0, seconds)
        if self.now >= self.end:
            self.stop.set()
        return self.stop.is_set()

    def _round(self, keep, say, keep_server=None):
        self.keeps.append((self.now, keep))
        self.rounds += 1
        self._sleep(self.policy.reply_wait * self.policy.tries)
        return None

    def _expire(self, lease):
        self.removed_at = self.now
        super()._expire(lease)


# ---------------------------------------------------------------- SIGTERM while waiting at boot

WAITING = r"""
import logging, sys, threading, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from appliance.boot import dhcp_client as dc
stop = threading.Event()
with dc._sigterm_stops("wan0"):
    print("waiting", flush=True)
    t = time.monotonic()
    try:
        stop.wait(30)                  # the pause between rounds
    finally:
        print(f"waited {time.monotonic() - t:.2f}", flush=True)
print("not stopped", flush=True)
"""


def test_sigterm_stops_the_boots_wait_at_once():
    """A pause of the boot's wait must not make the process (the VM's PID 1, a host's service)
    deaf to SIGTERM: it ends the wait with status 0, the way out running the undo list."""
    p = subprocess.Popen([sys.executable, "-c", WAITING], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "waiting\n"
        time.sleep(0.2)
        t = time.monotonic()
        p.terminate()
        out, _ = p.communicate(timeout=10)
        took = time.monotonic() - t
    finally:
        p.kill()
    assert p.returncode == 0 and "SIGTERM while waiting for a DHCP lease: stopping" in out
    assert "not stopped" not in out and took < 2


# ---------------------------------------------------------------- where a RENEWING request may go

@pytest.mark.parametrize("server_id, kept", [("198.18.0.1", True), ("203.0.113.9", True), ("127.0.0.1", False),
                                             ("255.255.255.255", False), ("0.0.0.0", False), ("224.0.0.1", False),
                                             ("169.254.0.1", False), ("198.18.0.55", False)])
def test_a_server_id_the_renewal_cannot_be_unicast_to_is_no_server_id(server_id, kept):
    """The RENEWING REQUEST goes unicast to the lease's server id: never to the loopback, a
    broadcast or multicast address, or ourselves (yiaddr 198.18.0.55); without one the renewal
    is broadcast (any server may answer, the address checks as ever)."""
    import socket
    from appliance.boot.dhcp_client import ACK, build_message, check_reply_untrusted, parse_reply_untrusted
    body = bytearray(build_message(ACK, 9, b"\x52\x54\0\0\0\1")[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton("198.18.0.55")
    r = parse_reply_untrusted(bytes(body) + bytes([53, 1, ACK, 54, 4]) + socket.inet_aton(server_id)
                              + bytes([1, 4, 255, 255, 255, 0, 58, 4, 0, 0, 0, 100, 59, 4, 0, 0, 0, 200]) + b"\xff")
    o = check_reply_untrusted(r)
    assert isinstance(o, Offer) and o.server == (server_id if kept else None)
    assert (o.renew, o.rebind) == (100, 200)                      # T1, T2 as sent; lease_timing judges them
