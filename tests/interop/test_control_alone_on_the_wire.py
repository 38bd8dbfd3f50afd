"""A firewall on the sending host sees every control packet we send, even in a renegotiation under
traffic: our UDP sends batch data packets into GSO super-packets (transport/udp.py), and a GSO
send is one skb for everything before the device cuts it -- the host's own nftables output hook,
tc, a packet socket, a veth into the next namespace -- each judging the whole batch by its first
datagram's bytes. Before, a control packet that went out in the same wake-up as data packets rode
as the tail of their run (lab/gso_batches.py), invisible to a rule such as
`udp dport 1194 @th,64,8 & 0xf8 != 0x48 ...` and missing from its counts. OpenVPN 2.6 sends each
packet with its own call; ours now sends every control packet alone and keeps data runs whole.

Checked both ways against Debian's OpenVPN 2.6 (our server with its client, our client with its
server): our side renegotiates every 2 s while a stream of datagrams crosses the tunnel towards
the peer; an nftables output hook in our namespace counts our packets by their first byte, per
skb, and an input hook in the peer's namespace counts them per datagram (the veth segmenting:
Lab.segment_on_the_wire). Every control packet (count and bytes) the peer received was one skb of
its own on our side, and the data packets still left in batches (fewer skbs than datagrams)."""
from __future__ import annotations

import json
import re

import pytest

from lab.configs import client_profile, server_config
from lab.gso_batches import blast
from lab.netns import TUN_SERVER_IP, Lab

# Named counters of our packets on the VPN port: P_DATA_V2 (first byte 0x48-0x4f, opcode 9) and
# everything else (control, ACK, resets; no P_DATA_V1 here). `{hook}`: output in our namespace,
# input in the peer's; `{match}`: our packets' port.
COUNT = """table inet gso35_count {{
  counter control {{}}
  counter data {{}}
  chain c {{ type filter hook {hook} priority 0; policy accept;
    {match} @th,64,8 & 0xf8 == 0x48 counter name data
    {match} @th,64,8 & 0xf8 != 0x48 counter name control
  }}
}}
"""

SECONDS = 8


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.segment_on_the_wire()         # the peer's input hook: one datagram per skb
        yield lab


def _count(ns, hook: str, match: str, name: str, lab) -> None:
    ns.run(f"nft -f {lab.write(f'count-{name}.nft', COUNT.format(hook=hook, match=match))}")


def _counters(ns) -> dict[str, tuple[int, int]]:
    """{"control": (packets, bytes), "data": (...)} of the gso35_count table, then removed."""
    out = json.loads(ns.run("nft -j list counters table inet gso35_count").stdout)
    ns.run("nft delete table inet gso35_count")
    return {c["name"]: (c["packets"], c["bytes"]) for c in (o["counter"] for o in out["nftables"] if "counter" in o)}


def _blast_and_compare(lab, ours, peer, ours_ns, peer_ns, match: str, dst: str) -> None:
    _count(ours_ns, "output", match, "egress", lab)
    _count(peer_ns, "input", match, "ingress", lab)
    before = peer.log().count("Control Channel:")
    blast(ours_ns, dst, SECONDS)
    # reneg-sec 2 gives ~4 in the blast's 8 s; a loaded machine may finish the second later.
    peer.wait_count("Control Channel:", before + 2, 30)
    renegotiated = peer.log().count("Control Channel:") - before
    ours.stop(10)                        # nothing more leaves: the counters are final
    egress, ingress = _counters(ours_ns), _counters(peer_ns)
    assert renegotiated >= 2, f"{renegotiated} renegotiations under traffic:\n{ours.log()[-2000:]}"
    assert ingress["control"][0] >= 3 * renegotiated, (ingress, renegotiated)
    # Each control datagram the peer got was a packet of its own on our host (same bytes: none
    # carried another datagram along). At least, not equal: the egress counter is set first, and a
    # loaded receiver's veth backlog may drop a datagram before the peer's input hook; a control
    # packet hidden as a data run's tail is the other way round (fewer on our side).
    assert all(e >= i for e, i in zip(egress["control"], ingress["control"])), (egress, ingress)
    # ... and the data still left in GSO batches.
    assert egress["data"][0] < ingress["data"][0], (egress, ingress)
    assert not re.search(r"TLS Error|Authenticate/Decrypt packet error|replay", peer.log()), peer.log()[-3000:]


def test_our_server_sends_each_control_packet_alone_amid_data_batches(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki, "udp", extra="reneg-sec 2\n"), "oursrv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra="reneg-sec 0\n"), "ovpncli", wait=40)
    procs.append(cli)
    tip = lab.cli.run("ip -4 -o addr show dev tun0").stdout.split("inet ", 1)[1].split("/", 1)[0]
    _blast_and_compare(lab, srv, cli, lab.srv, lab.cli, "udp sport 1194", tip)


def test_our_client_sends_each_control_packet_alone_amid_data_batches(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra="reneg-sec 0\n"), "ovpnsrv")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", extra="reneg-sec 2\n"), "ourcli", wait=40)
    procs.append(cli)
    _blast_and_compare(lab, cli, srv, lab.cli, lab.srv, "udp dport 1194", TUN_SERVER_IP)
