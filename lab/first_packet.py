"""Handshake to first packet, as a user sees it: from starting the client program to the first
UDP datagram answered through the tunnel, for each control-channel protection.

    python -m lab.first_packet [--rounds 5] [--protections none,tls-auth,tls-crypt,tls-crypt-v2]
                               [--pairs ours-ours,ovpn-ovpn,ours-ovpn,ovpn-ours]

Pairs are client-server: ours-ours (our client, our server), ovpn-ovpn (Debian's OpenVPN at both
ends), ours-ovpn (our client against OpenVPN's server: compare with ovpn-ovpn), on request oursx-ovpn
(ours with `tls-groups X25519`: the key share OpenVPN's client offers, no hybrid ML-KEM); with
`--baseline DIR`, before-ovpn too (DIR's `appliance`, e.g. an older checkout, as the client). Both servers run
at once in the server namespace (ours on port 1195, pool 198.19.1.0/24; OpenVPN's on 1194, pool
198.19.0.0/24) with a UDP echo service on every address, so every round runs each pair once, in
turn (interleaved: machine noise hits them alike).

How one measurement works: a small prober runs in the client namespace. It opens a packet socket
on the client's veth, notes t0, starts the client process, then sends a UDP probe to the server's
tunnel address every `--probe-ms`, and at once whenever a link, address or route changes in the
namespace (rtnetlink), until one comes back. Times are the kernel's receive timestamps
(SO_TIMESTAMPNS) of the packets and of the echo, not when the prober got to read them. It notes
  wire   the first handshake packet the client puts on the wire (to the server's port),
  ctl    the server's last control packet before the client's first data packet (usually PUSH_REPLY),
  data   the first data-channel packet (P_DATA_V2/V1) the client sends,
  echo   the first probe answered through the tunnel,
then stops the client (SIGTERM, by PID). Printed per pair: `start` = t0 -> wire (process start,
imports, config parsing, socket: startup), `proto` = wire -> echo (handshake, key exchange,
push, TUN and route setup), split into `wire->ctl` (the exchange with the server as the wire
shows it) and `ctl->data` (the client's own work after the server's last word: applying the push,
TUN, address, routes, up to its first data packet), `total` = t0 -> echo; median and min-max over
the rounds. Our package is byte-compiled first (compileall), as it is when installed.
Also printed: each process's CPU time in proto (schedstat), the client's and the server's minor
page faults then, and the datagrams each way up to the echo; and from each packet the prober saw
(kept in the row as `pkts`: time, direction, UDP payload size, opcode, key id) the wire's phases
(our reset answered -> ClientHello -> the server's TLS flight -> our Finished -> its answer ->
its last control packet -> our first data packet -> echo) and the packets by kind, per pair, to
compare who waits for whom. Every datagram is seen and counted alone: the veth segments our GSO
sends (Lab.segment_on_the_wire); without that a GSO send crossed as one packet, opcode of its first.

--layout places the processes on this 2-core lab's CPUs (taskset), the same for every pair:
  free         the scheduler places everything (the default);
  pin          (= --pin) each client alone on CPU 1; both servers, the prober and the echo on CPU 0;
  apart        both servers alone on CPU 0; the clients, the prober and the echo on CPU 1;
  server-core  the clients on CPU 0 with the servers; the prober and the echo on CPU 1.
  two-hosts    as deployed: the server side (both servers, the echo) on CPU 0, the client side (each
               client, the prober) on CPU 1.
`apart` against `server-core` shows what a client costs the server by sharing its core (its
caches) rather than by what it sends: in a deployment they are different machines. `two-hosts` is
that deployment on one box: a client and its server never share a CPU, and the prober stands for
the user's program on the client's machine (the first packet is its probe, sent when the route
appears, read from the TUN by the client), the echo for a service beside the server. The prober is
put with the client, not with the server, because that is where a user's program runs, and it
costs the client's CPU little: between the client's first handshake packet and the echo it wakes
only for its probe tick and for route changes -- the packet socket's datagrams (with the kernel's
timestamps) are read once, after the echo, not as they cross -- so it does not add a wake-up per
handshake packet to either client's core, nor to the server's.

FP_WRAP="cmd args" in the environment runs each client (ours, OpenVPN's) under that command, e.g.
a wrapper that runs `perf record -F 20000 -k CLOCK_REALTIME -o <unique file> -- "$@"`; with
`--json`, each row's `t0` (CLOCK_REALTIME) plus `wire`/`echo` (ms) picks the samples of proto.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .capacity import _BASELINE
from .configs import client_profile, server_config
from .netns import SRV_IP, Lab
from .tools import OPENVPN, OUR_BIN, REPO

PROTECTIONS = ("none", "tls-auth", "tls-crypt", "tls-crypt-v2")
PAIRS = ("ours-ours", "ovpn-ovpn", "ours-ovpn")
PORTS = {"ovpn": 1194, "ours": 1195}
POOLS = {"ovpn": "198.19.0.0", "ours": "198.19.1.0"}
TUN_ADDR = {"ovpn": "198.19.0.1", "ours": "198.19.1.1"}
ECHO_PORT = 7007

# --layout: CPU of (servers, clients, prober, echo); None = wherever the scheduler puts it.
LAYOUTS: dict[str, tuple[int | None, int | None, int | None, int | None]] = {
    "free": (None, None, None, None),
    "pin": (0, 1, 0, 0),
    "apart": (0, 1, 1, 1),
    "server-core": (0, 0, 1, 1),
    "two-hosts": (0, 1, 1, 0),
}


def pin_process(pid: int, cpu: int | None) -> None:
    """Every thread of `pid` on `cpu`, or on every CPU this program may use (None)."""
    cpus = str(cpu) if cpu is not None else ",".join(map(str, sorted(os.sched_getaffinity(0))))
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, stdout=subprocess.DEVNULL)


def on_cpu(cpu: int | None) -> list[str]:
    """The taskset prefix that runs a command on `cpu` (nothing for None)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]

# UDP echo on every address of the server namespace (both servers' tunnel addresses).
_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
print("echo ready", flush=True)
while True:
    d, a = s.recvfrom(2048); s.sendto(d, a)
"""

# Runs in the client namespace: argv = dev server_ip server_port tun_target echo_port probe_s timeout_s client-argv...
_PROBER = r"""
import json, os, select, signal, socket, struct, subprocess, sys, time
dev, srv, sport, target, eport = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
probe_s, timeout_s, srv_pid, argv = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8]), sys.argv[9:]
def cpu_ns(pid):
    # Time on a CPU of every thread of `pid` (schedstat: ns, the scheduler's own accounting).
    tot = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                tot += int(f.read().split()[0])
    except (OSError, ValueError):
        return None
    return tot
def faults(pid):
    # Minor page faults of the whole process (/proc/PID/stat field 10): first touches of memory.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, ValueError, IndexError):
        return None
def cpus():
    return (cpu_ns(p.pid), cpu_ns(srv_pid), cpu_ns(os.getpid()), faults(p.pid), faults(srv_pid))
pk = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))   # ETH_P_ALL: only these see outgoing packets
pk.bind((dev, 0))
pk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)   # the handshake's datagrams wait here until the echo
srv_b = socket.inet_aton(srv)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.setblocking(False)
# Kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME): when a packet crossed the veth or the
# echo reached our socket, not when this prober got the CPU to read it (on 2 busy cores, often later).
SO_TIMESTAMPNS = 35
for s_ in (pk, u):
    s_.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
def stamp(anc):
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(d) >= 16:
            sec, ns = struct.unpack("=qq", d[:16])
            return sec + ns / 1e9
    return time.time()
# Route and address changes in this namespace (rtnetlink multicast): a probe goes out the moment
# the client's route to the server's tunnel address may exist, not at the next probe tick, so the
# probe interval does not add 0-2 ms of noise to ctl->data (for either client).
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.bind((0, 0x1 | 0x10 | 0x40))          # RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
nl.setblocking(False)
t0 = time.time()
p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
wire = data = echo = ctl = None
n_in = n_out = 0                      # handshake datagrams each way, up to the echo
pkts = []                             # [time, "out"/"in", UDP payload bytes, opcode, key id] up to the echo
cpu_wire = cpu_echo = (None,) * 5
held = []                             # the packet socket's datagrams once wire is seen: read after the echo
def see_packets():
    # Read what the packet socket holds. Until the first handshake packet, each is looked at as it
    # comes (the CPU sample at `wire`); after it, they are only collected, and all of them are read
    # after the echo (their kernel timestamps say when they crossed), so that the prober does not
    # take a wake-up on the client's or the server's core for every handshake packet.
    global wire, cpu_wire
    while True:
        try:
            b, anc, _fl, addr = pk.recvmsg(2048, 64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        t = stamp(anc)
        if addr[1] != 0x0800 or len(b) < 29 or b[9] != 17:
            continue
        ihl = (b[0] & 15) * 4
        if wire is None and addr[2] == socket.PACKET_OUTGOING and b[16:20] == srv_b and len(b) > ihl + 8 \
                and struct.unpack("!H", b[ihl + 2:ihl + 4])[0] == sport:
            wire = t
            cpu_wire = cpus()
        held.append((t, addr[2], b))
def account(t, kind, b):
    # One datagram seen on the veth (in time order, up to the echo): counts, ctl, data, pkts.
    global ctl, data, n_in, n_out
    ihl = (b[0] & 15) * 4
    if kind == socket.PACKET_HOST and b[12:16] == srv_b and len(b) > ihl + 8 \
            and struct.unpack("!H", b[ihl:ihl + 2])[0] == sport:
        if data is None and (b[ihl + 8] >> 3) not in (6, 9):
            ctl = t             # the server's last control packet before our first data packet
        n_in += 1
        pkts.append([t, "in", len(b) - ihl - 8, b[ihl + 8] >> 3, b[ihl + 8] & 7])
        return
    if kind != socket.PACKET_OUTGOING or b[16:20] != srv_b:
        return
    if struct.unpack("!H", b[ihl + 2:ihl + 4])[0] != sport or len(b) <= ihl + 8:
        return
    n_out += 1
    pkts.append([t, "out", len(b) - ihl - 8, b[ihl + 8] >> 3, b[ihl + 8] & 7])
    if data is None and (b[ihl + 8] >> 3) in (6, 9):
        data = t
nxt = time.monotonic()
end = nxt + timeout_s
seq = 0
while echo is None and time.monotonic() < end and p.poll() is None:
    now = time.monotonic()
    if now >= nxt:
        seq += 1
        try:
            u.sendto(struct.pack("!I", seq), (target, eport))
        except OSError:
            pass                      # no route yet
        nxt = now + probe_s
    r, _, _ = select.select([pk, u, nl] if wire is None else [u, nl], [], [], max(0.0, nxt - time.monotonic()))
    if nl in r:
        try:
            while nl.recv(65536):
                pass
        except BlockingIOError:
            pass
        nxt = time.monotonic()         # probe now: the route may have just appeared
    if pk in r:
        see_packets()
    if u in r:
        try:
            _d, anc, _fl, _a = u.recvmsg(64, 64)
            echo = stamp(anc)
            cpu_echo = cpus()
        except OSError:
            pass
see_packets()
for t, kind, b in sorted(held, key=lambda h: h[0]):
    if echo is None or t <= echo:
        account(t, kind, b)
try:
    os.killpg(p.pid, signal.SIGTERM)
except ProcessLookupError:
    pass
try:
    p.wait(10)
except subprocess.TimeoutExpired:
    os.killpg(p.pid, signal.SIGKILL); p.wait(5)
rel = lambda t: None if t is None else round((t - t0) * 1000, 3)
spent = [None if a is None or b is None else round((b - a) / 1e6, 3) for a, b in zip(cpu_wire[:3], cpu_echo[:3])]
flt = [None if a is None or b is None else b - a for a, b in zip(cpu_wire[3:], cpu_echo[3:])]
print(json.dumps({"t0": t0, "wire": rel(wire), "ctl": rel(ctl), "data": rel(data), "echo": rel(echo), "rc": p.returncode,
                  "cpu_client": spent[0], "cpu_server": spent[1], "cpu_prober": spent[2],
                  "faults_client": flt[0], "faults_server": flt[1], "n_out": n_out, "n_in": n_in,
                  "pkts": [[rel(t), d, n, op, k] for t, d, n, op, k in pkts]}), flush=True)
"""


class FirstPacket:
    def __init__(self, protection: str, lab: Lab) -> None:
        self.lab = lab
        self.protection = protection
        self.servers = {}
        for kind in ("ovpn", "ours"):
            cfg = server_config(lab.pki, "udp", protection=protection, port=PORTS[kind])
            cfg = cfg.replace("server 198.19.0.0 ", f"server {POOLS[kind]} ")
            name = f"fp-{kind}-{protection}"
            if kind == "ours":
                self.servers[kind] = lab.ours(lab.srv, cfg, name, pattern=r"listening on UDP", wait=60)
            else:
                self.servers[kind] = lab.openvpn(lab.srv, cfg, name, wait=60)
        self.profiles = {kind: lab.write(f"fp-cli-{kind}-{protection}.conf",
                                         client_profile(lab.pki, "udp", protection=protection,
                                                        remotes=[(SRV_IP, PORTS[kind], "udp")]))
                         for kind in ("ovpn", "ours")}
        # Pair oursx-ovpn: our client offering only X25519 (`tls-groups X25519`), the one key share
        # Debian's OpenVPN client offers here; by default ours adds the hybrid X25519MLKEM768 (a
        # ClientHello of two packets), so this pair shows what that choice costs.
        self.profiles["ovpn-x25519"] = lab.write(
            f"fp-cli-ovpn-x25519-{protection}.conf",
            self.profiles["ovpn"].read_text() + "tls-groups X25519\n")

    def pin_servers(self, cpu: int | None = 0) -> None:
        """Move both servers (every thread) to `cpu` (--layout: 0 in every pinned layout; None: back
        to every CPU, for `free` when layouts take turns)."""
        for proc in self.servers.values():
            pin_process(proc.p.pid, cpu)

    def once(self, pair: str, probe_s: float, timeout_s: float, baseline: str | None = None,
             layout: str = "free") -> dict:
        cli, srv = pair.split("-")
        prof = str(self.profiles[srv])
        wrap = os.environ.get("FP_WRAP", "").split()     # e.g. a profiler: FP_WRAP="perf record -o F --"
        # --layout pin: every client on CPU 1, alone; the server, the prober and the echo on CPU 0, as
        # on two machines (a client and a server do not share a core's caches in a deployment).
        _srv_cpu, cli_cpu, prober_cpu, _echo_cpu = LAYOUTS[layout]
        cpu1 = on_cpu(cli_cpu)
        if cli == "before":          # another checkout's client (--baseline), as lab/capacity.py runs it
            argv = [*cpu1, sys.executable, "-c", _shq(_BASELINE), str(baseline), prof]
        elif cli == "ours":
            argv = [*cpu1, *wrap, OUR_BIN, "run", prof]
        elif cli == "oursx":
            argv = [*cpu1, OUR_BIN, "run", str(self.profiles[f"{srv}-x25519"])]
        else:
            argv = [*cpu1, *wrap, OPENVPN, "--config", prof]
        r = self.lab.cli.run(" ".join(["exec", *on_cpu(prober_cpu), sys.executable, "-c", _shq(_PROBER), f"vb{self.lab.tag}", SRV_IP,
                                       str(PORTS[srv]), TUN_ADDR[srv], str(ECHO_PORT), str(probe_s),
                                       str(timeout_s), str(self.servers[srv].p.pid), *argv]),
                             check=False, timeout=timeout_s + 30)
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {"wire": None, "data": None, "echo": None, "rc": None, "err": r.stderr[-500:]}
        out.update(pair=pair, protection=self.protection)
        return out

    def close(self) -> None:
        for p in self.servers.values():
            p.stop(10)
            self.lab.procs.remove(p)


def _load() -> str:
    """The load average now (`uptime`), printed with every run: this lab's machine is shared."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _shq(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _stat(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.median(xs):7.2f} ({min(xs):.1f}-{max(xs):.1f})"


def summarize(rows: list[dict], protections, pairs) -> str:
    lines = [f"{'protection':>13} {'pair':>11} {'ok':>5}  {'start ms':>20}  {'proto ms':>18}  "
             f"{'= wire->ctl':>18}  {'+ ctl->data':>18}  {'total ms':>20}"]
    for prot in protections:
        for pair in pairs:
            rs = [r for r in rows if r["protection"] == prot and r["pair"] == pair]
            ok = [r for r in rs if r["echo"] is not None and r["wire"] is not None]
            start = [r["wire"] for r in ok]
            proto = [r["echo"] - r["wire"] for r in ok]
            w2c = [r["ctl"] - r["wire"] for r in ok if r.get("ctl") is not None]
            c2d = [r["data"] - r["ctl"] for r in ok if r["data"] is not None and r.get("ctl") is not None]
            total = [r["echo"] for r in ok]
            lines.append(f"{prot:>13} {pair:>11} {len(ok):>2}/{len(rs):<2}  {_stat(start):>20}  {_stat(proto):>18}  "
                         f"{_stat(w2c):>18}  {_stat(c2d):>18}  {_stat(total):>20}")
    lines.append("\nCPU time spent from the first handshake packet to the echo (proto), ms, median (min-max): "
                 "the client's threads, the server process, the prober (schedstat, sampled when the prober sees "
                 "the first handshake packet and the echo); then the client's and the server's minor page faults in that time")
    lines.append(f"{'protection':>13} {'pair':>11}  {'client':>18}  {'server':>18}  {'prober':>18}"
                 f"  {'client faults':>18}  {'server faults':>18}  {'datagrams out':>18}  {'datagrams in':>18}")
    for prot in protections:
        for pair in pairs:
            rs = [r for r in rows if r["protection"] == prot and r["pair"] == pair and r["echo"] is not None]
            cols = [[r[k] for r in rs if r.get(k) is not None]
                    for k in ("cpu_client", "cpu_server", "cpu_prober", "faults_client", "faults_server", "n_out", "n_in")]
            if any(cols):
                lines.append(f"{prot:>13} {pair:>11}  " + "  ".join(f"{_stat(c):>18}" for c in cols))
    if "ovpn-ovpn" in pairs and len(pairs) > 1:
        # On a shared machine the rounds differ more than the clients do: the same round's
        # difference to OpenVPN's client cancels what the round had in common.
        lines.append("\nproto minus ovpn-ovpn's in the same round, ms: median (rounds where the pair was at most as fast)")
        for prot in protections:
            cells = []
            for pair in pairs:
                if pair == "ovpn-ovpn":
                    continue
                d = []
                for r in rows:
                    if r["protection"] != prot or r["pair"] != pair or r["echo"] is None or r["wire"] is None:
                        continue
                    o = [x for x in rows if x["protection"] == prot and x["pair"] == "ovpn-ovpn"
                         and x.get("round") == r.get("round") and x["echo"] is not None and x["wire"] is not None]
                    if o and r.get("round") is not None:
                        d.append((r["echo"] - r["wire"]) - (o[0]["echo"] - o[0]["wire"]))
                if d:
                    cells.append(f"{pair} {statistics.median(d):+.2f} ({sum(x <= 0 for x in d)}/{len(d)})")
            lines.append(f"{prot:>13}  " + "   ".join(cells))
    return "\n".join(lines)


# OpenVPN opcodes (the first byte's top five bits) as the prober records them.
OP_CONTROL, OP_ACK, OP_RESET_SERVER, OP_CONTROL_WKC = 4, 5, 8, 11
OP_DATA = (6, 9)
PHASES = ("reset->CH", "CH->flight", "flight->Fin", "Fin->answer", "answer->ctl", "ctl->data", "data->echo")


def phases(row: dict) -> dict[str, float] | None:
    """The wire's milestones of one measurement, from its packet records (`pkts`): the server's
    reset, our ClientHello (the first control packet out), the server's TLS flight (its first
    control packet of 500+ bytes), our Finished (the next control packet out), the server's first
    control packet after it, its last one before our first data packet (`ctl`, usually PUSH_REPLY),
    our first data packet, the echo. Returns the gaps between them in ms, or None if one is missing
    (a retransmission-free handshake has them all)."""
    pk = row.get("pkts") or []
    marks: dict[str, float] = {}

    def first(after: float, d: str, ops, min_len: int = 0) -> float | None:
        for t, dd, n, op, _k in pk:
            if t > after and dd == d and op in ops and n >= min_len:
                return t
        return None
    ctl_ops = (OP_CONTROL, OP_CONTROL_WKC)
    marks["reset"] = first(-1.0, "in", (OP_RESET_SERVER,))
    if marks["reset"] is None:
        return None
    marks["CH"] = first(marks["reset"], "out", ctl_ops)
    marks["flight"] = marks["CH"] and first(marks["CH"], "in", ctl_ops, 500)
    marks["Fin"] = marks["flight"] and first(marks["flight"], "out", ctl_ops)
    marks["answer"] = marks["Fin"] and first(marks["Fin"], "in", ctl_ops)
    marks["ctl"], marks["data"], marks["echo"] = row.get("ctl"), row.get("data"), row.get("echo")
    if any(v is None for v in marks.values()):
        return None
    names = list(marks)
    return {f"{a}->{b}": round(marks[b] - marks[a], 3) for a, b in zip(names, names[1:])}


def packet_counts(row: dict) -> dict[str, int]:
    """Datagrams up to the echo by kind: control (with a message), ACK-only, data; each way.
    A GSO send (our ClientHello or Finished flight in two datagrams) shows as one packet here."""
    c = {"ctl out": 0, "ack out": 0, "data out": 0, "ctl in": 0, "ack in": 0, "data in": 0}
    for _t, d, _n, op, _k in row.get("pkts") or []:
        kind = "ack" if op == OP_ACK else "data" if op in OP_DATA else "ctl"
        c[f"{kind} {d}"] += 1
    return c


def summarize_wire(rows: list[dict], protections, pairs) -> str:
    """Per pair, the median of each wire phase and of each kind of packet (who waits for whom)."""
    lines = ["\nWire phases from the client's veth, ms: median over the rounds (see phases())",
             f"{'protection':>13} {'pair':>11}  " + "  ".join(f"{p:>12}" for p in PHASES)
             + "   packets out ctl/ack/data, in ctl/ack/data"]
    for prot in protections:
        for pair in pairs:
            rs = [r for r in rows if r["protection"] == prot and r["pair"] == pair and r.get("pkts")]
            ph = [x for x in (phases(r) for r in rs) if x]
            if not ph:
                continue
            cells = "  ".join(f"{statistics.median(x[p] for x in ph):12.2f}" for p in PHASES)
            cnt = [packet_counts(r) for r in rs]
            med = {k: statistics.median(c[k] for c in cnt) for k in cnt[0]}
            lines.append(f"{prot:>13} {pair:>11}  {cells}   {med['ctl out']:g}/{med['ack out']:g}/"
                         f"{med['data out']:g}, {med['ctl in']:g}/{med['ack in']:g}/{med['data in']:g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--protections", default=",".join(PROTECTIONS))
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--probe-ms", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt")
    ap.add_argument("--json", default=None, help="also write every measurement to this file")
    ap.add_argument("--baseline", default=None,
                    help="directory holding another version's `appliance` package: adds pair before-ovpn "
                         "(that version's client against OpenVPN's server)")
    ap.add_argument("--pin", action="store_true",
                    help="clients on CPU 1; servers, prober and echo on CPU 0 (two cores at least): --layout pin")
    ap.add_argument("--layout", default=None,
                    help="where the processes run (module docstring): " + ", ".join(LAYOUTS) + "; several, "
                         "comma-separated (e.g. free,two-hosts), take turns within every round; default free, "
                         "or pin with --pin")
    a = ap.parse_args(argv)
    layouts = (a.layout or ("pin" if a.pin else "free")).split(",")
    for lay in layouts:
        if lay not in LAYOUTS:
            ap.error(f"--layout {lay}: not one of {', '.join(LAYOUTS)}")
    prots, pairs = a.protections.split(","), a.pairs.split(",")
    if a.baseline and "before-ovpn" not in pairs:
        pairs.append("before-ovpn")
    rows: list[dict] = []
    # An installed program (the image, a pip install) runs from bytecode; a checkout under
    # PYTHONDONTWRITEBYTECODE would compile every module at each start and measure the compiler.
    for root in [REPO] + ([Path(a.baseline)] if a.baseline else []):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "appliance")], check=True,
                       stdout=subprocess.DEVNULL)
    lab = Lab()
    try:
        lab.segment_on_the_wire()
        echo = lab.start(lab.srv, [sys.executable, "-c", _ECHO, str(ECHO_PORT)], "fp-echo")
        if not echo.wait_for("echo ready", 20):
            raise RuntimeError("echo service did not start")
        print(f"layout {','.join(layouts)}; load before:", _load(), flush=True)
        for prot in prots:
            fp = FirstPacket(prot, lab)
            try:
                time.sleep(0.5)
                for rnd in range(a.rounds):
                    for lay in layouts:
                        srv_cpu, _cli_cpu, _prober_cpu, echo_cpu = LAYOUTS[lay]
                        if srv_cpu is not None or len(layouts) > 1:
                            fp.pin_servers(srv_cpu)
                            pin_process(echo.p.pid, echo_cpu)
                            time.sleep(0.05)
                        for pair in pairs:
                            rows.append(fp.once(pair, a.probe_ms / 1000, a.timeout, a.baseline, lay))
                            rows[-1].update(round=rnd, layout=lay)
                            print(json.dumps(rows[-1]), flush=True)
                            time.sleep(0.3)       # let the server notice the exit notification
                print(f"{prot} done; load:", _load(), flush=True)
            finally:
                fp.close()
        print("load after:", _load(), flush=True)
    finally:
        lab.close()
    for lay in layouts:
        rs = [r for r in rows if r.get("layout") == lay]
        print(f"\n=== layout {lay} ===\nClient start to first UDP echo through the tunnel, ms: median (min-max) of "
              f"{a.rounds} rounds, interleaved; start = process start -> first handshake packet, proto = that -> echo")
        print(summarize(rs, prots, pairs))
        print(summarize_wire(rs, prots, pairs))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
