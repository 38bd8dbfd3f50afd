"""The gateway: one pump (loop.py) with the client's or the server's policy, on ports passed in.

`client_gateway(...)` and `server_gateway(...)` wire the real ports (system.py: sockets, the TUN,
the kernel's clock, signals) for `vpn-appliance run`; tests/gateway/ builds the same gateways on
the in-memory ports of lab/fakes.py.

Each side's modules are imported when that side is built (the names below load on first use):
a client's start-up, which comes before its first packet (lab/first_packet.py), does not pay for
the server's modules, nor a server for the client's.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from .. import logsetup  # noqa: F401 - its NameBytesFilter, before any gateway module logs a name
from ..openvpn.config import Options

if TYPE_CHECKING:
    from .client import ClientGateway
    from .server import ServerGateway

__all__ = ["ClientGateway", "ServerGateway", "client_gateway", "server_gateway", "ccd_loader"]

_LAZY = {"ClientGateway": ".client", "ServerGateway": ".server", "ccd_loader": ".server_files"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def client_gateway(opts: Options, username: str = "", password: str = "", advertise_ekm: bool = True,
                   observers: tuple = (), lan_nets: tuple | list = ()) -> "ClientGateway":
    """`username`/`password`: as asked before the start; with auth-nocache handed out once and not
    kept (gateway/credentials.py: the caller drops its copy too);
    `observers` (gateway/observers.py): the services that follow the tunnel (LAN DHCP/DNS, host DNS,
    status), chosen by run_toml.py or cli.py; `lan_nets`: router mode's LAN networks, where no
    pushed route goes (gateway/tunnel.py)."""
    from . import system
    from .client import ClientGateway
    from .credentials import for_run
    from .loop import Signals
    from .tunnel import TunnelNetwork     # here, not at the top: a server never loads the netlink library
    fetch = for_run(opts, username, password)
    if fetch is not None:
        username = password = ""
    return ClientGateway(opts, system.SystemPorts(opts.mark, opts.bind_dev, opts.mtu_disc), TunnelNetwork(opts, lan_nets), system.clock, system.waiter(),
                         username, password, advertise_ekm, signals=Signals((signal.SIGUSR1,)), observers=observers,
                         credentials=fetch)


def server_gateway(opts: Options, tls=None) -> "ServerGateway":
    """`tls`: what check_key_material returned for `opts` (the CRL read once at start)."""
    from . import system
    from .loop import Signals
    from .server import ServerGateway
    from .server_files import load_server_settings
    from .server_net import ServerTunnelNetwork
    st = load_server_settings(opts, tls)
    return ServerGateway(opts, st, system.SystemPorts(opts.mark, opts.bind_dev, opts.mtu_disc), ServerTunnelNetwork(opts, st.pool, st.pool6), system.clock,
                         system.waiter(), signals=Signals((signal.SIGUSR1,)))
