"""`inactive N [BYTES]` (gateway/inactivity.py): the directive, its pushed form, and the check.
(Against OpenVPN 2.6, both roles: tests/interop/test_inactive.py.)"""
from __future__ import annotations

import pytest

from appliance.gateway.inactivity import Inactivity, check_interval
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.keymethod import parse_push_reply_untrusted

BASE = "client\ndev tun\nremote 198.18.0.1\n<ca>\n</ca>\n"


@pytest.mark.parametrize("line, want", [("inactive 3600", (3600, 0)), ("inactive 600 100000", (600, 100000)),
                                        ("inactive 0", None), ("inactive 0 5", None)])
def test_directive_values(line, want):
    o = parse_config(BASE + line + "\n", "/p.ovpn")
    assert o.inactive == want
    assert not any("inactive" in n for n in o.notes)        # applied, not "accepted, has no effect"


@pytest.mark.parametrize("line", ["inactive -1", "inactive x", "inactive 5 -3", "inactive 1 2 3", "inactive"])
def test_bad_values_are_errors_at_their_line(line):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + line + "\n", "/p.ovpn")
    assert "/p.ovpn:6" in str(ei.value) and "inactive" in str(ei.value)


def test_pushed_inactive_is_parsed_and_bounded():
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 10.8.0.2 255.255.255.0,inactive 30 500")
    assert p.inactive == (30, 500) and "inactive 30 500" not in " ".join(p.ignored)
    assert parse_push_reply_untrusted("PUSH_REPLY,inactive 0").inactive == (0, 0)     # turns ours off
    # OpenVPN takes any positive int (positive_atoi): a long limit is a server's choice, not an
    # attack (nothing spins on a far timer), and refusing it would refuse the whole connection.
    assert parse_push_reply_untrusted("PUSH_REPLY,inactive 99999999").inactive == (99999999, 0)
    assert parse_push_reply_untrusted("PUSH_REPLY,inactive 2147483647 1").inactive == (2**31 - 1, 1)
    # Anything else as 2.6 reads it (positive_atoi; the bytes with atoll), noted for the log.
    for bad, want in (("inactive -1", (0, 0)), ("inactive 2147483648", (0, 0)), ("inactive 5 -1", (5, 0)),
                      ("inactive x", (0, 0)), ("inactive 1 99999999999999999999", (1, 2**62)),
                      ("inactive " + "9" * 5000, (0, 0))):
        p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 10.8.0.2 255.255.255.0," + bad)
        assert p.inactive == want and p.malformed and len(p.malformed[0]) < 400, (bad, p.inactive, p.malformed)


def test_check_ends_only_n_seconds_without_more_than_min_bytes():
    i = Inactivity.start((10, 100), total=1000, now=0.0)
    assert i is not None and (i.base, i.since) == (1000, 0.0)
    assert not i.expired(1050, 5.0)                                           # 50 bytes: not yet more
    assert not i.expired(1101, 6.0) and (i.base, i.since) == (1101, 6.0)      # 101 bytes: activity at this look
    assert not i.expired(1201, 15.9)                                          # exactly 100 more: not more ...
    assert i.expired(1201, 16.0)                                              # ... and N seconds since: ends
    assert Inactivity.start(None, 0, 0.0) is None and Inactivity.start((0, 0), 0, 0.0) is None


def test_check_with_no_byte_minimum_takes_any_traffic():
    i = Inactivity.start((5, 0), total=0, now=100.0)
    assert not i.expired(1, 101.0) and i.since == 101.0
    assert not i.expired(1, 105.9) and i.expired(1, 106.0)


@pytest.mark.parametrize("n, interval", [(1, 0.5), (2, 0.5), (8, 0.5), (10, 0.625), (60, 3.75), (3600, 225.0)])
def test_the_traffic_is_looked_at_every_sixteenth_of_n_and_at_most_twice_a_second(n, interval):
    assert check_interval(n) == interval
    assert Inactivity.start((n, 0), 0, 0.0).interval == interval


def _end(n: int, traffic_at: list[float], looks) -> float:
    """When a check ends that starts at 0 with traffic (one byte each) at `traffic_at`, looking
    at the times `looks(check, now)` gives, one after the other."""
    i = Inactivity.start((n, 0), total=0, now=0.0)
    now = 0.0
    for _ in range(100_000):
        now = looks(i, now)
        if i.expired(sum(t <= now for t in traffic_at), now):
            return now
    raise AssertionError("never ended")


@pytest.mark.parametrize("n", [2, 10, 16, 60, 300])
@pytest.mark.parametrize("last", [0.0, 0.01, 0.3, 1.7, 4.99, 7.25, 13.0])
def test_the_end_comes_n_to_n_plus_max_1s_or_n_8_after_the_last_traffic(n, last):
    """As OpenVPN without DCO (which restarts N at each packet) ends N after the last traffic,
    never earlier, and not N to 2N as a look every N seconds did: a client's own timer (next_look:
    an interval on, or the deadline) within one interval, the server's sweep (every interval, all
    clients at once) within two."""
    traffic = [last - 0.9 * k for k in range(int(last / 0.9) + 1)]    # from the start on, under N apart
    worst = max(1.0, n / 8)
    client = _end(n, traffic, lambda i, now: i.next_look(now)) - last
    server = _end(n, traffic, lambda i, now: now + check_interval(n)) - last
    assert n <= client <= n + worst / 2 and n <= server <= n + worst, (client, server)

