"""The host's own sockets (syslog, systemd's NOTIFY_SOCKET) against a receiver that stops reading
or an odd $NOTIFY_SOCKET: the process logs on and runs on, it never waits for them."""
from __future__ import annotations

import logging
import os
import socket
import threading

import pytest

from appliance.host import daemon, sdnotify

LINES = 3000        # well past a unix datagram socket's queue (net.unix.max_dgram_qlen, 512 by default)


def _finishes(fn, seconds: float = 10.0) -> bool:
    """fn() ran to its end in a thread within `seconds` (a blocked send never would)."""
    done: list[bool] = []
    t = threading.Thread(target=lambda: (fn(), done.append(True)), daemon=True)
    t.start()
    t.join(seconds)
    return bool(done)


@pytest.fixture
def deaf_socket(tmp_path):
    """A bound unix datagram socket nobody reads: a stuck syslog daemon, a stuck manager."""
    path = str(tmp_path / "deaf")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    yield path, s
    s.close()


@pytest.fixture
def root_handlers():
    root = logging.getLogger()
    saved = list(root.handlers)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        if h not in saved:
            h.close()
    for h in saved:
        root.addHandler(h)


def test_syslog_that_stops_reading_never_blocks_logging(root_handlers, deaf_socket, monkeypatch):
    path, receiver = deaf_socket
    monkeypatch.setattr(daemon, "SYSLOG_SOCKET", path)
    daemon.log_to_syslog("atk")
    handler = logging.getLogger().handlers[0]
    log = logging.getLogger("vpn-appliance.test-syslog")
    log.setLevel(logging.INFO)
    assert _finishes(lambda: [log.info("line %d", i) for i in range(LINES)]), "a full syslog socket blocked logging"
    assert 0 < handler.dropped < LINES
    # the daemon reads again: the next line goes through with the count of those lost
    receiver.setblocking(False)
    try:
        while receiver.recv(4096):
            pass
    except BlockingIOError:
        pass
    log.info("after")
    got = []
    try:
        while True:
            got.append(receiver.recv(4096))
    except BlockingIOError:
        pass
    assert got[0].rstrip(b"\0").endswith(b"atk[%d]: after" % os.getpid())
    assert b"syslog: %d log lines dropped" % handler.dropped in got[1]


def test_notify_socket_that_stops_reading_never_blocks(deaf_socket):
    path, _ = deaf_socket
    n = sdnotify.from_environment({"NOTIFY_SOCKET": path})
    assert n is not None
    try:
        assert _finishes(lambda: [n.completed() for _ in range(LINES)]), "a full NOTIFY_SOCKET blocked the run"
        assert n.failed
    finally:
        n.close()


@pytest.mark.parametrize("value", [
    "@\udcff\udcfeab",                     # an abstract name of non-UTF-8 bytes (os.environ's surrogates)
    "/" + "a" * 300,                       # longer than a unix socket path can be
    "/dev/null",                           # not a socket
])
def test_odd_notify_socket_is_logged_not_fatal(value, caplog):
    n = sdnotify.from_environment({"NOTIFY_SOCKET": value})
    assert n is not None
    try:
        with caplog.at_level(logging.WARNING, logger="vpn-appliance"):
            n.ready()
            n.completed()
        assert [r.getMessage() for r in caplog.records if "notification not sent" in r.getMessage()].__len__() == 1
    finally:
        n.close()


def test_daemon_counts_as_under_systemd_only_where_a_notification_is_delivered(tmp_path, monkeypatch):
    """2.6 stays in the foreground for `daemon` only when sd_notify(READY=0) gets through; a stale
    NOTIFY_SOCKET (gone, a file) must not keep a `daemon` run from returning to its script."""
    stale = tmp_path / "stale"
    stale.write_text("")
    for value in (str(stale), str(tmp_path / "gone"), "vsock:2:1234"):
        monkeypatch.setenv("NOTIFY_SOCKET", value)
        assert not daemon.under_systemd(), value
    path = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert daemon.under_systemd()
        assert receiver.recv(64) == b"READY=0"
    finally:
        receiver.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not daemon.under_systemd()


def test_a_line_with_bytes_that_are_not_utf8_reaches_syslog(root_handlers, deaf_socket, monkeypatch):
    """A file name from the command line or the environment keeps its non-UTF-8 bytes as lone
    surrogates; the line naming it was dropped by the handler's strict encoding."""
    path, receiver = deaf_socket
    monkeypatch.setattr(daemon, "SYSLOG_SOCKET", path)
    daemon.log_to_syslog("atk")
    logging.getLogger("vpn-appliance.test-syslog").warning("cannot read %s", "\udcff.conf")
    receiver.settimeout(5)
    assert receiver.recv(4096).rstrip(b"\0").endswith(b"cannot read \\xff.conf")
