"""Do our GSO batches lose anything for a real peer? Our server (UDP) sends runs of equal-size
data packets in one sendmsg (transport/udp.py); OpenVPN 2.6 sends each datagram with its own
call. Until the thirty-fifth session a control packet went in the same run as data packets when
both left in one wake-up (as the run's short tail, or at its head when it was the longest); now
each control packet leaves alone (`mixed` below stays 0). Here Debian's OpenVPN 2.6 is the client, our
server renegotiates every 2 s while a stream of datagrams goes through the tunnel to the client,
and a packet socket on the client's veth (PACKET_VNET_HDR: the skb's gso_size) shows each skb the
veth hands over, cut into its datagrams. Prints, asserts nothing:

    sudo .venv/bin/python -m lab.gso_batches [--seconds 14] [--rounds 3]

  skbs / gso        skbs from the server's port, and those that were GSO batches
  mixed             batches holding control and data packets; control_in_batch: their control packets
  datagrams         datagrams in those skbs; delivered: UDP datagrams the client namespace's kernel
                    delivered (or dropped as errors) meanwhile (/proc/net/snmp), OpenVPN's socket
                    being the only UDP socket there: equal (+- a packet at the edges) when every
                    datagram of every batch reached it
  renegotiations    handshakes OpenVPN's client completed ("Control Channel:"), and its log lines
                    about lost or garbled packets (none expected)

Seen (Linux 6.18, OpenVPN 2.6.14; before the change: a mixed batch or two per round):
delivered == datagrams exactly, every renegotiation completed, no error line: OpenVPN's socket
(no UDP_GRO) gets each datagram of a batch on its own, the same bytes separate sends would have
put on the wire. What a batch did fool is a filter judging the skb by its first bytes on the
sending host or across a veth (tests/interop/test_control_alone_on_the_wire.py); for data
packets it still does (Lab.segment_on_the_wire).
"""
from __future__ import annotations

import argparse
import json
import re
import sys

from lab.configs import client_profile, server_config
from lab.netns import Lab

# What the client namespace's veth receives from the server's port 1194, one skb at a time: the
# opcodes of its datagrams (a GSO skb cut by its gso_size). Ends by itself after `seconds`.
_WATCH = r"""
import json, select, socket, struct, sys, time
dev, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.setsockopt(263, 15, 1)                     # SOL_PACKET, PACKET_VNET_HDR: the skb's GSO size too
s.bind((dev, 0x0800))
def udp_in():
    rows = [ln.split() for ln in open("/proc/net/snmp") if ln.startswith("Udp:")]
    d = dict(zip(rows[0][1:], map(int, rows[1][1:])))
    return d["InDatagrams"] + d["InErrors"]
first = udp_in()
print("watching", flush=True)
skbs = gso = mixed = control_in_batch = datagrams = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    if not select.select([s], [], [], 0.2)[0]:
        continue
    buf, addr = s.recvfrom(70000)
    if addr[2] == socket.PACKET_OUTGOING or len(buf) < 10 + 14 + 20 + 8:
        continue
    gso_type, gso_size = buf[1], struct.unpack_from("=H", buf, 4)[0]
    ip = buf[10 + 14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17 or struct.unpack_from("!H", ip, ihl)[0] != 1194:
        continue
    payload = ip[ihl + 8:]
    size = gso_size if gso_type and gso_size else len(payload)
    ops = [payload[i] >> 3 for i in range(0, len(payload), size)]
    skbs += 1
    datagrams += len(ops)
    if len(ops) > 1:
        gso += 1
        ctl = sum(op not in (6, 9) for op in ops)
        if ctl and ctl < len(ops):
            mixed += 1
            control_in_batch += ctl
print(json.dumps({"delivered": udp_in() - first, "skbs": skbs, "gso": gso, "mixed": mixed, "control_in_batch": control_in_batch,
                  "datagrams": datagrams}), flush=True)
"""

# Bursts of datagrams through the tunnel towards the peer's side (nobody listens there: the peer's
# kernel drops them once OpenVPN wrote them to its TUN): our side reads them from its TUN in
# batches and sends each batch as GSO runs. Run by blast().
_BLAST = r"""
import socket, sys, time
dst, seconds = sys.argv[1], float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(16):
        try:
            u.sendto(b"x" * 1000, (dst, 9))
        except OSError:
            pass
    time.sleep(0.005)
"""


def blast(ns, dst: str, seconds: float) -> None:
    """Datagrams from namespace `ns` to `dst` (a tunnel address on the peer's side) for `seconds`,
    in bursts of 16 (_BLAST); returns when they are all sent. Also used by
    tests/interop/test_control_alone_on_the_wire.py."""
    ns.run(f"{sys.executable} -c '{_BLAST}' {dst} {seconds}", timeout=seconds + 60)


ERRORS = re.compile(r"out of sync|TLS Error|Authenticate/Decrypt packet error|bad source address|"
                    r"replay|SIGUSR1|SIGHUP|restarting")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=14)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with Lab() as lab:
        srv = lab.ours(lab.srv, server_config(lab.pki, "udp", extra="reneg-sec 2\n"), "oursrv",
                       pattern=r"listening on UDP")
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra="reneg-sec 0\n"), "ovpncli", wait=40)
        tip = lab.cli.run("ip -4 -o addr show dev tun0").stdout.split("inet ", 1)[1].split("/", 1)[0]
        for r in range(a.rounds):
            watch = lab.start(lab.cli, [sys.executable, "-c", _WATCH, f"vb{lab.tag}", str(a.seconds + 2)],
                              f"gsowatch-{r}")
            if not watch.wait_for("watching", 20):
                raise RuntimeError("the watcher did not start:\n" + watch.log())
            before = cli.log().count("Control Channel:")
            blast(lab.srv, tip, a.seconds)
            watch.exit_within(30)
            seen = json.loads(watch.log().strip().splitlines()[-1])
            bad = [ln for ln in cli.log().splitlines() if ERRORS.search(ln)]
            print(f"round {r + 1}: {seen}; renegotiations {cli.log().count('Control Channel:') - before}, "
                  f"OpenVPN's error lines {len(bad)}", flush=True)
            for ln in bad[:10]:
                print("   ", ln)
        cli.stop(5)
        srv.stop(5)


if __name__ == "__main__":
    main()
