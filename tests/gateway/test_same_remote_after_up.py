"""Which remote a client tries after a tunnel that was up ends, on in-memory ports (against
OpenVPN 2.6: tests/interop/test_same_remote_vs_openvpn.py).

OpenVPN 2.6 sets no_advance when its initialization completes (init.c
initialization_sequence_completed) and next_connection_entry then keeps the current remote
for the next attempt, whatever ended the connection; only RESTART,[N] clears it (push.c
server_pushed_signal), and an attempt that never came up moves on. Ours moved on to the next
remote after a ping-restart or a lost TCP stream.
"""
from __future__ import annotations

import pytest

from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

TWO_REMOTES = [(SERVER_IP, 1194), (SERVER_IP, 1195)]      # nothing listens on the second


def _record_connects(c, part: int | None = None) -> list:
    """From now on, every remote the client connects to: (address, port), or only part `part`
    of it (0: address, 1: port)."""
    tried: list = []
    udp, tcp_connect = c.ports.udp, c.ports.tcp_connect

    def udp_recording(local, remote):
        tried.append(remote if part is None else remote[part])
        return udp(local, remote)

    def tcp_recording(remote, local=None):
        tried.append(remote if part is None else remote[part])
        return tcp_connect(remote)
    c.ports.udp, c.ports.tcp_connect = udp_recording, tcp_recording
    return tried


def _up_world(pki, proto: str = "udp", extra: str = "") -> tuple[World, list[int]]:
    """A client up on the first remote, and the list of the ports it connects to from then on."""
    w = World()
    w.add_server(server_conf(pki, proto=proto))
    c = w.add_client(client_conf(pki, proto=proto, remotes=TWO_REMOTES, extra=extra))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    return w, _record_connects(c, 1)


def _tries(w: World, tried: list[int], n: int) -> list[int]:
    assert w.run(lambda: len(tried) >= n, max_time=120), f"tried only {tried}"  # ping-restart 60 pushed
    return tried[:n]


def test_ping_restart_tries_the_same_server_first(pki):
    w, tried = _up_world(pki)
    w.net.loss = 1.0                     # the server goes silent: ping-restart
    assert _tries(w, tried, 1) == [1194]


def test_after_the_same_server_failed_again_the_next_remote(pki):
    """no_advance is used once: the retry of the same server that gets no answer moves on."""
    w, tried = _up_world(pki)
    w.net.loss = 1.0
    assert _tries(w, tried, 2) == [1194, 1195]


def test_lost_tcp_stream_tries_the_same_server_first(pki):
    w, tried = _up_world(pki, "tcp")
    w.server.request_stop()              # closes its TCP connections: the client's stream ends
    assert _tries(w, tried, 1) == [1194]


@pytest.mark.parametrize("message, port", [("AUTH_FAILED,TEMP: busy", 1194),
                                           ("AUTH_FAILED,TEMP[advance remote]: elsewhere", 1195)])
def test_auth_failed_temp_keeps_the_server_unless_told_to_advance(pki, message, port):
    w, tried = _up_world(pki)
    gw = w.server
    inf = next(iter(gw.ops.info.values()))
    assert gw.ops.client_kill(inf.cid, message)
    assert _tries(w, tried, 1) == [port]


@pytest.mark.parametrize("message, port, least, most", [
    ("AUTH_FAILED,TEMP[backoff 40]: busy", 1194, 40, 45),
    ("AUTH_FAILED,TEMP[backoff 40,advance remote]: elsewhere", 1195, 40, 45),
    ("AUTH_FAILED,TEMP[backoff 99999]: hostile", 1194, 300, 305),    # connect-retry's maximum
    ("AUTH_FAILED,TEMP[backoff -5]: busy", 1194, 0, 5),
    # fuzz50: 2.6 compares each flag as it is (strtok at `[` and `,`) and reads N as
    # sscanf("backoff %d"): spaces after the word are taken, a space before it makes the flag
    # unknown (no backoff), and N is cut to a C int
    ("AUTH_FAILED,TEMP[backoff  30]: busy", 1194, 30, 35),
    ("AUTH_FAILED,TEMP[advance no, backoff 30]: busy", 1194, 0, 5),
    ("AUTH_FAILED,TEMP[advance no,backoff 30x]: busy", 1194, 30, 35),
    ("AUTH_FAILED,TEMP[backoff 4294967326]: busy", 1194, 30, 35),
    # review50f: C's sscanf knows ASCII digits and white space only (checked with glibc: no
    # number read from these, so no backoff); Python's \s and \d took them and waited 300 s
    ("AUTH_FAILED,TEMP[backoff \u00a0300]: busy", 1194, 0, 5),
    ("AUTH_FAILED,TEMP[backoff \uff13\uff10\uff10]: busy", 1194, 0, 5),
    ("AUTH_FAILED,TEMP[backoff \u0663\u0660\u0660]: busy", 1194, 0, 5),
])
def test_auth_failed_temp_backoff_is_the_least_wait_before_the_next_attempt(pki, message, port, least, most):
    """OpenVPN 2.6 (options_util.c parse_auth_failed_temp reads `backoff N`; init.c
    socket_restart_pause waits max(its own pause, N), at most connect-retry's maximum, 300 s by
    default): the next attempt, to whichever remote, comes N s later. Ours retried after its own
    pause (a second or two), asking a server that said "not before N s" again at once."""
    w, tried = _up_world(pki, extra="connect-retry 1 300\n")   # 2.6's default maximum
    times: list[float] = []
    udp = w.clients[0].ports.udp

    def udp_timed(local, remote):
        times.append(w.clock.t)
        return udp(local, remote)
    w.clients[0].ports.udp = udp_timed
    inf = next(iter(w.server.ops.info.values()))
    assert w.server.ops.client_kill(inf.cid, message)
    killed = w.clock.t
    assert w.run(lambda: tried, max_time=400), "no attempt after the refusal"
    assert tried[0] == port
    waited = times[0] - killed
    assert least <= waited <= most, f"next attempt {waited:.1f} s after the refusal"


@pytest.mark.parametrize("flag, expected", [("advance addr", ("198.18.0.250", 1194)),
                                           ("advance remote", (SERVER_IP, 1195))])
def test_auth_failed_temp_advance_remote_skips_the_names_other_addresses(pki, flag, expected):
    """Up on the first address of `remote vpn.example` (two addresses), then AUTH_FAILED,TEMP:
    OpenVPN 2.6 goes on to the name's next address with `advance addr` (no_advance cleared),
    and to the next `remote` with `advance remote` (options_util.c parse_auth_failed_temp sets
    advance_next_remote; init.c next_connection_entry then skips the name's other addresses).
    Ours took the name's next address for both."""
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, remotes=[("vpn.example", 1194), (SERVER_IP, 1195)]),
                     names={"vpn.example": [SERVER_IP, "198.18.0.250"]})
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    tried = _record_connects(c)
    inf = next(iter(w.server.ops.info.values()))
    assert w.server.ops.client_kill(inf.cid, f"AUTH_FAILED,TEMP[{flag}]: elsewhere")
    assert w.run(lambda: tried, max_time=30)
    assert tried[0] == expected, tried


def test_a_name_with_several_addresses_tries_each_before_giving_up(pki):
    """`remote vpn.example` resolving to a dead address first and the server second (round-robin
    DNS of a server cluster): as OpenVPN 2.6 (next_connection_entry's ai_next), the client tries
    the name's next address at once after the first stays silent, rather than the same dead
    address again and again. Once up, a lost tunnel tries the address it was on first."""
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, remotes=[("vpn.example", 1194)]),
                     names={"vpn.example": ["198.18.0.250", SERVER_IP]})
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "never tried the second address"
    assert c.conn.addr == (SERVER_IP, 1194)
    tried = _record_connects(c, 0)
    w.net.loss = 1.0                     # the server goes silent: ping-restart
    assert w.run(lambda: len(tried) >= 3, max_time=200), tried
    assert tried[:3] == [SERVER_IP, "198.18.0.250", SERVER_IP], tried


def test_connect_retry_max_ends_the_run_after_each_remote_was_tried_that_often(pki):
    """`connect-retry-max 2` with two silent remotes: four attempts, then the run ends (status 1),
    as OpenVPN 2.6 ("All connections have been connect-retry-max (2) times unsuccessful"). It was
    accepted and ignored: the client retried for ever."""
    w = World()
    c = w.add_client(client_conf(pki, remotes=TWO_REMOTES, extra="connect-retry-max 2\nserver-poll-timeout 2\n"))
    tried = _record_connects(c, 1)
    assert w.run(lambda: c.result is not None, max_time=300), f"still trying after {tried}"
    assert c.result == 1 and tried == [1195, 1194, 1195], tried     # the first went before the hook
