"""`make bench`, end to end: iperf3 (one TCP stream) through the tunnel in namespaces.

Pairs measured in one run, alternating, so machine noise hits both alike:
  client: our client ⇄ OpenVPN server   vs   OpenVPN client ⇄ OpenVPN server
  server: our client ⇄ our server       vs   OpenVPN client ⇄ OpenVPN server
  server-ovpncli (on request): OpenVPN client ⇄ our server   vs   OpenVPN client ⇄ OpenVPN server
    (what a deployed server mostly sees: clients that send no GSO runs, one datagram per packet)
Prints Mbit/s for each round (with the datagrams the receiving side dropped at full sockets and the
sender's TCP retransmissions), the medians and the ratio ours/OpenVPN. `--reverse` measures the
other direction (the server sends), which exercises the opposite halves of both programs.

Why CPU time too: on a shared machine Mbit/s moves with everybody else's load, but the CPU each
VPN process spends per megabyte moved (utime+stime from /proc, over the iperf run) hardly does, so
it is printed beside the rate (`cpu us/MB` for the server and client processes). `--profile DIR`
records each of our processes with py-spy during its run (collapsed stacks in DIR, and the top
functions by own time printed): where the remaining time goes.

`--baseline DIR` measures ours a second time per round from another checkout's root (PYTHONPATH=DIR,
its native modules built or copied), interleaved with this tree's: a before/after on the same load.
`--native` (with --profile) samples C frames too (py-spy --native, 500 Hz).

`--dev tap` runs the same pairs at layer 2 (README "Client with dev tap", "The layer-2 server"):
both ends' configs say `dev tap` (the server's `server` line then pushes route-gateway and
ifconfig), so the frames go through the tap client's path and the server's switch (SwitchDataPath)
instead of the TUN paths.

Where the processes run matters on a small machine: a run has four busy processes (both VPN ends,
iperf3's two ends) and the kernel's work between them. `--layout` pins them (LAYOUTS) and
`--cpu-map` prints, per run, the machine's idle share and each process's share of a CPU. On 2 cores
the receiving iperf3, placed by the scheduler on the receiving VPN server's core, is woken for
almost every packet the server writes to its TUN (~58,000 switches a second each, `perf sched`),
and that core then limits the pair whichever client sends: see the README, "Where the processes
run". With `--cpu-map` each run also prints every process of the path's CPU per MB (both VPN ends,
iperf3's two ends, ksoftirqd; the softirq share, other processes, idle), and the client pair's
summary the medians side by side with lab/path_cpu.py's arithmetic: each pair's 2-CPU ceiling, and
what our client would have to cost for 1.5x OpenVPN's client with the rest of the path fixed.
`--server-counts` prints, per run and as the pair's medians, what the VPN server did per MB -- its system
calls and switches (perf stat on its PID) and both namespaces' UDP/TCP counters: datagrams taken and
dropped, the inner ACKs it had to seal back, retransmissions (lab/server_counts.py).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from . import path_cpu, server_counts
from .configs import client_profile, server_config
from .netns import TUN_SERVER_IP, Lab, Netns, Proc
from .tools import OUR_BIN

_TICK = os.sysconf("SC_CLK_TCK")

# On a small machine the four busy processes of a run (two VPN ends, iperf3's two ends) share the
# CPUs, and where the scheduler puts them moves the result as much as the code does.
LAYOUTS = {
    "free": "the scheduler places every process (the default)",
    "server-alone": "the VPN server alone on the last CPU, everything else on the others",
    "two-hosts": "the server side (VPN server, iperf3 -s) on the last CPU, the client side (VPN client, "
                 "iperf3 -c) and this script on the others, as if each side had a machine of its own",
}


def _cpu(p: Proc) -> float:
    """CPU seconds (user + system) the process has used so far (0 once it is gone)."""
    try:
        f = Path(f"/proc/{p.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(f[11]) + int(f[12])) / _TICK


def _all_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) for every process on the machine (kernel threads too)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        f = raw.rsplit(")", 1)[1].split()
        out[int(d.name)] = (name, (int(f[11]) + int(f[12])) / _TICK)
    return out


def _idle() -> tuple[float, float]:
    """(idle + iowait seconds, total seconds) summed over the CPUs, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (v[3] + v[4]) / _TICK, sum(v[:8]) / _TICK


def _softirq() -> float:
    """Seconds the CPUs spent in hard and soft interrupts, from /proc/stat (by the tick here: those
    ticks are also in the interrupted task's own time; see lab/path_cpu.py)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (v[5] + v[6]) / _TICK


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended and were reaped (iperf3's two ends,
    gone before a run's last look at /proc)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_map(before: tuple, after: tuple, wall: float) -> str:
    """Where the machine's CPUs went over a run: idle share, and the top processes (in % of one CPU);
    `iperf3` is both its ends together, counted when they were reaped."""
    (p0, i0, k0), (p1, i1, k1) = before, after
    used: collections.Counter = collections.Counter()
    for pid, (name, t) in p1.items():
        base = p0.get(pid, (name, 0.0))[1] if pid in p0 else 0.0
        used[name.split("/")[0]] += t - base
    used["iperf3"] += k1 - k0
    top = ", ".join(f"{n} {100 * v / wall:.0f}%" for n, v in used.most_common(7) if v > 0)
    idle = 100 * (i1[0] - i0[0]) / max(i1[1] - i0[1], 1e-9)
    return f"    (machine idle {idle:.0f}%; {top})"


def _path_seconds(before: tuple, after: tuple, server: float, client: float, iperf_c: float, iperf_s: float,
                  softirq: float) -> dict[str, float]:
    """CPU seconds over a run by role (lab/path_cpu.py's ROLES), the softirq share inside them, the
    other processes' busy time (the machine's busy time less the path's) and the idle time;
    `before`/`after` are _cpu_map's snapshots."""
    (p0, i0, _), (p1, i1, _) = before, after
    ksoft = sum(t - p0.get(pid, (name, 0.0))[1] for pid, (name, t) in p1.items() if name.startswith("ksoftirqd"))
    idle, total = i1[0] - i0[0], i1[1] - i0[1]
    path = {"VPN server": server, "VPN client": client, "iperf3 -s": iperf_s, "iperf3 -c": iperf_c, "ksoftirqd": ksoft}
    return {**path, "softirq (inside the above)": softirq,
            "other processes": max(total - idle - sum(path.values()), 0.0), "idle": idle}


def _sched(p: Proc) -> tuple[int, int, int, int]:
    """(voluntary, involuntary context switches, ns on a CPU, ns waiting runnable) of a process and
    its threads so far: a voluntary switch is a sleep (a wake-up to follow), an involuntary one a
    preemption."""
    vol = inv = run = wait = 0
    try:
        for t in Path(f"/proc/{p.p.pid}/task").iterdir():
            st = (t / "status").read_text()
            vol += int(st.split("voluntary_ctxt_switches:")[1].split()[0])
            inv += int(st.split("nonvoluntary_ctxt_switches:")[1].split()[0])
            a, b, _ = (t / "schedstat").read_text().split()
            run, wait = run + int(a), wait + int(b)
    except (FileNotFoundError, ProcessLookupError, IndexError):
        pass
    return vol, inv, run, wait


def _link(ns: Netns, dev: str) -> tuple[int, int, int, int]:
    """(rx packets, rx bytes, tx packets, tx bytes) of a device in a namespace."""
    out = ns.run("cat " + " ".join(f"/sys/class/net/{dev}/statistics/{k}" for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")), check=False)
    v = [int(x) for x in out.stdout.split()]
    return tuple(v) if len(v) == 4 else (0, 0, 0, 0)   # type: ignore[return-value]


def _wire(before: tuple, after: tuple, mb: float, wall: float) -> str:
    """What the server's link and the two VPN processes did per MB the receiver got: datagrams
    each way and their mean size, and each process's sleeps (voluntary switches: the wake-ups),
    preemptions and time waiting runnable."""
    (l0, s0, c0), (l1, s1, c1) = before, after
    rp, rb, tp, tb = (b - a for a, b in zip(l0, l1))
    parts = [f"    (wire at the server: in {rp / mb:.0f} datagrams/MB ({rp / wall / 1000:.0f}k/s, mean "
             f"{rb / max(rp, 1):.0f} B), out {tp / mb:.0f}/MB (mean {tb / max(tp, 1):.0f} B)"]
    for name, a, b in (("server", s0, s1), ("client", c0, c1)):
        vol, inv, run, wait = (y - x for x, y in zip(a, b))
        parts.append(f"{name} {vol / mb:.0f} sleeps/MB, {inv / mb:.0f} preempted/MB, ran {run / 1e6 / wall:.0f}"
                     f" ms/s, waited runnable {wait / 1e6 / wall:.0f} ms/s")
    return "; ".join(parts) + ")"


# `--ours-gso N`: our program with transport/udp.MAX_GSO_SEGMENTS set to N before it starts (the
# bound `_runs` reads at each send), so one run compares GSO run lengths interleaved. The program's
# path stays in argv (Proc.is_ours, Lab's stop rules recognise it); its process name is `python`.
_GSO_PRELUDE = ("import sys; import appliance.transport.udp as u; u.MAX_GSO_SEGMENTS = int(sys.argv[1]); "
                "sys.argv = sys.argv[2:]; from appliance.cli import main; sys.exit(main())")


def ours_argv(cfg: Path, gso: int | None) -> list[str]:
    """argv of our program for `cfg`; with `gso`, its GSO runs bounded to that many datagrams."""
    if gso is None:
        return [OUR_BIN, "run", str(cfg)]
    return [str(Path(OUR_BIN).parent / "python"), "-c", _GSO_PRELUDE, str(gso), OUR_BIN, "run", str(cfg)]


@contextlib.contextmanager
def _tree(root: Path | None):
    """`--baseline`: our processes started inside import `appliance` from `root` (PYTHONPATH comes
    before the editable install's finder); None: this checkout, as installed."""
    if root is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _start_ours(lab: Lab, ns: Netns, config_text: str, name: str, gso: int | None, pattern: str = "tunnel up") -> Proc:
    if gso is None:
        return lab.ours(ns, config_text, name, pattern=pattern)
    p = lab.start(ns, ours_argv(lab.write(f"{name}.ovpn", config_text), gso), name)
    if not p.wait_for(pattern, Lab.START_WAIT):
        raise RuntimeError(f"vpn-appliance {name} (GSO runs of {gso}) did not reach {pattern!r}:\n{p.log()[-2000:]}")
    return p


def parse_udp_queue(text: str, port: int) -> int | None:
    """The receive queue in bytes (rmem_alloc) of the UDP socket bound or connected to `port` (a
    server's, or a client's talking to it), from a /proc/net/udp (or udp6) listing; None if none."""
    want = f":{port:04X}"
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) > 4 and (f[1].endswith(want) or f[2].endswith(want)):
            return int(f[4].split(":")[1], 16)
    return None


def parse_rcvbuf(ss_text: str, port: int) -> int | None:
    """The receive buffer limit (skmem's rb) of the UDP socket bound or connected to `port`, from
    `ss -u -a -m -n`; None if none is listed."""
    lines = ss_text.splitlines()
    for i, line in enumerate(lines):
        f = line.split()
        if len(f) >= 5 and (f[3].endswith(f":{port}") or f[4].endswith(f":{port}")):
            for nxt in lines[i + 1:i + 2]:
                m = re.search(r"\brb(\d+)", nxt)
                if m:
                    return int(m[1])
    return None


class QueueSampler:
    """Samples, every `every` s, the receive queue of the VPN's UDP socket (port 1194) in a namespace,
    through /proc/PID/net/udp of a sleeper started there (no `ip netns exec` per sample): how full
    the receiving socket runs over a run -- empty between bursts, or at its limit."""

    def __init__(self, ns: Netns, seconds: float, every: float = 0.002, port: int = 1194) -> None:
        # `seconds`: the run's length; the sleeper ends by itself a minute after it, whatever happens here
        self.ns, self.seconds, self.every, self.port = ns, seconds, every, port
        self.samples: list[int] = []
        self.rcvbuf = 212992            # net.core.rmem_default, until ss tells the socket's own
        self._stop = threading.Event()
        self._sleeper: subprocess.Popen | None = None
        self._t: threading.Thread | None = None

    def __enter__(self) -> QueueSampler:
        self.rcvbuf = parse_rcvbuf(self.ns.run("ss -u -a -m -n", check=False).stdout, self.port) or self.rcvbuf
        self._sleeper = subprocess.Popen(["ip", "netns", "exec", self.ns.name, "sleep", str(int(self.seconds) + 60)])
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        assert self._sleeper is not None
        path = Path(f"/proc/{self._sleeper.pid}/net/udp")
        time.sleep(0.2)                 # `ip netns exec` has exec'd sleep in the namespace by now
        while not self._stop.wait(self.every):
            try:
                q = parse_udp_queue(path.read_text(), self.port)
            except OSError:
                continue
            if q is not None:
                self.samples.append(q)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._t is not None:
            self._t.join(5)
        if self._sleeper is not None:
            self._sleeper.kill()
            self._sleeper.wait(5)

    def summary(self) -> str:
        """Share of samples empty, over half of the socket's receive buffer, and within 10% of it
        (full: the next datagram may be dropped)."""
        q, rcvbuf = self.samples, self.rcvbuf
        if not q:
            return "    (receive queue: no samples)"
        n = len(q)
        return (f"    (receive queue, {n} samples: empty {100 * sum(x == 0 for x in q) / n:.0f}%, over half of "
                f"{rcvbuf} {100 * sum(x > rcvbuf // 2 for x in q) / n:.0f}%, full {100 * sum(x > 0.9 * rcvbuf for x in q) / n:.0f}%, "
                f"max {max(q)})")


def _tun_name(ns: Netns) -> str:
    """The one point-to-point (tun) device in a namespace, by `ip -o link`."""
    for line in ns.run("ip -o link show", check=False).stdout.splitlines():
        if "POINTOPOINT" in line:
            return line.split(":")[1].strip().split("@")[0]
    raise RuntimeError(f"no tun device in {ns.name}")


def _udp_drops(ns: Netns) -> int:
    """Datagrams the namespace's kernel dropped because a socket's receive buffer was full."""
    out = ns.run("nstat -az UdpRcvbufErrors Udp6RcvbufErrors", check=False).stdout
    return sum(int(p[1]) for p in (line.split() for line in out.splitlines()) if len(p) >= 2 and p[1].isdigit())


def _iperf(lab: Lab, server_ns: Netns, client_ns: Netns, seconds: int, reverse: bool,
           congestion: str = "", server_cpus: set[int] | None = None) -> tuple[float, float, int, float, float]:
    """-> (Mbit/s at the receiver, bytes received, TCP retransmissions by the sender, CPU seconds of
    iperf3's client end and of its server end: each counted as it is reaped)."""
    srv = lab.start(server_ns, ["iperf3", "-s", "-1", "-B", TUN_SERVER_IP, "-p", "5201"], "iperf-s")
    if server_cpus:
        os.sched_setaffinity(srv.p.pid, server_cpus)
    time.sleep(0.4)
    k0 = k1 = _children_cpu()
    try:
        r = client_ns.run(f"iperf3 -c {TUN_SERVER_IP} -p 5201 -t {seconds} -J {'-R' if reverse else ''}"
                          + (f" -C {congestion}" if congestion else ""),
                          check=False, timeout=seconds + 30)
        k1 = _children_cpu()
        d = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        s = d.get("end", {}).get("sum_received", {})
        res = s.get("bits_per_second", 0) / 1e6, s.get("bytes", 0), d.get("end", {}).get("sum_sent", {}).get("retransmits", 0)
    finally:
        srv.stop(3)
    return (*res, k1 - k0, _children_cpu() - k1)


def _spy(p: Proc, seconds: int, out: Path, native: bool = False) -> subprocess.Popen | None:
    """py-spy on one of our processes for the run; `native`: C frames too (the AEAD, the GSO split,
    the system calls' wrappers), sampled at 500 Hz -- it stops the process for each sample."""
    exe = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: no profile)")
        return None
    extra = ["--native", "-r", "500"] if native else ["-r", "250", "--nonblocking"]
    return subprocess.Popen([exe, "record", "-p", str(p.p.pid), "-d", str(seconds), "-f", "raw",
                             "-o", str(out), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(path: Path, top: int = 14) -> str:
    """Top functions by own samples, and by inclusive samples, from a py-spy raw (collapsed) file."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [f.split(" (")[0] + " " + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                  for f in stack.split(";")]
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; own time:"]
    lines += [f"    {100 * v / total:5.1f}%  {k}" for k, v in own.most_common(top)]
    lines += ["  inclusive:"]
    lines += [f"    {100 * v / total:5.1f}%  {k}" for k, v in incl.most_common(top + 6)]
    return "\n".join(lines)


def tap_configs(server: str, client: str) -> tuple[str, str]:
    """The lab's server config and client profile made layer-2 ones, otherwise unchanged: `dev tap`
    on both ends, no `topology` (2.6 ignores it on a tap server, and says so)."""
    return (server.replace("dev tun\n", "dev tap\n").replace("topology subnet\n", ""),
            client.replace("dev tun\n", "dev tap\n"))


def _measure(lab: Lab, server_kind: str, client_kind: str, proto: str, cipher: str, seconds: int,
             reverse: bool = False, profile: Path | None = None, server_buf: int = 0,
             layout: str = "free", server_cpu: int | None = None, cpu_map: bool = False,
             congestion: str = "", wire: bool = False, gso: int | None = None,
             queue: bool = False, dev: str = "tun", native: bool = False,
             counts: bool = False, client_tun_gso: int = 0) -> tuple[float, float, float, float, dict, dict]:
    """-> (Mbit/s, server CPU us per MB, client CPU us per MB, datagrams dropped per MB, with
    `cpu_map` every process of the path's CPU us per MB (lab/path_cpu.py's roles; else {}), and with
    `counts` the server's system calls and both sides' kernel counters per MB (server_counts; else
    {})); prints the
    receiving namespace's socket drops and the sender's TCP retransmissions (loss, not CPU, is what
    limits a pair with drops). `gso`: our processes' GSO run bound (ours_argv); `queue`: sample the
    receiving VPN socket's queue over the run (QueueSampler)."""
    scfg = server_config(lab.pki, proto, cipher, "tls-crypt",
                         extra=f"sndbuf {server_buf}\nrcvbuf {server_buf}\n" if server_buf and server_kind == "openvpn" else "")
    ccfg = client_profile(lab.pki, proto, cipher, "tls-crypt")
    if dev == "tap":
        scfg, ccfg = tap_configs(scfg, ccfg)
    if server_kind == "ours":
        srv = _start_ours(lab, lab.srv, scfg, "bench-srv", gso, pattern=r"listening on")
    else:
        srv = lab.openvpn(lab.srv, scfg, "bench-srv")
    if layout != "free" and server_cpu is not None:
        os.sched_setaffinity(srv.p.pid, {server_cpu})    # `ip netns exec` has exec'd the server by now
    try:
        cli = _start_ours(lab, lab.cli, ccfg, "bench-cli", gso) if client_kind == "ours" else lab.openvpn(lab.cli, ccfg, "bench-cli")
        try:
            if not lab.wait_ping(lab.cli, TUN_SERVER_IP, 15):
                raise RuntimeError("tunnel does not carry pings")
            if client_tun_gso:
                # the inner TCP reads its TSO/GSO size limit at connect (sk_setup_caps): iperf3's stream,
                # opened after this, sends super-packets of at most this many bytes into the client's TUN
                lab.cli.run(f"ip link set dev {_tun_name(lab.cli)} gso_max_size {client_tun_gso}")
            spies = []
            if profile is not None:
                tag = f"{'down' if reverse else 'up'}-{dev}-{proto}-{client_kind}cli-{server_kind}srv"
                for p, kind, side in ((srv, server_kind, "server"), (cli, client_kind, "client")):
                    if kind == "ours":
                        out = profile / f"{tag}-{side}.txt"
                        sp = _spy(p, seconds, out, native)
                        if sp is not None:
                            spies.append((side, out, sp))
            rx_ns = lab.cli if reverse else lab.srv
            d0, c0s, c0c = _udp_drops(rx_ns), _cpu(srv), _cpu(cli)
            t0, m0 = time.monotonic(), ((_all_cpu(), _idle(), _children_cpu()) if cpu_map else None)
            q0 = _softirq()
            link = f"va{lab.tag}"
            w0 = (_link(lab.srv, link), _sched(srv), _sched(cli)) if wire else None
            if counts:
                # the server is the receiving end's VPN process (upload), or the sending one (--reverse)
                perf = server_counts.PerfStat(srv.p.pid)
                n0 = [server_counts.parse_nstat(ns.run("nstat -az " + " ".join(names), check=False).stdout)
                      for ns, names in ((lab.srv, server_counts.SERVER_NSTAT), (lab.cli, server_counts.CLIENT_NSTAT))]
                perf.start()
            with QueueSampler(rx_ns, seconds) if queue else contextlib.nullcontext() as sampler:
                mbit, nbytes, retrans, ipc, ips = _iperf(lab, lab.srv, lab.cli, seconds, reverse, congestion,
                                               {server_cpu} if layout == "two-hosts" and server_cpu is not None else None)
            if sampler is not None:
                print(sampler.summary(), flush=True)
            per_mb: dict = {}
            if counts:
                sc = perf.stop()
                n1 = [server_counts.parse_nstat(ns.run("nstat -az " + " ".join(names), check=False).stdout)
                      for ns, names in ((lab.srv, server_counts.SERVER_NSTAT), (lab.cli, server_counts.CLIENT_NSTAT))]
                print(server_counts.per_mb_line(f"{server_kind} server's process", sc, nbytes / 1e6), flush=True)
                print(server_counts.per_mb_line("server side's kernel", server_counts.diff(n0[0], n1[0]), nbytes / 1e6), flush=True)
                print(server_counts.per_mb_line("client side's kernel", server_counts.diff(n0[1], n1[1]), nbytes / 1e6), flush=True)
                per_mb = server_counts.merged_per_mb(sc, server_counts.diff(n0[0], n1[0]),
                                                     server_counts.diff(n0[1], n1[1]), nbytes / 1e6)
            c1s, c1c, drops = _cpu(srv), _cpu(cli), _udp_drops(rx_ns) - d0
            if w0 is not None:
                print(_wire(w0, (_link(lab.srv, link), _sched(srv), _sched(cli)), nbytes / 1e6 or float("nan"),
                            time.monotonic() - t0), flush=True)
            costs: dict = {}
            if m0 is not None:
                m1 = (_all_cpu(), _idle(), _children_cpu())
                print(_cpu_map(m0, m1, time.monotonic() - t0), flush=True)
                costs = path_cpu.per_mb(_path_seconds(m0, m1, c1s - c0s, c1c - c0c, ipc, ips, _softirq() - q0),
                                        nbytes / 1e6)
                print("    (cpu us/MB: " + ", ".join(f"{k} {v:.0f}" for k, v in costs.items()) + ")", flush=True)
            if layout != "free" and server_cpu is not None:
                # the iperf run's wall time includes iperf3's start and the JSON; the server's share of
                # its core over that span is a lower bound of its load while bytes flowed
                print(f"    (server on CPU {server_cpu}: {100 * (c1s - c0s) / (time.monotonic() - t0):.0f}% of it "
                      f"over the run)", flush=True)
            print(f"    ({client_kind} client, {server_kind} server: {drops} datagrams dropped at the receiving "
                  f"side's full sockets, {retrans} TCP retransmissions)", flush=True)
            for side, out, sp in spies:
                try:
                    sp.wait(seconds + 30)
                except subprocess.TimeoutExpired:
                    sp.kill()
                    sp.wait(5)
                if out.exists():
                    print(f"  py-spy, our {side} ({out.name}):\n{summarize(out)}")
            mb = nbytes / 1e6 or float("nan")
            return mbit, (c1s - c0s) * 1e6 / mb, (c1c - c0c) * 1e6 / mb, drops / mb, costs, per_mb
        finally:
            cli.stop(8)
    finally:
        srv.stop(8)


def _median_costs(runs: list[dict]) -> dict[str, float]:
    """Each role's median us per MB over the rounds."""
    keys = [k for k in runs[0]] if runs else []
    return {k: statistics.median(c[k] for c in runs if k in c) for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--proto", default="udp", choices=["udp", "tcp"])
    ap.add_argument("--cipher", default="AES-256-GCM")
    ap.add_argument("--only", choices=["client", "server", "server-ovpncli"], default=None)
    ap.add_argument("--reverse", action="store_true", help="server sends, client receives (iperf3 -R)")
    ap.add_argument("--profile", type=Path, default=None, help="record our processes with py-spy into DIR")
    ap.add_argument("--native", action="store_true",
                    help="with --profile: py-spy --native at 500 Hz (C frames too; it pauses the process per sample)")
    ap.add_argument("--server-buf", type=int, default=0, metavar="BYTES",
                    help="OpenVPN's server with sndbuf/rcvbuf BYTES (ours always asks for 4 MiB): shows whether "
                         "its default socket buffer is what limits a pair")
    ap.add_argument("--layout", default="free", choices=LAYOUTS,
                    help="where the processes run: " + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()))
    ap.add_argument("--cpu-map", action="store_true",
                    help="print, per run, the machine's idle share and the processes that used its CPUs")
    ap.add_argument("--congestion", default="", metavar="ALGO",
                    help="the TCP stream's congestion control (iperf3 -C: cubic, bbr); default: the system's")
    ap.add_argument("--wire", action="store_true",
                    help="print, per run, the datagrams on the server's link per MB (each way, mean size) and the "
                         "VPN processes' sleeps, preemptions and run-queue waits")
    ap.add_argument("--ours-gso", type=lambda t: [int(x) for x in t.split(",")], default=None, metavar="N[,N...]",
                    help="measure ours once per value, interleaved, with its GSO runs bounded to N datagrams "
                         "(transport/udp.py MAX_GSO_SEGMENTS; 1: one datagram per send); default: as built")
    ap.add_argument("--queue", action="store_true",
                    help="sample the receiving VPN socket's queue every 2 ms (empty, over half, full shares)")
    ap.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                    help="measure ours also from another checkout's root (holding appliance/, its native modules "
                         "built), interleaved: the same program with PYTHONPATH=DIR, for a before/after")
    ap.add_argument("--server-counts", action="store_true",
                    help="print, per run, the VPN server's system calls and switches per MB (perf stat on its PID) "
                         "and both namespaces' UDP/TCP counters per MB (nstat): datagrams, drops, inner ACKs, "
                         "retransmissions")
    ap.add_argument("--client-tun-gso", type=int, default=0, metavar="BYTES",
                    help="set the client namespace's TUN gso_max_size to BYTES before each iperf3 run (either "
                         "client): the inner TCP's super-packets shrink with it (bbr's cwnd quanta do not: "
                         "mainline bbr sizes them ignoring the device's limit)")
    ap.add_argument("--dev", default="tun", choices=["tun", "tap"],
                    help="the tunnel's device type on both ends: tap measures the layer-2 paths (the tap "
                         "client's frames, the server's switch)")
    a = ap.parse_args(argv)
    if a.ours_gso and not all(1 <= g <= 64 for g in a.ours_gso):
        ap.error("--ours-gso: each value 1..64 (the kernel takes at most 64 segments a send)")
    if a.baseline and not (a.baseline / "appliance").is_dir():
        ap.error(f"--baseline {a.baseline}: no appliance/ there")
    server_cpu = None
    if a.layout != "free":
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            ap.error(f"--layout {a.layout}: needs at least two CPUs")
        server_cpu = max(cpus)
        os.sched_setaffinity(0, cpus - {server_cpu})   # inherited by every process started from here
    if a.profile is not None:
        a.profile.mkdir(parents=True, exist_ok=True)
    pairs = []
    if a.only in (None, "client"):
        pairs.append(("client", ("openvpn", "ours"), ("openvpn", "openvpn")))
    if a.only in (None, "server"):
        pairs.append(("server", ("ours", "ours"), ("openvpn", "openvpn")))
    if a.only == "server-ovpncli":
        pairs.append(("server-ovpncli", ("ours", "openvpn"), ("openvpn", "openvpn")))
    way = "server -> client (download)" if a.reverse else "client -> server (upload)"
    print(f"end-to-end: iperf3 TCP, 1 stream, {way}, {a.seconds} s, {a.proto.upper()} {a.cipher} tls-crypt, "
          f"dev {a.dev}, {a.rounds} alternating rounds; load average {os.getloadavg()[0]:.1f}; layout {a.layout}; TCP congestion "
          f"control {a.congestion or Path('/proc/sys/net/ipv4/tcp_congestion_control').read_text().strip()}"
          + (f" (server side on CPU {server_cpu})" if server_cpu is not None else ""))
    print("  cpu us/MB: CPU time each VPN process spent per MB the receiver got")
    gsos: list[int | None] = a.ours_gso or [None]
    trees: list[Path | None] = [None] + ([a.baseline.resolve()] if a.baseline else [])
    with Lab() as lab:
        results: dict[tuple, list[tuple[float, float, float, float, dict, dict]]] = {}
        for rnd in range(a.rounds):
            for _name, ours, ref in pairs:
                runs = [(ref, None, None)] + [(ours, g, t) for t in trees for g in gsos]
                for (server_kind, client_kind), gso, tree in runs:
                    key = (server_kind, client_kind, gso, tree)
                    if key in results and len(results[key]) > rnd:
                        continue           # OpenVPN⇄OpenVPN is the reference of both pairs
                    with _tree(tree):
                        v = _measure(lab, server_kind, client_kind, a.proto, a.cipher, a.seconds, a.reverse,
                                     a.profile, a.server_buf, a.layout, server_cpu, a.cpu_map, a.congestion, a.wire,
                                     gso, a.queue, dev=a.dev, native=a.native, counts=a.server_counts,
                                     client_tun_gso=a.client_tun_gso)
                    results.setdefault(key, []).append(v)
                    tag = f" gso {gso:>2}" if gso is not None else (" " * 7 if a.ours_gso else "")
                    tag += " base" if tree is not None else ("     " if a.baseline else "")
                    print(f"  {client_kind:>7} client -> {server_kind:>7} server{tag}: {v[0]:8.1f} Mbit/s   "
                          f"cpu us/MB: server {v[1]:6.0f}, client {v[2]:6.0f}   dropped/MB {v[3]:5.0f}", flush=True)
        print(f"\nload average now {os.getloadavg()[0]:.1f}")
        for name, ours, ref in pairs:
            r = results[(ref[0], ref[1], None, None)]
            rm = statistics.median(x[0] for x in r)
            for gso, tree in [(g, t) for t in trees for g in gsos]:
                o = results[(ours[0], ours[1], gso, tree)]
                om = statistics.median(x[0] for x in o)
                what = {"client": "our client  vs OpenVPN client (OpenVPN server)",
                        "server": "our client+server vs OpenVPN client+server",
                        "server-ovpncli": "our server  vs OpenVPN server (OpenVPN client)"}[name]
                if gso is not None:
                    what += f", ours with GSO runs of at most {gso}"
                if tree is not None:
                    what += f", ours from {tree}"
                print(f"{what}: {om:8.1f} vs {rm:8.1f} Mbit/s  ratio {om / rm if rm else float('nan'):.2f}")
                for i, side in ((2, "client"), (1, "server")):
                    if (name, side) in (("client", "server"), ("server-ovpncli", "client")):
                        continue
                    oc, rc = statistics.median(x[i] for x in o), statistics.median(x[i] for x in r)
                    print(f"    {side} CPU per MB: ours {oc:6.0f} us, OpenVPN {rc:6.0f} us  "
                          f"(OpenVPN/ours {rc / oc if oc else float('nan'):.2f})")
                print(f"    datagrams dropped per MB at the receiving side: ours {statistics.median(x[3] for x in o):.0f}, "
                      f"OpenVPN {statistics.median(x[3] for x in r):.0f}")
                if a.server_counts:
                    print(server_counts.medians_table([x[5] for x in r], [x[5] for x in o]))
                if a.cpu_map and name == "client":
                    # the median of each role over the rounds: where the path's CPU goes, and what 1.5x needs
                    print(path_cpu.table(_median_costs([x[4] for x in r]), _median_costs([x[4] for x in o]),
                                         rm, om, cpus=os.cpu_count() or 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
