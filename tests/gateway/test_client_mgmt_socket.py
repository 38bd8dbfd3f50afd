"""The client's management interface on a real socket and the real pump (SelectorWaiter), attacked
as a hostile local process would: a flood of commands that are never read (before `hold
release` too), a line longer than LINE_LIMIT, a wrong password; the tool beside it is answered at
once and its `hold release` still starts the client. The client is a stand-in recording what the
commands make it do (the real one: test_client_mgmt.py)."""
from __future__ import annotations

import socket
import time

import pytest

from appliance.gateway.client_mgmt import ClientMgmt
from appliance.gateway.loop import Faults, Pump, SelectorWaiter
from appliance.gateway.management import LINE_LIMIT, OUT_LIMIT
from appliance.gateway.observers import ClientCounters
from appliance.openvpn.config import parse_config
from tests.gateway.conftest import client_conf
from tests.gateway.test_management import _client, _read_until, ask, send_while_pumping

BANNER = ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info"


class StandIn:
    """What ClientMgmt reads of the client, and what its commands call."""

    def __init__(self, opts, pump: Pump) -> None:
        self.opts, self.pump, self.clock = opts, pump, pump.clock
        self.counters = ClientCounters()
        self.faults = Faults()
        self.calls: list[str] = []

    def connect(self) -> None:
        self.calls.append("connect")

    def user_restart(self) -> None:
        self.calls.append("SIGUSR1")

    def request_stop(self) -> None:
        self.calls.append("stop")

    def log_counters(self) -> None:
        self.calls.append("drops")


def _open(pki, tmp_path, spec_line: str):
    pump = Pump(time.monotonic, SelectorWaiter())
    opts = parse_config(client_conf(pki, extra=spec_line + "\nmanagement-hold\n"), str(tmp_path / "c.ovpn"))
    gw = StandIn(opts, pump)
    m = ClientMgmt(gw)
    m.open()
    assert m.hold(0, gw.connect)
    return m, gw, pump


@pytest.fixture
def held(pki, tmp_path):
    path = str(tmp_path / "c.sock")
    m, gw, pump = _open(pki, tmp_path, f"management {path} unix")
    yield m, gw, pump, path
    m.close()


def _drain(s: socket.socket) -> None:
    try:
        while s.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


def test_a_flood_never_read_before_hold_release_is_cut_off_and_the_tool_releases(held):
    m, gw, pump, path = held
    hog, tool = _client(path), _client(path)
    assert _read_until(pump, tool, lambda t: t.count("\r\n") >= 2) == \
        f"{BANNER}\r\n>HOLD:Waiting for hold release:0\r\n"
    flood = b"help\nstate all\nlog all\nsignal SIGUSR1\nhold\n" * 2000     # ~100 kB of commands, ~8 MB of replies
    t0, sent = time.monotonic(), 0
    while len(m.mgr.conns) == 2 and time.monotonic() - t0 < 10:
        try:
            sent += hog.send(flood[sent % len(flood):])
        except BlockingIOError:
            pass
        except OSError:
            break
        pump.step(block=False)
        _drain(tool)
    assert len(m.mgr.conns) == 1, "the client that never reads was not cut off"
    assert all(len(c.outbuf) <= 2 * OUT_LIMIT for c in m.mgr.conns)
    assert time.monotonic() - t0 < 10
    assert gw.calls == [], "SIGUSR1 on hold did something"
    assert ask(pump, tool, "hold release", 1) == ["SUCCESS: hold release succeeded"]
    for _ in range(5):
        pump.step(block=False)
    assert gw.calls == ["connect"]
    hog.close()


# Debian's OpenVPN 2.6.14 client on hold, in the lab: every control byte of a line is dropped
# before it is read (manage.c command_line_add), inside quotes too, so no reply echoes one.
OPENVPN_2_6_CONTROL_BYTES = {
    b"signal\tSIGFOO\n": ["ERROR: unknown command, enter 'help' for more options"],
    b'signal "a\r>HOLD:x"\n': ["ERROR: signal 'a>HOLD:x' is not a known signal type"],
    b"sig\x1bnal SIGFOO\n": ["ERROR: signal 'SIGFOO' is not a known signal type"],
    b'signal "x\ty"\n': ["ERROR: signal 'xy' is not a known signal type"],
}


def test_control_bytes_of_a_line_are_dropped_as_openvpn_drops_them(held):
    """Kept, a CR in a quoted word came back in the reply, where a tool reading lines the
    universal way (Python's text files) took `>HOLD:x` for a notification."""
    m, gw, pump, path = held
    s = _client(path)
    _read_until(pump, s, lambda t: t.count("\r\n") >= 2)
    for line, want in OPENVPN_2_6_CONTROL_BYTES.items():
        s.sendall(line)
        assert _read_until(pump, s, lambda t: t.endswith("\r\n")).split("\r\n")[:-1] == want, line
    assert gw.calls == []
    s.close()


def test_a_line_past_the_limit_is_not_obeyed_and_the_tool_is_answered(held):
    """helper mgmt42: as OpenVPN 2.6 the connection goes on (before: closed); what 2.6 keeps of
    the line (its last 32,780 mod 1,025 bytes: blanks) is no command, and the start of the line,
    which 2.6 never sees whole either, is never run."""
    m, gw, pump, path = held
    bad, tool = _client(path), _client(path)
    _read_until(pump, tool, lambda t: t.count("\r\n") >= 2)
    _read_until(pump, bad, lambda t: t.count("\r\n") >= 2)
    send_while_pumping(pump, bad, b"hold release" + b" " * LINE_LIMIT * 4 + b"\n")
    for _ in range(20):
        pump.step(block=False)
    assert len(m.mgr.conns) == 2 and gw.calls == [] and m.holding == 0, "the long line was obeyed"
    assert ask(pump, tool, "state", 2)[1] == "END"
    assert ask(pump, bad, "hold", 1) == ["SUCCESS: hold=1"]
    bad.close()


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_a_web_pages_request_to_the_tcp_interface_is_refused_unread(pki, tmp_path):
    """A web page the user opens can send a POST to 127.0.0.1 (a cross-origin `no-cors` fetch
    with a text/plain body): its body lines were commands like any tool's, so a page could
    release the hold, or stop the client and with it the tunnel its traffic should go through.
    A line that is an HTTP request line or header closes the connection unread (as Redis does
    with `POST` and `Host:`); no OpenVPN command looks like one."""
    port = _free_port()
    m, gw, pump = _open(pki, tmp_path, f"management 127.0.0.1 {port}")
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        _read_until(pump, s, lambda t: t.count("\r\n") >= 2)
        body = b"hold release\nsignal SIGTERM\n"
        s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % (port, len(body)) + body)
        for _ in range(20):
            pump.step(block=False)
        assert gw.calls == [] and m.holding == 0 and not m.mgr.conns, gw.calls
        tool = socket.create_connection(("127.0.0.1", port))
        tool.setblocking(False)
        _read_until(pump, tool, lambda t: t.count("\r\n") >= 2)
        assert ask(pump, tool, "hold release", 1) == ["SUCCESS: hold release succeeded"]
        s.close()
        tool.close()
    finally:
        m.close()


def test_password_on_tcp_then_the_hold_line(pki, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    m, gw, pump = _open(pki, tmp_path, f"management 127.0.0.1 {port} {pw}")
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        assert _read_until(pump, s, lambda t: t.endswith("ENTER PASSWORD:")) == "ENTER PASSWORD:"
        s.sendall(b"hold release\n")               # a command instead of the password: a miss, not a release
        assert "ENTER PASSWORD:" in _read_until(pump, s, lambda t: t.endswith("ENTER PASSWORD:"))
        assert gw.calls == []
        s.sendall(b"s3cret\n")
        txt = _read_until(pump, s, lambda t: t.count("\r\n") >= 3)
        assert txt.split("\r\n")[:3] == ["SUCCESS: password is correct", BANNER, ">HOLD:Waiting for hold release:0"]
        s.close()
    finally:
        m.close()
