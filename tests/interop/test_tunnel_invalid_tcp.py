"""A TCP segment from the tunnel that conntrack cannot place gets no answer out of the WAN
(lab/router_lab.py; tests/interop/test_tunnel_spoofed_source.py has the packets conntrack does
place).

The kill switch marks each connection whose first packet came in on the TUN or the LAN
(`mark_inside`), and its output chain drops WAN packets of marked connections. A SYN/ACK or FIN/ACK
that starts nothing is `ct state invalid` to conntrack: no connection, so no mark; the kernel
still answers it with a reset, and that reset is invalid too (no connection either), so only the
output chain's own accepts decide. Over a TCP VPN the one to the server's address and port is
such an accept: whoever can put packets into our tunnel with the server's address as source (the
server, or what it routes to us) made the appliance send resets from its tunnel address, in
clear, out of its WAN -- with 32 bits of the sender's choosing in each (the reset's sequence number
is the segment's acknowledgement number). Checked with scapy from the server's side, into Debian's
OpenVPN server's TUN, against a capture of the WAN.
"""
from __future__ import annotations

import re

import pytest

from lab.attacks import run_py
from lab.router_lab import WAN_SRV, RouterLab, client_profile, server_config

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

CHOSEN_ACK = 0x42424242

SEND = """
import sys
from scapy.all import IP, TCP, send
src, dst, ack = sys.argv[1], sys.argv[2], int(sys.argv[3])
pkts = [IP(src=src, dst=dst) / TCP(sport=1194, dport=p, flags=f, seq=1, ack=ack)
        for f in ("SA", "FA") for p in (9, 22)]
send(pkts, count=3, inter=0.05, verbose=False)
print("sent", len(pkts) * 3)
"""


def wan_packets_from(pcap, source: str) -> list[str]:
    from scapy.all import IP, rdpcap
    return [f"#{i} {p.summary()} seq={p['TCP'].seq:#x}" if p.haslayer("TCP") else f"#{i} {p.summary()}"
            for i, p in enumerate(rdpcap(str(pcap))) if IP in p and p[IP].src == source]


def test_unplaceable_tcp_from_the_tunnel_gets_no_reset_out_of_the_wan():
    with RouterLab() as lab:
        lab.openvpn_server(server_config(lab.pki, proto="tcp", ipv6=False, push_dns=False))
        lab.appliance(lab.appliance_toml(client_profile(lab.pki, proto="tcp")), wait=60)
        out = lab.app.run("ip -o addr show dev tun0").stdout
        m = re.search(r"inet (198\.19\.0\.\d+)/", out)
        assert m, out
        tun4 = m.group(1)
        assert lab.wan.run(f"ping -c 1 -W 3 {tun4}", check=False).returncode == 0   # the path is there
        cap = lab.capture("tunnel-invalid-tcp")
        assert "sent 12" in run_py(lab.wan, SEND, WAN_SRV, tun4, CHOSEN_ACK, timeout=60)
        # the tunnel still works afterwards: the probes ended nothing
        assert lab.wan.run(f"ping -c 1 -W 3 {tun4}", check=False).returncode == 0
        pcap = lab.stop_capture(cap)
        assert wan_packets_from(pcap, tun4) == []
