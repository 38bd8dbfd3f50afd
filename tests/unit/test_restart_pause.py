"""restart_pause, OpenVPN 2.6's socket_restart_pause (init.c), case by case."""
from __future__ import annotations

import pytest

from appliance.gateway.restart_pause import restart_pause
from appliance.openvpn.config import parse_config


@pytest.mark.parametrize("unsuccessful, expect", [(1, 2), (9, 2), (10, 4), (11, 4), (12, 5), (40, 5)])
def test_two_remotes_connect_retry_2_5(unsuccessful, expect):
    assert restart_pause(2, 5, unsuccessful, 2) == expect


def test_doubling_stops_at_15_shifts_and_the_maximum():
    assert restart_pause(1, 10**9, 10**6, 1) == 2 ** 15
    assert restart_pause(0, 300, 5, 1) == 2          # 0 s doubles from 1 s, as 2.6's max_int(sec, 1)


def test_auth_retry_nointeract_pauses_10_s_at_most_the_maximum():
    assert restart_pause(1, 300, 1, 1, auth_retry=True) == 10
    assert restart_pause(30, 300, 1, 1, auth_retry=True) == 10     # replaces connect-retry's N
    assert restart_pause(1, 5, 1, 1, auth_retry=True) == 5


def test_server_backoff_is_a_least_wait_capped_by_the_maximum():
    assert restart_pause(1, 300, 1, 1, server_backoff=40) == 40
    assert restart_pause(1, 300, 1, 1, server_backoff=99999) == 300


def test_a_poll_timeout_has_no_pause():
    assert restart_pause(5, 300, 100, 1, server_backoff=40, poll_timeout=True) == 0


def test_connect_retry_maximum_is_never_below_its_seconds():
    """options.c: connect_retry_seconds_max = max(M, N)."""
    o = parse_config("client\nremote 198.18.0.1\nconnect-retry 30 5\n<ca>\nX\n</ca>\n", "/p/c.ovpn")
    assert (o.connect_retry, o.connect_retry_max) == (30, 30)
