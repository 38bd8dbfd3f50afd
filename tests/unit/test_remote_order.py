"""Which remote the client tries first: the profile's order, or a shuffle with remote-random
(as OpenVPN does it: once per start, every remote still tried)."""
from __future__ import annotations

import random

from appliance.gateway import ClientGateway
from lab.fakes import FakeClock, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter
from appliance.openvpn.config import parse_config

PROFILE = """client
dev tun
remote 198.18.0.1 1194 udp
remote 198.18.0.2 443 tcp
remote 198.18.0.3 1194 udp
{extra}
<ca>
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
</ca>
"""


def _order(extra: str) -> list[tuple[str, int, str]]:
    opts = parse_config(PROFILE.format(extra=extra), "/tmp/t.ovpn", read_file=lambda p: b"")
    net = MemoryNet()
    gw = ClientGateway(opts, MemoryPorts(net, "198.18.0.9"), FakeTunnelNetwork(net), FakeClock(), MemoryWaiter(net))
    return [(r.host, r.port, r.proto) for r in gw.remotes]


def test_remotes_in_profile_order_by_default():
    for _ in range(5):
        assert _order("") == [("198.18.0.1", 1194, "udp"), ("198.18.0.2", 443, "tcp"), ("198.18.0.3", 1194, "udp")]


def test_remote_random_shuffles_but_keeps_every_remote_with_its_proto():
    random.seed(7)
    seen = set()
    for _ in range(60):
        o = _order("remote-random")
        assert sorted(o) == [("198.18.0.1", 1194, "udp"), ("198.18.0.2", 443, "tcp"), ("198.18.0.3", 1194, "udp")]
        seen.add(tuple(o))
    assert len(seen) >= 4, "60 shuffles of 3 remotes should give several orders"


class _Link:
    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1


class _Session:
    def __init__(self, *events) -> None:
        from collections import deque
        self.events = deque(events)
        self.stats: dict[str, int] = {}

    def release(self) -> None:          # the client lets go of a connection's session
        pass


def _next_remote_after(closed) -> tuple[str, int, str]:
    """The remote the client tries after the first one's session ended with `closed`."""
    from appliance.gateway.client import Connection
    opts = parse_config(PROFILE.format(extra=""), "/tmp/t.ovpn", read_file=lambda p: b"")
    net = MemoryNet()
    gw = ClientGateway(opts, MemoryPorts(net, "198.18.0.9"), FakeTunnelNetwork(net), FakeClock(), MemoryWaiter(net))
    gw.attempt = 1                                      # the first remote was tried
    gw.conn = c = Connection(gw.remotes[0], ("198.18.0.1", 1194), _Link(), _Session(closed), None)
    gw._events(c)
    # The same remote again is the address it was on, held first in line (`_more`).
    r = gw._more_of if gw._more else gw.remotes[gw.attempt % len(gw.remotes)]
    return (r.host, r.port, r.proto)


def test_a_refused_auth_token_retries_the_same_server_with_the_password():
    """As OpenVPN 2.6 (no_advance after "auth-failure (auth-token)"): the password may still be
    good where the token was refused; other restarts move on to the next remote."""
    from appliance.openvpn import events as ev
    assert _next_remote_after(ev.SessionClosed("AUTH_FAILED (auth-token dropped)", True, True)) == \
        ("198.18.0.1", 1194, "udp")
    assert _next_remote_after(ev.SessionClosed("ping-restart", True)) == ("198.18.0.2", 443, "tcp")
