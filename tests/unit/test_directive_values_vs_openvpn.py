"""Config lines read by our parser and by Debian's OpenVPN 2.6.14, verdict against verdict
(README "Fortieth session (helper audit44)").

The guide: a config written for OpenVPN works unchanged where we support its directives, and a
security directive is enforced or refused, never ignored. Each line below is appended to a
client or server config whose only fault is its unloadable inline certificate: 2.6 reads every
option, runs its option checks ("Options error: ..."), and only then fails to load the
certificate ("Cannot load inline certificate file") -- before any socket or device. So "2.6
takes it" is that last message, "2.6 refuses it" an options error or a fatal error before it. No network is touched; the
run is in a fresh network namespace anyway (`unshare -n`).

DELIBERATE lists the lines we refuse although 2.6 takes them, each with the reason; the test
fails if 2.6 ever refuses one of them (the entry is then no longer a difference) or if ours
starts taking it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.config.table import NOOP, TABLE
from appliance.openvpn.errors import ConfigError

PEM = "<ca>\nx\n</ca>\n<cert>\nx\n</cert>\n<key>\nx\n</key>\n"
BASES = {"client": "client\ndev tun\nremote 198.18.60.9\n" + PEM,                  # 12 lines
         "server": "dev tun\nserver 198.18.61.0 255.255.255.0\ndh none\n" + PEM,   # 12 lines
         "p2p": "dev tun\nremote 198.18.60.9\nifconfig 10.9.0.1 10.9.0.2\ntls-server\ndh none\n" + PEM,
         # neither role yet (compat49: `server-bridge`, or `mode server` written out, added to it)
         "bare": "dev tun\ndh none\n" + PEM}

# (base, line, ours takes it): what each found difference is now. Lines with \n are several.
CASES = [
    # A server or point-to-point peer that checks neither a certificate nor a password: 2.6
    # refuses to start; ours served anyone (verify_client_cert applied on any TLS server role).
    ("server", "verify-client-cert none", False),
    ("server", "verify-client-cert optional", False),
    # (a relative socket path: Debian's openvpn binds it before it fails at the certificate, and
    # leaves it behind; relative, it lands in the run's tmp_path, not in /run: review45a)
    ("server", "verify-client-cert none\nmanagement a44.sock unix\nmanagement-client-auth", True),
    ("server", "verify-client-cert require", True),
    ("p2p", "verify-client-cert none", False),
    ("client", "verify-client-cert none", False),
    ("client", "verify-client-cert optional", False),
    # `require` is what a client or point-to-point peer does anyway: 2.6 takes the line (review45a).
    ("client", "verify-client-cert require", True), ("p2p", "verify-client-cert require", True),
    # A misspelt leak guard: 2.6 refuses the line; ours redirected without the flag.
    ("client", "redirect-gateway def1 block-locl", False),
    ("client", "redirect-gateway def1 block-local ipv6 bypass-dhcp", True),
    ("client", "redirect-private bogus", False),
    # Role mix-ups 2.6 refuses: ours accepted and ignored them (ccd-exclusive refused everyone).
    ("server", "ccd-exclusive", False),
    ("server", "tls-client", False),
    ("client", "server-ipv6 2001:db8::/64", False),
    # Argument counts 2.6 checks.
    ("client", "fast-io 1", False), ("client", "persist-key 1", False), ("client", "mute", False),
    ("client", "mute 10", True), ("client", "mute 10 1", False), ("client", "sndbuf", False),
    ("client", "ping 10 20", False), ("client", "hand-window 60 1", False), ("client", "local 198.18.0.1 1194", False),
    ("client", "reneg-sec 3600 1800", True), ("server", "status-version", False), ("server", "status-version 2", True),
    ("client", "disable-dco 1", True), ("client", "http-proxy-retry 1", True),
    # Values 2.6 takes that ours refused.
    ("client", "route-method route", True),
    # Security directives whose values agree (checked here so a change on either side shows).
    ("client", "tls-version-min 1.2 or-highest", True), ("client", "tls-version-min 1.4", False),
    ("client", "verify-x509-name foo bogus", False), ("client", "verify-x509-name foo name-prefix", True),
    ("client", "remote-cert-tls foo", False), ("client", "ns-cert-type bogus", False),
    ("client", "x509-username-field ext:foo", False), ("client", "allow-compression bogus", False),
    ("client", "pull-filter bogus route", False), ("client", "tls-cert-profile bogus", False),
    ("client", "replay-window 65537", False), ("client", "mtu-disc bogus", False),
    ("client", "fragment 1400 bogus", False), ("server", "hash-size 0 0", False),
    ("client", "setenv opt tls-version-min 1.5", False),
    ("client", "ignore-unknown-option tls-version-min\ntls-version-min 1.5", False),
    # Names are matched exactly, case included (options.c add_option: streq): compat47. Ours
    # took `KEEPALIVE` as keepalive, where 2.6 refuses to start ("Unrecognized option").
    ("client", "PERSIST-KEY", False), ("server", "Keepalive 10 60", False), ("server", "<CA>\nx\n</CA>", False),
    ("client", "ignore-unknown-option frob\nFROB 1", False), ("client", "ignore-unknown-option FROB\nFROB 1", True),
    ("client", "setenv opt PERSIST-KEY", True), ("client", "setenv OPT persist-key", True),
]

# compat49: every start-up option check of 2.6.14 that a Linux build reaches from these bases
# (options.c's msg(M_USAGE, ...) "Options error: ...", helper.c's helper_client_server and
# helper_keepalive), a line it refuses and, where a boundary is near, one it takes. README
# "Forty-fourth session (helper compat49)" has the table, and which checks the bases cannot reach.
NOPOOL = "server 198.18.61.0 255.255.255.0 nopool\n"
CHECKS26 = [
    # options_postprocess_verify_ce: proto, device, MTU, addresses, bind, management, proxies
    ("p2p", "proto tcp", False), ("client", "proto tcp", True), ("server", "proto tcp", True),
    ("client", "lladdr 00:11:22:33:44:55", False), ("server", "dev tap\nlladdr 00:11:22:33:44:55", True),
    ("client", "tun-mtu 1500\nlink-mtu 1600", False), ("server", "proto tcp-server\nmtu-test", False),
    ("client", "local 198.18.60.9", False), ("client", "local 198.18.60.9\nlport 1195", True),
    ("p2p", "local 198.18.60.9\nport 1195", False), ("p2p", "ifconfig 10.9.0.1 198.18.60.9", False),
    ("p2p", "local 10.9.0.1", False), ("server", "local 198.18.61.1", False),
    ("server", "local 198.18.61.2", False), ("server", "topology subnet\nlocal 198.18.61.2", True),
    ("p2p", "ifconfig 10.9.0.1 10.9.0.1", False), ("client", "bind\nnobind", False),
    ("client", "local 198.18.0.1\nnobind", False), ("client", "lport 1195\nnobind", False),
    ("server", "nobind", False), ("client", "management-hold", False),
    ("client", "management-log-cache 100", False), ("p2p", "management-query-passwords", False),
    ("server", "management-client-auth", False), ("client", "management-up-down", False),
    ("client", "management 127.0.0.1 7505\nmanagement-client-user root", False),
    ("client", "proto tcp-client\nfragment 1400", False), ("server", "proto tcp-client", False),
    ("client", "http-proxy 198.18.0.1 8080", False),
    ("client", "proto tcp-client\nhttp-proxy-option VERSION 1.1", False),
    ("client", "proto tcp-client\nhttp-proxy 198.18.0.1 8080\nsocks-proxy 198.18.0.1 1080", False),
    ("p2p", "proto tcp-server\nsocks-proxy 198.18.0.1", False),
    ("p2p", "proto tcp-server\nremote 198.18.60.10", False), ("p2p", "proto tcp-server", True),
    # options_postprocess_verify_ce, --mode server (a `server` line sets it)
    ("server", "dev null", False), ("server", "pull", False), ("server", "port-share 198.18.0.1 443", False),
    ("server", "proto tcp-server\nport-share 198.18.0.1 443", True), ("server", "remote 198.18.60.9", False),
    ("server", "proto tcp-server\nhttp-proxy 198.18.0.1 8080", False), ("server", "socks-proxy 198.18.0.1", False),
    ("server", "<connection>\nremote 198.18.60.9\n</connection>", False), ("server", "shaper 1000", False),
    ("server", "ipchange /bin/true", False), ("server", "proto tcp-server\nconnect-freq 10 10", False),
    ("server", "connect-freq 10 10", True),
    ("server", NOPOOL + "topology net30\nifconfig-pool 198.18.61.10 198.18.61.20 255.255.255.0", False),
    ("server", NOPOOL + "topology subnet\nifconfig-pool 198.18.61.10 198.18.61.20 255.255.255.0", True),
    ("server", "redirect-gateway def1", False), ("server", "route-delay 5", False), ("server", "up-delay", False),
    ("server", NOPOOL + "ifconfig-pool-persist ipp.txt", False), ("server", "ifconfig-pool-persist ipp.txt", True),
    ("server", "ifconfig-ipv6-pool 2001:db8::1000/64", False), ("server", "allow-recursive-routing", False),
    ("server", "auth-user-pass", False), ("server", "auth-gen-token\nreneg-sec 0", False),
    ("server", "auth-gen-token 0 100", False), ("server", "username-as-common-name", False),
    ("server", "username-as-common-name\nauth-user-pass-verify /bin/true via-file", True),
    ("server", "auth-user-pass-optional", False), ("server", "vlan-tagging", False),
    ("server", "dev tap\nvlan-accept untagged", False), ("server", "dev tap\nvlan-pvid 5", False),
    ("server", "dev tap\nvlan-tagging\nvlan-pvid 5", True),
    # options_postprocess_verify_ce, not --mode server: "... requires --mode server"
    ("client", "ifconfig-pool 10.0.0.2 10.0.0.9", False), ("client", "ifconfig-pool-persist ipp.txt", False),
    ("client", "ifconfig-ipv6-pool 2001:db8::1000/64", False), ("client", "learn-address /bin/true", False),
    ("client", "client-connect /bin/true", False), ("client", "client-crresponse /bin/true", False),
    ("client", "client-disconnect /bin/true", False), ("client", "client-config-dir /tmp", False),
    ("client", "client-to-client", False), ("client", "duplicate-cn", False),
    ("client", "connect-freq 10 10", False), ("client", "username-as-common-name", False),
    ("client", "auth-user-pass-optional", False), ("client", "opt-verify", False),
    ("client", "auth-user-pass-verify /bin/true via-file", False), ("client", "auth-gen-token", False),
    ("client", "port-share 198.18.0.1 443", False), ("client", "stale-routes-check 10", False),
    ("client", "vlan-tagging", False), ("client", "force-tls-key-material-export", False),
    ("p2p", "ifconfig-pool 10.0.0.2 10.0.0.9", False), ("p2p", "ifconfig-pool-persist ipp.txt", False),
    ("p2p", "learn-address /bin/true", False), ("p2p", "client-to-client", False),
    ("p2p", "port-share 198.18.0.1 443", False), ("p2p", "vlan-tagging", False),
    # options_postprocess_verify_ce's TLS checks; options_postprocess_verify's dns; mutate's data-ciphers, compression
    ("client", "tls-server", False), ("p2p", "tls-client", False),
    ("client", "tls-version-min 1.3\ntls-version-max 1.2", False),
    ("p2p", "tls-version-min 1.3\ntls-version-max 1.2", False),
    ("server", "tls-version-min 1.3\ntls-version-max 1.2", False),
    ("client", "tls-version-min 1.2\ntls-version-max 1.2", True),
    ("client", "pkcs11-providers /nonexistent.so", False),
    ("client", "management a49.sock unix\nmanagement-external-cert foo", False),
    ("client", "<tls-auth>\nx\n</tls-auth>\n<tls-crypt>\nx\n</tls-crypt>", False),
    ("client", "<tls-crypt-v2>\nx\n</tls-crypt-v2>\n<tls-auth>\nx\n</tls-auth>", False),
    ("p2p", "auth-user-pass", False), ("client", "data-ciphers FOO", False),
    ("client", "allow-compression no\ncompress lz4", False),
    ("client", "dns server 1 resolve-domains example.com", False),
    # helper.c: helper_client_server (server, server-ipv6, server-bridge) and helper_keepalive
    ("client", "server 198.18.61.0 255.255.255.0", False), ("server", NOPOOL + "server-ipv6 2001:db8::/64", False),
    ("server", "server-ipv6 2001:db8::/64\nifconfig-ipv6-pool 2001:db8::1000/64", False),
    ("server", "server-bridge 10.8.0.4 255.255.255.0 10.8.0.50 10.8.0.100", False),
    ("server", "ifconfig-pool 198.18.61.10 198.18.61.20", False),
    ("server", "server 198.18.61.1 255.255.255.0", False), ("server", "server 198.18.61.0 255.0.255.0", False),
    ("server", "server 10.0.0.0 255.0.0.0", False), ("server", "server 10.0.0.0 255.255.0.0", True),
    ("server", "server 198.18.61.0 255.255.255.252", False),
    ("server", "dev tap\nserver 198.18.61.0 255.255.255.254", False),
    ("server", "dev tap\nserver 198.18.61.0 255.255.255.252", True),
    ("client", "dev tap\nserver-bridge 10.8.0.4 255.255.255.0 10.8.0.50 10.8.0.100", False),
    ("p2p", "server-bridge 10.8.0.4 255.255.255.0 10.8.0.50 10.8.0.100", False),
    ("client", "keepalive 0 10", False), ("client", "keepalive 10 15", False), ("client", "keepalive 10 20", True),
    ("client", "keepalive 0 0", True), ("server", "keepalive 0 0", True),
    ("client", "keepalive 10 60\nping 10", False), ("p2p", "keepalive 10 60\nping-exit 60", False),
    ("server", "keepalive 10 60\nping-restart 60", False), ("server", "ping 5\nkeepalive 10 60", False),
    ("client", "ping-restart 60\nkeepalive 10 60", False), ("server", "keepalive 10 60\nping 0", True),
    ("client", "ping-exit 60\nping-restart 60", True),
    # (the same from a bare device: server-bridge's and a written-out --mode server's own checks)
    ("bare", "dev tap\nserver-bridge 10.8.0.4 255.255.255.0 10.9.0.50 10.8.0.100", False),
    ("bare", "dev tap\nserver-bridge 10.8.0.4 255.255.255.0 10.8.0.50 10.8.0.100", True),
    ("bare", "dev tap\nserver-bridge 10.8.0.4 255.255.255.0 10.8.0.50 10.8.0.100\nifconfig-pool 10.8.0.50 10.8.0.60",
     False),
    ("bare", "server-bridge 10.8.0.4 255.255.255.0 10.8.0.50 10.8.0.100", False),
    ("bare", "ifconfig 10.8.0.1 10.8.0.2\nmode server", False),
    ("bare", "ifconfig 10.8.0.1 10.8.0.2\nmode server\ntls-server", True),
    # review49f: 2.6 compares each connection entry's own strings -- `rport` is not the local port,
    # a later `port` is; a <connection> block's own lport/local (or inherited ones); names unresolved
    ("client", "local 198.18.60.9\nrport 1195", True), ("client", "port 1195\nlocal 198.18.60.9\nrport 1196", True),
    ("bare", "client\nremote 198.18.60.21\nlocal 198.18.60.21\nlport 1195\nport 1196", False),
    ("bare", "client\nremote 198.18.60.21\nlocal 198.18.60.21\nport 1196\nlport 1195", True),
    ("bare", "client\nremote 198.18.60.20\nremote 198.18.60.21 1195\nlocal 198.18.60.21", True),
    ("bare", "client\nlocal 198.18.60.20\n<connection>\nremote 198.18.60.20\nlport 1195\n</connection>", True),
    ("bare", "client\nlocal 198.18.60.20\n<connection>\nremote 198.18.60.20\nlocal 198.18.60.22\n</connection>",
     True),
    ("bare", "client\nlocal 198.18.60.20\n<connection>\nremote 198.18.60.20\n</connection>", False),
    ("bare", "client\n<connection>\nremote 198.18.60.21\n</connection>\n<connection>\nremote 198.18.60.20\n"
     "local 198.18.60.20\n</connection>", False),
    ("bare", "ifconfig 10.9.0.1 10.9.0.2\ntls-client\n<connection>\nremote 198.18.60.1\nlocal 10.9.0.1\n"
     "</connection>", False),
    ("bare", "client\nremote vpn.example.com\nlocal vpn.example.com", False),
    ("bare", "client\nremote vpn.example.com\nlocal VPN.example.com", True),
    ("client", "local localhost\nremote 127.0.0.1", True), ("client", "local ::1\nremote 0::1", True),
    ("client", "local ::1\nremote ::1", False),
    ("bare", "ifconfig 10.9.0.1 10.9.0.2\nifconfig-ipv6 2001:db8::1 2001:db8::2\ntls-server\nremote 2001:db8::2", True),
    ("server", "server-ipv6 2001:db8::/64\nlocal 2001:db8::1", True),
    # compat50: a server's tls-crypt-v2 beside tls-auth or tls-crypt (its clients without a key of
    # their own use that one: settings.shared_protection); never tls-auth with tls-crypt
    ("server", "<tls-crypt-v2>\nx\n</tls-crypt-v2>\n<tls-auth>\nx\n</tls-auth>", True),
    ("server", "<tls-crypt>\nx\n</tls-crypt>\n<tls-crypt-v2>\nx\n</tls-crypt-v2>", True),
    ("server", "<tls-auth>\nx\n</tls-auth>\n<tls-crypt>\nx\n</tls-crypt>", False),
    ("server", "<tls-auth>\nx\n</tls-auth>\n<tls-crypt>\nx\n</tls-crypt>\n<tls-crypt-v2>\nx\n</tls-crypt-v2>", False),
    ("client", "<tls-crypt>\nx\n</tls-crypt>\n<tls-crypt-v2>\nx\n</tls-crypt-v2>", False),
    # compat50: a subnet or TAP server's own `ifconfig` is NETWORK+1 and the netmask (helper.c), and
    # 2.6 compares `local` with both; a net30 server's is NETWORK+1, NETWORK+2
    ("server", "topology subnet\nlocal 255.255.255.0", False), ("server", "dev tap\nlocal 255.255.255.0", False),
    ("server", "local 255.255.255.0", True), ("server", "topology p2p\nlocal 198.18.61.2", False),
    ("bare", "mode server\ntls-server\ntopology subnet\nifconfig 10.8.0.1 255.255.255.0\nlocal 255.255.255.0", False),
    # compat50: the local port is the last port/lport line's (a bound client's, 2.6's `port` alone
    # does not make a client bind: need_bind); the remote's the last port/rport line's
    ("client", "port 1195\nnobind", True), ("client", "rport 1195\nnobind", True),
    ("client", "local 198.18.60.9\nport 1195\nrport 1194", True),
    ("client", "local 198.18.60.9\nrport 1195\nport 1194", False),
    ("client", "local 198.18.60.9\nlport 1195\nrport 1194\nport 1194", False),
]
CASES += CHECKS26

# compat48: every keyword-valued directive's values in other cases than 2.6's. 2.6.14 compares a
# value with streq/strcmp everywhere (options.c, socket.c ascii2proto, proxy.c, route.c; no
# strcasecmp in its option parsing), so `proto UDP` stops it at start; ours took it, and
# `route-gateway DHCP` (read as a host name) and `http-proxy ... BASIC` (2.6: "unknown HTTP
# authentication method", fatal before the certificate is loaded). (base, line with {} for
# the keyword, the keyword as 2.6 spells it): the line with that spelling, then upper-case,
# lower-case and capitalised, each verdict against Debian's (VALUE_CASE_LINES).
VALUE_KEYWORDS = [
    ("client", "proto {}", "udp"), ("client", "proto {}", "tcp-client"), ("client", "proto {}", "udp6"),
    ("server", "proto {}", "tcp-server"), ("client", "remote 198.18.60.9 1194 {}", "udp"),
    ("client", "dev-type {}", "tun"), ("client", "dev-type {}", "tap"),
    ("server", "topology {}", "subnet"), ("server", "topology {}", "net30"), ("server", "topology {}", "p2p"),
    ("client", "remote-cert-tls {}", "server"), ("client", "ns-cert-type {}", "server"),
    ("client", "auth-retry {}", "nointeract"), ("client", "auth-retry {}", "none"),
    ("client", "compress {}", "lz4-v2"), ("client", "compress {}", "stub-v2"), ("client", "compress {}", "lzo"),
    ("client", "comp-lzo {}", "no"), ("client", "comp-lzo {}", "adaptive"), ("client", "comp-lzo {}", "yes"),
    ("client", "allow-compression {}", "no"), ("client", "allow-compression {}", "asym"),
    ("client", "verify-x509-name foo {}", "name"), ("client", "verify-x509-name foo {}", "subject"),
    ("client", "verify-x509-name foo {}", "name-prefix"), ("client", "tls-version-min 1.2 {}", "or-highest"),
    ("client", "tls-version-max {}", "1.3"),
    ("client", "redirect-gateway {}", "def1"), ("client", "redirect-gateway def1 {}", "bypass-dhcp"),
    ("client", "redirect-gateway def1 {}", "block-local"), ("client", "redirect-gateway def1 {}", "ipv6"),
    ("client", "redirect-gateway def1 {}", "!ipv4"), ("client", "redirect-gateway def1 {}", "local"),
    ("client", "redirect-gateway def1 {}", "autolocal"), ("client", "redirect-gateway def1 {}", "bypass-dns"),
    ("client", "redirect-private {}", "local"),
    ("client", "mtu-disc {}", "yes"), ("client", "mtu-disc {}", "maybe"), ("client", "fragment 1400 {}", "mtu"),
    ("client", "mssfix 1400 {}", "mtu"), ("client", "mssfix 1400 {}", "fixed"),
    ("client", "pull-filter {} route", "accept"), ("client", "pull-filter {} route", "ignore"),
    ("client", "tls-cert-profile {}", "preferred"), ("client", "tls-cert-profile {}", "legacy"),
    ("client", "resolv-retry {}", "infinite"), ("client", "remap-usr1 {}", "SIGTERM"),
    ("client", "socket-flags {}", "TCP_NODELAY"),
    # (`basic` reads the file x, one line here: ours refuses that at parse, 2.6 at start)
    ("client", "proto tcp-client\nhttp-proxy 198.18.0.1 8080 x {}", "none"),
    ("client", "proto tcp-client\nhttp-proxy 198.18.0.1 8080\nhttp-proxy-option {} 1.1", "VERSION"),
    ("client", "proto tcp-client\nhttp-proxy 198.18.0.1 8080\nhttp-proxy-option {} foo", "AGENT"),
    ("client", "dhcp-option {} 198.18.0.53", "DNS"), ("client", "dhcp-option {} example.com", "DOMAIN"),
    ("client", "route 198.18.70.0 255.255.255.0 {}", "vpn_gateway"),
    ("client", "route 198.18.70.0 255.255.255.0 {}", "net_gateway"), ("client", "route-gateway {}", "dhcp"),
    ("client", "route-gateway {}", "vpn_gateway"),
    ("client", "dns server 1 address 198.18.0.53\ndns server 1 transport {}", "DoH"),
    ("client", "dns server 1 address 198.18.0.53\ndns server 1 transport {}", "plain"),
    ("client", "dns server 1 address 198.18.0.53\ndns server 1 dnssec {}", "yes"),
    ("client", "dns {} example.com", "search-domains"),
    ("server", "auth-user-pass-verify /bin/true {}", "via-file"),
    ("server", "auth-user-pass-verify /bin/true {}", "via-env"),
    ("server", "management a48.sock unix\nmanagement-client-auth\nverify-client-cert {}", "optional"),
    ("server", "verify-client-cert {}", "require"),
    ("server", "dev tap\nvlan-tagging\nvlan-accept {}", "tagged"), ("server", "crl-verify /tmp {}", "dir"),
    ("server", "server 198.18.62.0 255.255.255.0 {}", "nopool"), ("client", "verify-hash " + ":".join(["a1"] * 32) + " {}", "SHA256"),
]


def _spellings(word: str) -> list[str]:
    return [word] + sorted({word.upper(), word.lower(), word[:1].upper() + word[1:].lower()} - {word})


VALUE_CASE_LINES = list(dict.fromkeys((b, t.format(v)) for b, t, k in VALUE_KEYWORDS for v in _spellings(k)))

# Lines we refuse and 2.6 takes, on purpose.
DELIBERATE = {
    ("client", "resolv-retry INFINITE"): "2.6 reads any word but `infinite` as a number, 0: resolve once, not "
                                         "for ever -- a misspelt infinite is pointed at (compat48)",
    ("client", "resolv-retry Infinite"): "as resolv-retry INFINITE",
    ("client", "dev-type TUN"): "2.6 takes the line and stops at start (\"problem with tun vs. tap setting\", "
                                "seen with Debian's 2.6.14): refused at the line",
    ("client", "dev-type Tun"): "as dev-type TUN", ("client", "dev-type TAP"): "as dev-type TUN",
    ("client", "dev-type Tap"): "as dev-type TUN",
    ("client", "connect-retry foo"): "a number that is not one: 2.6's atoi reads it as 0, a typo we point at",
    ("client", "auth none"): "no HMAC on the control channel's tls-auth / a CBC data channel: never here",
    ("client", "cipher none"): "an unencrypted data channel: never here",
    ("client", "data-ciphers-fallback BF-CBC"): "64-bit block ciphers are not offered (sweet32)",
    ("client", "allow-compression yes"): "compressing what we send (VORACLE): never here",
    ("client", "auth-token abc"): "a token is the server's to push; in a file it stood in for the password",
    ("server", "block-ipv6"): "a client's directive; on a server it would do nothing (`push \"block-ipv6\"`)",
    ("client", "bind foo"): "2.6 ignores any word but ipv6only; a typo here is pointed at",
    ("client", "no-replay"): "replay protection cannot be switched off",
    # compat49: start-up checks where ours is stricter than 2.6.14 on purpose
    ("client", "tls-version-max 1.1"): "below our lowest TLS version (1.2, tls-version-min's default here; 2.6's "
                                       "is 1.0): no version would be left for a handshake",
    ("p2p", "nobind"): "a point-to-point tls-server here listens on its port; 2.6 takes it (a tls-server that "
                       "cannot be reached until it sends first)",
    ("client", "mtu-test"): "the MTU test is not implemented: refused, not ignored",
    ("server", "opt-verify"): "option-string checks of clients are not implemented (deprecated in 2.6)",
    ("server", "stale-routes-check 10"): "would remove a connected client's iroutes (README: stale-routes-check)",
    # compat50: 2.6 compares the port strings, so a leading zero hides the same port from its check;
    # the client then binds the remote's own address and port and sends to itself
    ("client", "local 198.18.60.9\nlport 01194"): "the remote's address and port spelt with a leading zero: "
                                                   "2.6 compares the strings and starts a client that sends "
                                                   "to its own socket",
    ("client", "local 198.18.60.9\nrport 01194"): "as lport 01194 (the remote's port 01194 against the local 1194)",
    ("server", "server 198.18.61.0 255.255.255.248"): "2.6 takes the line and stops at start, after the "
                                                      "certificate (pool.c: \"IPv4 pool size is too small\"): "
                                                      "ours at the line",
}


def _ours(base: str, line: str) -> "tuple[bool, str]":
    try:
        parse_config(BASES[base] + line + "\n", "/mem/p.conf", read_file=lambda p: b"x")
        return True, ""
    except ConfigError as e:
        return False, str(e)


def _verdict(out: str) -> bool:
    """2.6's verdict from its output: True when it took every line (it got as far as loading the
    certificate). Refused: an options error, or a start that fails before the certificate is
    loaded (an OpenSSL provider, a cert profile, an mtu-disc type are checked there; no socket yet)."""
    if "Cannot load inline certificate file" in out:
        return True
    assert "Options error" in out or "Exiting due to fatal error" in out, out   # else no verdict at all
    return False


def _run_theirs(configs: "list[tuple[str, str]]", tmp_path) -> "dict[tuple[str, str], str]":
    """Debian's openvpn on each config, all in ONE fresh network namespace (`unshare -n` once, not
    once per line: under the suite's load each namespace's creation and teardown waited on the
    kernel's locks the interop tests hold, ~26 s for the file's 111 runs in CI against ~3 s on a
    quiet machine). Each run in its own directory: a relative socket path lands there."""
    openvpn = shutil.which("openvpn") or "/usr/sbin/openvpn"
    dirs = []
    for n, (base, line) in enumerate(configs):
        d = tmp_path / f"c{n}"
        d.mkdir()
        (d / "p.conf").write_text(BASES[base] + line + "\n")
        dirs.append(str(d))
    loop = 'for d in "$@"; do (cd "$d" && "$0" --config p.conf >out 2>&1 </dev/null); done; exit 0'
    subprocess.run(["unshare", "-n", "sh", "-c", loop, openvpn, *dirs], check=True, timeout=300,
                   stdin=subprocess.DEVNULL)
    return {c: (Path(d) / "out").read_text() for c, d in zip(configs, dirs)}


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    """(base, line) -> 2.6's output, for every line this file compares (each test reads its verdict)."""
    configs = list(dict.fromkeys([(b, ln) for b, ln, _ in CASES] + list(DELIBERATE) + NOOP_LINES
                                 + VALUE_CASE_LINES))
    return _run_theirs(configs, tmp_path_factory.mktemp("openvpn26"))


def _cid(c) -> str:
    return f"{c[0]}:{c[1]}".replace("\n", "|")


@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_ours(case):
    base, line, taken = case
    ok, why = _ours(base, line)
    assert ok is taken, why
    if not ok:
        # At the file and line of the directive at fault (the base is 11-14 lines; some checks
        # name the directive's own line among several).
        assert why.startswith("/mem/p.conf:1"), why


@pytest.mark.parametrize("key", DELIBERATE, ids=_cid)
def test_deliberate_differences_are_refused_with_a_reason(key):
    ok, why = _ours(*key)
    assert not ok and f": {key[1].split()[0]}:" in why, why


needs_openvpn = pytest.mark.skipif(not (shutil.which("openvpn") or os.path.exists("/usr/sbin/openvpn"))
                                   or not shutil.which("unshare") or os.geteuid() != 0,
                                   reason="needs Debian's openvpn and root for unshare -n")


@pytest.mark.openvpn
@needs_openvpn
@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_as_debians_openvpn(case, theirs):
    base, line, _ = case
    out = theirs[base, line]
    assert _verdict(out) is _ours(base, line)[0], out


@pytest.mark.openvpn
@needs_openvpn
@pytest.mark.parametrize("key", DELIBERATE, ids=_cid)
def test_deliberate_differences_are_still_differences(key, theirs):
    out = theirs[key]
    assert _verdict(out) and not _ours(*key)[0], out


# Generated: every no-op directive with none, one and two arguments (the word `1`) in a client
# config (hash-size, the one no-op whose check depends on the role, is in a server's too). A
# no-op's only behaviour is whether the line is taken, so this is all of it.
_SKIP_NOOP = {"dev-node": "names a device; checked against /dev/net/tun in test_startup_checks26",
              "dh": "names a file"}
NOOP_LINES = [(base, f"{n}{args}") for n in sorted(NOOP - set(_SKIP_NOOP))
              for args in ("", " 1", " 1 1")
              for base in (("client", "server") if n == "hash-size" else ("client",))]


@pytest.mark.openvpn
@needs_openvpn
def test_every_no_op_takes_the_arguments_2_6_takes(theirs):
    wrong = []
    for base, line in NOOP_LINES:
        out = theirs[base, line]
        taken, (ours, why) = _verdict(out), _ours(base, line)
        if taken is not ours:
            wrong.append(f"{base}: {line!r}: 2.6 {'takes' if taken else 'refuses'} it, ours "
                         f"{'takes' if ours else 'refuses'} it ({why or out.strip().splitlines()[-1]})")
    assert not wrong, "\n".join(wrong)
    assert len(NOOP_LINES) == 3 * (len(NOOP) - len(_SKIP_NOOP) + 1) and all(TABLE[n] for n in NOOP)


def test_a_keyword_value_is_taken_only_as_2_6_spells_it():
    """compat48, without Debian's binary: each keyword as 2.6 spells it is taken (those we refuse
    whatever the case aside), every other spelling is either refused at its file and line or one
    2.6 takes too (VALUE_TAKEN_ANY_CASE: a word it ignores, a host name, a TLS version's extra
    word, a digest or a flag name OpenSSL or its option list reads without case)."""
    for base, t, k in VALUE_KEYWORDS:
        for v in _spellings(k):
            line = t.format(v)
            ok, why = _ours(base, line)
            if v == k:
                assert ok, (line, why)
            elif (base, line) in DELIBERATE or not ok:
                assert not ok and why.startswith("/mem/p.conf:1"), (line, why)
            else:
                assert (t, k) in VALUE_TAKEN_ANY_CASE, f"{line!r} taken: 2.6 refuses it"


# Keywords whose other spellings 2.6.14 takes too (Debian's binary says so:
# test_keyword_values_as_debians_openvpn): what it does with them is its own reading, not a
# keyword's -- `dhcp-option dns` an unknown type it skips with a warning (its scripts still get the
# line), `route ... VPN_GATEWAY` a host name, `tls-version-min 1.2 OR-HIGHEST` an extra word it
# ignores, `verify-hash ... sha256` a digest name OpenSSL reads without case. Ours reads them the
# same ways where it takes them.
VALUE_TAKEN_ANY_CASE = {
    ("dhcp-option {} 198.18.0.53", "DNS"), ("dhcp-option {} example.com", "DOMAIN"),
    ("route 198.18.70.0 255.255.255.0 {}", "vpn_gateway"), ("route 198.18.70.0 255.255.255.0 {}", "net_gateway"),
    ("tls-version-min 1.2 {}", "or-highest"),
}


@pytest.mark.openvpn
@needs_openvpn
def test_keyword_values_as_debians_openvpn(theirs):
    """Every spelling of every keyword of VALUE_KEYWORDS, ours against Debian's 2.6.14, verdict
    against verdict (DELIBERATE aside, each with its reason)."""
    wrong = []
    for base, line in VALUE_CASE_LINES:
        if (base, line) in DELIBERATE:
            continue
        taken, (ours, why) = _verdict(theirs[base, line]), _ours(base, line)
        if taken is not ours:
            wrong.append(f"{base}: {line!r}: 2.6 {'takes' if taken else 'refuses'} it, ours "
                         f"{'takes' if ours else 'refuses'} it ({why or theirs[base, line].strip().splitlines()[-1]})")
    assert not wrong, "\n".join(wrong)
    assert len(VALUE_CASE_LINES) > 200
