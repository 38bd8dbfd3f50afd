"""The gateway: one pump (loop.py) with the client's or the server's policy, on ports passed in.

`client_gateway(...)` and `server_gateway(...)` wire the real ports (system.py: sockets, the TUN,
the kernel's clock, signals) for `vpn-appliance run`; tests/gateway/ builds the same gateways on
the in-memory ports of tests/fakes.py.
"""
from __future__ import annotations

import signal

from ..openvpn.config import Options
from . import system
from .server_files import ccd_loader, load_server_settings
from .client import ClientGateway
from .loop import Signals
from .server import ServerGateway
from .server_net import ServerTunnelNetwork

__all__ = ["ClientGateway", "ServerGateway", "client_gateway", "server_gateway", "ccd_loader"]


def client_gateway(opts: Options, username: str = "", password: str = "", advertise_ekm: bool = True,
                   observers: tuple = ()) -> ClientGateway:
    """`observers` (gateway/observers.py): the services that follow the tunnel (LAN DHCP/DNS, host DNS,
    status), chosen by run_toml.py or cli.py."""
    from .tunnel import TunnelNetwork     # here, not at the top: a server never loads the netlink library
    return ClientGateway(opts, system.SystemPorts(), TunnelNetwork(opts), system.clock, system.waiter(),
                         username, password, advertise_ekm, signals=Signals(), observers=observers)


def server_gateway(opts: Options) -> ServerGateway:
    st = load_server_settings(opts)
    return ServerGateway(opts, st, system.SystemPorts(), ServerTunnelNetwork(opts, st.pool, st.pool6), system.clock,
                         system.waiter(), signals=Signals((signal.SIGUSR1,)))
