"""An in-memory server with one connected client and a management interface on a temporary unix
socket, for the `management` fuzz target: each input is what one management client sends (fed
to MgmtConn.on_read through a fake socket, as one recv), answered by the server's real
Operations."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.gateway.loop import Pump, SelectorWaiter
from appliance.gateway.management import Management, MgmtConn


class _FakeSock:
    """recv gives the input once, then EOF; send takes everything."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        d, self.data = self.data[:n], self.data[n:]
        return d

    def send(self, b) -> int:
        return len(b)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


def _pem(c) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _kpem(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def _world():
    from tests.gateway.conftest import World, client_conf, server_conf
    ca = issue("mgmt fuzz CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    cli = issue("client0", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = {"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])),
           "clients": {"client0": (_pem(cli[0]), _kpem(cli[1]))}}
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    if not w.run(lambda: bool(gw.d.clients) and gw.d.clients[0].session.established, max_time=30):
        raise RuntimeError("management fuzz world: the client did not come up")
    return w, gw


def management_world():
    d = tempfile.mkdtemp(prefix="mgmt-fuzz-")
    atexit.register(shutil.rmtree, d, True)
    pump = Pump(time.monotonic, SelectorWaiter())
    state: dict = {}

    def ops():
        if state.get("n", 0) % 5000 == 0 or not state["gw"].d.clients:
            state["w"], state["gw"] = _world()
            # Signals and reloads are only armed as timers on the server's pump: never fired here.
            if "m" in state:
                state["m"].ops = state["gw"].ops
        state["n"] = state.get("n", 0) + 1
        return state["gw"].ops

    o = ops()
    m = state["m"] = Management((os.path.join(d, "m.sock"), "unix", None), pump, o)
    atexit.register(m.close)

    def feed(data: bytes) -> None:
        m.ops = ops()
        c = MgmtConn(_FakeSock(data), m, need_password=False)
        m.conns.append(c)
        while not c.closed and (c.sock.data or c.pending):
            c.on_read()                    # must never raise (a share of the lines per call)
        m.drop(c, None)
    return None, feed
