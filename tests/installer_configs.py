"""Server configs and the client profiles they hand out, as the common installers and routers
write them: our own rendering of each installer's template with its default answers, pointing at
a test PKI made here (no OpenVPN binary needed), addresses rewritten to 198.18.0.0/15.

Why one module: the unit test (tests/unit/test_installer_configs.py) parses every one with our
server and our client, and the interop test (tests/interop/test_installer_configs_vs_openvpn.py)
runs the most used ones against Debian's OpenVPN 2.6; both must read the same lines.

Placeholders: {D} the directory the files are written to, {HOST} the server's address as the
client reaches it, {LOCAL} the server's own address (Nyr's `local`), {POOL} the first three octets
of the pool, {SERVER_CN} the server certificate's CN; {CA} {CERT} {KEY} {TA} {TC} {TCV2} the
client's inline blocks, {S_CA} {S_CERT} {S_KEY} {S_TC} the server's; {FP_SERVER} / {FP_CLIENT}
SHA-256 fingerprints as `openssl x509 -fingerprint -sha256` prints them.

`refused`: the lines (as written, after the placeholders) that our server refuses, each with
why; README.md ("Configs from installers and routers") lists them. Every other line is applied as
OpenVPN 2.6 applies it, or accepted with a note where it has nothing to do here.
"""
from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn import keyfiles

# RFC 7919's ffdhe2048 group: the dh.pem Nyr's installer writes (public parameters). `dh` is
# accepted and unused here (ECDHE), as 2.6 leaves it unused when the peers agree on ECDHE.
FFDHE2048 = """-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


@dataclass(frozen=True)
class Installer:
    name: str
    source: str                      # where the template comes from
    server: str
    client: str
    # The server config's lines our server refuses (by how they start) -> why. `check` names
    # each at its line; without them (`replace` gives a line's substitute) the config checks clean.
    refused: dict[str, str] = field(default_factory=dict)
    replace: dict[str, str] = field(default_factory=dict)
    # Directives the appliance VM's TOML refuses in it beyond a host run (`vpn-appliance import`
    # comments out user/group; these stay): the VM runs no scripts.
    vm_refused: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------- PiVPN
# files/etc/openvpn/server_config.txt as install.sh's confOpenVPN edits it on OpenVPN >= 2.5
# (the default on Debian 12: ECDSA, `dh none` + `ecdh-curve`, tls-crypt-v2 with its verify script),
# and files/etc/openvpn/easy-rsa/pki/Default.txt + makeOVPN.sh's inline blocks.
PIVPN = Installer("pivpn", "pivpn/pivpn: server_config.txt, confOpenVPN, Default.txt, makeOVPN.sh", """\
dev tun
proto udp
port 1194
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
dh none
ecdh-curve prime256v1
topology subnet
server {POOL}.0 255.255.255.0
# Set your primary domain name server address for clients
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS 198.18.0.54"
# Prevent DNS leaks on Windows
push "block-outside-dns"
# Override the Client default gateway by using 0.0.0.0/1 and
# 128.0.0.0/1 rather than 0.0.0.0/0.
push "redirect-gateway def1"
client-to-client
client-config-dir {D}/ccd
keepalive 15 120
remote-cert-tls client
tls-version-min 1.2
tls-crypt-v2 {D}/tc-v2/server.key
tls-crypt-v2-verify {D}/TLSCryptV2Verify.sh
script-security 2
cipher AES-256-CBC
auth SHA256
user openvpn
group openvpn
persist-key
persist-tun
crl-verify {D}/crl.pem
status {D}/openvpn-status.log 20
status-version 3
syslog
verb 3
#DuplicateCNs allow access control on a less-granular, per user basis.
#Remove # if you will manage access by user instead of device.
#duplicate-cn
# Generated for use by PiVPN.io
""", """\
client
dev tun
proto udp
remote {HOST} 1194
resolv-retry infinite
nobind
remote-cert-tls server
tls-version-min 1.2
verify-x509-name {SERVER_CN} name
cipher AES-256-CBC
auth SHA256
auth-nocache
verb 3
{CA}
{CERT}
{KEY}
{TCV2}
""", vm_refused=("tls-crypt-v2-verify",))

# ------------------------------------------------------------------- angristan/openvpn-install
# installOpenVPN's server.conf and client-template.txt with the script's defaults (PKI mode,
# ECDSA, AES-128-GCM, tls-crypt-v2, IPv6 for clients), `user nobody` as on Debian (no User= in
# its openvpn-server@ unit); generateClientConfig's inline blocks. Relative paths: the unit runs
# it in /etc/openvpn/server, the config's own directory.
ANGRISTAN = Installer("angristan", "angristan/openvpn-install: installOpenVPN, generateClientConfig", """\
port 1194
proto udp
dev tun
user nobody
group nogroup
persist-key
persist-tun
keepalive 10 120
topology subnet
server {POOL}.0 255.255.255.0
server-ipv6 fd42:42:42:42::/112
tun-ipv6
push tun-ipv6
ifconfig-pool-persist ipp.txt
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS 198.18.0.54"
push "dhcp-option DNS fd42:42:42:42::53"
push "redirect-gateway def1 bypass-dhcp"
push "route-ipv6 2000::/3"
push "redirect-gateway ipv6"
dh none
tls-groups X25519:prime256v1:secp384r1:secp521r1
tls-crypt-v2 tc-v2/server.key
crl-verify crl.pem
ca ca.crt
cert server.crt
key server.key
auth SHA256
cipher AES-128-GCM
ignore-unknown-option data-ciphers
data-ciphers AES-128-GCM
ncp-ciphers AES-128-GCM
tls-server
tls-version-min 1.2
remote-cert-tls client
tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256
tls-ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
client-config-dir ccd
status status.log
management {D}/server.sock unix
verb 3
""", """\
client
proto udp
explicit-exit-notify
remote {HOST} 1194
dev tun
resolv-retry infinite
nobind
persist-key
persist-tun
remote-cert-tls server
verify-x509-name {SERVER_CN} name
auth SHA256
auth-nocache
cipher AES-128-GCM
ignore-unknown-option data-ciphers
data-ciphers AES-128-GCM
ncp-ciphers AES-128-GCM
tls-client
tls-version-min 1.2
tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256
tls-ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
ignore-unknown-option block-outside-dns
setenv opt block-outside-dns # Prevent Windows 10 DNS leak
verb 3
{CA}
{CERT}
{KEY}
{TCV2}
""")

# The same script in its fingerprint mode (--auth-mode fingerprint): no CA; the server lists its
# clients' fingerprints in a <peer-fingerprint> block, each under a `# name` comment line, and
# the profile names the server's.
ANGRISTAN_FP = Installer("angristan-fingerprint", "angristan/openvpn-install: AUTH_MODE=fingerprint", """\
port 1194
proto udp
dev tun
user nobody
group nogroup
persist-key
persist-tun
keepalive 10 120
topology subnet
server {POOL}.0 255.255.255.0
push "dhcp-option DNS 198.18.0.53"
push "redirect-gateway def1 bypass-dhcp"
push "block-ipv6"
dh none
tls-groups X25519:prime256v1:secp384r1:secp521r1
tls-crypt tls-crypt.key
cert server.crt
key server.key
auth SHA256
cipher AES-128-GCM
ignore-unknown-option data-ciphers
data-ciphers AES-128-GCM
ncp-ciphers AES-128-GCM
tls-server
tls-version-min 1.2
tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256
tls-ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
client-config-dir ccd
status status.log
verb 3
# Client fingerprints are listed below
<peer-fingerprint>
# client1
{FP_CLIENT}
</peer-fingerprint>
""", """\
client
proto udp
explicit-exit-notify
remote {HOST} 1194
dev tun
resolv-retry infinite
nobind
persist-key
persist-tun
auth SHA256
auth-nocache
cipher AES-128-GCM
ignore-unknown-option data-ciphers
data-ciphers AES-128-GCM
ncp-ciphers AES-128-GCM
tls-client
tls-version-min 1.2
tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256
tls-ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256
ignore-unknown-option block-outside-dns
setenv opt block-outside-dns # Prevent Windows 10 DNS leak
verb 3
peer-fingerprint {FP_SERVER}
{CERT}
{KEY}
{TC}
""")

# ------------------------------------------------------------------------- Nyr/openvpn-install
# server.conf and client-common.txt as the script writes them (UDP, resolvers from the system,
# no IPv6); the profile is client-common.txt + easy-rsa's inline file (ca, cert, key, tls-crypt).
NYR = Installer("nyr", "Nyr/openvpn-install: server.conf, client-common.txt", """\
local {LOCAL}
port 1194
proto udp
dev tun
ca ca.crt
cert server.crt
key server.key
dh dh.pem
auth SHA512
tls-crypt tc.key
topology subnet
server {POOL}.0 255.255.255.0
push "redirect-gateway def1 bypass-dhcp"
ifconfig-pool-persist ipp.txt
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS 198.18.0.54"
push "block-outside-dns"
keepalive 10 120
user nobody
group nogroup
persist-key
persist-tun
verb 3
crl-verify crl.pem
explicit-exit-notify
""", """\
client
dev tun
proto udp
remote {HOST} 1194
resolv-retry infinite
nobind
persist-key
persist-tun
remote-cert-tls server
auth SHA512
ignore-unknown-option block-outside-dns
verb 3
{CERT}
{KEY}
{CA}
{TC}
""")

# -------------------------------------------------------------------- kylemanna/docker-openvpn
# ovpn_genconfig -u udp://vpn.example.com (its defaults: pool 192.168.255.0/24, the route to
# 192.168.254.0/24, Google's resolvers, `comp-lzo no` pushed), and ovpn_getclient's combined
# profile.
DOCKER = Installer("docker-openvpn", "kylemanna/docker-openvpn: bin/ovpn_genconfig, bin/ovpn_getclient", """\
server {POOL}.0 255.255.255.0
verb 3
key {D}/server.key
ca {D}/ca.crt
cert {D}/server.crt
dh {D}/dh.pem
tls-auth {D}/ta.key
key-direction 0
keepalive 10 60
persist-key
persist-tun

proto udp
# Rely on Docker to do port mapping, internally always 1194
port 1194
dev tun0
status {D}/openvpn-status.log

user nobody
group nogroup
comp-lzo no

### Route Configurations Below
route 198.19.254.0 255.255.255.0

### Push Configurations Below
push "block-outside-dns"
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS 198.18.0.54"
push "comp-lzo no"
""", """\

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
""")

# ------------------------------------------------------------- Debian's sample-config-files
# /usr/share/doc/openvpn/examples/sample-config-files/server.conf and client.conf with their
# active lines, and the commented ones a user typically turns on (tls-auth, data-ciphers with its
# optional `?` cipher, user/group, max-clients, a pushed route), trailing comments kept.
DEBIAN = Installer("debian-sample", "Debian openvpn 2.6.14: examples/sample-config-files/{server,client}.conf", """\
port 1194
proto udp
dev tun
ca ca.crt
cert server.crt
key server.key  # This file should be kept secret
dh dh.pem
topology subnet
server {POOL}.0 255.255.255.0
ifconfig-pool-persist ipp.txt
push "route 198.19.10.0 255.255.255.0"
;push "redirect-gateway def1 bypass-dhcp"
keepalive 10 120
tls-auth ta.key 0 # This file is secret
data-ciphers AES-256-GCM:AES-128-GCM:?CHACHA20-POLY1305:AES-256-CBC
max-clients 100
user nobody
group nogroup
persist-key
persist-tun
status openvpn-status.log
verb 3
;mute 20
explicit-exit-notify 1
""", """\
client
dev tun
proto udp
remote {HOST} 1194
resolv-retry infinite
nobind
user nobody
group nogroup
persist-key
persist-tun
remote-cert-tls server
tls-auth [inline] 1
data-ciphers AES-256-GCM:AES-128-GCM:?CHACHA20-POLY1305:AES-256-CBC
verb 3
{CA}
{CERT}
{KEY}
{TA}
""")

# ------------------------------------------------------------------------------- OpenWrt
# net/openvpn's UCI `sample_server` (files/openvpn.config), each option as the line its netifd
# handler writes as a `--option value` line of its config (plus the --status/--syslog/--tmp-dir it
# adds), with the `option dev tun` its older sample had: without a `dev` Debian's 2.6 refuses
# `server` ("only makes sense with --dev tun or --dev tap"). Its up/down/route hotplug wiring is
# OpenWrt's own (/usr/libexec/openvpn-hotplug) and not part.
OPENWRT = Installer("openwrt", "openwrt/packages: net/openvpn files/openvpn.config sample_server, proto/openvpn.sh", """\
dev tun
dev-type tun
proto udp
status {D}/openvpn.sample_server.status
syslog openvpn_sample_server
tmp-dir /tmp
port 1194
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
dh {D}/dh.pem
server {POOL}.0 255.255.255.0
ifconfig-pool-persist {D}/ipp.txt
keepalive 10 120
persist-key
persist-tun
user nobody
verb 3
""", """\
client
dev tun
proto udp
remote {HOST} 1194
resolv-retry infinite
nobind
persist-key
persist-tun
user nobody
remote-cert-tls server
verb 3
{CA}
{CERT}
{KEY}
""")

# ------------------------------------------------------------------------------- pfSense
# src/etc/inc/openvpn.inc's server config for "Remote Access (SSL/TLS + User Auth)" (tun, UDP on
# IPv4, subnet topology, tls-auth, the ciphers' defaults), and the client export package's
# profile for it. The server config drives pfSense's own FreeBSD scripts and plugin.
PFSENSE = Installer("pfsense", "pfsense/pfsense: src/etc/inc/openvpn.inc openvpn_reconfigure; openvpn-client-export", """\
dev ovpns1
verb 1
dev-type tun
dev-node /dev/tun1
writepid {D}/server1.pid
#user nobody
#group nobody
script-security 3
daemon
keepalive 10 60
ping-timer-rem
persist-tun
persist-key
proto udp4
auth SHA256
up /usr/local/sbin/ovpn-linkup
down /usr/local/sbin/ovpn-linkdown
client-connect /usr/local/sbin/openvpn.attributes.sh
client-disconnect /usr/local/sbin/openvpn.attributes.sh
local {LOCAL}
tls-server
server {POOL}.0 255.255.255.0
client-config-dir {D}/csc
username-as-common-name
plugin /usr/local/lib/openvpn/plugins/openvpn-plugin-auth-script.so /usr/local/sbin/ovpn_auth_verify_async user TG9jYWwgRGF0YWJhc2U= false server1 1194
tls-verify "/usr/local/sbin/ovpn_auth_verify tls 'server' 1"
lport 1194
management {D}/sock unix
push "route 198.19.20.0 255.255.255.0"
capath {D}/capath
cert {D}/server.crt
key {D}/server.key
dh {D}/dh.pem
tls-auth {D}/ta.key 0
data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305
data-ciphers-fallback AES-256-CBC
allow-compression no
persist-remote-ip
float
topology subnet
explicit-exit-notify 1
""", """\
dev tun
persist-tun
persist-key
data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305
data-ciphers-fallback AES-256-CBC
auth SHA256
tls-client
client
resolv-retry infinite
remote {HOST} 1194 udp4
nobind
verify-x509-name "{SERVER_CN}" name
auth-user-pass
remote-cert-tls server
explicit-exit-notify
{CA}
{CERT}
{KEY}
key-direction 1
{TA}
""", refused={
    "dev-node ": "FreeBSD's /dev/tun1: OpenVPN 2.6 on Linux fails at start on it (\"Cannot open TUN/TAP dev\")",
    "up ": "a server's up/down scripts are not run here (pfSense's register its FreeBSD interface)",
    "down ": "as `up`",
    "client-connect ": "pfSense's own script, which exists only there (2.6 refuses a missing script too)",
    "client-disconnect ": "as client-connect",
    "plugin ": "pfSense's auth-script plugin (its user database): only OpenVPN's auth-pam and down-root "
               "plugins are done here, natively",
    "username-as-common-name": "with its user check (the plugin) gone there is none to take the name from: "
                               "refused, as OpenVPN 2.6 refuses it without one (options.c)",
    "tls-verify ": "as client-connect",
})

# ------------------------------------------------------------------------------- OPNsense
# src/opnsense/mvc/app/models/OPNsense/OpenVPN/OpenVPN.php (Instances: role server, tun, subnet
# topology, certificate + username/password, tls-crypt, the rendered option order), and its client
# export (PlainOpenVPN.php).
OPNSENSE = Installer("opnsense", "opnsense/core: models/OPNsense/OpenVPN/OpenVPN.php, library/OPNsense/OpenVPN/PlainOpenVPN.php", """\
dev ovpns1
ping-timer-rem
topology subnet
dh {D}/dh.pem
crl-verify {D}/crl.pem
verify-client-cert require
remote-cert-tls client
server {POOL}.0 255.255.255.0
username-as-common-name
client-config-dir {D}/csc
auth-user-pass-verify "/usr/local/opnsense/scripts/openvpn/ovpn_event.py --defer '0a9c6b1e'" via-env
learn-address "/usr/local/opnsense/scripts/openvpn/ovpn_event.py '1'"
client-connect "/usr/local/opnsense/scripts/openvpn/ovpn_event.py '0a9c6b1e'"
client-disconnect "/usr/local/opnsense/scripts/openvpn/ovpn_event.py '0a9c6b1e'"
tls-verify "/usr/local/opnsense/scripts/openvpn/ovpn_event.py '0a9c6b1e'"
push "redirect-gateway def1"
push "dhcp-option DNS 198.18.0.53"
persist-tun
persist-key
keepalive 10 60
dev-type tun
dev-node /dev/tun1
script-security 3
writepid {D}/instance.pid
daemon openvpn_server1
management {D}/instance.sock unix
proto udp
verb 3
up /usr/local/etc/inc/plugins.inc.d/openvpn/ovpn-linkup
down /usr/local/etc/inc/plugins.inc.d/openvpn/ovpn-linkdown
data-ciphers AES-256-GCM:CHACHA20-POLY1305
data-ciphers-fallback AES-256-GCM
{S_TC}
{S_CA}
{S_KEY}
{S_CERT}
""", """\
dev tun
persist-tun
persist-key
cipher AES-256-GCM
data-ciphers AES-256-GCM:CHACHA20-POLY1305
client
resolv-retry infinite
remote {HOST} 1194 udp
verify-x509-name "{SERVER_CN}" name
auth-user-pass
remote-cert-tls server
nobind
{CA}
{CERT}
{KEY}
{TC}
""", refused={
    "dev-node ": "as pfSense's",
    "auth-user-pass-verify ": "OPNsense's own event script, which exists only there (2.6 refuses a missing "
                              "script too)",
    "username-as-common-name": "as pfSense's: without the refused user check, as OpenVPN 2.6 (options.c)",
    "learn-address ": "as auth-user-pass-verify",
    "client-connect ": "as auth-user-pass-verify",
    "client-disconnect ": "as auth-user-pass-verify",
    "tls-verify ": "as auth-user-pass-verify",
    "up ": "a server's up/down scripts are not run here (OPNsense's register its FreeBSD interface)",
    "down ": "as `up`",
})

# ---------------------------------------------------------- Ubiquiti EdgeRouter / VyOS
# EdgeOS is closed; its `interfaces openvpn vtunN mode server` comes from Vyatta, whose open
# successor VyOS renders it with data/templates/openvpn/server.conf.j2: this is that template
# for a TLS server with a pushed route, a name server and a CRL, and a client written for it as
# Ubiquiti's help pages show.
EDGEROUTER = Installer("edgerouter-vyos", "vyos/vyos-1x: data/templates/openvpn/server.conf.j2 (EdgeOS/Vyatta lineage)", """\
### Autogenerated by interfaces_openvpn.py ###
verb 3
dev-type tun
dev vtun0
persist-key
proto udp
multihome
persist-tun
push "redirect-gateway def1"
disable-dco
#
# OpenVPN Server mode
#
mode server
tls-server
topology subnet
server {POOL}.0 255.255.255.0
push "route 198.19.30.0 255.255.255.0"
max-clients 50
client-config-dir {D}/ccd
keepalive 10 60
management {D}/openvpn-mgmt-intf unix
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DOMAIN example.lan"
# TLS options
ca {D}/ca.crt
cert {D}/server.crt
key {D}/server.key
crl-verify {D}/crl.pem
tls-version-min 1.2
dh none
# Encryption options
data-ciphers AES-256-GCM:AES-128-GCM
# https://vyos.dev/T5027
# Required to support BF-CBC (default ciphername when none given)
providers legacy default
auth SHA256
""", """\
client
dev tun
proto udp
remote {HOST} 1194
nobind
persist-key
persist-tun
remote-cert-tls server
data-ciphers AES-256-GCM:AES-128-GCM
auth SHA256
verb 3
{CA}
{CERT}
{KEY}
""")

# ------------------------------------------------------------------------------ eduVPN
# vpn-user-portal's src/OpenVpn/ServerConfig.php as vpn-server-node writes it (tests/data/
# internet-0.conf: UDP process 0 of a full-tunnel profile), and ClientConfig.php's profile.
EDUVPN = Installer("eduvpn", "eduvpn/vpn-user-portal ServerConfig.php, ClientConfig.php; vpn-server-node tests/data", """\
#
# OpenVPN Server Configuration
#
# ******************************************
# * THIS FILE IS GENERATED, DO NOT MODIFY! *
# ******************************************
#
verb 3
dev-type tun
user nobody
group nogroup
topology subnet
persist-key
persist-tun
remote-cert-tls client
dh none
tls-version-min 1.3
data-ciphers AES-256-GCM:CHACHA20-POLY1305
reneg-sec 36000
client-connect {D}/client-connect
client-disconnect {D}/client-disconnect
server {POOL}.0 255.255.255.128
server-ipv6 fd00:4242:4242:4242::/112
max-clients 124
keepalive 10 60
script-security 2
dev tun0
port 1194
management {D}/internet-0.sock unix
setenv PROFILE_ID internet
proto udp6
log {D}/server.log
explicit-exit-notify 1
push "explicit-exit-notify 1"
push "redirect-gateway def1 ipv6"
push "route 0.0.0.0 0.0.0.0"
push "block-outside-dns"
push "dhcp-option DNS 198.18.0.53"
push "dhcp-option DNS fd00:4242:4242:4242::53"
{S_CA}
{S_CERT}
{S_KEY}
{S_TC}
""", """\
# Profile: Internet
dev tun
client
nobind
remote-cert-tls server
verb 3
server-poll-timeout 10
tls-version-min 1.3
data-ciphers AES-256-GCM:CHACHA20-POLY1305
reneg-sec 0
{CA}
{CERT}
{KEY}
{TC}
remote {HOST} 1194 udp
remote {HOST} 1194 tcp
""", vm_refused=("client-connect", "client-disconnect"))

INSTALLERS: dict[str, Installer] = {i.name: i for i in (
    PIVPN, ANGRISTAN, ANGRISTAN_FP, NYR, DOCKER, DEBIAN, OPENWRT, PFSENSE, OPNSENSE, EDGEROUTER, EDUVPN)}


# ---------------------------------------------------------------------------------- the PKI
def _pem_cert(c: x509.Certificate) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(k) -> str:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def fingerprint(c: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in c.fingerprint(hashes.SHA256()))


@dataclass
class Rendered:
    """One installer's files written out: the server config, the client profile and the PKI's
    values a test checks against."""
    dir: Path
    server: Path
    client: Path
    server_text: str
    client_text: str
    pool: str


def write_pki(d: Path, server_cn: str = "server", client: str = "client1") -> dict[str, str]:
    """ca/server/client certificates (ECDSA P-256), an empty CRL, the static and tls-crypt-v2 keys
    (the client's with PiVPN's 22-character metadata, listed where its verify script looks), DH
    parameters and PiVPN's verify script, in `d`; returns the placeholder values."""
    d.mkdir(parents=True, exist_ok=True)
    ca = issue("Installer CA", None, None)
    srv = issue(server_cn, ca, ExtendedKeyUsageOID.SERVER_AUTH)
    cli = issue(client, ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca[0].subject).last_update(now)
           .next_update(now + datetime.timedelta(days=30)).sign(ca[1], hashes.SHA256()))
    static = keyfiles.generate_static_key()
    v2server = keyfiles.generate_tls_crypt_v2_server_key()
    metadata = secrets.token_hex(11)[:22]
    v2client = keyfiles.generate_tls_crypt_v2_client_key(keyfiles.parse_tls_crypt_v2_server_key(v2server),
                                                         metadata.encode())
    files = {"ca.crt": _pem_cert(ca[0]), "server.crt": _pem_cert(srv[0]), "server.key": _pem_key(srv[1]),
             f"{client}.crt": _pem_cert(cli[0]), f"{client}.key": _pem_key(cli[1]),
             "crl.pem": crl.public_bytes(serialization.Encoding.PEM).decode(), "dh.pem": FFDHE2048,
             "ta.key": static, "tc.key": static, "tls-crypt.key": static, "tc-v2/server.key": v2server,
             f"tc-v2/{client}.key": v2client, "tc-v2-metadata.txt": f"{client} {metadata}\n",
             "capath/ca.pem": _pem_cert(ca[0]),
             # PiVPN's TLSCryptV2Verify.sh, in our words: user-supplied metadata listed for a client
             "TLSCryptV2Verify.sh": (
                 "#!/bin/sh\n"
                 '[ "$script_type" = tls-crypt-v2-verify ] || exit 1\n'
                 '[ "$metadata_type" = 0 ] || exit 1\n'
                 'm=$(head -c 22 "$metadata_file") || exit 1\n'
                 '[ "${#m}" -ge 22 ] || exit 1\n'
                 f'grep -q " $m\\$" {d}/tc-v2-metadata.txt\n')}
    for name, text in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (d / "TLSCryptV2Verify.sh").chmod(0o755)
    for sub in ("ccd", "csc"):
        (d / sub).mkdir(exist_ok=True)
    for name in ("client-connect", "client-disconnect"):        # eduVPN's hooks: here they only log
        (d / name).write_text(f'#!/bin/sh\necho "$common_name" >> {d}/{name}.log\n')
        (d / name).chmod(0o755)
    return {
        "D": str(d), "SERVER_CN": server_cn,
        "CA": f"<ca>\n{files['ca.crt']}</ca>", "CERT": f"<cert>\n{files[client + '.crt']}</cert>",
        "KEY": f"<key>\n{files[client + '.key']}</key>", "TA": f"<tls-auth>\n{static}</tls-auth>",
        "TC": f"<tls-crypt>\n{static}</tls-crypt>", "TCV2": f"<tls-crypt-v2>\n{v2client}</tls-crypt-v2>",
        "S_CA": f"<ca>\n{files['ca.crt']}</ca>", "S_CERT": f"<cert>\n{files['server.crt']}</cert>",
        "S_KEY": f"<key>\n{files['server.key']}</key>", "S_TC": f"<tls-crypt>\n{static}</tls-crypt>",
        "FP_SERVER": fingerprint(srv[0]), "FP_CLIENT": fingerprint(cli[0]),
    }


def fill(template: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    assert "{" not in template.replace("${", ""), template       # every placeholder filled
    return template


def render(inst: Installer, d: Path, host: str = "198.18.0.1", local: str = "198.18.0.1",
           pool: str = "198.19.0", values: dict[str, str] | None = None) -> Rendered:
    """`inst`'s server config and client profile written in `d` (with a PKI of their own unless
    `values` from write_pki are given)."""
    v = dict(values or write_pki(d, server_cn=f"{inst.name}-server"))
    v.update(HOST=host, LOCAL=local, POOL=pool)
    server, client = fill(inst.server, v), fill(inst.client, v)
    sp, cp = d / f"{inst.name}.conf", d / f"{inst.name}.ovpn"
    sp.write_text(server)
    cp.write_text(client)
    os.chmod(cp, 0o600)
    return Rendered(d, sp, cp, server, client, pool)
