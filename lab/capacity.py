"""Server capacity, ours against Debian's OpenVPN 2.6 in the same run: connected clients, handshake
rate and CPU per handshake, RSS with no client and per idle client, and handshake-to-first-packet
time for each control-channel protection.

    python -m lab.capacity [--clients 1000] [--repeat 1] [--concurrency 64] [--sources 64]
                           [--baseline DIR]   (DIR/appliance: an older version, as server "before")

How (the same for both servers): the two-namespace lab (lab/netns.py), one PKI, the same server
config text (AES-256-GCM negotiated, tls-crypt for the capacity rows), with only generous limits
added so they are not what is measured: `duplicate-cn` (every generated client uses client1's
certificate), a /20 pool, `max-clients`, `connect-freq` and `connect-freq-initial` high. The load
generator (lab/loadgen.py, one process) runs in the client namespace, spread over `--sources`
source addresses, so our server's per-source cap on handshakes in progress (8) is not reached;
our total cap (256) is above `--concurrency`. Server figures come from /proc/PID of the server
process: VmRSS and utime+stime, read before and after. Both servers run one at a time,
alternating, on the same machine; `uptime` is printed since other work shares it.

Which side limited the handshake rate: the table shows the server's and the generator's CPU-ms
per handshake; the side whose CPU-seconds over the ramp approach the ramp's wall time was the
bottleneck (one core each).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .configs import client_profile, server_config
from .netns import SRV_IP, Lab, Proc
from .tools import REPO

PROTECTIONS = ("none", "tls-auth", "tls-crypt", "tls-crypt-v2")
LIMITS = ("duplicate-cn\nmax-clients 4000\nconnect-freq 100000 10\nconnect-freq-initial 100000 10\n")

# Run another checkout's server: that directory's `appliance` first, not this venv's editable one.
_BASELINE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
             "(getattr(f, '__module__', '') or type(f).__module__)]; sys.path.insert(0, sys.argv[1]); "
             "from appliance.cli import main; sys.exit(main(['run', sys.argv[2]]))")


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, sources: int, baseline: str | None = None, groups: str | None = "X25519") -> None:
        self.baseline = baseline          # another checkout's `appliance` package: server kind "before"
        self.lab = Lab()
        # The TLS key-exchange groups the generator offers. Debian 12's OpenVPN links OpenSSL 3.0
        # (X25519), our server the OpenSSL 4 inside `cryptography`, which prefers the hybrid
        # post-quantum X25519MLKEM768 (bigger key shares, more CPU). Offering X25519 only makes
        # both servers do the same TLS work; None: OpenSSL's defaults.
        self.env = dict(os.environ)
        if groups:
            cnf = self.lab.write("groups.cnf", "openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n"
                                               f"[d]\nGroups = {groups}\n")
            self.env["OPENSSL_CONF"] = str(cnf)
        dev = f"vb{self.lab.tag}"
        self.sources = [f"198.18.0.{10 + i}" for i in range(sources)]
        cmds = " && ".join(f"ip addr add {a}/24 dev {dev}" for a in self.sources)
        self.lab.cli.run(cmds, timeout=60)
        self.n = 0

    def server(self, kind: str, protection: str) -> Proc:
        cfg = server_config(self.lab.pki, "udp", protection=protection, extra=LIMITS)
        cfg = cfg.replace("server 198.19.0.0 255.255.255.0", "server 198.19.0.0 255.255.240.0")
        cfg = cfg.replace("keepalive 5 30", "keepalive 10 120")
        self.n += 1
        name = f"{kind}-{protection}-{self.n}"
        if kind == "ours":
            return self.lab.ours(self.lab.srv, cfg, name, pattern=r"listening on UDP", wait=30)
        if kind == "before":
            path = self.lab.write(f"{name}.ovpn", cfg)
            p = self.lab.start(self.lab.srv, [sys.executable, "-c", _BASELINE, str(self.baseline), str(path)], name)
            if not p.wait_for(r"listening on UDP", 30):
                raise AssertionError(f"baseline server did not start:\n{p.log()[-3000:]}")
            return p
        return self.lab.openvpn(self.lab.srv, cfg, name, wait=30)

    def stop(self, p: Proc) -> None:
        p.stop(10)
        self.lab.procs.remove(p)

    def loadgen(self, protection: str, clients: int, concurrency: int, hold: bool,
                on_ready=None, duration: float = 600) -> dict:
        """Run the generator in the client namespace; `on_ready(ready_summary)` runs while the
        sessions are held (hold=True). Returns the final summary (with `ready` when held)."""
        prof = self.lab.write(f"lg-{protection}.ovpn", client_profile(self.lab.pki, "udp", protection=protection))
        argv = ["ip", "netns", "exec", self.lab.cli.name, sys.executable, "-m", "lab.loadgen", str(prof),
                "--clients", str(clients), "--concurrency", str(concurrency), "--json",
                "--duration", str(duration), *sum((["--source", a] for a in self.sources), [])]
        if hold:
            argv.append("--hold")
        p = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env)
        out: dict = {}
        try:
            assert p.stdout is not None and p.stdin is not None
            for line in p.stdout:
                if line.startswith("READY "):
                    out["ready"] = json.loads(line[6:])
                    if on_ready is not None:
                        on_ready(out["ready"])
                    p.stdin.write("\n")
                    p.stdin.flush()
                elif line.startswith("RESULT "):
                    out.update(json.loads(line[7:]))
            p.wait(60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        return out

    def capacity(self, kind: str, clients: int, concurrency: int, idle_wait: float) -> dict:
        srv = self.server(kind, "tls-crypt")
        pid = srv.p.pid
        try:
            time.sleep(2)
            rss0, cpu0 = proc_rss_kb(pid), proc_cpu_s(pid)
            t0 = time.monotonic()
            held: dict = {}

            def measure(ready: dict) -> None:
                held["cpu_ramp"] = proc_cpu_s(pid) - cpu0
                held["wall_ramp"] = time.monotonic() - t0
                time.sleep(idle_wait)        # idle: only keepalives
                held["rss"] = proc_rss_kb(pid)
                held["alive"] = srv.alive()

            r = self.loadgen("tls-crypt", clients, concurrency, hold=True, on_ready=measure)
            ready = r.get("ready", {})
            n = ready.get("connected", 0)
            return {
                "server": kind, "clients": clients, "connected": n, "traffic_ok": ready.get("traffic_ok", 0),
                "held": r.get("held", 0), "failures": ready.get("failures", {}),
                "handshakes_per_s": ready.get("handshakes_per_s"),
                "connect_p50_ms": ready.get("connect_p50_ms"), "connect_p99_ms": ready.get("connect_p99_ms"),
                "srv_cpu_ms_per_hs": round(held.get("cpu_ramp", 0) / n * 1000, 2) if n else None,
                "srv_cpu_share": round(held.get("cpu_ramp", 0) / held["wall_ramp"], 2) if held.get("wall_ramp") else None,
                "gen_cpu_ms_per_hs": ready.get("gen_cpu_ms_per_handshake"),
                "gen_cpu_share": round(ready.get("gen_cpu_s", 0) / held["wall_ramp"], 2) if held.get("wall_ramp") else None,
                "rss0_mb": round(rss0 / 1024, 1),
                "rss_n_mb": round(held.get("rss", 0) / 1024, 1),
                "rss_per_client_kb": round((held.get("rss", 0) - rss0) / n, 1) if n else None,
                "server_alive": held.get("alive"),
            }
        finally:
            self.stop(srv)

    def first_packet(self, kind: str, protection: str, n: int) -> dict:
        """One session at a time against an idle server: time from the first packet sent to the
        first answered ping, and to TunnelUp."""
        srv = self.server(kind, protection)
        try:
            time.sleep(1)
            r = self.loadgen(protection, n, 1, hold=False, duration=120)
            return {"server": kind, "protection": protection, "ok": r.get("traffic_ok", 0), "n": n,
                    "first_packet_p50_ms": r.get("first_packet_p50_ms"),
                    "first_packet_p99_ms": r.get("first_packet_p99_ms"),
                    "connect_p50_ms": r.get("connect_p50_ms"), "failures": r.get("failures", {})}
        finally:
            self.stop(srv)

    def close(self) -> None:
        self.lab.close()


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def print_capacity(rows: list[dict]) -> None:
    cols = [("server", 8), ("connected", 9), ("traffic_ok", 10), ("handshakes_per_s", 8), ("connect_p50_ms", 8),
            ("connect_p99_ms", 8), ("srv_cpu_ms_per_hs", 9), ("srv_cpu_share", 7), ("gen_cpu_ms_per_hs", 9),
            ("gen_cpu_share", 7), ("rss0_mb", 7), ("rss_n_mb", 8), ("rss_per_client_kb", 9)]
    heads = ["server", "connected", "ping ok", "hs/s", "p50 ms", "p99 ms", "srv ms/hs", "srv cpu",
             "gen ms/hs", "gen cpu", "RSS0 MB", "RSSn MB", "KB/client"]
    print("  ".join(h.rjust(w) for h, (_, w) in zip(heads, cols)))
    for r in rows:
        print("  ".join(str(r.get(k)).rjust(w) for k, w in cols)
              + (f"  failures {r['failures']}" if r.get("failures") else ""))


def print_first_packet(rows: list[dict]) -> None:
    print(f"{'protection':>13}  {'server':>8}  {'ok':>5}  {'first pkt p50 ms':>16}  {'p99 ms':>7}  {'connect p50 ms':>14}")
    for r in rows:
        print(f"{r['protection']:>13}  {r['server']:>8}  {r['ok']:>2}/{r['n']:<2}  {str(r['first_packet_p50_ms']):>16}  "
              f"{str(r['first_packet_p99_ms']):>7}  {str(r['connect_p50_ms']):>14}"
              + (f"  failures {r['failures']}" if r.get("failures") else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sources", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--idle-wait", type=float, default=5.0, help="seconds idle before reading RSS")
    ap.add_argument("--first-packet", type=int, default=20, help="sessions per protection (0: skip)")
    ap.add_argument("--servers", default="ours,openvpn")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--tls-groups", default="X25519",
                    help="TLS groups the generator offers (X25519: what Debian 12's OpenVPN can do; "
                         "'default': OpenSSL's, hybrid post-quantum first between our ends)")
    ap.add_argument("--baseline", default=None,
                    help="directory holding another version's `appliance` package: adds server kind 'before'")
    a = ap.parse_args(argv)
    kinds = a.servers.split(",")
    if a.baseline and "before" not in kinds:
        kinds.insert(0, "before")
    b = Bench(a.sources, a.baseline, None if a.tls_groups == "default" else a.tls_groups)
    cap, fp = [], []
    try:
        print("load before:", _uptime(), flush=True)
        for _ in range(a.repeat):
            for kind in kinds:
                cap.append(b.capacity(kind, a.clients, a.concurrency, a.idle_wait))
                print(json.dumps(cap[-1]), flush=True)
        if a.first_packet:
            for _ in range(a.repeat):
                for prot in PROTECTIONS:
                    for kind in kinds:
                        fp.append(b.first_packet(kind, prot, a.first_packet))
                        print(json.dumps(fp[-1]), flush=True)
        print("load after:", _uptime(), flush=True)
    finally:
        b.close()
    print(f"\nCapacity: {a.clients} clients, UDP, tls-crypt, AES-256-GCM, TLS groups {a.tls_groups}, "
          f"{a.concurrency} handshakes at once from {a.sources} source addresses")
    print_capacity(cap)
    if fp:
        print(f"\nHandshake to first answered ping (one session at a time, {a.first_packet} each)")
        print_first_packet(fp)
    if a.json:
        Path(a.json).write_text(json.dumps({"capacity": cap, "first_packet": fp}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
