"""Point-to-point TLS configs (tls-server / tls-client without pull): what OpenVPN 2.6 allows and
refuses, and what ours adds or cannot do, each refusal with file:line."""
from __future__ import annotations

import pytest

from appliance.config.schema import load_appliance_config
from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.p2p import p2p_network

PEM = "<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n"      # 9 lines
SITE_A = "dev tun\nport 1194\nifconfig 10.9.0.1 10.9.0.2\ntls-server\ndh none\n" + PEM   # 14 lines
SITE_B = "dev tun\nremote 198.18.0.1 1194\nifconfig 10.9.0.2 10.9.0.1\ntls-client\n" + PEM   # 13 lines


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/p/s.ovpn")
    return str(e.value)


def test_both_sites_parse_as_a_point_to_point_link_with_their_own_addresses():
    a = parse_config(SITE_A + "route 192.168.2.0 255.255.255.0\nkeepalive 10 60\nfloat\n", "/p/a.ovpn")
    assert a.p2p and a.tls_server and a.ifconfig == ("10.9.0.1", "10.9.0.2") and a.floating
    assert (a.ping, a.ping_restart) == (10, 60)          # keepalive as a client's: not doubled, nothing pushed
    b = parse_config(SITE_B + "ifconfig-ipv6 fd00:9::2/64 fd00:9::1\nroute-ipv6 fd00:2::/64\n", "/p/b.ovpn")
    assert b.p2p and b.tls_client and not b.tls_server
    net = p2p_network(b)
    assert net.ifconfig == ("10.9.0.2", "10.9.0.1") and net.topology == "p2p"
    assert net.ifconfig_ipv6 == ("fd00:9::2/64", "fd00:9::1")
    sub = p2p_network(parse_config(SITE_B.replace("10.9.0.1\n", "255.255.255.0\n") + "topology subnet\n", "/p/b.ovpn"))
    assert sub.ifconfig == ("10.9.0.2", "255.255.255.0") and sub.topology == "subnet"


def test_a_pulling_client_and_a_server_still_refuse_ifconfig_with_its_line():
    assert "/p/s.ovpn:3: ifconfig" in _err("client\nremote 198.18.0.1\nifconfig 10.9.0.2 10.9.0.1\n" + PEM)
    assert "/p/s.ovpn:2: ifconfig" in _err("server 10.8.0.0 255.255.255.0\nifconfig 10.8.0.1 10.8.0.2\n" + PEM)


@pytest.mark.parametrize("extra, directive, why", [
    ("tls-client\n", "tls-client", "only one of"),                       # as 2.6: one TLS role (the later line)
    ("auth-user-pass\n", "auth-user-pass", "requires `pull`"),           # as 2.6: --auth-user-pass requires --pull
    ("proto tcp-client\n", "proto", "tcp-client is not supported"),     # ours: the tls-server waits
    ("proto tcp\n", "proto", "ambiguous"),                              # as 2.6
    ("remote 198.18.0.2\nremote 198.18.0.3\n", "remote", "one `remote` at most"),
    ("tls-verify /bin/true\nscript-security 2\n", "tls-verify", "not supported"),
    ("nobind\n", "nobind", "must listen"),
    ("client-to-client\n", "client-to-client", "server directive"),      # 2.6: requires --mode server
    ("ifconfig-pool 10.9.0.10 10.9.0.20\n", "ifconfig-pool", "server directive"),
])
def test_site_a_refusals(extra, directive, why):
    msg = _err(SITE_A + extra)
    assert f"{directive}:" in msg and why in msg, msg


@pytest.mark.parametrize("text, directive, why", [
    (SITE_B.replace("remote 198.18.0.1 1194\n", ""), "remote", "needs a `remote`"),
    (SITE_B.replace("ifconfig 10.9.0.2 10.9.0.1\n", ""), "ifconfig", "needs `ifconfig LOCAL REMOTE`"),
    (SITE_B.replace("10.9.0.1\n", "10.9.0.2\n"), "ifconfig", "must be different"),
    (SITE_B + "topology subnet\n", "ifconfig", "netmask"),     # the second address is the netmask there
    (SITE_B.replace("tls-client\n", ""), "client", "static-key mode"),
])
def test_site_b_refusals(text, directive, why):
    msg = _err(text)
    assert f"{directive}:" in msg and why in msg, msg


def test_a_refusal_names_its_line():
    assert "/p/s.ovpn:15: auth-user-pass:" in _err(SITE_A + "auth-user-pass\n")


def test_the_appliance_image_refuses_a_point_to_point_config_before_start(tmp_path):
    (tmp_path / "a.ovpn").write_text(SITE_A)
    p = tmp_path / "appliance.toml"
    p.write_text('[wan]\nname = "eth0"\n\n[vpn]\nrole = "client"\nconfig = "a.ovpn"\n')
    with pytest.raises(ConfigError) as e:
        load_appliance_config(str(p))
    assert "point-to-point link" in str(e.value) and "vpn.role" in str(e.value)


def test_the_tls_servers_sessions_share_one_crl_reading(tmp_path, monkeypatch):
    """Each takeover candidate (a stranger's reset a second is enough without tls-auth) made its
    session config anew, and with it read the whole crl-verify file on the event loop (~0.35 s
    at 100,000 entries). One listen's configs share one TLS settings: the file is read once, and
    again only when it changes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from appliance.openvpn import crl as crlmod
    from appliance.openvpn.settings import p2p_session_maker
    from lab.pki import make_pki
    pki = make_pki(tmp_path / "pki", ["client1"])
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    crl = tmp_path / "crl.pem"
    crl.write_bytes(crlmod.make_crl(ca, ca_key, [12345]))
    o = parse_config(f"dev tun\nport 1194\nifconfig 10.9.0.1 10.9.0.2\ntls-server\ndh none\nca {pki.ca}\n"
                     f"cert {pki.server_cert}\nkey {pki.server_key}\ncrl-verify {crl}\n", str(tmp_path / "a.conf"))
    reads = []
    real = crlmod.read_crl_file
    monkeypatch.setattr(crlmod, "read_crl_file", lambda *a: reads.append(a) or real(*a))
    configs = p2p_session_maker(o, "udp")
    cfgs = [configs() for _ in range(5)]
    assert len(reads) == 1 and all(c.tls is cfgs[0].tls for c in cfgs)
    assert cfgs[0].tls.crl.revoked(x509.load_pem_x509_certificate(pki.clients["client1"][0].read_bytes())) is None
