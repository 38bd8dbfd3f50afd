"""`route-gateway dhcp` on a tap client (openvpn/dhcprouter.py): the Router option padded out of a
server's DHCP OFFER/ACK, the UDP checksum right again, an ACK's router read -- as OpenVPN 2.6's
dhcp.c -- and hostile frames never raising, growing or being changed when they are no DHCP reply."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from appliance.openvpn.dhcprouter import extract_router


def reply(kind: str = "ack", routers=("198.19.1.1",), vlan: bool = False, sport: int = 67, op: int = 2,
          extra=()) -> bytes:
    opts = [("message-type", kind), ("server_id", "198.19.1.1"), ("subnet_mask", "255.255.255.0")]
    if routers:
        opts.append(("router", *routers))
    opts += [*extra, ("lease_time", 3600), "end"]
    l2 = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
    if vlan:
        l2 = l2 / Dot1Q(vlan=5)
    return bytes(l2 / IP(src="198.19.1.1", dst="198.19.1.100") / UDP(sport=sport, dport=68)
                 / BOOTP(op=op, yiaddr="198.19.1.100", chaddr=b"\x02\0\0\0\0\x02") / DHCP(options=opts))


def options(frame: bytes) -> list:
    return [o for o in Ether(frame)[DHCP].options if isinstance(o, tuple)]


def checksum_ok(frame: bytes) -> bool:
    udp = Ether(frame)[UDP]
    got = udp.chksum
    del udp.chksum
    return UDP(bytes(udp)).chksum == got


def test_ack_router_read_and_padded_out():
    out, router = extract_router(reply("ack"))
    assert router == "198.19.1.1"
    names = [o[0] for o in options(out)]
    assert "router" not in names and names[:3] == ["message-type", "server_id", "subnet_mask"]
    assert "lease_time" in names              # what followed moved down over it
    assert len(out) == len(reply("ack")) and checksum_ok(out)


def test_offer_padded_out_but_no_router_taken():
    out, router = extract_router(reply("offer"))
    assert router is None and "router" not in [o[0] for o in options(out)] and checksum_ok(out)


def test_first_of_several_routers_every_router_option_removed():
    f = reply("ack", routers=("198.19.1.254", "198.19.1.253"), extra=[("router", "10.0.0.1")])
    out, router = extract_router(f)
    assert router == "198.19.1.254"
    assert "router" not in [o[0] for o in options(out)] and checksum_ok(out)


def test_behind_an_8021q_tag():
    out, router = extract_router(reply("ack", vlan=True))
    assert router == "198.19.1.1" and checksum_ok(out)


def test_not_a_server_reply_is_left_alone():
    for f in (reply("request"), reply("nak"), reply("ack", sport=1067), reply("ack", op=1)):
        out, router = extract_router(f)
        assert out is f and router is None


def test_ack_without_router():
    out, router = extract_router(reply("ack", routers=()))
    assert router is None and checksum_ok(out)


def test_truncated_udp_length_is_left_alone():
    f = bytearray(reply("ack"))
    f[14 + 20 + 4:14 + 20 + 6] = (len(f) + 100).to_bytes(2, "big")     # UDP length past the frame
    out, router = extract_router(bytes(f))
    assert router is None and out == bytes(f)


_ACK_HEAD = reply("ack")[:14 + 20 + 8 + 240] + bytes((53, 1, 5))     # an ACK's headers, then anything


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 60))
def test_hostile_options_never_raise_and_never_grow(tail, cut):
    head = _ACK_HEAD
    f = bytearray(head + tail)
    u = 14 + 20
    f[u + 4:u + 6] = (len(f) - u).to_bytes(2, "big")
    frame = bytes(f[:len(f) - cut]) if cut < len(tail) else bytes(f)
    out, router = extract_router(frame)
    assert len(out) == len(frame)
    assert router is None or router.count(".") == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes(frame):
    out, _ = extract_router(frame)
    assert len(out) == len(frame)


class _Session:
    """Just what ClientDataPath.open touches: the plaintexts out of receive."""
    send_key = None
    frag = None

    def __init__(self, frames: list) -> None:
        self.frames = frames

    def receive(self, packet, now):
        return list(self.frames)


def test_the_client_data_path_reads_replies_only_while_set():
    from appliance.openvpn.datapath import ClientDataPath
    ack = reply("ack")
    dp = ClientDataPath(_Session([ack, b"\xff" * 60]), lambda c, v2: None, tap=True)
    plain_open = type(dp).open
    assert dp.open(b"wire", 0.0)[0] == ack                    # off: the frame as it came
    seen: list = []
    dp.set_dhcp_router(seen.append)
    out = dp.open(b"wire", 0.0)
    assert seen == ["198.19.1.1"] and "router" not in [o[0] for o in options(out[0])] and out[1] == b"\xff" * 60
    dp.set_dhcp_router(None)
    assert dp.open.__func__ is plain_open


def test_thousands_of_empty_router_options_cost_one_pass():
    """A hostile server's reply (over TCP a packet may hold ~64 KiB): every empty Router option
    taken out in one pass -- 2.6 moves the rest down once per option."""
    base = reply("ack", routers=())
    head, tail = base[:14 + 20 + 8 + 240], base[14 + 20 + 8 + 240:]
    f = bytearray(head + bytes((3, 0)) * 12000 + tail)
    f[14 + 2:14 + 4] = (len(f) - 14).to_bytes(2, "big")
    f[14 + 20 + 4:14 + 20 + 6] = (len(f) - 14 - 20).to_bytes(2, "big")
    out, router = extract_router(bytes(f))
    assert router is None and len(out) == len(f)
    assert out[14 + 20 + 8 + 240:].startswith(tail) and checksum_ok(out)
