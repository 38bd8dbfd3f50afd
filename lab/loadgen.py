"""Many OpenVPN client sessions from one process, against any OpenVPN server (ours or Debian's).

Why one process and the engine's own client: a load test must open more sessions than a machine
can run client processes (1,000+), so each session is a sans-I/O `Session` on its own UDP socket,
all driven by one selector and one timer heap (no TUN, no thread per session). Each session does
the full handshake (TLS, key exchange, push), then sends ICMP echo requests through the data
channel to the server's tunnel address (the pushed route-gateway) until one is answered: that is
"connected and passing traffic". Sessions are spread over several source addresses (`--source`),
so the server's per-source limits on handshakes in progress are not what caps the test, and at
most `--concurrency` handshakes run at once.

    python -m lab.loadgen PROFILE --clients 1000 --concurrency 64 [--source 198.18.0.10 ...]
        [--hold] [--json] [--username U --password P]

With `--hold` the connected sessions stay up (answering the server's keepalives) after the ramp:
the generator prints one `READY {json}` line and holds until a line arrives on stdin (or
`--duration` ends), so a harness can measure the server with N idle clients. Without it each
session leaves (exit notification) once its ping was answered.

Output: a summary (handshakes/s, p50/p99 time to connect and to the first answered ping, failures
by reason, the generator's own CPU-seconds per handshake); `--json` prints it as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import struct
import sys
import time
from typing import Callable

from appliance.openvpn import events as ev
from appliance.openvpn.config import load_config
from appliance.openvpn.session import Session
from appliance.openvpn.settings import client_session_config
from appliance.openvpn.timerheap import TimerHeap
from appliance.openvpn.tls import build_context

PING_RETRY = 1.0           # seconds between echo requests until one is answered
PINGS_MAX = 10             # then the session counts as "connected, no traffic"
RECV_PER_WAKE = 32         # datagrams read from one socket per readiness event


def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(src: str, dst: str, ident: int, seq: int) -> bytes:
    """An IPv4 ICMP echo request (checksums filled in): what the session sends through its tunnel."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"loadgen-ping"
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0, 64, 1, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + icmp


def is_echo_reply(pkt, ident: int) -> bool:
    p = bytes(pkt[:28])
    return (len(p) >= 28 and p[0] >> 4 == 4 and p[9] == 1 and p[(p[0] & 15) * 4] == 0
            and struct.unpack("!H", p[(p[0] & 15) * 4 + 4:(p[0] & 15) * 4 + 6])[0] == ident)


class Conn:
    """One client session of the generator (a timer-heap record: `armed`, `alive`)."""
    __slots__ = ("s", "sock", "src", "t0", "t_up", "t_ping", "vaddr", "gw", "pings", "next_ping",
                 "armed", "alive", "ident")

    def __init__(self, s: Session, sock: socket.socket, src: str, t0: float, ident: int) -> None:
        self.s, self.sock, self.src, self.t0 = s, sock, src, t0
        self.t_up: float | None = None
        self.t_ping: float | None = None
        self.vaddr = self.gw = None
        self.pings = 0
        self.next_ping: float | None = None
        self.armed: float | None = None
        self.alive = True
        self.ident = ident


class LoadGen:
    """Opens sessions (at most `concurrency` handshakes at once), pumps them, keeps the tallies."""

    def __init__(self, profile: str, sources: list[str] | None = None, concurrency: int = 64,
                 username: str = "", password: str = "", hold: bool = False, connect_timeout: float = 60.0,
                 ping_addr: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.opts = load_config(profile)
        r = self.opts.remotes[0]
        self.addr = (r.host, r.port)
        self.proto = "udp"
        self.username, self.password = username, password
        self.sources = sources or [""]
        self.concurrency = concurrency
        self.hold = hold
        self.connect_timeout = connect_timeout
        self.ping_addr = ping_addr
        self.clock = clock
        self.sel = selectors.DefaultSelector()
        self.timers = TimerHeap()
        self.cfg0 = client_session_config(self.opts, self.proto, username, password)
        self.tls_ctx = build_context(self.cfg0.tls)       # one SSL_CTX for every session
        self.conns: set[Conn] = set()
        self.in_handshake = 0
        self.started = 0
        self.connect_times: list[float] = []
        self.ping_times: list[float] = []
        self.connected = 0
        self.traffic_ok = 0
        self.failures: dict[str, int] = {}
        self.first_start: float | None = None
        self.last_up: float | None = None
        self._src_i = 0

    # ---------------------------------------------------------------- sessions
    def start_one(self, now: float) -> None:
        cfg = client_session_config(self.opts, self.proto, self.username, self.password)
        s = Session(cfg, now, tls_context=self.tls_ctx)
        src = self.sources[self._src_i % len(self.sources)]
        self._src_i += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if src:
                sock.bind((src, 0))
            sock.connect(self.addr)
        except OSError as e:
            sock.close()
            self._fail(f"socket: {e.strerror}")
            return
        sock.setblocking(False)
        c = Conn(s, sock, src, now, (self.started % 0xFFFF) + 1)
        self.conns.add(c)
        self.sel.register(sock, selectors.EVENT_READ, c)
        self.started += 1
        self.in_handshake += 1
        if self.first_start is None:
            self.first_start = now
        s.start(now)
        self._after(c, now)

    def _fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def _send(self, c: Conn, pkts) -> None:
        for p in pkts:
            try:
                c.sock.send(p)
            except OSError:
                pass          # a lost datagram: the reliability layer resends

    def _after(self, c: Conn, now: float) -> None:
        """Send what the session queued, act on its events, re-arm its timer."""
        s = c.s
        self._send(c, s.take_outgoing())
        while s.events:
            e = s.events.popleft()
            if isinstance(e, ev.TunnelUp):
                self._up(c, e, now)
            elif isinstance(e, ev.AuthFailed):
                self._fail("auth failed")
                self._end(c, now)
                return
            elif isinstance(e, ev.SessionClosed):
                if c.alive:
                    self._fail(f"closed: {e.reason}"[:80])
                    self._end(c, now)
                return
        if not c.alive:
            return
        dl = s.next_deadline()
        if c.next_ping is not None and (dl is None or c.next_ping < dl):
            dl = c.next_ping
        if c.t_up is None:
            tmo = c.t0 + self.connect_timeout
            dl = tmo if dl is None else min(dl, tmo)
        self.timers.arm(c, dl)

    def _up(self, c: Conn, e: ev.TunnelUp, now: float) -> None:
        c.t_up = now
        self.in_handshake -= 1
        self.connected += 1
        self.last_up = now
        self.connect_times.append(now - c.t0)
        p = e.pushed
        if p is not None and p.ifconfig:
            c.vaddr = p.ifconfig[0]
            c.gw = self.ping_addr or p.route_gateway or (p.ifconfig[1] if p.topology != "subnet" else None)
        if c.vaddr is None or c.gw is None:
            self._fail("no pushed address to ping from/to")
            return
        self._ping(c, now)

    def _ping(self, c: Conn, now: float) -> None:
        c.pings += 1
        wire = c.s.encrypt(echo_request(c.vaddr, c.gw, c.ident, c.pings))
        if wire is not None:
            self._send(c, [wire])
            c.s.note_sent(now)
        c.next_ping = now + PING_RETRY

    def _end(self, c: Conn, now: float) -> None:
        """Leave (exit notification if the session is still open) and forget the session."""
        if not c.alive:
            return
        c.alive = False
        if c.t_up is None:
            self.in_handshake -= 1
        if not c.s.closed:
            c.s.close(now)
            self._send(c, c.s.take_outgoing())
        self.conns.discard(c)
        self.sel.unregister(c.sock)
        c.sock.close()
        c.s.release()

    def _on_read(self, c: Conn) -> None:
        s, sock = c.s, c.sock
        for _ in range(RECV_PER_WAKE):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:        # ICMP port unreachable and the like: the server is not there (yet)
                break
            now = self.clock()
            for pt in s.receive(data, now):
                if c.t_ping is None and is_echo_reply(pt, c.ident):
                    c.t_ping = now
                    c.next_ping = None
                    self.traffic_ok += 1
                    self.ping_times.append(now - c.t0)
            if not c.alive:
                return
        now = self.clock()
        self._after(c, now)
        if c.t_ping is not None and not self.hold and c.alive:
            self._end(c, now)

    def _on_timer(self, c: Conn, now: float) -> None:
        if c.t_up is None and now >= c.t0 + self.connect_timeout:
            self._fail("connect timeout")
            self._end(c, now)
            return
        if c.next_ping is not None and now >= c.next_ping:
            if c.pings >= PINGS_MAX:
                c.next_ping = None
                self._fail("connected, ping never answered")
                if not self.hold:
                    self._end(c, now)
                    return
            else:
                self._ping(c, now)
        dl = c.s.next_deadline()
        if dl is not None and now >= dl:
            c.s.handle_timer(now)
        self._after(c, now)

    # ---------------------------------------------------------------- the loop
    def step(self, timeout: float) -> list:
        """One wake-up: readable sockets, then due timers. Returns the other registered objects'
        data (e.g. "stdin") that were ready."""
        nxt = self.timers.peek()
        now = self.clock()
        if nxt is not None:
            timeout = max(0.0, min(timeout, nxt - now))
        ready = []
        for key, _ in self.sel.select(timeout):
            if isinstance(key.data, Conn):
                if key.data.alive:
                    self._on_read(key.data)
            else:
                ready.append(key.data)
        now = self.clock()
        for c in self.timers.pop_due(now):
            if c.alive:
                self._on_timer(c, now)
        return ready

    def run(self, clients: int, duration: float, stdin_stop: bool = False, rate: float = 0.0) -> dict:
        """Open `clients` sessions, at most `concurrency` handshakes at once (and at most `rate` new
        ones per second, when set); with `hold`, print
        READY once all are settled and keep them until stdin says so (or `duration` ends)."""
        t_start = self.clock()
        cpu0 = _cpu()
        end = t_start + duration
        ready_at: float | None = None
        cpu_ramp = None
        if stdin_stop:
            self.sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
        while self.clock() < end:
            now = self.clock()
            due = clients if not rate else min(clients, int((now - t_start) * rate) + 1)
            while self.started < due and self.in_handshake < self.concurrency:
                self.start_one(now)
            settled = (ready_at is None and self.started >= clients and self.in_handshake == 0
                       and all(c.t_ping is not None or c.next_ping is None for c in self.conns))
            if settled:
                ready_at = now
                cpu_ramp = _cpu() - cpu0
                if not self.hold:
                    break
                print("READY " + json.dumps(self.summary(cpu_ramp)), flush=True)
            got = self.step(0.05 if not rate else min(0.05, 1 / rate))
            if "stdin" in got:
                sys.stdin.readline()
                break
        if cpu_ramp is None:
            cpu_ramp = _cpu() - cpu0
        out = self.summary(cpu_ramp)
        out["held"] = len([c for c in self.conns if c.t_up is not None])
        now = self.clock()
        for c in list(self.conns):
            self._end(c, now)
        return out

    def summary(self, cpu: float) -> dict:
        ct = sorted(self.connect_times)
        pt = sorted(self.ping_times)
        span = (self.last_up - self.first_start) if self.last_up and self.first_start else 0.0
        return {
            "started": self.started, "connected": self.connected, "traffic_ok": self.traffic_ok,
            "failures": dict(self.failures), "open": len(self.conns),
            "handshakes_per_s": round(self.connected / span, 1) if span > 0 else None,
            "connect_p50_ms": _pct(ct, 0.5), "connect_p99_ms": _pct(ct, 0.99),
            "first_packet_p50_ms": _pct(pt, 0.5), "first_packet_p99_ms": _pct(pt, 0.99),
            "gen_cpu_s": round(cpu, 2),
            "gen_cpu_ms_per_handshake": round(cpu / self.connected * 1000, 2) if self.connected else None,
            "gen_rss_kb": _rss_kb(),
        }


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    if q == 0.5:
        return round(statistics.median(xs) * 1000, 1)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] * 1000, 1)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_kb() -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def raise_fd_limit(want: int) -> None:
    """A socket per session: lift the soft descriptor limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))


def format_summary(d: dict) -> str:
    return (f"started {d['started']}, connected {d['connected']}, traffic ok {d['traffic_ok']}, "
            f"failures {d['failures'] or 0}, {d['handshakes_per_s']} handshakes/s, "
            f"connect p50 {d['connect_p50_ms']} ms p99 {d['connect_p99_ms']} ms, "
            f"first packet p50 {d['first_packet_p50_ms']} ms, "
            f"generator {d['gen_cpu_ms_per_handshake']} CPU-ms/handshake")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=64, help="handshakes in progress at most")
    ap.add_argument("--rate", type=float, default=0.0, help="new sessions per second at most (0: no pacing)")
    ap.add_argument("--source", action="append", default=[], help="source address (repeat; round-robin)")
    ap.add_argument("--duration", type=float, default=120.0, help="stop after this many seconds")
    ap.add_argument("--connect-timeout", type=float, default=60.0)
    ap.add_argument("--ping-addr", default=None, help="ping this tunnel address (default: pushed route-gateway)")
    ap.add_argument("--hold", action="store_true", help="keep sessions up; READY line, then wait for stdin")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--username", default="")
    ap.add_argument("--password", default="")
    a = ap.parse_args(argv)
    raise_fd_limit(a.clients + 256)
    g = LoadGen(a.profile, a.source, a.concurrency, a.username, a.password, hold=a.hold,
                connect_timeout=a.connect_timeout, ping_addr=a.ping_addr)
    out = g.run(a.clients, a.duration, stdin_stop=a.hold, rate=a.rate)
    print(("RESULT " + json.dumps(out)) if a.json else format_summary(out), flush=True)
    return 0 if out["traffic_ok"] == a.clients else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
