"""Network faults: the tunnel over a bad link, ours against Debian's OpenVPN in the same run.

This kernel has no netem (`modprobe sch_netem`: module not found), so the faults are made by hand:
  loss        nftables on the input hook, `numgen random mod 10 == 0 drop`, in both namespaces, on
              the tunnel's transport packets (UDP or TCP port of the server/relay): 10% each way;
  reorder,    a userspace UDP relay (RELAY below, seeded RNG) in the server namespace between the
  jitter      client and the server (the client's remote is the relay's port): every datagram is
              held 0..50 ms (uniform, order kept), and 25% skip the queue (sent at once, ahead of
              the held ones: netem's `reorder 25%`). UDP transport only: TCP transport reorders
              nothing itself and gets loss only (TCP retransmits under the tunnel).
Scenarios: `loss` (10% loss, no relay: the issue's bar, ours ⇄ ours >= 0.9x OpenVPN ⇄ OpenVPN) and
`all` (10% loss + relay). Each pair runs an iperf3 TCP stream through the tunnel and sends a file
of deterministic bytes checked with SHA-256 on arrival. Pairs: OpenVPN ⇄ OpenVPN, our client ⇄
OpenVPN server, OpenVPN client ⇄ our server, ours ⇄ ours (so both roles of ours).

    python -m lab.reliability.faults [--scenario loss|all|both] [--proto udp|tcp|both] [--file-mb 30]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time

from ..configs import client_profile, server_config
from ..netns import SRV_IP, TUN_SERVER_IP, Lab, Proc
from .fleet import cpu_seconds

RELAY_PORT = 1195

RELAY = r"""
import heapq, random, select, socket, sys, time
lip, lport, uip, uport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
seed, reorder, jitter, life = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]) / 1000, float(sys.argv[8])
rng = random.Random(seed)
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind((lip, lport)); front.setblocking(False)
for s in (front,):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20); s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
up = {}      # client address -> upstream socket
back = {}    # upstream socket -> client address
heap = []; seq = 0; last = {}   # last release time per direction (order kept for the held ones)
n = {"in": 0, "reordered": 0}
print("relaying", flush=True)
end = time.monotonic() + life
while time.monotonic() < end:
    now = time.monotonic()
    wait = max(0.0, min(0.2, heap[0][0] - now)) if heap else 0.2
    r, _, _ = select.select([front, *back], [], [], wait)
    now = time.monotonic()
    for s in r:
        for _ in range(64):
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            if s is front:
                u = up.get(addr)
                if u is None:
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect((uip, uport)); u.setblocking(False)
                    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                    up[addr] = u; back[u] = addr
                out, dst, d = u, None, ("up", addr)
            else:
                out, dst, d = front, back[s], ("down", back[s])
            n["in"] += 1
            if rng.random() < reorder:
                t = now; n["reordered"] += 1
            else:
                t = max(now + rng.uniform(0, jitter), last.get(d, 0.0)); last[d] = t
            seq += 1
            heapq.heappush(heap, (t, seq, out, dst, data))
    now = time.monotonic()
    while heap and heap[0][0] <= now:
        _, _, out, dst, data = heapq.heappop(heap)
        try:
            out.send(data) if dst is None else out.sendto(data, dst)
        except OSError:
            pass
print("relayed", n, flush=True)
"""


def segment_on_the_wire(lab: Lab, on: bool) -> None:
    """Make the veth carry one datagram/segment per skb (`gso_max_segs 1`: the kernel segments UDP
    GSO and TCP TSO batches before the veth), so a rule that drops "1 in 10" drops 1 in 10 packets.
    Without it a GSO batch (our UDP sends: up to 64 datagrams in one skb) crosses the veth as one
    skb and one `numgen` draw drops the whole burst: a harsher fault for whoever batches."""
    lab.segment_on_the_wire(on)


def add_loss(lab: Lab, proto: str, port: int, one_in: int = 10, per_packet: bool = True) -> None:
    """Drop 1 in `one_in` of the tunnel's transport packets arriving at either namespace (input
    hook): the server namespace drops what comes to `port`, the client namespace what comes from it."""
    l4 = "udp" if proto == "udp" else "tcp"
    segment_on_the_wire(lab, per_packet)
    for ns, match in ((lab.srv, f"{l4} dport {port}"), (lab.cli, f"{l4} sport {port}")):
        ns.run("nft add table inet faults")
        ns.run("nft add chain inet faults in '{ type filter hook input priority 0; policy accept; }'")
        ns.run(f"nft add rule inet faults in {match} numgen random mod {one_in} == 0 counter drop")


def remove_loss(lab: Lab) -> None:
    segment_on_the_wire(lab, False)
    for ns in (lab.srv, lab.cli):
        ns.run("nft delete table inet faults", check=False)


def dropped(lab: Lab) -> int:
    total = 0
    for ns in (lab.srv, lab.cli):
        out = ns.run("nft list table inet faults", check=False).stdout
        total += sum(int(x) for x in re.findall(r"counter packets (\d+)", out))
    return total


def measure_pair(lab: Lab, server_kind: str, client_kind: str, proto: str, scenario: str, seconds: int,
                 file_bytes: int, seed: int = 8, per_packet: bool = True, out=print) -> dict:
    """One pair under one scenario: iperf3 Mbit/s, the file's Mbit/s (0 = wrong or missing bytes),
    packets dropped by the rules, CPU seconds of both ends during iperf3."""
    relay = scenario == "all" and proto == "udp"
    port = RELAY_PORT if relay else 1194
    scfg = server_config(lab.pki, proto, "AES-256-GCM", "tls-crypt")
    ccfg = client_profile(lab.pki, proto, "AES-256-GCM", "tls-crypt", remotes=[(SRV_IP, port, proto)])
    started: list[Proc] = []
    res = {"server": server_kind, "client": client_kind, "proto": proto, "scenario": scenario}
    try:
        if relay:
            r = lab.start(lab.srv, [sys.executable, "-c", RELAY, SRV_IP, str(RELAY_PORT), SRV_IP, "1194", str(seed),
                                    "0.25", "50", "900"], "relay")
            started.append(r)
            assert r.wait_for("relaying", 10), r.log()
        srv = (lab.ours(lab.srv, scfg, "f-srv", pattern=r"listening on") if server_kind == "ours"
               else lab.openvpn(lab.srv, scfg, "f-srv"))
        started.append(srv)
        # The handshake on a clean link; the faults start once the tunnel is up.
        cli = (lab.ours(lab.cli, ccfg, "f-cli", wait=40) if client_kind == "ours"
               else lab.openvpn(lab.cli, ccfg, "f-cli", wait=40))
        started.append(cli)
        if not lab.wait_ping(lab.cli, TUN_SERVER_IP, 20):
            raise RuntimeError("tunnel does not carry pings")
        add_loss(lab, proto, port, per_packet=per_packet)
        c0 = (cpu_seconds(srv.p.pid), cpu_seconds(cli.p.pid))
        res["iperf_mbps"] = lab.iperf(lab.srv, TUN_SERVER_IP, lab.cli, seconds,
                                      extra="--connect-timeout 10000")
        c1 = (cpu_seconds(srv.p.pid), cpu_seconds(cli.p.pid))
        res["cpu_srv_s"], res["cpu_cli_s"] = round(c1[0] - c0[0], 1), round(c1[1] - c0[1], 1)
        t0 = time.monotonic()
        res["file_mbps"] = lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, file_bytes, port=5202)
        res["file_s"] = round(time.monotonic() - t0, 1)
        res["file_ok"] = res["file_mbps"] > 0
        res["dropped"] = dropped(lab)
        res["alive"] = srv.alive() and cli.alive()
        for who, p in (("srv", srv), ("cli", cli)):
            if (server_kind if who == "srv" else client_kind) == "ours":
                res[f"{who}_drops"] = "; ".join(re.findall(r"dropped packets: ([^\n]*)", p.log())[-2:])
    finally:
        remove_loss(lab)
        for p in reversed(started):
            p.stop(8)
    out(f"  {scenario:4} {proto.upper()} {client_kind:>7} client -> {server_kind:>7} server: "
        f"iperf3 {res.get('iperf_mbps', 0):7.1f} Mbit/s, file {file_bytes / 1e6:.0f} MB "
        f"{'sha256 ok' if res.get('file_ok') else 'FAILED'} {res.get('file_mbps', 0):6.1f} Mbit/s "
        f"in {res.get('file_s', 0)} s, dropped {res.get('dropped', 0)}, cpu srv/cli "
        f"{res.get('cpu_srv_s')}/{res.get('cpu_cli_s')} s", flush=True)
    return res


PAIRS = [("openvpn", "openvpn"), ("ours", "ours"), ("openvpn", "ours"), ("ours", "openvpn")]


def run(scenarios: list[str], protos: list[str], seconds: int = 10, file_mb: float = 30, file_mb_all: float = 4,
        rounds: int = 1, pairs=PAIRS, per_packet: bool = True, out=print) -> list[dict]:
    results = []
    with Lab() as lab:
        for scenario in scenarios:
            for proto in protos:
                for _ in range(rounds):
                    for server_kind, client_kind in pairs:
                        fb = int((file_mb if scenario == "loss" else file_mb_all) * 1e6)
                        results.append(measure_pair(lab, server_kind, client_kind, proto, scenario, seconds, fb,
                                                    per_packet=per_packet, out=out))
    out("")
    for scenario in scenarios:
        for proto in protos:
            def med(s, c):
                v = [r.get("iperf_mbps", 0) for r in results if r["scenario"] == scenario and r["proto"] == proto
                     and (r["server"], r["client"]) == (s, c)]
                return statistics.median(v) if v else float("nan")
            ref = med("openvpn", "openvpn")
            for s, c in pairs:
                v = med(s, c)
                out(f"{scenario:4} {proto.upper()}: {c:>7} client -> {s:>7} server {v:7.1f} Mbit/s  "
                    f"ratio to OpenVPN<->OpenVPN {v / ref if ref else float('nan'):.2f}")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="both", choices=["loss", "all", "both"])
    ap.add_argument("--proto", default="both", choices=["udp", "tcp", "both"])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--file-mb", type=float, default=30, help="file size under loss only")
    ap.add_argument("--file-mb-all", type=float, default=4, help="file size under all faults (slow: ~1 Mbit/s)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pairs", default="all", choices=["all", "same"], help="same: only ours<->ours and OpenVPN's")
    ap.add_argument("--per-skb", action="store_true",
                    help="leave GSO batches whole on the veth: loss drops whole batches (the old, unfair setup)")
    a = ap.parse_args(argv)
    scen = ["loss", "all"] if a.scenario == "both" else [a.scenario]
    protos = ["udp", "tcp"] if a.proto == "both" else [a.proto]
    res = run(scen, protos, a.seconds, a.file_mb, a.file_mb_all, a.rounds,
              PAIRS if a.pairs == "all" else PAIRS[:2], not a.per_skb, out=lambda *x, **k: print(*x, flush=True))
    return 0 if all(r.get("file_ok") and r.get("iperf_mbps", 0) > 0 for r in res) else 1


if __name__ == "__main__":
    raise SystemExit(main())
