"""How long a start takes to be ready, ours beside Debian's OpenVPN 2.6: a server's UDP socket
answering a client's hard reset, a client's first ping through the tunnel.

    python -m lab.startup_time [--rounds 5] [--baseline DIR] [--json]

Why: a config change without SIGHUP, a crash-restart by systemd, a VM's reboot and every interop
test wait for a start; trim45a saw 5-20 s per server start under test load. This measures it as a
user sees it, beside OpenVPN's, in a Lab (lab/netns.py: two namespaces, 198.18.0.0/15).

Rows, per round, in turn (interleaved, so machine noise hits them alike; the order turns each round):
  server-ours / server-ovpn  our server / Debian's openvpn with the same config (UDP port 1195,
                             tls-crypt, a pool, a client-config-dir, management on a Unix socket),
                             ready = the first answer to a tls-crypt hard reset a prober in the
                             client namespace sends every `--probe-ms` from before the exec;
  client-ours / client-ovpn  our client / Debian's client against one server (Debian's, port 1194,
                             running for the whole run), ready = the first ICMP echo answered by
                             the server's tunnel address (the prober sends one every `--probe-ms`);
  server-before / client-before with `--baseline DIR`: DIR's `appliance` (another checkout, e.g.
                             main) run as our program, for a before/after in the same run.
Each row: `ready` = exec -> that moment (ms, CLOCK_MONOTONIC of the prober's receive, shared by
the namespaces), `cpu` = the process's CPU to that moment: every live thread's run time of it and its
descendants (/proc/PID/task/*/schedstat, ns) plus what the children it reaped used (cutime+cstime,
10 ms ticks; neither program has a child at ready now),
`log` = exec -> its start-up log line (OpenVPN's "Initialization Sequence Completed", our server's
"listening on", our client's "tunnel up"; read by polling the log every 5 ms: an upper bound). Printed: median and min-max per row, and the load
average beside each round. Our package is byte-compiled first, as installed.
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
from .netns import SRV_IP, Lab, Proc
from .tools import OPENVPN, OUR_BIN, REPO

SERVER_PORT, CLIENT_SERVER_PORT = 1195, 1194
SERVER_POOL = "198.19.2.0"          # the measured servers' pool: not the client rounds' server's
TUN_SERVER = "198.19.0.1"           # the client rounds' server's tunnel address
# The start-up's log line a user reads: OpenVPN's; ours ("listening on" once its sockets are
# bound; a client's "tunnel up" once its routes are in).
READY_LINE = {"ovpn": "Initialization Sequence Completed", "server": "listening on ", "client": "tunnel up"}

# The prober: runs in the client namespace, imports done before the exec; reads the measured
# process's PID on stdin, then probes until an answer and prints `monotonic-ns cpu-ticks`.
_PROBER = r'''
import os, select, socket, struct, sys, time
kind, host, port, profile, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
deadline = float(sys.argv[6])
def tree_cpu_ns(pid):
    """Run time of every live thread of pid and its descendants (schedstat, ns), plus the
    user+sys of the children they reaped (stat's cutime+cstime: clock ticks)."""
    total, todo, hz = 0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[13]) + int(f[14])) * 10**9 // hz
            for t in os.listdir(f"/proc/{p}/task"):
                total += int(open(f"/proc/{p}/task/{t}/schedstat").read().split()[0])
                todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total
if kind == "server":
    sys.path.insert(0, sys.argv[7])
    from appliance.openvpn.config import load_config
    from appliance.openvpn.session import Session
    from appliance.openvpn.settings import client_session_config
    s = Session(client_session_config(load_config(profile), "udp"), time.monotonic())
    s.start(time.monotonic())
    probe = s.take_outgoing()[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    def icmp(seq):
        h = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"startup!"
        c = sum(struct.unpack("!%dH" % (len(h) // 2), h))
        c = (c >> 16) + (c & 0xFFFF); c = ~(c + (c >> 16)) & 0xFFFF
        return h[:2] + struct.pack("!H", c) + h[4:]
sock.setblocking(False)
print("armed", flush=True)
pid = int(sys.stdin.readline())
end, seq = time.monotonic() + deadline, 0
while time.monotonic() < end:
    seq += 1
    try:
        if kind == "server":
            sock.send(probe)
        else:
            sock.sendto(icmp(seq & 0xFFFF), (host, 0))
    except OSError:
        pass
    t_next = time.monotonic() + every
    while (left := t_next - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            data, src = sock.recvfrom(65536)
        except OSError:
            continue                       # ICMP port unreachable on the connected socket: not up yet
        if kind == "client":               # an echo reply (type 0) to us, from the tunnel's far end
            ihl = (data[0] & 15) * 4
            if src[0] != host or data[ihl] != 0 or struct.unpack("!H", data[ihl + 4:ihl + 6])[0] != ident:
                continue
        print(time.monotonic_ns(), tree_cpu_ns(pid), flush=True)
        sys.exit(0)
print("timeout", flush=True)
'''


def _program(kind: str, baseline: str | None) -> list[str]:
    if kind == "ovpn":
        return [OPENVPN, "--config"]
    if kind == "before":
        return [sys.executable, "-c", _BASELINE, str(baseline)]
    return [OUR_BIN, "run"]


class StartupLab:
    """One Lab for the whole run: a persistent Debian server for the client rows, configs written once."""

    def __init__(self, lab: Lab, probe_s: float, timeout_s: float, baseline: str | None) -> None:
        self.lab, self.probe_s, self.timeout_s, self.baseline = lab, probe_s, timeout_s, baseline
        pki = lab.pki
        ccd = lab.tmp / "ccd"
        ccd.mkdir(exist_ok=True)
        (ccd / "client1").write_text("push \"route 198.18.50.0 255.255.255.0\"\n")
        extra = f"client-config-dir {ccd}\nmanagement {lab.tmp}/mgmt.sock unix\n"
        text = server_config(pki, port=SERVER_PORT, extra=extra).replace(
            "server 198.19.0.0 ", f"server {SERVER_POOL} ")
        self.server_cfg = lab.write("measured-server.conf", text)
        self.client_cfg = lab.write("client.ovpn", client_profile(pki))
        self.probe_cfg = lab.write("probe.ovpn", client_profile(pki, remotes=[(SRV_IP, SERVER_PORT, "udp")]))
        lab.openvpn(lab.srv, server_config(pki), "ovpn-server")      # the client rows' server

    def once(self, row: str) -> dict:
        role, kind = row.split("-")
        ns = self.lab.srv if role == "server" else self.lab.cli
        cfg = self.server_cfg if role == "server" else self.client_cfg
        host, port = (SRV_IP, SERVER_PORT) if role == "server" else (TUN_SERVER, 0)
        root = self.baseline if kind == "before" else str(REPO)
        prober = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.cli.name, sys.executable, "-c", _PROBER, role, host, str(port),
             str(self.probe_cfg), str(self.probe_s), str(self.timeout_s), root],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started: list[Proc] = []        # the measured process, stopped even when the round fails midway
        try:
            assert prober.stdout.readline().strip() == "armed", "prober did not start"
            (self.lab.tmp / "mgmt.sock").unlink(missing_ok=True)
            load = os.getloadavg()[0]
            t0 = time.monotonic_ns()
            p = Proc(ns, [*_program(kind, self.baseline), str(cfg)], self.lab.tmp / f"{row}-{t0}.log")
            prober.stdin.write(f"{p.p.pid}\n")
            prober.stdin.flush()
            started.append(p)
            log_ms, line = None, READY_LINE["ovpn" if kind == "ovpn" else role]
            while prober.poll() is None and time.monotonic_ns() - t0 < self.timeout_s * 1e9:
                if log_ms is None and line in p.log():
                    log_ms = (time.monotonic_ns() - t0) / 1e6
                time.sleep(0.005)
            out = prober.stdout.read().split()
            if log_ms is None:
                end = time.monotonic() + 10
                while log_ms is None and time.monotonic() < end and p.alive():
                    if line in p.log():
                        log_ms = (time.monotonic_ns() - t0) / 1e6
                    time.sleep(0.005)
            p.stop_promptly()
            if len(out) != 2:
                raise RuntimeError(f"{row}: no answer within {self.timeout_s} s:\n{p.log()[-2000:]}")
            return {"row": row, "ready_ms": round((int(out[0]) - t0) / 1e6, 1),
                    "cpu_ms": round(int(out[1]) / 1e6, 1), "log_ms": round(log_ms, 1) if log_ms else None,
                    "load": round(load, 2)}
        finally:
            for q in started:
                if q.alive():
                    q.stop_promptly()
            if prober.poll() is None:
                prober.kill()
                prober.wait(5)


def _summary(rows: list[dict]) -> str:
    out = [f"{'row':15} {'n':>2}  {'ready ms median (min-max)':>28}  {'cpu ms median (min-max)':>26}  "
           f"{'log line ms':>11}"]
    for name in dict.fromkeys(r["row"] for r in rows):
        rs = [r for r in rows if r["row"] == name]

        def col(k: str) -> str:
            v = [r[k] for r in rs if r[k] is not None]
            return f"{statistics.median(v):7.0f} ({min(v):.0f}-{max(v):.0f})" if v else "-"
        out.append(f"{name:15} {len(rs):>2}  {col('ready_ms'):>28}  {col('cpu_ms'):>26}  {col('log_ms'):>11}")
    loads = [r["load"] for r in rows]
    out.append(f"load average (1 min) beside the rounds: {min(loads):.1f}-{max(loads):.1f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.startup_time", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--probe-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a start may take before the run fails")
    ap.add_argument("--rows", default="server-ours,server-ovpn,client-ours,client-ovpn")
    ap.add_argument("--baseline", default=None, help="another checkout's directory: adds server-before, client-before")
    ap.add_argument("--json", action="store_true", help="print every measurement as a JSON line too")
    a = ap.parse_args(argv)
    rows = a.rows.split(",")
    if a.baseline:
        rows += [f"{role}-before" for role in dict.fromkeys(r.split("-")[0] for r in rows)
                 if f"{role}-before" not in rows]
    for root in [REPO] + ([Path(a.baseline)] if a.baseline else []):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "appliance")], check=False,
                       stdout=subprocess.DEVNULL)
    results: list[dict] = []
    with Lab() as lab:
        sl = StartupLab(lab, a.probe_ms / 1000, a.timeout, a.baseline)
        for n in range(a.rounds):
            order = rows if n % 2 == 0 else rows[::-1]
            for row in order:
                r = sl.once(row)
                results.append(r)
                if a.json:
                    print(json.dumps(r), flush=True)
    print(_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
