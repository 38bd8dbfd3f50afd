"""The pause before each connection attempt, on in-memory ports with a fake clock, against what
Debian's OpenVPN 2.6.14 logs for the same profile (init.c socket_restart_pause; measured in
namespaces: tests/interop/test_restart_pause_vs_openvpn.py). Ours skipped the pause between the
remotes of a round and doubled it after each round."""
from __future__ import annotations

from tests.gateway.conftest import SERVER_IP, World, client_conf


def _attempt_times(w: World, c, n: int, max_time: float) -> list[float]:
    """The clock at the client's first `n` connection attempts (UDP or TCP); the first was made
    as it started, at the clock's start."""
    times: list[float] = [w.clock.t]
    udp, tcp_connect = c.ports.udp, c.ports.tcp_connect

    def udp_timed(local, remote):
        times.append(w.clock.t)
        return udp(local, remote)

    def tcp_timed(remote, local=None):
        times.append(w.clock.t)
        return tcp_connect(remote, local)
    c.ports.udp, c.ports.tcp_connect = udp_timed, tcp_timed
    assert c.unsuccessful == 1          # the first attempt was made at start, the clock unmoved since
    assert w.run(lambda: len(times) >= n, max_time=max_time), f"only {len(times)} attempts"
    return times[:n]


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 1) for a, b in zip(times, times[1:])]


def test_every_attempt_waits_connect_retry_then_backs_off_after_five_rounds(pki):
    """Two TCP remotes refusing at once, `connect-retry 2 5`: 2.6.14 logs "Restart pause, 2
    second(s)" before each attempt, 4 before the 11th and 12th (five rounds in vain), then 5."""
    w = World()
    c = w.add_client(client_conf(pki, proto="tcp", remotes=[(SERVER_IP, 7001), (SERVER_IP, 7002)],
                                 extra="connect-retry 2 5\n"))
    times = _attempt_times(w, c, 14, max_time=120)
    assert _gaps(times) == [2.0] * 9 + [4.0, 4.0, 5.0, 5.0]


def test_three_remotes_are_not_tried_at_once(pki):
    w = World()
    c = w.add_client(client_conf(pki, proto="tcp", remotes=[(SERVER_IP, p) for p in (7001, 7002, 7003)],
                                 extra="connect-retry 3 300\n"))
    assert _gaps(_attempt_times(w, c, 6, max_time=60)) == [3.0] * 5


def test_no_pause_after_a_server_poll_timeout(pki):
    """Two silent UDP remotes, `server-poll-timeout 2`: 2.6.14 restarts at once after each
    "Server poll timeout, restarting" (no "Restart pause"), in every round: the poll was the wait."""
    w = World()
    c = w.add_client(client_conf(pki, remotes=[(SERVER_IP, 7001), (SERVER_IP, 7002)],
                                 extra="connect-retry 3 10\nserver-poll-timeout 2\n"))
    assert _gaps(_attempt_times(w, c, 14, max_time=60)) == [2.0] * 13
