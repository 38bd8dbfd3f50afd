"""`shaper N` as the link sees it: an iperf3 TCP stream from the client through the tunnel, our
client and Debian's OpenVPN 2.6 client in turn with the same profile against Debian's server,
and a capture of the client's datagrams at the server's veth.

    python -m lab.shaper_bursts [--rates 20000,200000,1000000] [--seconds 8]

Printed per rate and client: iperf3's received payload (B/s), the wire's bytes a second over the
capture, and the most bytes in any 10 ms and any 100 ms (a sliding window) -- what a slow uplink
behind the shaper would have to queue at once. A GSO send counts at its one timestamp, as its
segments leave back to back on a real NIC. Traffic stays inside the lab's two namespaces.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, TUN_SERVER_IP, Lab


def datagrams(text: str) -> list[tuple[float, int]]:
    """(time, UDP length) of each line `tcpdump -tt -n` printed ("... UDP, length N")."""
    out = []
    for line in text.splitlines():
        head, _, length = line.rpartition("length ")
        if "UDP" in head and length.strip().isdigit():
            out.append((float(head.split()[0]), int(length)))
    return out


def most_in(sent: list[tuple[float, int]], span: float) -> int:
    """The most bytes in any `span` seconds of `sent` (a sliding window; times ascending)."""
    best = total = j = 0
    for t, n in sent:
        total += n
        while t - sent[j][0] >= span:
            total -= sent[j][1]
            j += 1
        best = max(best, total)
    return best


def capture(lab: Lab, name: str):
    """tcpdump of the client's datagrams to the server, at the server's veth, once listening."""
    veth = lab.srv.run(f"ip -o addr show to {SRV_IP}").stdout.split()[1]
    cap = lab.start(lab.srv, ["tcpdump", "-i", veth, "-tt", "-n", "-l", "udp and dst port 1194"], name)
    if not cap.wait_for("listening on", 20):
        cap.stop()
        raise RuntimeError(f"tcpdump did not start: {cap.log()[-500:]}")
    return cap


def measure(lab: Lab, who: str, rate: int, seconds: int) -> dict:
    profile = client_profile(lab.pki, extra=f"shaper {rate}\n")
    cli = (lab.openvpn if who == "openvpn" else lab.ours)(lab.cli, profile, f"{who}-{rate}")
    try:
        if not lab.wait_ping(lab.cli, TUN_SERVER_IP):
            raise RuntimeError(f"{who}: no tunnel: {cli.log()[-1000:]}")
        cap = capture(lab, f"cap-{who}-{rate}")
        try:
            payload = lab.iperf(lab.srv, TUN_SERVER_IP, lab.cli, seconds=seconds) * 1e6 / 8
        finally:
            cap.stop()
        sent = datagrams(cap.log())
        span = (sent[-1][0] - sent[0][0]) if len(sent) > 1 else 0.0
        wire = sum(n for _, n in sent) / span if span else 0.0
        return {"payload": payload, "wire": wire, "10ms": most_in(sent, 0.010), "100ms": most_in(sent, 0.100)}
    finally:
        cli.stop_promptly(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="20000,200000,1000000")
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args(argv)
    with Lab(tmp=Path(tempfile.mkdtemp(prefix="shaperbursts-"))) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "srv")
        print(f"{'rate':>8} {'client':>8} {'payload B/s':>12} {'wire B/s':>10} {'max 10ms':>9} {'max 100ms':>10}")
        for rate in (int(r) for r in a.rates.split(",")):
            for who in ("openvpn", "ours"):
                m = measure(lab, who, rate, a.seconds)
                print(f"{rate:>8} {who:>8} {m['payload']:>12,.0f} {m['wire']:>10,.0f} {m['10ms']:>9,} {m['100ms']:>10,}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
