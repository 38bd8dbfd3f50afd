"""The gateway: one pump (loop.py) with the client's or the server's policy, on ports passed in.

`client_gateway(...)` and `server_gateway(...)` wire the real ports (system.py: sockets, the TUN,
the kernel's clock, signals) for `vpn-appliance run`; tests/gateway/ builds the same gateways on
the in-memory ports of tests/fakes.py.
"""
from __future__ import annotations

import os

from ..openvpn.config import Options, parse_ccd
from ..openvpn.settings import server_settings
from . import system
from .client import ClientGateway
from .loop import Signals
from .server import ServerGateway
from .tunnel import ServerTunnelNetwork, TunnelNetwork

__all__ = ["ClientGateway", "ServerGateway", "client_gateway", "server_gateway", "ccd_loader"]


def ccd_loader(directory: str):
    """Common name -> parsed ccd file (or None); names that could leave the directory get None."""

    def load(cn: str):
        if not cn or "/" in cn or cn.startswith("."):
            return None
        path = os.path.join(directory, cn)
        try:
            with open(path, encoding="utf-8") as f:
                return parse_ccd(f.read(), path)
        except FileNotFoundError:
            return None
    return load


def client_gateway(opts: Options, username: str = "", password: str = "", advertise_ekm: bool = True) -> ClientGateway:
    return ClientGateway(opts, system.SystemPorts(), TunnelNetwork(opts), system.clock, system.waiter(),
                         username, password, advertise_ekm, signals=Signals())


def server_gateway(opts: Options) -> ServerGateway:
    passdb = None
    if opts.auth_user_pass_verify:
        with open(opts.auth_user_pass_verify[0], encoding="utf-8") as f:
            passdb = f.read()
    ccd = ccd_loader(opts.client_config_dir) if opts.client_config_dir else None
    st = server_settings(opts, ccd, passdb, defer_auth=True)
    return ServerGateway(opts, st, system.SystemPorts(), ServerTunnelNetwork(opts, st.pool, st.pool6), system.clock,
                         system.waiter(), signals=Signals())
