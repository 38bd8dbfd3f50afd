"""Client profiles as the big providers and router exports write them parse and pass `check`'s key
checks unchanged: the lines users already hold (tun-mtu-extra, fragment, ns-cert-type,
verify-x509-name name-prefix, setenv opt block-outside-dns, static-challenge, disable-occ, ...).
A directive that turns from accepted to refused, or a default that stops fitting one of them,
fails here by name. Keys and certificates are this test's own; the lines are the profiles'
(addresses rewritten to 198.18.0.0/15)."""
from __future__ import annotations

import pytest

from appliance.bench import _cert, _pems
from appliance.openvpn import keyfiles
from appliance.openvpn.config import parse_config
from appliance.openvpn.settings import check_key_material
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

PROFILES = {
    # NordVPN
    "nord": """\
client
dev tun
proto udp
remote 198.18.0.1 1194
resolv-retry infinite
remote-random
nobind
tun-mtu 1500
tun-mtu-extra 32
mssfix 1450
persist-key
persist-tun
ping 15
ping-restart 0
ping-timer-rem
reneg-sec 0
comp-lzo no
verify-x509-name CN=us1234.nordvpn.com
remote-cert-tls server
auth-user-pass
verb 3
pull
fast-io
cipher AES-256-CBC
auth SHA512
{CA}
key-direction 1
{TLSAUTH}
""",
    # ProtonVPN
    "proton": """\
client
dev tun
proto udp
remote 198.18.0.1 80
remote 198.18.0.1 51820
server-poll-timeout 20
remote-random
resolv-retry infinite
nobind
cipher AES-256-GCM
setenv CLIENT_CERT 0
tun-mtu 1500
mssfix 0
persist-key
persist-tun
reneg-sec 0
remote-cert-tls server
auth-user-pass
pull
fast-io
script-security 2
up /etc/openvpn/update-resolv-conf
down /etc/openvpn/update-resolv-conf
{CA}
key-direction 1
{TLSCRYPT}
""",
    # Private Internet Access
    "pia": """\
client
dev tun
proto udp
remote 198.18.0.1 1198
resolv-retry infinite
nobind
persist-key
persist-tun
cipher aes-128-cbc
auth sha1
tls-client
remote-cert-tls server
auth-user-pass
compress
verb 1
reneg-sec 0
{CA}
disable-occ
""",
    # Windscribe
    "windscribe": """\
client
dev tun
proto udp
remote 198.18.0.1 443
auth-user-pass
resolv-retry infinite
nobind
persist-key
persist-tun
remote-cert-tls server
cipher AES-256-GCM
auth SHA512
verb 2
mute-replay-warnings
key-direction 1
{CA}
{TLSAUTH}
""",
    # IVPN
    "ivpn": """\
client
dev tun
proto udp
remote 198.18.0.1 2049
resolv-retry infinite
nobind
persist-key
persist-tun
persist-remote-ip
verify-x509-name gb1.gw.ivpn.net name-prefix
remote-cert-tls server
auth-user-pass
{CA}
key-direction 1
{TLSAUTH}
cipher AES-256-GCM
tls-cipher TLS-DHE-RSA-WITH-AES-256-GCM-SHA384:TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384
""",
    # AirVPN
    "airvpn": """\
client
dev tun
remote 198.18.0.1 443
resolv-retry infinite
nobind
persist-key
persist-tun
auth-nocache
verb 3
explicit-exit-notify 5
push-peer-info
setenv UV_IPV6 yes
remote-cert-tls server
comp-lzo no
data-ciphers AES-256-GCM:AES-256-CBC:AES-192-GCM:AES-192-CBC:AES-128-GCM:AES-128-CBC:CHACHA20-POLY1305
data-ciphers-fallback AES-256-CBC
proto udp
tls-version-min 1.2
auth SHA512
{CA}
{CERTKEY}
{TLSCRYPT}
""",
    # Mullvad (OpenVPN, before its end)
    "mullvad": """\
client
dev tun
resolv-retry infinite
nobind
persist-key
persist-tun
verb 3
remote-cert-tls server
ping 10
ping-restart 60
sndbuf 524288
rcvbuf 524288
cipher AES-256-GCM
tls-cipher TLS-DHE-RSA-WITH-AES-256-GCM-SHA384
proto udp
auth-user-pass
{CA}
tun-ipv6
script-security 2
up /etc/openvpn/update-resolv-conf
down /etc/openvpn/update-resolv-conf
fast-io
remote-random
remote 198.18.0.1 1301
""",
    # ExpressVPN (without its `keysize 256`, which 2.6 refuses too)
    "express": """\
dev tun
fast-io
persist-key
persist-tun
nobind
remote 198.18.0.1 1195
remote-random
pull
comp-lzo no
tls-client
verify-x509-name Server name-prefix
ns-cert-type server
key-direction 1
route-method exe
route-delay 2
tun-mtu 1500
fragment 1300
mssfix 1200
verb 3
cipher AES-256-CBC
auth SHA512
sndbuf 524288
rcvbuf 524288
auth-user-pass
{CERTKEY}
{TLSAUTH}
{CA}
""",
    # OpenVPN Access Server (MFA)
    "oas": """\
# OVPN_ACCESS_SERVER_PROFILE=user@198.18.0.1
setenv FORWARD_COMPATIBLE 1
client
server-poll-timeout 4
nobind
remote 198.18.0.1 1194 udp
remote 198.18.0.1 1194 udp
remote 198.18.0.1 443 tcp
remote 198.18.0.1 1194 udp
dev tun
dev-type tun
remote-cert-tls server
tls-version-min 1.2
reneg-sec 604800
tun-mtu 1420
auth-user-pass
verb 3
push-peer-info
setenv opt block-outside-dns
static-challenge "Enter Authenticator Code" 1
{CA}
{CERTKEY}
key-direction 1
{TLSCRYPT}
""",
    # pfSense's client export
    "pfsense": """\
dev tun
persist-tun
persist-key
data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305
data-ciphers-fallback AES-256-CBC
auth SHA256
tls-client
client
resolv-retry infinite
remote 198.18.0.1 1194 udp4
nobind
verify-x509-name "vpnserver" name
auth-user-pass
remote-cert-tls server
explicit-exit-notify
{CA}
{CERTKEY}
key-direction 1
{TLSAUTH}
""",
    # OPNsense's client export
    "opnsense": """\
dev tun
persist-tun
persist-key
cipher AES-256-CBC
auth SHA256
client
resolv-retry infinite
reneg-sec 0
remote 198.18.0.1 1194 udp
lport 0
verify-x509-name "server" name
auth-user-pass
remote-cert-tls server
{CA}
{CERTKEY}
key-direction 1
{TLSAUTH}
""",
}


@pytest.fixture(scope="module")
def blocks():
    ca = _cert("provider CA")
    cert, key = _pems(_cert("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    static = keyfiles.generate_static_key()
    static = static.decode() if isinstance(static, bytes) else static
    return {"CA": f"<ca>\n{ca[0].public_bytes(serialization.Encoding.PEM).decode()}</ca>",
            "CERTKEY": f"<cert>\n{cert.decode()}</cert>\n<key>\n{key.decode()}</key>",
            "TLSAUTH": f"<tls-auth>\n{static}</tls-auth>", "TLSCRYPT": f"<tls-crypt>\n{static}</tls-crypt>"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_profile_parses_and_its_keys_check(name, blocks):
    text = PROFILES[name]
    for k, v in blocks.items():
        text = text.replace("{" + k + "}", v)
    o = parse_config(text, f"/home/u/{name}.ovpn", lambda p: b"alice\ns3cret\n")
    assert o.role == "client" and o.remotes
    check_key_material(o)
