"""Many OpenVPN client sessions from one process, against any OpenVPN server (ours or Debian's).

Each session is the engine's own client Session on its own UDP socket: a full handshake (TLS, key
exchange, push), then a few pings through the data channel. No TUN is needed, so hundreds of
sessions fit in one process. Used for login storms (wrong passwords at a set rate) in the tests
and for measuring handshakes/s and time to connect.

    python -m lab.loadgen PROFILE --clients 50 --rate 20 --duration 10 [--username U --password P]

Prints one summary line: started, connected, auth failures, other failures, p50/p99 connect time.
"""
from __future__ import annotations

import argparse
import selectors
import socket
import statistics
import time

from appliance.openvpn import events as ev
from appliance.openvpn.config import load_config
from appliance.openvpn.session import Session
from appliance.openvpn.settings import client_session_config


class Load:
    def __init__(self, profile: str, username: str, password: str) -> None:
        self.opts = load_config(profile)
        r = self.opts.remotes[0]
        self.addr = (r.host, r.port)
        self.username, self.password = username, password
        self.sel = selectors.DefaultSelector()
        self.sessions: dict[int, tuple[Session, socket.socket, float]] = {}
        self.connected: list[float] = []
        self.auth_failed = 0
        self.failed = 0
        self.started = 0

    def start_one(self, now: float) -> None:
        cfg = client_session_config(self.opts, "udp", self.username, self.password)
        s = Session(cfg, now)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(self.addr)
        sock.setblocking(False)
        self.sessions[sock.fileno()] = (s, sock, now)
        self.sel.register(sock, selectors.EVENT_READ)
        self.started += 1
        s.start(now)
        self._after(sock.fileno(), now)

    def _after(self, fd: int, now: float) -> None:
        s, sock, t0 = self.sessions[fd]
        for p in s.take_outgoing():
            try:
                sock.send(p)
            except OSError:
                pass
        done = False
        while s.events:
            e = s.events.popleft()
            if isinstance(e, ev.TunnelUp):
                self.connected.append(now - t0)
                done = True
            elif isinstance(e, ev.AuthFailed):
                self.auth_failed += 1
                done = True
            elif isinstance(e, ev.SessionClosed):
                if not done:
                    self.failed += 1
                done = True
        if done or s.closed:
            self._end(fd, now)

    def _end(self, fd: int, now: float) -> None:
        s, sock, _ = self.sessions.pop(fd)
        if not s.closed:
            s.close(now)
            for p in s.take_outgoing():
                try:
                    sock.send(p)
                except OSError:
                    pass
        self.sel.unregister(sock)
        sock.close()

    def step(self, now: float, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            fd = key.fileobj.fileno()
            item = self.sessions.get(fd)
            if item is None:
                continue
            s, sock, _ = item
            for _ in range(64):
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                s.receive(data, time.monotonic())
            self._after(fd, time.monotonic())
        now = time.monotonic()
        for fd in list(self.sessions):
            s = self.sessions[fd][0]
            dl = s.next_deadline()
            if dl is not None and now >= dl:
                s.handle_timer(now)
                self._after(fd, now)

    def summary(self) -> str:
        c = sorted(self.connected)
        p50 = statistics.median(c) * 1000 if c else float("nan")
        p99 = c[min(len(c) - 1, int(len(c) * 0.99))] * 1000 if c else float("nan")
        return (f"started {self.started}, connected {len(c)}, auth failed {self.auth_failed}, "
                f"other failures {self.failed}, still open {len(self.sessions)}, "
                f"connect p50 {p50:.0f} ms p99 {p99:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("profile")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rate", type=float, default=10.0, help="new sessions per second")
    ap.add_argument("--duration", type=float, default=30.0, help="stop after this many seconds")
    ap.add_argument("--username", default="")
    ap.add_argument("--password", default="")
    a = ap.parse_args(argv)
    load = Load(a.profile, a.username, a.password)
    t0 = time.monotonic()
    end = t0 + a.duration
    while time.monotonic() < end:
        now = time.monotonic()
        due = min(a.clients, int((now - t0) * a.rate) + 1)
        while load.started < due:
            load.start_one(now)
        if load.started >= a.clients and not load.sessions:
            break
        load.step(now, 0.02)
    print(load.summary(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
