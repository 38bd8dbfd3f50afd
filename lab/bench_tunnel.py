"""`make bench`, end to end: iperf3 (one TCP stream) through the tunnel in namespaces.

Pairs measured in one run, alternating, so machine noise hits both alike:
  client: our client ⇄ OpenVPN server   vs   OpenVPN client ⇄ OpenVPN server
  server: our client ⇄ our server       vs   OpenVPN client ⇄ OpenVPN server
Prints Mbit/s for each round (with the datagrams the receiving side dropped at full sockets and the
sender's TCP retransmissions), the medians and the ratio ours/OpenVPN. `--reverse` measures the
other direction (the server sends), which exercises the opposite halves of both programs.

Why CPU time too: on a shared machine Mbit/s moves with everybody else's load, but the CPU each
VPN process spends per megabyte moved (utime+stime from /proc, over the iperf run) hardly does, so
it is printed beside the rate (`cpu us/MB` for the server and client processes). `--profile DIR`
records each of our processes with py-spy during its run (collapsed stacks in DIR, and the top
functions by own time printed): where the remaining time goes.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from .configs import client_profile, server_config
from .netns import TUN_SERVER_IP, Lab, Netns, Proc

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(p: Proc) -> float:
    """CPU seconds (user + system) the process has used so far (0 once it is gone)."""
    try:
        f = Path(f"/proc/{p.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(f[11]) + int(f[12])) / _TICK


def _udp_drops(ns: Netns) -> int:
    """Datagrams the namespace's kernel dropped because a socket's receive buffer was full."""
    out = ns.run("nstat -az UdpRcvbufErrors Udp6RcvbufErrors", check=False).stdout
    return sum(int(p[1]) for p in (line.split() for line in out.splitlines()) if len(p) >= 2 and p[1].isdigit())


def _iperf(lab: Lab, server_ns: Netns, client_ns: Netns, seconds: int, reverse: bool) -> tuple[float, float, int]:
    """-> (Mbit/s at the receiver, bytes received, TCP retransmissions by the sender)."""
    srv = lab.start(server_ns, ["iperf3", "-s", "-1", "-B", TUN_SERVER_IP, "-p", "5201"], "iperf-s")
    time.sleep(0.4)
    try:
        r = client_ns.run(f"iperf3 -c {TUN_SERVER_IP} -p 5201 -t {seconds} -J {'-R' if reverse else ''}",
                          check=False, timeout=seconds + 30)
        d = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        s = d.get("end", {}).get("sum_received", {})
        return s.get("bits_per_second", 0) / 1e6, s.get("bytes", 0), d.get("end", {}).get("sum_sent", {}).get("retransmits", 0)
    finally:
        srv.stop(3)


def _spy(p: Proc, seconds: int, out: Path) -> subprocess.Popen | None:
    exe = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: no profile)")
        return None
    return subprocess.Popen([exe, "record", "-p", str(p.p.pid), "-d", str(seconds), "-r", "250", "-f", "raw",
                             "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


def _measure(lab: Lab, server_kind: str, client_kind: str, proto: str, cipher: str, seconds: int,
             reverse: bool = False, profile: Path | None = None, server_buf: int = 0) -> tuple[float, float, float]:
    """-> (Mbit/s, server CPU us per MB, client CPU us per MB); prints the receiving namespace's socket
    drops and the sender's TCP retransmissions (loss, not CPU, is what limits a pair with drops)."""
    scfg = server_config(lab.pki, proto, cipher, "tls-crypt",
                         extra=f"sndbuf {server_buf}\nrcvbuf {server_buf}\n" if server_buf and server_kind == "openvpn" else "")
    ccfg = client_profile(lab.pki, proto, cipher, "tls-crypt")
    if server_kind == "ours":
        srv = lab.ours(lab.srv, scfg, "bench-srv", pattern=r"listening on")
    else:
        srv = lab.openvpn(lab.srv, scfg, "bench-srv")
    try:
        cli = lab.ours(lab.cli, ccfg, "bench-cli") if client_kind == "ours" else lab.openvpn(lab.cli, ccfg, "bench-cli")
        try:
            if not lab.wait_ping(lab.cli, TUN_SERVER_IP, 15):
                raise RuntimeError("tunnel does not carry pings")
            spies = []
            if profile is not None:
                tag = f"{'down' if reverse else 'up'}-{proto}-{client_kind}cli-{server_kind}srv"
                for p, kind, side in ((srv, server_kind, "server"), (cli, client_kind, "client")):
                    if kind == "ours":
                        out = profile / f"{tag}-{side}.txt"
                        sp = _spy(p, seconds, out)
                        if sp is not None:
                            spies.append((side, out, sp))
            rx_ns = lab.cli if reverse else lab.srv
            d0, c0s, c0c = _udp_drops(rx_ns), _cpu(srv), _cpu(cli)
            mbit, nbytes, retrans = _iperf(lab, lab.srv, lab.cli, seconds, reverse)
            c1s, c1c, drops = _cpu(srv), _cpu(cli), _udp_drops(rx_ns) - d0
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
            return mbit, (c1s - c0s) * 1e6 / mb, (c1c - c0c) * 1e6 / mb
        finally:
            cli.stop(8)
    finally:
        srv.stop(8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--proto", default="udp", choices=["udp", "tcp"])
    ap.add_argument("--cipher", default="AES-256-GCM")
    ap.add_argument("--only", choices=["client", "server"], default=None)
    ap.add_argument("--reverse", action="store_true", help="server sends, client receives (iperf3 -R)")
    ap.add_argument("--profile", type=Path, default=None, help="record our processes with py-spy into DIR")
    ap.add_argument("--server-buf", type=int, default=0, metavar="BYTES",
                    help="OpenVPN's server with sndbuf/rcvbuf BYTES (ours always asks for 4 MiB): shows whether "
                         "its default socket buffer is what limits a pair")
    a = ap.parse_args(argv)
    if a.profile is not None:
        a.profile.mkdir(parents=True, exist_ok=True)
    pairs = []
    if a.only in (None, "client"):
        pairs.append(("client", ("openvpn", "ours"), ("openvpn", "openvpn")))
    if a.only in (None, "server"):
        pairs.append(("server", ("ours", "ours"), ("openvpn", "openvpn")))
    way = "server -> client (download)" if a.reverse else "client -> server (upload)"
    print(f"end-to-end: iperf3 TCP, 1 stream, {way}, {a.seconds} s, {a.proto.upper()} {a.cipher} tls-crypt, "
          f"{a.rounds} alternating rounds; load average {os.getloadavg()[0]:.1f}")
    print("  cpu us/MB: CPU time each VPN process spent per MB the receiver got")
    with Lab() as lab:
        results: dict[tuple, list[tuple[float, float, float]]] = {}
        for rnd in range(a.rounds):
            for _name, ours, ref in pairs:
                for server_kind, client_kind in (ref, ours):
                    key = (server_kind, client_kind)
                    if key in results and len(results[key]) > rnd:
                        continue           # OpenVPN⇄OpenVPN is the reference of both pairs
                    v = _measure(lab, server_kind, client_kind, a.proto, a.cipher, a.seconds, a.reverse,
                                 a.profile, a.server_buf)
                    results.setdefault(key, []).append(v)
                    print(f"  {client_kind:>7} client -> {server_kind:>7} server: {v[0]:8.1f} Mbit/s   "
                          f"cpu us/MB: server {v[1]:6.0f}, client {v[2]:6.0f}", flush=True)
        print(f"\nload average now {os.getloadavg()[0]:.1f}")
        for name, ours, ref in pairs:
            o, r = results[(ours[0], ours[1])], results[(ref[0], ref[1])]
            om, rm = statistics.median(x[0] for x in o), statistics.median(x[0] for x in r)
            what = "our client  vs OpenVPN client (OpenVPN server)" if name == "client" else \
                "our client+server vs OpenVPN client+server"
            print(f"{what}: {om:8.1f} vs {rm:8.1f} Mbit/s  ratio {om / rm if rm else float('nan'):.2f}")
            for i, side in ((2, "client"), (1, "server")):
                if name == "client" and side == "server":
                    continue
                oc, rc = statistics.median(x[i] for x in o), statistics.median(x[i] for x in r)
                print(f"    {side} CPU per MB: ours {oc:6.0f} us, OpenVPN {rc:6.0f} us  "
                      f"(OpenVPN/ours {rc / oc if oc else float('nan'):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
