"""Real-world OpenVPN config shapes beyond tests/installer_configs.py's installers: the profiles
routers, NAS boxes, commercial providers and web front-ends hand out, and the server and
point-to-point configs of OpenVPN's own examples and of admin front-ends -- each written as its
source writes it, every directive kept, only keys and addresses rewritten (the test PKI of
tests/installer_configs.write_pki; 198.18.0.0/15).

Why here: tests/unit/test_real_profiles.py checks that `vpn-appliance check` accepts the ones
OpenVPN 2.6 accepts and refuses the others at the line 2.6 refuses (or at the line we refuse
with a reason); lab/profile_compare.py runs Debian's OpenVPN 2.6.14 on each to say which it
accepts (README "Configs from installers and routers", the thirty-eighth session's table).

Placeholders: write_pki's ({D} the directory, {CA} {CERT} {KEY} {TA} {TC} {TCV2} inline blocks,
{S_CA} ...), and {HOST} the server's address (198.18.0.1).

`refused`: line prefix -> why, for the lines our check refuses (each named at its file:line);
`openvpn`: what Debian's 2.6.14 says: "accepts", or its refusal (its message, shortened), as
lab/profile_compare.py measured it. A shape is "both accept" when `refused` is empty and
`openvpn` is "accepts".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.installer_configs import write_pki


@dataclass(frozen=True)
class Shape:
    name: str
    source: str
    role: str                          # "client" | "server" | "p2p"
    text: str
    openvpn: str = "accepts"
    refused: dict[str, str] = field(default_factory=dict)
    openvpn_line: int | None = None     # the line 2.6 names when it refuses (None: it names none)
    # Errors with no line that follow from a refused line (what it stood for is then missing)
    follows: tuple[str, ...] = ()
    # Whether the config checks clean once its refused lines are removed (False: they are its core)
    removable: bool = True
    # Files the config names beside the PKI's (relative to {D}): name -> content
    files: dict[str, str] = field(default_factory=dict)

    @property
    def seen(self) -> bool:
        """Whether the lines were read in a stored copy of the source (the search tools' corpus, or
        Debian's openvpn package); else written from the source's documented, commonly posted shape."""
        return self.name in SEEN


UP_SCRIPT = "#!/bin/sh\nexit 0\n"
# The gaps kept (README "Thirty-eighth session (helper profiles41)"):
DEV_NULL = ("OpenVPN's own test device (its loopback samples: no tunnel, packets dropped): a gateway with "
            "nothing to carry; refused at its line")
STATIC_KEY = ("static-key mode (deprecated in 2.6, gone in 2.7: no forward secrecy, one key for years); 2.6 "
              "accepts it with a warning where its cipher is given and scripts allowed")
STATIC_KEY_FOLLOWS = {"ifconfig": "follows from `secret` refused: without TLS the config reads as a client's",
                      "up": "needs script-security 2: 2.6 ends the run at the first tunnel without it"}

SHAPES: list[Shape] = [
    # ------------------------------------------------------------------ client profiles
    Shape("eduvpn2-client", "eduvpn/vpn-user-portal 2.x src/ClientConfig.php (API 1: inline cert, TLS 1.2)",
          "client", """\
# OpenVPN Client Configuration
dev tun
client
nobind
remote-cert-tls server
verb 3
server-poll-timeout 10
ncp-ciphers AES-256-GCM
cipher AES-256-GCM
{CA}
tls-version-min 1.2
tls-cipher TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384
{CERT}
{KEY}
{TC}
remote {HOST} 1194 udp
remote {HOST} 1194 tcp
"""),
    Shape("synology-client", "Synology VPN Server's exported VPNConfig.ovpn (DSM 7; 'synology' quoted as it writes it)",
          "client", """\
dev tun
tls-client

remote {HOST} 1194

# The "float" tells OpenVPN to accept authenticated packets from any address,
# not only the address which was specified in the --remote option.
;float

# If redirect-gateway is enabled, the client will redirect it's
# default network gateway through the VPN.
redirect-gateway def1

# dhcp-option DNS: To set primary domain name server address.
# Repeat this line for secondary DNS server.
dhcp-option DNS 198.18.0.53

pull

# If you want to connect by Server's IPv6 address, you should use
# "proto udp6" in UDP mode or "proto tcp6-client" in TCP mode
proto udp

script-security 2

comp-lzo

reneg-sec 0

cipher AES-256-CBC

auth SHA512

auth-user-pass

{CA}

verify-x509-name 'synology' name
"""),
    Shape("mikrotik-v6-client", "MikroTik RouterOS 6 (TCP only) client profile as the common guides write it",
          "client", """\
client
dev tun
proto tcp-client
remote {HOST} 1194
nobind
persist-key
persist-tun
cipher AES-256-CBC
auth SHA1
pull
verb 2
mute 3
auth-user-pass auth.cfg
auth-nocache
redirect-gateway def1
ca ca.crt
cert client1.crt
key client1.key
""", files={"auth.cfg": "alice\ns3cret\n"}),
    Shape("mikrotik-v7-client", "MikroTik RouterOS 7.4+ (UDP) client profile, /interface ovpn-server export style",
          "client", """\
client
dev tun
proto udp
remote {HOST} 1194
tun-mtu 1500
remote-cert-tls server
nobind
persist-key
persist-tun
tls-client
verb 3
auth-user-pass
auth SHA256
cipher AES-256-GCM
data-ciphers AES-256-GCM
{CA}
{CERT}
{KEY}
"""),
    Shape("access-server-legacy", "OpenVPN Access Server 2.x user-locked profile (pre-2.9)", "client", """\
# Automatically generated OpenVPN client config file
# Generated on Mon Jan  1 00:00:00 2018 by vpn
# Note: this config file contains inline private keys
#       and therefore should be kept confidential!
# Note: this configuration is user-locked to the username below
# OVPN_ACCESS_SERVER_USERNAME=alice
# Define the profile name of this particular configuration file
# OVPN_ACCESS_SERVER_PROFILE=alice@198.18.0.1
# OVPN_ACCESS_SERVER_CLI_PREF_ALLOW_WEB_IMPORT=True
# OVPN_ACCESS_SERVER_WSHOST=198.18.0.1:443
setenv FORWARD_COMPATIBLE 1
client
server-poll-timeout 4
nobind
remote {HOST} 1194 udp
remote {HOST} 443 tcp
dev tun
dev-type tun
ns-cert-type server
setenv opt tls-version-min 1.0 or-highest
reneg-sec 604800
sndbuf 100000
rcvbuf 100000
auth-user-pass
# NOTE: LZO commands are pushed by the Access Server at connect time.
# NOTE: The below line doesn't disable LZO.
comp-lzo no
verb 3
setenv PUSH_PEER_INFO
{CA}
{CERT}
{KEY}
key-direction 1
{TA}
"""),
    Shape("ipvanish", "IPVanish's .ovpn files (2016-2020)", "client", """\
client
dev tun
proto udp
remote {HOST} 443
resolv-retry infinite
nobind
persist-key
persist-tun
persist-remote-ip
ca ca.crt
verify-x509-name ams-a01.ipvanish.com name
auth-user-pass
comp-lzo
verb 3
auth SHA256
cipher AES-256-CBC
keysize 256
tls-cipher TLS-DHE-RSA-WITH-AES-256-CBC-SHA:TLS-DHE-DSS-WITH-AES-256-CBC-SHA:TLS-RSA-WITH-AES-256-CBC-SHA
""", openvpn="refuses: Unrecognized option ... keysize", openvpn_line=17,
          refused={"keysize": "removed in OpenVPN 2.6 (the cipher names its key size)"}),
    Shape("vyprvpn", "VyprVPN's OpenVPN 160 profiles (before 2.4's tls-remote removal)", "client", """\
client
dev tun
proto udp
remote {HOST} 1194
resolv-retry infinite
nobind
persist-key
persist-tun
persist-remote-ip
ca ca.crt
tls-remote us1.vpn.goldenfrog.com
auth-user-pass
comp-lzo
keepalive 10 60
verb 3
auth SHA256
cipher AES-256-CBC
keysize 256
tls-cipher TLS-DHE-RSA-WITH-AES-256-CBC-SHA:TLS-DHE-DSS-WITH-AES-256-CBC-SHA:TLS-RSA-WITH-AES-256-CBC-SHA
""", openvpn="refuses: Unrecognized option ... tls-remote", openvpn_line=11,
          refused={"tls-remote": "removed in OpenVPN 2.4 (verify-x509-name)", "keysize": "removed in OpenVPN 2.6 (the cipher names its key size)"}),
    Shape("cyberghost", "CyberGhost's Linux/router profile", "client", """\
client
remote {HOST} 443
dev tun
proto udp
auth-user-pass

resolv-retry infinite
redirect-gateway def1
persist-key
persist-tun
nobind
cipher AES-256-CBC
ncp-disable
auth SHA256
ping 5
ping-exit 60
ping-timer-rem
explicit-exit-notify 2
script-security 2
remote-cert-tls server
route-delay 5
verb 4

ca ca.crt
cert client1.crt
key client1.key
""", openvpn="refuses: Unrecognized option ... ncp-disable", openvpn_line=13,
          refused={"ncp-disable": "removed in OpenVPN 2.6 (cipher negotiation is always on)"}),
    Shape("tunnelbear", "TunnelBear's .ovpn files", "client", """\
client
dev tun0
proto udp
nobind
ns-cert-type server
persist-key
persist-tun
reneg-sec 0
dhcp-option DNS 198.18.0.53
dhcp-option DNS 198.18.0.54
redirect-gateway
verb 5
auth-user-pass
ca ca.crt
cert client1.crt
key client1.key
remote {HOST} 443
cipher AES-256-CBC
auth SHA256
keysize 256
comp-lzo
""", openvpn="refuses: Unrecognized option ... keysize", openvpn_line=20,
          refused={"keysize": "removed in OpenVPN 2.6 (the cipher names its key size)"}),
    Shape("hidemyass", "HideMyAss!'s .ovpn files", "client", """\
client
dev tun
proto udp
remote {HOST} 553
cipher AES-256-CBC
auth SHA256
resolv-retry 60
nobind
persist-key
persist-tun
mute-replay-warnings
verb 4
reneg-sec 0
remote-cert-tls server
auth-user-pass
route-metric 1
ping 5
ping-restart 30
ping-timer-rem
tun-mtu 1500
fast-io
tun-mtu-extra 32
mssfix 1450
route-delay 2
{CA}
{CERT}
{KEY}
key-direction 1
{TA}
"""),
    Shape("pia-strong", "Private Internet Access's 'strong' profiles (2019-2020: inline CRL)", "client", """\
client
dev tun
proto udp
remote {HOST} 1197
resolv-retry infinite
nobind
persist-key
persist-tun
cipher aes-256-cbc
auth sha256
tls-client
remote-cert-tls server

auth-user-pass
compress
verb 1
reneg-sec 0
<crl-verify>
{CRL}</crl-verify>

{CA}

disable-occ
"""),
    Shape("openvpn-admin-client", "Chocobozzz/OpenVPN-Admin app/ovpn.php (EvilFreelancer/openvpn-php's generator)", "client", """\
client
dev tun
proto udp
remote {HOST}
port 1194
resolv-retry infinite
cipher AES-256-CBC
redirect-gateway
key-direction 1
remote-cert-tls server
auth-user-pass
auth-nocache
nobind
persist-key
persist-tun
comp-lzo
verb 3
{CA}
{TA}
"""),
    Shape("sputnik-client", "butschster/sputnik resources/views/scripts/server/openvpn/add_user.blade.php", "client", """\
client
dev tun
proto udp
sndbuf 0
rcvbuf 0
remote {HOST} 1194
resolv-retry infinite
nobind
persist-key
persist-tun
remote-cert-tls server
auth SHA512
cipher AES-256-CBC
setenv opt block-outside-dns
key-direction 1
verb 3
{CA}
{CERT}
{KEY}
{TA}
"""),
    Shape("windows-profile", "a Windows-tuned profile: bare block-outside-dns and the TAP/route options "
          "Windows guides add", "client", """\
client
dev tun
proto udp
remote {HOST} 1194
nobind
persist-key
persist-tun
remote-cert-tls server
route-method exe
route-delay 2
register-dns
ip-win32 dynamic
block-outside-dns
verb 3
{CA}
{CERT}
{KEY}
{TC}
""", openvpn="refuses: Unrecognized option ... register-dns (then ip-win32, block-outside-dns, each tried "
          "without the lines before it; route-method, route-delay: accepted)", openvpn_line=11,
          refused={"register-dns": "Windows only: 2.6 on Linux refuses it (`setenv opt` makes it ignorable)",
                   "ip-win32": "Windows only, as register-dns", "block-outside-dns": "Windows only, as register-dns"}),
    Shape("http-proxy-client", "OpenVPN-Admin's client template with its commented `http-proxy` turned on "
          "(corporate networks)", "client", """\
client
dev tun
proto tcp-client
remote {HOST} 443
resolv-retry infinite
cipher AES-256-CBC
redirect-gateway
http-proxy 198.18.0.9 3128
http-proxy-option AGENT Mozilla/5.0
key-direction 1
remote-cert-tls server
auth-nocache
nobind
persist-key
persist-tun
verb 3
{CA}
{CERT}
{KEY}
{TA}
"""),
    Shape("openwrt-client", "openwrt/packages net/openvpn files/openvpn.config sample_client, as the init "
          "script writes it out", "client", """\
client
dev tun
proto udp
remote {HOST} 1194
resolv-retry infinite
nobind
persist-key
persist-tun
user nobody
ca {D}/ca.crt
cert {D}/client1.crt
key {D}/client1.key
remote-cert-tls server
tls-auth {D}/ta.key 1
compress lz4
verb 3
mute 20
"""),
    Shape("kylemanna-otp-client", "kylemanna/docker-openvpn ovpn_getclient for a server made with -2 (OTP) "
          "and -C: auth-user-pass, reneg-sec 0, its `redirect-gateway def1` and key-direction",
          "client", """\
client
nobind
dev tun
remote-cert-tls server

remote {HOST} 1194 udp

{KEY}
{CERT}
{CA}
key-direction 1
{TA}

redirect-gateway def1
auth-user-pass
auth-nocache
reneg-sec 0
cipher AES-256-CBC
auth SHA512
"""),
    Shape("netgear-client", "Netgear Nighthawk routers' exported client.ovpn (a TAP client, their odd port)",
          "client", """\
client
dev tap
proto udp
remote {HOST} 12974
resolv-retry infinite
nobind
persist-key
persist-tun
ca ca.crt
cert client1.crt
key client1.key
cipher AES-128-CBC
comp-lzo
verb 5
"""),
    Shape("asuswrt-client", "Asuswrt(-Merlin) VPN server's exported client.ovpn", "client", """\
remote {HOST} 1194
float
nobind
proto udp
dev tun
sndbuf 0
rcvbuf 0
keepalive 15 60
auth-user-pass
client
auth SHA1
cipher AES-128-CBC
ncp-ciphers AES-128-GCM:AES-256-GCM:AES-128-CBC:AES-256-CBC
comp-lzo adaptive
resolv-retry infinite
nobind
persist-key
persist-tun
remote-cert-tls server
{CA}
{CERT}
{KEY}
key-direction 1
{TA}
verb 3
"""),
    Shape("sophos-utm-client", "Sophos UTM 9 user portal's profile (route to the server via net_gateway)", "client", """\
dev tun
remote {HOST} 443
proto tcp-client
client
route remote_host 255.255.255.255 net_gateway
route-delay 4
verb 3
reneg-sec 0
{CA}
{CERT}
{KEY}
auth-user-pass
cipher AES-128-CBC
auth SHA1
comp-lzo yes
verify-x509-name "CN=server"
auth-nocache
"""),
    Shape("pritunl-client", "Pritunl's downloaded profile (its JSON comment, UV_ variables, hand-window)", "client", """\
# {"user": "alice", "organization": "lab", "server": "office", "user_id": "5f00", "server_id": "5f01", "sync_token": "x", "sync_secret": "y", "sync_hosts": [], "sync_hash": "z", "password_mode": null, "token": false, "token_ttl": null, "push_auth": false, "push_auth_ttl": null, "disable_reconnect": false, "pre_connect_msg": null, "dynamic_firewall": false, "geo_sort": null, "force_connect": false, "device_auth": false, "disable_gateway": false, "sso_auth": false, "mss_fix": null}
setenv UV_ID 5f00a1b2c3d4
setenv UV_NAME bold-rain-1234
client
dev tun
dev-type tun
remote {HOST} 12345 udp
nobind
persist-tun
cipher AES-128-CBC
auth SHA1
verb 2
mute 3
push-peer-info
ping 10
ping-restart 60
hand-window 70
server-poll-timeout 4
reneg-sec 2592000
sndbuf 393216
rcvbuf 393216
remote-cert-tls server
{CA}
{TA}
key-direction 1
{CERT}
{KEY}
""", openvpn="refuses: Maximum option line length (256) exceeded (its JSON comment)", openvpn_line=1,
          refused={"# {": "a line over 255 bytes, as 2.6 refuses it (even a comment)"}),

    # ------------------------------------------------------------------ server configs
    Shape("openvpn-web-ui-server", "adamwalach/openvpn-web-ui conf/openvpn-server-config.tpl (its defaults)",
          "server", """\
management 0.0.0.0 2080

port 1194
proto udp

dev tun

ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key

cipher AES-256-CBC
keysize 256
auth SHA256
dh {D}/dh.pem

server 198.19.0.0 255.255.255.0
ifconfig-pool-persist {D}/ipp.txt
push "route 198.19.0.0 255.255.255.0"
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS 198.18.0.54"

keepalive 10 120

comp-lzo
max-clients 100

persist-key
persist-tun

log         {D}/openvpn.log
verb 3

mute 10
""", openvpn="refuses: Unrecognized option ... keysize", openvpn_line=13,
          refused={"keysize": "removed in OpenVPN 2.6 (the cipher names its key size)",
                   "management 0.0.0.0": "a management port open to the network with no password file: "
                   "anyone reaching it could kill clients (2.6 only warns)"}),
    Shape("openvpn-web-ui-fork-server", "vuonglequoc/openvpn-web-ui conf/openvpn-server-config.tpl", "server", """\
port 1194
proto udp

dev tun

ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key

dh {D}/dh.pem

server 198.19.0.0 255.255.255.0

ifconfig-pool-persist {D}/ipp.txt

push "route 198.19.0.0 255.255.255.0"

push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS 198.18.0.54"

keepalive 10 120

tls-auth {D}/ta.key 0
key-direction 0

cipher AES-256-CBC
auth SHA256

comp-lzo

max-clients 100

user nobody
group nogroup

persist-key
persist-tun

status {D}/openvpn-status.log

log-append {D}/openvpn.log

verb 3

mute 10

explicit-exit-notify 1

management 127.0.0.1 2080
"""),
    Shape("quattor-server", "quattor/configuration-modules metaconfig openvpn server_config (TCP, tls-auth)",
          "server", """\
ca {D}/ca.crt
cert {D}/server.crt
cipher AES-256-CBC
comp-lzo
dev tun
dh {D}/dh.pem
group nogroup
ifconfig-pool-persist {D}/ipp.txt
keepalive 10 120
key {D}/server.key
log-append {D}/openvpn.log
max-clients 10
persist-key
persist-tun
port 1194
proto tcp
server 198.19.0.0 255.255.0.0
tls-auth {D}/ta.key 0
tun-mtu 1500
user nobody
verb 3
"""),
    Shape("password-only-server", "the 'username and password only' server every tutorial writes "
          "(auth-pam, no client certificates)", "server", """\
port 1194
proto udp
dev tun
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
dh none
server 198.19.0.0 255.255.255.0
topology subnet
keepalive 10 120
plugin /usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-auth-pam.so login
verify-client-cert none
username-as-common-name
duplicate-cn
push "redirect-gateway def1 bypass-dhcp"
tls-crypt {D}/tc.key
data-ciphers AES-256-GCM:AES-128-GCM
persist-key
persist-tun
status {D}/status.log
verb 3
"""),
    Shape("synology-server", "Synology VPN Server's own openvpn.conf (DSM 6/7: RADIUS plugin, no client certificates)",
          "server", """\
dev tun
management 127.0.0.1 1195
server 198.19.0.0 255.255.255.0
dh {D}/dh.pem
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
max-clients 5
comp-lzo
persist-tun
persist-key
verb 3
#log-append /var/log/openvpn.log
keepalive 10 60
reneg-sec 0
plugin /var/packages/VPNCenter/target/lib/radiusplugin.so /var/packages/VPNCenter/target/etc/openvpn/radiusplugin.cnf
client-cert-not-required
username-as-common-name
duplicate-cn
status {D}/ovpn_status_2_result 30
status-version 2
proto udp6
port 1194
cipher AES-256-CBC
auth SHA512
""", openvpn="refuses: REMOVED OPTION: --client-cert-not-required", openvpn_line=17,
          refused={"plugin": "a RADIUS plugin (only auth-pam and down-root are done here; 2.6 refuses a "
                   "missing plugin too)", "client-cert-not-required": "removed in OpenVPN 2.5 "
                   "(verify-client-cert none)", "username-as-common-name": "needs a password check: its "
                   "plugin is refused"}, removable=False),
    Shape("bridged-tap-server", "Debian's sample server.conf with its commented server-bridge and tap lines "
          "turned on (a bridged LAN)", "server", """\
port 1194
proto udp
dev tap0
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
dh {D}/dh.pem
ifconfig-pool-persist {D}/ipp.txt
server-bridge 198.18.5.1 255.255.255.0 198.18.5.50 198.18.5.100
client-to-client
keepalive 10 120
tls-auth {D}/ta.key 0
cipher AES-256-CBC
persist-key
persist-tun
status {D}/openvpn-status.log
verb 3
explicit-exit-notify 1
"""),
    Shape("ccd-exclusive-server", "a server with per-client files only (ccd-exclusive, topology net30, "
          "client-config-dir, status-version 2): openvpn-web-ui's extra template options", "server", """\
port 1194
proto udp
dev tun
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
dh none
topology net30
server 198.19.0.0 255.255.255.0
client-config-dir {D}/ccd
ccd-exclusive
route 198.18.71.0 255.255.255.0
push "redirect-gateway def1 bypass-dhcp"
ncp-ciphers AES-256-GCM:AES-192-GCM:AES-128-GCM
status {D}/openvpn-status.log
status-version 2
explicit-exit-notify 1
crl-verify {D}/crl.pem
keepalive 10 120
persist-key
persist-tun
verb 4
"""),

    # ------------------------------------------------------------------ point-to-point
    Shape("loopback-server", "OpenVPN's sample-config-files/loopback-server (Debian: examples/)", "p2p", """\
#
# A server side of a loopback test: the files are the test PKI's
#
rport 16001
lport 16000
remote localhost
local localhost
dev null
verb 3
reneg-sec 10
tls-server
dh {D}/dh.pem
ca {D}/ca.crt
key {D}/server.key
cert {D}/server.crt
tls-auth {D}/ta.key 0
cipher AES-256-GCM
ping 1
inactive 120 10000000
""", refused={"dev null": DEV_NULL}, follows=("ifconfig",), removable=False),
    Shape("loopback-client", "OpenVPN's sample-config-files/loopback-client", "p2p", """\
rport 16000
lport 16001
remote localhost
local localhost
dev null
verb 3
reneg-sec 10
tls-client
remote-cert-tls server
{CA}
{KEY}
{CERT}
key-direction 1
{TA}
cipher AES-256-GCM
ping 1
inactive 120 10000000
""", refused={"dev null": DEV_NULL}, follows=("ifconfig",), removable=False),
    Shape("fingerprint-p2p", "openvpn-examples(5) Example 2 as a config file: self-signed peers, "
          "peer-fingerprint, dh none", "p2p", """\
ifconfig 198.19.4.1 198.19.4.2
tls-server
dev tun
dh none
cert {D}/server.crt
key {D}/server.key
cipher AES-256-GCM
peer-fingerprint {FP_CLIENT}
"""),
    Shape("tls-p2p", "openvpn-examples(5) Example 3 as a config file: bob, the TLS client of a p2p pair",
          "p2p", """\
remote {HOST}
dev tun1
ifconfig 198.19.4.2 198.19.4.1
tls-client
ca {D}/ca.crt
cert {D}/client1.crt
key {D}/client1.key
reneg-sec 60
verb 5
"""),
    Shape("static-home-p2p", "OpenVPN 2.5's sample-config-files/static-home.conf (static key, AES-256-CBC)", "p2p", """\
dev tun
remote {HOST}
ifconfig 198.19.4.2 198.19.4.1
up ./home.up
secret {D}/ta.key
cipher AES-256-CBC
port 1194
ping 15
verb 3
""", openvpn="refuses: its up script without script-security 2 (\"Failed running command\")",
          refused={"secret": STATIC_KEY, **STATIC_KEY_FOLLOWS}, follows=("client", "ca", "remote"),
          removable=False, files={"home.up": UP_SCRIPT}),
    Shape("static-key-p2p", "the static-key office/home configs (OpenVPN 2.0 sample-config-files static-office.conf)",
          "p2p", """\
dev tun
ifconfig 198.19.4.1 198.19.4.2
up ./office.up
secret {D}/ta.key
port 1194
user nobody
group nogroup
comp-lzo
ping 15
verb 3
""", openvpn="refuses: Cipher BF-CBC not supported (static key mode's default cipher, OpenSSL 3)",
          refused={"secret": STATIC_KEY, **STATIC_KEY_FOLLOWS}, follows=("client", "ca", "remote"),
          removable=False, files={"office.up": UP_SCRIPT}),
]

SHAPES_BY_NAME: dict[str, Shape] = {s.name: s for s in SHAPES}


def fill(template: str, values: dict[str, str]) -> str:
    """The placeholders filled (a JSON comment's braces, as Pritunl's, left as they are)."""
    text = re.sub(r"\{([A-Z_0-9]+)\}", lambda m: values[m.group(1)], template)
    return text


def write_all(d: Path, host: str = "198.18.0.1") -> dict[str, Path]:
    """Every shape written in `d` beside one test PKI (and the files it names); name -> path."""
    v = write_pki(d)
    v.update(HOST=host, CRL=(d / "crl.pem").read_text())
    out = {}
    for s in SHAPES:
        for name, content in s.files.items():
            (d / name).write_text(content)
            if content.startswith("#!"):
                (d / name).chmod(0o755)
        p = d / f"{s.name}.{'conf' if s.role == 'server' else 'ovpn'}"
        p.write_text(fill(s.text, v))
        p.chmod(0o600)
        out[s.name] = p
    return out


# Read in a stored copy: eduVPN's ClientConfig.php, the Synology lines a stored note quotes, the PHP
# front-ends' and web UIs' templates, quattor's template, and what Debian's openvpn ships
# (sample-config-files' loopback pair, openvpn-examples(5)).
SEEN = {"eduvpn2-client", "synology-client", "openvpn-admin-client", "sputnik-client", "openvpn-web-ui-server",
        "openvpn-web-ui-fork-server", "quattor-server", "loopback-server", "loopback-client", "fingerprint-p2p",
        "tls-p2p"}
