"""An in-memory server with one connected client and a management interface on a temporary unix
socket, for the `management` fuzz target: each input is what one management client sends (fed
to MgmtConn.on_read through a fake socket, as one recv), answered by the server's real
Operations."""
from __future__ import annotations

import atexit
import logging
import os
import time

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.gateway.loop import Pump, SelectorWaiter
from appliance.gateway.management import Management, MgmtConn
from tests.fuzz.scratch import scratch_dir


class _FakeSock:
    """recv gives the input once, then EOF; send takes everything."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        d, self.data = self.data[:n], self.data[n:]
        return d

    def recv_into(self, buf) -> int:  # noqa: ANN001 - as a socket's (transport/recvbuf.py reads so)
        d = self.recv(len(buf))
        buf[:len(d)] = d
        return len(d)

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
    d = scratch_dir("mgmt-fuzz-")
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


class _ChunkSock(_FakeSock):
    """recv gives at most `step` bytes a call: a tool's lines arriving cut anywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def recv(self, n: int) -> bytes:
        return super().recv(min(n, self.step))


def _auth_world(m, sock_dir: str):
    """A server with management-client-auth whose only client's login waits for the management
    client (`m`: the server's own interface is closed, `m` takes its place)."""
    from tests.gateway.conftest import World, client_conf, server_conf
    pki = _pki()
    w = World()
    conf = server_conf(pki, extra=f"management {sock_dir}/srv.sock unix\nmanagement-client-auth\n"
                       "auth-gen-token 60\n")
    gw = w.add_server(conf)
    gw.ops.reload_source = lambda: conf        # a SIGHUP/SIGUSR1 reads the same config again
    if gw.ops.mgmt is not None:
        gw.ops.mgmt.close()
    gw.ops.mgmt = m
    w.add_client(client_conf(pki, "client0", extra="auth-user-pass\n"), username="alice", password="pw")
    if not w.run(lambda: bool(gw.ops.client_auth.by_ckid), max_time=30):
        raise RuntimeError("management-auth fuzz world: no login waited")
    return w, gw


_PKI: dict = {}


def _pki() -> dict:
    if not _PKI:
        ca = issue("mgmt fuzz CA", None, None)
        srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
        cli = issue("client0", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
        _PKI.update({"ca": _pem(ca[0]), "server": (_pem(srv[0]), _kpem(srv[1])),
                     "clients": {"client0": (_pem(cli[0]), _kpem(cli[1]))}})
    return _PKI


def management_auth_world():
    """For the `management-auth` target: feed(data) runs one management client's input against a
    server whose client's login waits (management-client-auth). First byte: how many bytes each
    recv gives (1..256, lines cut anywhere); bit 0 of the second: the world runs 2 s after the
    input (verdicts take effect, the client comes up or is refused, signals are acted on: a
    reload, statistics, a stop); `@C` / `@K` in the text stand for the waiting login's CID /
    KID. A world whose login was decided, or whose server stops, is replaced by a fresh one (the
    client's reconnection is not waited for). Nothing may escape on_read, and neither the
    dispatcher nor the server's pump may count an internal error."""
    # Each reload logs a warning: an input a line of fuzz.log. Internal errors (logged as errors)
    # are counted and asserted below.
    logging.getLogger("vpn-appliance").setLevel(logging.ERROR)
    d = scratch_dir("mgmt-auth-fuzz-")
    pump = Pump(time.monotonic, SelectorWaiter())
    m = Management((os.path.join(d, "m.sock"), "unix", None), pump, None)
    atexit.register(m.close)
    state: dict = {}

    def world():
        w = state.get("w")
        # (a signal from the management client may have stopped the server, or started its stop)
        if w is None or not w[1].ops.client_auth.by_ckid or state["n"] > 2000 or w[1].result is not None \
                or w[1]._restart_deadline is not None:
            w = state["w"] = _auth_world(m, d)
            state["n"] = 0
        state["n"] += 1
        return w

    def feed(data: bytes) -> None:
        if len(data) < 2:
            return
        w, gw = world()
        m.ops = gw.ops
        waiting = next(iter(gw.ops.client_auth.by_ckid))
        text = data[2:].replace(b"@C", str(waiting[0]).encode()).replace(b"@K", str(waiting[1]).encode())
        c = MgmtConn(_ChunkSock(text, data[0] + 1), m, need_password=False)
        m.conns.append(c)
        for _ in range(len(text) + 8):
            if c.closed or not (c.sock.data or c.pending or c.inbuf.find(b"\n") >= 0):
                break
            c.on_read()                    # must never raise
        m.drop(c, None)
        errs = gw.d.take_internal_errors()
        if errs:
            raise AssertionError(f"the server's internal errors: {errs!r}")
        if data[1] & 1:
            w.run_for(2.0)
            errs = gw.d.take_internal_errors()
            if errs:
                raise AssertionError(f"the server's internal errors after the verdict: {errs!r}")
        n = gw.faults.counts.get("internal error", 0)
        if n:
            raise AssertionError(f"{n} internal errors counted by the server's pump")
    return feed


def make_management_auth():
    return management_auth_world()
