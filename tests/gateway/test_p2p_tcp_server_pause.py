"""A point-to-point tls-server over `proto tcp-server` listens again 1 s after its connection
ends, whatever connect-retry says: OpenVPN 2.6's socket_restart_pause takes 1 s for its
PROTO_TCP_SERVER case and leaves connect-retry and the doubling to clients. Ours waited
connect-retry's N (here 5 s) before its peer could connect again."""
from __future__ import annotations

import logging
import re

from appliance.gateway import ClientGateway
from appliance.openvpn.config import parse_config
from lab.fakes import FakeClock, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter, run_pumps, stream_connect
from tests.gateway.conftest import SERVER_IP, _blocks

STRANGER_IP = "198.18.0.9"


def test_a_p2p_tcp_server_listens_again_after_1_s_whatever_connect_retry_says(pki, caplog):
    caplog.set_level(logging.INFO)
    net, clock = MemoryNet(), FakeClock()
    text = (f"dev tun\ntls-server\ndh none\nproto tcp-server\nifconfig 10.9.0.1 10.9.0.2\nport 1194\n"
            f"connect-retry 5 20\nhand-window 4\n{_blocks(pki, pki['server'], '')}")
    gw = ClientGateway(parse_config(text, "/mem/p2p.conf"), MemoryPorts(net, SERVER_IP), FakeTunnelNetwork(net),
                       clock, MemoryWaiter(net))
    gw.start()
    listening = lambda: (SERVER_IP, 1194) in net.listeners and not net.listeners[(SERVER_IP, 1194)].closed  # noqa: E731
    assert run_pumps(clock, [gw.pump], listening, max_time=10)
    for round_ in range(3):              # a stranger's idle connection, dropped at hand-window, again and again
        stream_connect(net, STRANGER_IP, (SERVER_IP, 1194))
        assert run_pumps(clock, [gw.pump], lambda: gw.conn is not None, max_time=10), round_
        assert run_pumps(clock, [gw.pump], lambda: gw.conn is None, max_time=30), round_
        gone = clock.t
        assert run_pumps(clock, [gw.pump], listening, max_time=30), round_
        assert clock.t - gone <= 1.5, (round_, clock.t - gone)
    assert re.findall(r"restarting in (\d+) s", caplog.text) == ["1", "1", "1"], caplog.text[-2000:]
