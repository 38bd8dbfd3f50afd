"""Per-MB counts of what a VPN server does over a throughput run: its system calls and switches
(`perf stat` on its PID) and its namespaces' kernel counters (`nstat`).

Why (issue 11, thru50): the upload pair's limit is OpenVPN's single-threaded server, and what a
client can still change is what that server spends per MB -- how many datagrams it reads and how
often it sleeps in epoll (a wake-up each), how many inner ACKs it must read from its TUN and seal
back, how many segments the inner TCP has to send twice because a datagram was dropped at the
server's full socket. Counts per MB the receiver got move far less with the machine's load than
Mbit/s does, so they compare two clients on a shared machine. lab.bench_tunnel --server-counts
prints them per run; the parsing here is pure (tests/unit/test_server_counts.py).
"""
from __future__ import annotations

import signal
import statistics
import subprocess

# The system calls OpenVPN 2.6's (or our) event loop can make per packet; counted in the process's
# own context by the syscall tracepoints (what `perf stat -p` sees).
SYSCALLS = ("recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "read", "write", "readv", "writev",
            "epoll_wait", "epoll_pwait", "poll", "ppoll", "select")
EVENTS = ("context-switches",) + tuple(f"syscalls:sys_enter_{s}" for s in SYSCALLS)

# nstat counters of the receiving (server) namespace and the sending (client) namespace: the UDP
# datagrams the server's socket took or dropped, the inner TCP receiver's ACKs and its out-of-order
# queue (each hole a dropped datagram made), and the inner sender's retransmissions.
SERVER_NSTAT = ("UdpInDatagrams", "UdpRcvbufErrors", "TcpOutSegs", "TcpExtDelayedACKs", "TcpExtTCPOFOQueue",
                "TcpExtTCPDSACKOldSent", "TcpExtTCPDSACKOfoSent")
CLIENT_NSTAT = ("TcpRetransSegs", "TcpExtTCPLostRetransmit", "TcpExtTCPSackRecovery", "TcpExtTCPLossProbes")


def parse_perf_csv(text: str) -> dict[str, int]:
    """`perf stat -x,` output -> {event (without the `syscalls:sys_enter_` prefix): count}; events
    perf could not count (`<not counted>`, `<not supported>`) are left out."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split(",")
        if len(f) < 3 or not f[0].strip().isdigit():
            continue
        out[f[2].strip().removeprefix("syscalls:sys_enter_")] = int(f[0])
    return out


def parse_nstat(text: str) -> dict[str, int]:
    """`nstat -az NAMES...` output -> {name: value}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            out[f[0]] = int(f[1])
    return out


def diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def per_mb_line(label: str, counts: dict[str, int], mb: float) -> str:
    """One line of the nonzero counts per MB, in the order given."""
    if mb <= 0:
        return f"    ({label}: nothing received)"
    parts = [f"{k} {v / mb:.1f}" for k, v in counts.items() if v]
    return f"    ({label} per MB: " + (", ".join(parts) or "none") + ")"


class PerfStat:
    """`perf stat` of one process over a span: start() when the span begins, stop() -> counts."""

    def __init__(self, pid: int, events: tuple[str, ...] = EVENTS) -> None:
        self.pid, self.events = pid, events
        self._p: subprocess.Popen | None = None

    def start(self) -> None:
        self._p = subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(self.events), "-p", str(self.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict[str, int]:
        if self._p is None:
            return {}
        self._p.send_signal(signal.SIGINT)
        try:
            _, err = self._p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._p.kill()
            _, err = self._p.communicate(timeout=5)
        self._p = None
        return parse_perf_csv(err)


def merged_per_mb(process: dict[str, int], server_ns: dict[str, int], client_ns: dict[str, int],
                  mb: float) -> dict[str, float]:
    """One run's counts per MB under one set of keys: the process's events as named, the kernel
    counters prefixed `server ns` / `client ns` (the same name can be counted on both sides)."""
    if mb <= 0:
        return {}
    out = {k: v / mb for k, v in process.items()}
    out.update({f"server ns {k}": v / mb for k, v in server_ns.items()})
    out.update({f"client ns {k}": v / mb for k, v in client_ns.items()})
    return out


def medians_table(reference: list[dict[str, float]], ours: list[dict[str, float]]) -> str:
    """The medians over the rounds of each count per MB, OpenVPN's client's runs beside ours; a
    count missing from a run (perf or nstat gave nothing) is left out of that side's median."""
    def med(runs: list[dict[str, float]], k: str) -> str:
        vals = [r[k] for r in runs if k in r]
        return f"{statistics.median(vals):.1f}" if vals else "-"

    keys = [k for k in dict.fromkeys(k for r in reference + ours for k in r)
            if any(r.get(k) for r in reference + ours)]
    lines = [f"    {'per MB, medians':40} {'OpenVPN client':>15} {'our client':>12}"]
    lines += [f"    {k:40} {med(reference, k):>15} {med(ours, k):>12}" for k in keys]
    return "\n".join(lines)
