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
    assert restart_pause(1, 300, 1, 1, auth_retry_nointeract=True) == 10
    assert restart_pause(30, 300, 1, 1, auth_retry_nointeract=True) == 10     # replaces connect-retry's N
    assert restart_pause(1, 5, 1, 1, auth_retry_nointeract=True) == 5


def test_server_backoff_is_a_least_wait_capped_by_the_maximum():
    assert restart_pause(1, 300, 1, 1, server_backoff=40) == 40
    assert restart_pause(1, 300, 1, 1, server_backoff=99999) == 300


def test_a_poll_timeout_has_no_pause():
    assert restart_pause(5, 300, 100, 1, server_backoff=40, poll_timeout=True) == 0


@pytest.mark.parametrize("line, seconds, most", [
    ("connect-retry 30 5", 30, 30),           # options.c: connect_retry_seconds_max = max(M, N)
    ("connect-retry 5 0", 5, 5),
    ("connect-retry 100000", 65535, 300),     # N cut to 0xFFFF ("truncated"), M left at 300
    ("connect-retry 5 100000", 5, 100000),
])
def test_connect_retry_values_read_as_openvpn_reads_them(line, seconds, most):
    """Each was refused here (N above 86400, M below 1 or above 86400) or read otherwise."""
    o = parse_config(f"client\ndev tun\nremote 198.18.0.1\n{line}\n<ca>\nX\n</ca>\n", "/p/c.ovpn")
    assert (o.connect_retry, o.connect_retry_max) == (seconds, most)


def test_a_listening_p2p_tls_server_is_never_backed_off():
    """2.6's PROTO_TCP_SERVER case: 1 s, connect-retry's N aside; over UDP connect-retry's N;
    the doubling, the maximum and a server's backoff are for clients (TCP or UDP tls-client)."""
    assert restart_pause(5, 20, 100, 1, listening="tcp") == 1
    assert restart_pause(5, 20, 100, 1, listening="udp") == 5
    assert restart_pause(5, 20, 100, 1, server_backoff=40, listening="udp") == 5
    assert restart_pause(5, 20, 100, 1) == 20            # a client's: doubled, up to the maximum
