"""Many clients against one server, in namespaces: one namespace and one of our client processes
per client (each on its own veth to the server namespace, 198.18.<i+1>.0/24), a byte sink in the
server namespace, a paced sender with one socket per client namespace, and the server's RSS and
open fds from /proc."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from ..configs import client_profile, server_config
from ..netns import Lab, Netns, Proc

SINK_PORT = 5300

# A TCP sink on the server namespace: counts bytes per source address, prints the totals once a
# second as one JSON line. Bounded: it ends after argv[2] seconds.
SINK = r"""
import json, selectors, socket, sys, time
port, life = int(sys.argv[1]), float(sys.argv[2])
sel = selectors.DefaultSelector()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", port)); l.listen(256); l.setblocking(False)
sel.register(l, selectors.EVENT_READ, None)
tot = {}
print("listening", flush=True)
end = time.monotonic() + life; nxt = time.monotonic() + 1
while time.monotonic() < end:
    for k, _ in sel.select(0.2):
        if k.data is None:
            try:
                c, a = l.accept()
            except OSError:
                continue
            c.setblocking(False); sel.register(c, selectors.EVENT_READ, a[0])
        else:
            try:
                d = k.fileobj.recv(262144)
            except OSError:
                d = b""
            if not d:
                sel.unregister(k.fileobj); k.fileobj.close()
            else:
                tot[k.data] = tot.get(k.data, 0) + len(d)
    if time.monotonic() >= nxt:
        nxt += 1
        print(json.dumps({"t": time.time(), "bytes": tot}), flush=True)
"""

# A paced sender: one thread per client namespace (setns into it, so the socket lives there), each
# sending `rate` bytes/s to the sink through the tunnel and reconnecting after an error. Bounded by
# argv[4] seconds.
SENDER = r"""
import ctypes, os, socket, sys, threading, time
dst, port, rate, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
names = sys.argv[5:]
libc = ctypes.CDLL(None, use_errno=True)
end = time.monotonic() + life
def run(ns):
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:
        print("setns failed", ns, flush=True); return
    os.close(fd)
    chunk = b"x" * 16384
    while time.monotonic() < end:
        try:
            s = socket.create_connection((dst, port), timeout=3)
            s.settimeout(5)
            t0 = time.monotonic(); sent = 0
            while time.monotonic() < end:
                want = (time.monotonic() - t0) * rate - sent
                if want < len(chunk):
                    time.sleep(min(0.05, (len(chunk) - want) / rate)); continue
                s.sendall(chunk); sent += len(chunk)
        except OSError:
            time.sleep(0.5)
        finally:
            try: s.close()
            except Exception: pass
for ns in names:
    threading.Thread(target=run, args=(ns,), daemon=True).start()
print("sending", len(names), flush=True)
while time.monotonic() < end:
    time.sleep(0.5)
"""


def proc_stats(pid: int) -> dict:
    """RSS (kB) and the number of open fds of a process."""
    rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return {"rss_kb": 0, "fds": 0}
    return {"rss_kb": rss, "fds": fds}


def cpu_seconds(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, IndexError):
        return 0.0


class Fleet:
    """A Lab with `n` client namespaces and certificates c0..c<n-1>."""

    def __init__(self, n: int, tmp: Path | None = None, extra_certs: tuple[str, ...] = ()) -> None:
        self.names = [f"c{i}" for i in range(n)]
        self.lab = Lab(clients=self.names + list(extra_certs), tmp=tmp)
        self.ns: list[Netns] = []
        try:
            for i in range(n):
                self.ns.append(self.lab.add_client_ns(i))
        except BaseException:
            self.lab.close()
            raise
        self.clients: list[Proc | None] = [None] * n
        self.server: Proc | None = None

    # ---- processes
    def start_server(self, extra: str = "", proto: str = "udp", kind: str = "ours", name: str = "srv",
                     keepalive: str | None = None, protection: str = "tls-crypt", env: dict | None = None) -> Proc:
        cfg = server_config(self.lab.pki, proto, protection=protection, extra=extra)
        if keepalive:
            cfg = cfg.replace("keepalive 5 30", f"keepalive {keepalive}")
        if kind == "ours":
            self.server = self.lab.ours(self.lab.srv, cfg, name, pattern=r"listening on (UDP|TCP)", env=env)
        else:
            self.server = self.lab.openvpn(self.lab.srv, cfg, name)
        return self.server

    def profile(self, i: int, proto: str = "udp", extra: str = "", protection: str = "tls-crypt",
                cert: str | None = None) -> str:
        # The server's address on this client's own veth (as tests/interop do for extra namespaces).
        return client_profile(self.lab.pki, proto, protection=protection, client=cert or self.names[i], extra=extra,
                              remotes=[(self.server_ip(i), 1194, proto)])

    @staticmethod
    def server_ip(i: int) -> str:
        return f"198.18.{i + 1}.1"

    def start_client(self, i: int, proto: str = "udp", extra: str = "", wait: float = 0,
                     protection: str = "tls-crypt") -> Proc:
        p = self.lab.ours(self.ns[i], self.profile(i, proto, extra, protection), f"cli{i}", wait=wait)
        self.clients[i] = p
        return p

    def stop_client(self, i: int) -> None:
        p = self.clients[i]
        if p is not None:
            p.stop(8)
            self.lab.procs.remove(p)
            self.clients[i] = None

    def wait_all_up(self, idx: list[int], timeout: float) -> dict[int, float]:
        """Seconds until each client logged `tunnel up` (clients that did not are absent)."""
        t0 = time.monotonic()
        up: dict[int, float] = {}
        while time.monotonic() - t0 < timeout and len(up) < len(idx):
            for i in idx:
                p = self.clients[i]
                if i not in up and p is not None and "tunnel up" in p.log():
                    up[i] = time.monotonic() - t0
            time.sleep(0.2)
        return up

    def sink(self, life: float) -> Proc:
        p = self.lab.start(self.lab.srv, [sys.executable, "-c", SINK, str(SINK_PORT), str(life)], "sink")
        assert p.wait_for("listening", 60), p.log()
        return p

    def sender(self, idx: list[int], rate_bps: float, life: float, dst: str = "198.19.0.1") -> Proc:
        return self.lab.start(self.lab.srv, [sys.executable, "-c", SENDER, dst, str(SINK_PORT), str(rate_bps / 8),
                                             str(life), *[self.ns[i].name for i in idx]], "sender")

    def close(self) -> None:
        self.lab.close()

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sink_totals(sink: Proc) -> tuple[float, dict[str, int]]:
    """The sink's last line: (time, bytes per source address)."""
    lines = [ln for ln in sink.log().splitlines() if ln.startswith("{")]
    if not lines:
        return time.time(), {}
    d = json.loads(lines[-1])
    return d["t"], d["bytes"]


def rates(a: tuple[float, dict], b: tuple[float, dict]) -> dict[str, float]:
    """Mbit/s per source address between two sink readings."""
    dt = max(b[0] - a[0], 1e-3)
    return {ip: (n - a[1].get(ip, 0)) * 8 / dt / 1e6 for ip, n in b[1].items()}


def server_sessions(log: str) -> tuple[int, int]:
    """(connected, disconnected) events in our server's log."""
    return len(re.findall(r": connected, address ", log)), len(re.findall(r": disconnected: ", log))
