"""`link-mtu N` (and its old name `udp-mtu`): the TUN's MTU is N less the headers of the
configured cipher, as OpenVPN 2.6 derives it at start (init.c get_frame_mtu). The figures are
Debian's 2.6.14 own ("Data Channel MTU parms ... tun_mtu:" at verb 4, link-mtu 1400). Beside
`tun-mtu` it is refused at its line, as 2.6 refuses the pair; one leaving less than our tun-mtu
floor is refused with the figure."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.roles import ClientRole

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"      # 5 lines


@pytest.mark.parametrize("lines,tun_mtu", [
    ("link-mtu 1400", 1375),                                      # no cipher line: BF-CBC, the HMAC alone
    ("link-mtu 1400\ncipher AES-256-GCM", 1351),
    ("udp-mtu 1400", 1375),
    ("link-mtu 1400\nproto tcp", 1373),                           # TCP's length field
    ("link-mtu 1400\nproto tcp\ncipher AES-128-CBC\nauth SHA256", 1333),
    ("link-mtu 1400\nproto tcp\ncipher CHACHA20-POLY1305", 1364),
])
def test_the_tun_mtu_is_what_openvpn_derives(lines, tun_mtu):
    o = parse_config(BASE + lines + "\n", "/p/c.ovpn")
    assert (o.link_mtu, o.tun_mtu) == (1400, tun_mtu)


@pytest.mark.parametrize("lines,tun_mtu", [("tun-mtu 100", 100), ("link-mtu 125", 100), ("link-mtu 300", 275)])
def test_down_to_openvpns_floor_of_100(lines, tun_mtu):
    """2.6's TUN_MTU_MIN is 100 for either directive (init.c get_frame_mtu); ours was 576."""
    o = parse_config(BASE + lines + "\n", "/p/c.ovpn")
    assert o.tun_mtu == tun_mtu


@pytest.mark.parametrize("lines,says", [
    ("tun-mtu 99", "out of range 100..65535"),
    ("tun-mtu 1279\nserver 198.19.0.0 255.255.255.0\nserver-ipv6 fd00:41::/64", "TUN MTU of 1279 with server-ipv6"),
    ("link-mtu 1000\nserver 198.19.0.0 255.255.255.0\nserver-ipv6 fd00:41::/64", "TUN MTU of 975 with server-ipv6"),
])
def test_below_the_floor_refused_at_the_mtus_line(lines, says):
    """IPv6 on a device under 1280: the kernel refuses the address and Debian's 2.6.14 exits at start
    ("Linux can't add IPv6 to interface tun0"); refused here before anything starts."""
    text = BASE.replace("client\n", "") if "server" in lines else BASE
    with pytest.raises(ConfigError) as e:
        parse_config(text + lines + "\n", "/p/c.ovpn")
    at = text.count("\n") + 1                                     # the MTU's own line
    assert says in str(e.value) and f"/p/c.ovpn:{at}: " in str(e.value), str(e.value)


def test_without_it_tun_mtu_stays_1500():
    o = parse_config(BASE, "/p/c.ovpn")
    assert (o.link_mtu, o.tun_mtu) == (None, 1500)


@pytest.mark.parametrize("lines,says", [
    ("tun-mtu 1400\nlink-mtu 1400", "only one of --tun-mtu or --link-mtu"),
    ("link-mtu 1400\ntun-mtu 1400", "only one of --tun-mtu or --link-mtu"),
    ("link-mtu 124", "leaves a TUN MTU of 99"),                   # 2.6's floor: TUN_MTU_MIN 100
    ("link-mtu big", "expected a number"),
])
def test_refused_with_its_line(lines, says):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + lines + "\n", "/p/c.ovpn")
    assert says in str(e.value) and "/p/c.ovpn:" in str(e.value) and "link-mtu" in str(e.value)


@pytest.mark.parametrize("lines,iv_mtu", [("", 1600), ("link-mtu 1400", 1600), ("tun-mtu 1700", 1700),
                                          ("tun-mtu-max 9000", 9000)])
def test_iv_mtu_is_the_largest_tun_mtu_accepted_as_openvpn_sends_it(lines, iv_mtu):
    """2.6 sends IV_MTU = its frame's tun_max_mtu (at least 1600): a 2.6 server warns when it is
    below its own tun-mtu. Ours sent the tun-mtu itself, 1500 (1375 with link-mtu 1400)."""
    o = parse_config(BASE + lines + "\n", "/p/c.ovpn")
    cfg = SimpleNamespace(advertise_ekm=True, data_ciphers=["AES-256-GCM"], tun_mtu=o.tun_mtu,
                          tun_mtu_max=o.tun_mtu_max, peer_info_extra=[], comp_peer_info=None)
    assert f"IV_MTU={iv_mtu}\n" in ClientRole(SimpleNamespace(cfg=cfg))._peer_info()


P2P6 = "dev tun\nifconfig 10.9.0.1 10.9.0.2\nifconfig-ipv6 fd00:43::1 fd00:43::2\ntls-client\n<ca>\n</ca>\n"   # 6 lines


@pytest.mark.parametrize("lines,at,says", [
    # a block's own tun-mtu or link-mtu: its own connection's device, its own line
    ("<connection>\nremote 198.18.0.1\ntun-mtu 1000\n</connection>", 9, "tun-mtu: a TUN MTU of 1000"),
    ("<connection>\nremote 198.18.0.1\nlink-mtu 1000\n</connection>", 9, "link-mtu: a TUN MTU of 975"),
    # the global link-mtu over a TCP block: 2 bytes less than the first (UDP) remote's 1280
    ("link-mtu 1305\n<connection>\nremote 198.18.0.1 1194 udp\n</connection>\n"
     "<connection>\nremote 198.18.0.2 443 tcp-client\n</connection>", 7, "link-mtu: a TUN MTU of 1278"),
])
def test_a_connections_own_mtu_below_1280_with_ipv6_refused_at_its_line(lines, at, says):
    """Each <connection> opens the device at its own MTU (connection_entry.py): one below 1280 with
    ifconfig-ipv6 fails as the profile's own would (the kernel refuses the address, Debian's 2.6.14
    exits at that connection's start), so it is refused before anything starts, as the global one."""
    with pytest.raises(ConfigError) as e:
        parse_config(P2P6 + lines + "\n", "/p/c.ovpn")
    assert f"/p/c.ovpn:{at}: {says} with ifconfig-ipv6" in str(e.value), str(e.value)


def test_a_connections_own_mtu_of_1280_with_ipv6_is_taken():
    o = parse_config(P2P6 + "link-mtu 1307\n<connection>\nremote 198.18.0.2 443 tcp-client\n</connection>\n",
                     "/p/c.ovpn")
    assert o.remotes[0].entry.tun_mtu == 1280
