"""Write the seed corpora (tests/fuzz/seeds/<target>/) from real traffic and sample configs.

    python -m tests.fuzz.make_corpus [--out DIR] [--targets a,b]

Packets come from in-memory client/server pairs (every protection), captured on the wire; the
key-method, push and peer-info texts are what those sessions exchange; configs are samples of
what users write. Each seed carries the target's mode byte where the target has one (see
targets.py), so the fuzzer starts inside every mode.
"""
from __future__ import annotations

import argparse
import hashlib
import struct
from pathlib import Path

from appliance.openvpn import wrapping
from appliance.openvpn.keymethod import KeyMethod2, build_push_reply, encode_key_method_2
from appliance.openvpn.opcodes import OCC_EXIT, OCC_MAGIC, PING_MAGIC, Op, op_byte
from appliance.openvpn.packet import encode_body, encode_tlv
from appliance.openvpn.framing import frame

from . import harness as h
from .targets import DNS_SEP, PAIR_KINDS, dhcp_decoder

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"

PEER_INFO = ("IV_VER=2.6.12\nIV_PLAT=linux\nIV_PROTO=990\nIV_NCP=2\nIV_CIPHERS=AES-256-GCM:AES-128-GCM:"
             "CHACHA20-POLY1305\nIV_LZ4=1\nIV_LZ4v2=1\nIV_LZO=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"
             "IV_TCPNL=1\nIV_MTU=1500\nIV_SSO=webauth,openurl,crtext\nIV_HWADDR=52:54:00:12:34:56\n"
             "UV_CLIENT=fuzz\nIV_GUI_VER=eduVPN_4.0\n")
OPTIONS = "V4,dev-type tun,link-mtu 1549,tun-mtu 1500,proto UDPv4,keysize 256,key-method 2,tls-client"

PUSH = ["route-gateway 198.19.0.1", "topology subnet", "ping 10", "ping-restart 60",
        "ifconfig 198.19.0.2 255.255.255.0", "ifconfig-ipv6 fd00::1000/64 fd00::1",
        "route 198.18.100.0 255.255.255.0", "route 10.0.0.0 255.0.0.0 net_gateway 5",
        "route-ipv6 2001:db8::/32", "redirect-gateway def1 ipv6 block-local", "dhcp-option DNS 198.19.0.1",
        "dhcp-option DOMAIN example.org", "peer-id 3", "cipher AES-256-GCM", "protocol-flags cc-exit tls-ekm",
        "key-derivation tls-ekm", "tun-mtu 1500", "compress stub-v2", "auth-token SESS_ID_AT_abc",
        "auth-token-user dXNlcg==", "explicit-exit-notify 1", "block-outside-dns",
        "client-nat snat 198.18.5.0 255.255.255.0 198.18.9.0", "client-nat dnat 10.1 255.255.255.255 0x0a000002"]

CLIENT_OVPN = """\
client
dev tun
proto udp
remote vpn.example.org 1194
remote 198.18.0.1 443 tcp
remote-random
resolv-retry infinite
nobind
persist-key
persist-tun
remote-cert-tls server
verify-x509-name server name
tls-version-min 1.2
data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305
data-ciphers-fallback AES-256-CBC
auth SHA256
reneg-sec 0
keepalive 10 60
explicit-exit-notify 2
redirect-gateway def1 ipv6
route 10.1.0.0 255.255.0.0 net_gateway
pull-filter ignore "route 10."
pull-filter reject "redirect-gateway"
auth-user-pass
auth-nocache
verb 3
ca ca.crt
cert client.crt
key client.key
tls-crypt tc.key
"""

SERVER_CONF = """\
mode server
tls-server
port 1194
proto udp6
dev tun
topology subnet
server 198.19.0.0 255.255.255.0
server-ipv6 fd00:1::/64
ifconfig-pool 198.19.0.10 198.19.0.100
push "route 198.18.100.0 255.255.255.0"
push "dhcp-option DNS 198.19.0.1"
push "redirect-gateway def1"
route 198.18.200.0 255.255.255.0
client-to-client
duplicate-cn
max-clients 16
keepalive 10 120
ca ca.crt
cert server.crt
key server.key
dh none
tls-crypt-v2 v2server.key
data-ciphers AES-256-GCM:CHACHA20-POLY1305
verify-client-cert require
client-config-dir ccd
explicit-exit-notify 1
auth-user-pass-verify passwd.db passdb
verb 4
"""

INLINE_OVPN = """\
client
dev tun
remote 198.18.0.1 1194 udp
key-direction 1
<ca>
-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ8
-----END CERTIFICATE-----
</ca>
<tls-auth>
-----BEGIN OpenVPN Static key V1-----
%s
-----END OpenVPN Static key V1-----
</tls-auth>
""" % "\n".join(h.STATIC_KEY.hex()[i:i + 32] for i in range(0, 512, 32))

CCD = """\
ifconfig-push 198.19.0.50 255.255.255.0
iroute 198.18.60.0 255.255.255.0
push "route 198.18.60.0 255.255.255.0"
push-reset
disable
"""

TOMLS = [
    """# router
[appliance]
hostname = "vpn-appliance"
log_level = "info"

[wan]
name = "eth0"
address = "198.18.0.2/24"
gateway = "198.18.0.1"

[lan]
name = "eth1"
address = "198.18.50.1/24"
nat = true

[vpn]
role = "client"
config = "client.ovpn"
""",
    """[appliance]
hostname = "vpn-gw"
log_level = "debug"

[wan]
mac = "52:54:00:ab:34:56"
dhcp = true
dns = ["198.18.0.1", "198.18.0.53"]

[lan]
mac = "52:54:00:AB:34:57"
address = "198.18.50.1/24"
nat = false

[vpn]
role = "client"
inline = '''
""" + CLIENT_OVPN.replace("ca ca.crt\ncert client.crt\nkey client.key\ntls-crypt tc.key\n", "") + """'''
""",
    """[wan]
name = "eth0"
address = "198.18.0.1/24"

[vpn]
role = "server"
inline = \"\"\"
""" + SERVER_CONF + """\"\"\"
""",
]


def _dhcp_reply(kind: int, opts: dict[int, bytes]) -> bytes:
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, 0x1234abcd, 0, 0x8000, bytes(4),
                      bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1]), bytes(4), bytes(range(6)).ljust(16, b"\0"),
                      b"", b"")
    o = bytes([53, 1, kind])
    for k, v in opts.items():
        o += bytes([k, len(v)]) + v
    return hdr + b"\x63\x82\x53\x63" + o + b"\0\0\xff"


def icmpv6_seeds() -> list[bytes]:
    """An RS with and without a source link-layer address, and the RA the appliance sends."""
    import ipaddress

    from appliance.lan.icmpv6 import Prefix, RouterAdvert, build_ra, build_rs
    ra = RouterAdvert(360, (Prefix(ipaddress.IPv6Network("fd18:50::/64"), 86400, 14400),),
                      (ipaddress.IPv6Address("fd18:50::1"),), 360, 1500, bytes.fromhex("525400aabbcc"))
    return [build_rs(), build_rs(bytes.fromhex("525400112233")), build_ra(ra)]


def _dict_line(token: str) -> str:
    esc = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else f"\\x{ord(ch):02x}" for ch in token)
    return f'"{esc}"'


def dictionaries() -> dict[str, list[str]]:
    """libFuzzer dictionaries: the words the parsers look for, so mutations can reach them."""
    from appliance.config import schema
    numbers = ["0", "-1", "1", "16777215", "16777216", "4294967295", "4294967296", "99999999999999999999",
               "0x10", "1e9", "nan", " ", ",", "\n", "\0"]
    push_words = sorted({o.split()[0] for o in PUSH} | {
        "push-continuation", "comp-lzo", "redirect-gateway", "PUSH_REPLY", "AUTH_FAILED", "RESTART", "HALT",
        "EXIT", "INFO", "route-ipv6", "net_gateway", "vpn_gateway", "def1", "bypass-dhcp", "stub", "stub-v2",
        "lz4-v2", "lzo", "inactive", "client-nat", "snat", "dnat", "0x0a000001", "255.255.255.0", "10.1"})
    peer_info = ["IV_PROTO=", "IV_CIPHERS=", "IV_PLAT=", "IV_VER=", "IV_NCP=", "IV_MTU=", "IV_TCPNL=", "UV_",
                 "IV_COMP_STUB=", "IV_HWADDR=", "AES-256-GCM", "CHACHA20-POLY1305", "BF-CBC", ":"]
    from appliance.openvpn.config.table import INLINE_TAGS, TABLE
    # Every directive the table declares (applied, refused, no-op) and the inline tags: since the
    # options.py split (config/) the names no longer sit in one source file, and the regex over
    # config/__init__.py found one word ("tokenize") -- the committed dict was an older run's.
    directives = sorted(TABLE) + sorted(f"<{t}>" for t in INLINE_TAGS) + sorted(f"</{t}>" for t in INLINE_TAGS)
    sections = getattr(schema, "_SECTIONS", {})
    tomlwords = [k for sec, keys in sections.items() for k in (f"[{sec}]", *keys)]
    tomlwords += ["true", "false", '"' * 3, "'" * 3, "=", "[", "]", "client", "server", "198.18.0.1/24"]
    tls_words = ["\x16\x03\x03", "\x17\x03\x03", "\x15\x03\x03\x00\x02\x02\x28", "\x14\x03\x03\x00\x01\x01",
                 "\x16\x03\x01", "\x80", "\x00\x00", "\xff\xff", "\x01\x00", "\x18\x03\x03"]
    words = {"push-text": push_words + numbers + peer_info, "push-client": push_words + numbers,
            "key-method": peer_info + numbers, "key-method-server": peer_info + numbers,
            "ovpn-config": directives + numbers + ["[inline]", "#", ";", '"', "\\"],
            "toml-config": tomlwords + numbers,
            "connection-block": directives + numbers + ["<connection>\n", "</connection>\n", "\nremote 198.18.0.3\n",
                                                        "udp", "tcp", "udp6", "tcp4", "[inline]", "\n"],
            "env-filter": ["IV_", "UV_", "X509_", "X509_0_CN=", "username=", "password=", "tls_serial_",
                           "untrusted_ip=", "session_state=", "bytes_sent=", "\n", " ", "-", "+", "0x",
                           "2147483648", "4294967296", "99999999999999999999"],
            "management": MGMT_WORDS + numbers + ["\t", "\r\n", "198.18.7.1:40001", "client0"],
            "management-auth": MGMT_WORDS + numbers + ["@C", "@K", "client-auth", "client-auth-nt", "client-deny",
                                                       "client-pending-auth", "END", "push ", "iroute ",
                                                       "ifconfig-push ", "push-reset", "WEB_AUTH::", "CR_TEXT:",
                                                       "\t", "\r\n", "\"", "\\"],
            # framing bytes of each compression mode, the ping/OCC magics' starts
            "compress": ["\x66", "\xfa", "\xfb", "\x69", "\x50\x00", "\x50\x01", "\x2a\x18\x7b\xf3", "\x28\x7f",
                         "\x00\x00\x00\x00", "\x11\x00\x00", "\xf0", "\xff\xff"],
            # ethertypes, an 802.1Q tag, IPv4/IPv6 starts, TCP/UDP protocol numbers, the MSS option, SYN
            "client-nat": FRAME_WORDS, "tap-client": FRAME_WORDS + ["\xff\xfe"],
            # the script separator, opcodes (hard reset v2/v3, control, ack, data v1/v2) with key ids
            "p2p-key-method": ["IV_PROTO=", "IV_CIPHERS=", "IV_NCP=", "AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305",
                               "BF-CBC", "AES-256-CBC", ":", "\n", "990", "32", "8", "2", "-1", "4294967296"],
            # the step separator, the texts either side sends, a push's options
            "control-script": ["\xff\xfe", "PUSH_REQUEST", "PUSH_REPLY,", "EXIT", "CR_RESPONSE,", "INFO,",
                               "INFO_PRE,", "AUTH_PENDING,timeout ", "RESTART,[N]", "HALT,", "AUTH_FAILED,TEMP",
                               "WEB_AUTH::", "OPEN_URL:", "CR_TEXT:", ",peer-id ", ",cipher ", ",auth-token ",
                               ",push-continuation 2", ",route ", "\x00", "\x38", "\x40", "\x48", "\x20", "\x28"],
            # DHCP option codes with lengths: Router, classless routes (121, 249), overload, type, END
            "dhcp-router": ["\x03\x04", "\x03\x00", "\x79", "\xf9", "\x34\x01\x01", "\x34\x01\x03",
                            "\x35\x01\x05", "\x35\x01\x02", "\xff", "\x00", "\x63\x82\x53\x63",
                            "\x00\x43\x00\x44", "\x81\x00", "\x88\xa8", "\x08\x00", "\x45\x00"],
            # pushed option names and the values the profiles' rules turn on
            "push-merge": [",", "route ", "route-ipv6 ", "route-gateway ", "route-metric ", "redirect-gateway ",
                           "redirect-private ", "block-ipv6", "dhcp-option DNS ", "dhcp-option DOMAIN ",
                           "dns server 1 address ", "dns server 2 transport DoT", "dns search-domains ",
                           "client-nat snat ", "net_gateway", "net_gateway_ipv6", "vpn_gateway", "::/0", "2000::/3",
                           "255.255.255.0", "push-continuation 1", "def1", "ipv6", "\x00"],
            "p2p-listen": ["\xff\xfe", "\x38", "\x39", "\x50", "\x20", "\x28", "\x30", "\x48", "\x49"],
            # the ccd grammar (config/ccd.py) and the file separator
            "client-push": ["\xff\xfe", "ifconfig-push ", "ifconfig-ipv6-push ", "iroute ", "iroute-ipv6 ", "push ",
                            "push-reset", "push-remove ", "disable", "vlan-pvid ", "ifconfig", "ifconfig-ipv6",
                            "route", "198.19.0.3", "255.255.255.248", "2001:db8:ff::5/64", "\"", "\n", "#",
                            "\\", ",", "\x00", "\x7f"],
            # Ethernet: an 802.1Q tag and its VIDs (10, 20), S-tags, ethertypes, the broadcast MAC
            "switch-vlan": ["\x81\x00\x00\x0a", "\x81\x00\x00\x14", "\x81\x00\x00\x00", "\x88\xa8", "\x91\x00",
                            "\x08\x00", "\x08\x06", "\x86\xdd", "\xff\xff\xff\xff\xff\xff",
                            "\x02\x00\x00\x00\x00"]}
    # fuzz49: the management interface before its password: the step bytes are the script's own
    from .mgmt_login_targets import dict_entries
    words["mgmt-login"] = [w.decode("latin-1") for w in dict_entries()]
    from .layer2_targets import dict_entries as layer2_words
    words["layer2-config"] = layer2_words()
    from .client_control_targets import dict_entries as client_control_words
    words["client-control"] = [w.decode("latin-1") for w in client_control_words()]
    from .cr_command_targets import dict_entries as cr_command_words
    words["cr-command"] = [w.decode("latin-1") for w in cr_command_words()]
    from .mgmt_throttle_targets import dict_entries as mgmt_throttle_words
    words["mgmt-throttle"] = [w.decode("latin-1") for w in mgmt_throttle_words()]
    # fuzz34: TLS record headers (handshake, application data, an alert, ChangeCipherSpec, heartbeat)
    words["tls-endpoint"] = tls_words
    words["tls-session"] = tls_words + ["\xff\xfe"]
    words["switch-tables"] = words["switch-vlan"]
    words["client-learn"] = words["client-push"]
    return words


# Every command with the argument shapes it takes (and some it refuses): the fuzzer's start inside
# each command's parser (fuzz32: management.py/ops.py were the least covered peer-facing code).
MGMT_ARGS = ("client-auth 0 1\npush \"route 198.18.1.0 255.255.255.0\"\nEND\n", "client-auth-nt 0 1\n",
             "client-deny 0 1 reason \"client reason\"\n", "client-pending-auth 0 1 WEB_AUTH::https://x 30\n",
             "client-auth x y\nclient-deny 0\n", "client-kill 1\nclient-kill 1 RESTART,[N]bye\n",
             "kill 198.18.7.1:40001\nkill [::1]:5\nkill client0\n", "verb\nverb 11\nmute\nmute x\n",
             "hold\nhold on\nhold off\n", "state all\nstate off\nlog 3\nlog all\necho all\necho 2\n",
             "bytecount 5\nbytecount -1\n", "status 1\nstatus 4\nload-stats x\n", "signal SIGWHAT\nsignal\n",
             "username Auth x\npassword Auth y\nneedok x ok\nremote ACCEPT\nproxy NONE\nforget-passwords\n",
             "\"unterminated\n", "echo 'a b' \"c\\\"d\"\n", "quit\n")

# management-auth (fuzz34): `@C`/`@K` are the waiting login's CID/KID (mgmt_world.py).
MGMT_AUTH = ("client-auth @C @K\npush \"route 198.18.1.0 255.255.255.0\"\niroute 198.18.9.0 255.255.255.0\nEND\n",
             "client-auth-nt @C @K\n", "client-deny @C @K \"no reason\" \"ask the helpdesk\"\n",
             "client-pending-auth @C @K WEB_AUTH::https://example.org/ 30\nclient-auth-nt @C @K\n",
             "client-pending-auth @C @K CR_TEXT:R,E:Code 5\nstatus 3\n", "client-auth @C @K\nifconfig-push 198.19.0.9 "
             "255.255.255.0\nEND\n", "client-auth @C @K\npush-reset\nEND\nclient-deny @C @K late\n",
             "client-auth @C 99\nEND\nclient-deny 99 @K x\nclient-kill @C\n", "client-auth @C @K\n" + "x" * 300 + "\n",
             "client-deny @C @K\nclient-auth-nt @C @K\nstatus 2\n", "client-auth @C @K\r\ndisable\r\nEND\r\n",
             "client-auth @C @K\nvlan-pvid 3\nEND\n", "client-kill @C HALT\nkill client0\n",
             "signal SIGHUP\nclient-auth-nt @C @K\n", "signal SIGUSR1\nstatus 3\n", "signal SIGUSR2\n",
             "signal SIGTERM\nclient-deny @C @K x\n")

FRAME_WORDS = ["\x08\x00", "\x86\xdd", "\x81\x00", "\x08\x06", "\x45\x00", "\x46", "\x4f", "\x60\x00", "\x06",
               "\x11", "\x02\x04", "\x01\x01", "\x00\x00", "\xff\xff", "\x20\x00", "\x40\x00", "\x12",
               "\xc6\x12"]


MGMT_WORDS = ["status", "load-stats", "kill", "client-kill", "bytecount", "log", "state", "echo", "hold",
              "verb", "mute", "signal", "SIGUSR2", "SIGHUP", "help", "version", "pid", "on", "off", "all",
              "release", "quit", "exit"]


# What this script wrote into seeds/ (one `target/sha1` a line): its own files, the only ones it
# ever removes. Beside the folders, not in one: libFuzzer reads every file of a seed folder.
MANIFEST = "seeds-generated.txt"


def generate(out: Path = SEEDS, only: set[str] | None = None) -> dict[str, tuple[int, int, int]]:
    seeds: dict[str, list[bytes]] = {}

    def add(target: str, data: bytes) -> None:
        seeds.setdefault(target, []).append(bytes(data))

    # ---- control packets under each protection, from a real handshake
    for prot in h.PROTECTIONS:
        captured: list[tuple[str, bytes]] = []
        c, s = h.established_pair(prot, tap=lambda d, p: captured.append((d, p)))
        sw = h.server_wrapper(prot)
        for direction, p in captured:
            if p[0] >> 3 in (Op.DATA_V1, Op.DATA_V2):
                continue
            if direction == "c2s":
                add(f"control-{prot}", b"\x00" + p)
                clear = p
                if p[0] >> 3 in (Op.CONTROL_HARD_RESET_CLIENT_V3, Op.CONTROL_WKC_V1):
                    clear, _ = wrapping.split_wkc_untrusted(p)
                try:
                    op_b, sid, body = sw.unwrap_untrusted(clear, 0.0, check_replay=False)
                except Exception:
                    continue
                add(f"control-{prot}", b"\x01" + bytes([op_b]) + sid + body[:600])
                add(f"control-{prot}", b"\x02" + bytes([op_b]) + sid + body[:600])
        # the third packet of the cookie exchange: ACK of message 0 plus CONTROL_V1 message 1
        sid = h.det_bytes("client-sid", 8)
        add(f"control-{prot}", b"\x02" + bytes([op_byte(Op.CONTROL_V1, 0)]) + sid
            + encode_body([0], bytes(8), 1, b"\x16\x03\x01\x00\x05hello"))
        add(f"control-{prot}", b"\x02" + bytes([op_byte(Op.ACK_V1, 0)]) + sid + encode_body([0], bytes(8), None))
        add(f"control-{prot}", b"\x01" + bytes([op_byte(Op.CONTROL_HARD_RESET_SERVER_V2, 0)]) + sid
            + encode_body([0], bytes(8), 0, encode_tlv(1, b"\x00\x01")))

    # ---- tls-crypt-v2 WKc
    add("wkc", b"\x00" + h.V2_WKC)
    add("wkc", b"\x01" + h.V2_KC + b"\x00" + b"fuzz-client")
    add("wkc", b"\x01" + h.V2_KC + b"\x01" + struct.pack("!q", 1767225600))
    add("wkc", b"\x01" + h.V2_KC + b"\x07" + bytes(100))

    # ---- key-method-2 messages and peer-info
    client_km = encode_key_method_2(KeyMethod2(h.det_bytes("r1", 32), h.det_bytes("r2", 32), OPTIONS,
                                               h.det_bytes("pm", 48), "user", "pass", PEER_INFO), True)
    client_km_nouser = encode_key_method_2(KeyMethod2(h.det_bytes("r1", 32), h.det_bytes("r2", 32), OPTIONS,
                                                      h.det_bytes("pm", 48), peer_info=PEER_INFO), True)
    server_km = encode_key_method_2(KeyMethod2(h.det_bytes("r1", 32), h.det_bytes("r2", 32),
                                               OPTIONS.replace("tls-client", "tls-server")), False)
    add("key-method", b"\x01" + client_km)
    add("key-method", b"\x01" + client_km_nouser)
    add("key-method", b"\x00" + server_km)
    add("key-method-server", client_km_nouser)
    add("key-method-server", client_km)
    add("key-method-server", client_km_nouser.replace(b"IV_PROTO=990", b"IV_PROTO=2"))

    # ---- push and the other text messages
    for m in build_push_reply(PUSH) + build_push_reply(PUSH * 8):
        add("push-text", m.encode() + b"\0")
        add("push-client", m.encode())
    for t in ("AUTH_FAILED,SESSION: token expired", "RESTART,server restarting", "HALT", "EXIT",
              "INFO,WEB_AUTH::https://example.org/", "AUTH_PENDING,timeout 60", "PUSH_REQUEST"):
        add("push-text", t.encode() + b"\0")
    add("push-text", PEER_INFO.encode())
    add("push-client", b"PUSH_REPLY,peer-id 7,cipher AES-256-GCM,ping 5,ping-restart 30,"
                       b"ifconfig 198.19.0.2 255.255.255.0,topology subnet\0PUSH_REPLY,route 10.0.0.0")
    add("push-client", b"AUTH_FAILED,bad\0")

    # ---- data channel: every pair kind, both directions, each mode
    ip = bytes.fromhex("4500001c0001000040010000c6130002c6130001") + b"\x08\x00\xf7\xff\x00\x00\x00\x00"
    plains = [ip, PING_MAGIC, OCC_MAGIC + bytes([OCC_EXIT]), OCC_MAGIC + b"\x01", b"\xfa" + ip, b"\x50" + ip, b""]
    for i, kind in enumerate(PAIR_KINDS):
        c, s = h.established_pair(**kind)
        for to_client in (0, 1):
            src = s if to_client else c
            sel = (i << 3) | (to_client << 2)
            add("data", bytes([sel | 0]) + bytes(src.encrypt(ip)))
            for pt in plains:
                add("data", bytes([sel | 1]) + pt)
                add("data", bytes([sel | 3]) + bytes(src.encrypt(b""))[:4] + pt)
            add("data", bytes([sel | 2, op_byte(Op.ACK_V1, 0)]) + encode_body([1], src.peer_sid, None))
            add("data", bytes([sel | 2, op_byte(Op.CONTROL_SOFT_RESET_V1, 1)]) + encode_body([], None, 0))
            add("data", bytes([sel | 2, op_byte(Op.CONTROL_V1, 0)]) + encode_body([3], src.peer_sid, 9, b"\x17\x03\x03"))
            add("data", bytes([0x80 | sel | 2, op_byte(Op.CONTROL_V1, 0)]) + encode_body([], None, 0, b"\x17\x03\x03"))
            add("data", bytes([0x80 | sel | 2, op_byte(Op.CONTROL_V1, 0)])
                + encode_body([1], src.peer_sid, 0, b"\x15\x03\x03\x00\x02\x02\x28"))

    # ---- the server's data path (mode byte: targets.make_server_data)
    ip6 = bytes.fromhex("6000000000083a40") + bytes(16) + bytes(15) + b"\x01" + b"\x80\x00\x00\x00\x00\x00\x00\x00"
    for sel in (0, 1, 2, 3, 4, 8, 16 | 2, 16 | 4, 8 | 2):
        add("server-data", bytes([sel]) + ip)
    for pt in (PING_MAGIC, OCC_MAGIC + bytes([OCC_EXIT]), ip6, b"\x10" + ip[1:]):
        add("server-data", b"\x01" + pt)

    # ---- the management interface: what a local tool sends
    for text in ("status 2\n", "status 3\nload-stats\n", "kill client0\n", "client-kill 0 HALT\n",
                 "bytecount 1\nbytecount 0\n", "log on all\nlog off\n", "state on\nstate 3\n", "\t\n\x0b\npid\n",
                 "kill 198.18.0.2:40000\n", "signal SIGUSR2\n", "help\nversion\npid\n",
                 "echo on\nhold release\nverb 4\nmute 3\n", "status\r\n" * 3, *MGMT_ARGS):
        add("management", text.encode())

    # ---- TCP framing
    stream = b"".join(frame(p) for p in (ip, PING_MAGIC, b"\x38" + bytes(13), b"x" * 1400))
    for step in (0, 1, 2, 7, 255):
        add("tcp-framing", bytes([step]) + stream)
    add("tcp-framing", b"\x03" + stream + b"\x00\x00")
    add("tcp-framing", b"\x10" + stream[:-5])

    # ---- DHCP
    ip4 = lambda *a: bytes(a)  # noqa: E731
    add("dhcp", _dhcp_reply(2, {54: ip4(198, 18, 0, 1), 51: struct.pack("!I", 3600), 1: ip4(255, 255, 255, 0),
                                3: ip4(198, 18, 0, 1), 6: ip4(198, 18, 0, 1) + ip4(198, 18, 0, 53)}))
    add("dhcp", _dhcp_reply(5, {54: ip4(198, 18, 0, 1), 51: struct.pack("!I", 60), 58: struct.pack("!I", 30),
                                1: ip4(255, 255, 255, 0), 3: ip4(198, 18, 0, 1), 15: b"example.org"}))
    add("dhcp", _dhcp_reply(6, {54: ip4(198, 18, 0, 1)}))
    dhcp_decoder()   # fail here, not in the run, if the decoder cannot be found
    for seed in dhcp_server_seeds():
        add("dhcp-server", seed)

    # ---- ICMPv6 (router solicitations from the LAN; an RA too): mode byte 3 = hop limit 255, link-local
    from appliance.lan.icmpv6 import build_rs
    for pkt in icmpv6_seeds():
        add("icmpv6", b"\x03" + pkt)
    add("icmpv6", b"\x01" + build_rs())
    add("icmpv6", b"\x40" + build_rs(bytes(6)))

    # ---- the C data path against its Python twins (hypothesis choice sequences)
    from .native_targets import seeds as native_seeds
    for data in native_seeds():
        add("native", data)

    # ---- real compression, client-nat, the tap client's frames, the p2p listener
    from .compress_targets import seeds as compress_seeds
    from .frame_targets import seeds as frame_seeds
    from .p2p_targets import seeds as p2p_seeds
    for data in compress_seeds():
        add("compress", data)
    nat_seeds, tap_seeds = frame_seeds()
    for data in nat_seeds:
        add("client-nat", data)
    for data in tap_seeds:
        add("tap-client", data)
    for data in p2p_seeds():
        add("p2p-listen", data)
    from .dhcp_router_targets import seeds as dhcp_router_seeds
    for data in dhcp_router_seeds():
        add("dhcp-router-area", data)
    from .p2p_targets import p2p_key_method_seeds
    for data in p2p_key_method_seeds():
        add("p2p-key-method", data)

    # ---- the control channel after authentication, route-gateway dhcp's reply rewriting
    from .control_targets import seeds_control_script, seeds_dhcp_router
    for data in seeds_control_script():
        add("control-script", data)
    for data in seeds_dhcp_router():
        add("dhcp-router", data)
    from .push_targets import seeds as push_merge_seeds
    for data in push_merge_seeds():
        add("push-merge", data)

    # ---- fuzz33: fragment reassembly, the switch's VLANs, a client's push from ccd/client-connect
    from .clientpush_targets import seeds as client_push_seeds
    from .fragment_targets import seeds as fragment_seeds
    from .vlan_targets import seeds as switch_vlan_seeds
    for data in fragment_seeds():
        add("fragment", data)
    for data in switch_vlan_seeds():
        add("switch-vlan", data)
    for data in client_push_seeds():
        add("client-push", data)

    # ---- fuzz34: the TLS glue, the management interface with a login waiting, learn-address, tables
    from .clientpush_targets import seeds_client_learn
    from .tls_targets import seeds_tls_endpoint, seeds_tls_session
    from .vlan_targets import seeds_switch_tables
    for data in seeds_tls_endpoint():
        add("tls-endpoint", data)
    for data in seeds_tls_session():
        add("tls-session", data)
    for data in seeds_switch_tables():
        add("switch-tables", data)
    for data in seeds_client_learn():
        add("client-learn", data)
    for i, text in enumerate(MGMT_AUTH + MGMT_ARGS):
        add("management-auth", bytes(((255, 0, 6, 40)[i % 4], 1 - i % 2)) + text.encode())

    # ---- fuzz35: peer-ids, tls-crypt-v2's kept keys, the WAN DHCP client's replies, dns's local
    # answers, a pushed route-delay
    from appliance.lan.dns_wire import encode_query
    from .peer_targets import seeds_peer_ids, seeds_v2_keycache
    from .wan_dhcp_targets import seeds as wan_dhcp_seeds
    for data in seeds_peer_ids():
        add("peer-ids", data)
    for data in seeds_v2_keycache():
        add("v2-keycache", data)
    for data in wan_dhcp_seeds():
        add("wan-dhcp", data)
    for i, (name, qtype) in enumerate((("printer", 1), ("printer", 28), ("com", 2), ("printer.home.arpa", 1),
                                       ("20.50.18.198.in-addr.arpa", 12), ("5.0.8.10.in-addr.arpa", 12),
                                       ("b._dns-sd._udp.0.50.18.198.in-addr.arpa", 12),
                                       ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.8.1.d.f.ip6.arpa", 12),
                                       ("168.192.in-addr.arpa", 6), ("_dns.resolver.arpa", 64),
                                       ("nas", 255), ("64.100.in-addr.arpa", 12))):
        add("dns", bytes((i % 2,)) + encode_query(0x3500 + i, name, qtype))
    for text in ("PUSH_REPLY,route-delay 5 30,route 198.18.100.0 255.255.255.0", "PUSH_REPLY,route-delay",
                 "PUSH_REPLY,route-delay -4 x", "PUSH_REPLY,route-delay 1 2 3", "PUSH_REPLY,route-delay 99999999999"):
        add("push-text", text.encode() + b"\0")
    for i in range(5):
        add("push-merge", bytes((i,)) + b"route-delay 7,route 198.18.100.0 255.255.255.0")
    add("push-merge", b"\x02route-delay 2 9999999999999")

    # ---- fuzz36: TLS directives through both config parsers, the WAN DHCP client's loop, the
    # dispatcher over TCP, the status file and reloads
    from .tlsconf_targets import seeds as tls_config_seeds
    for data in tls_config_seeds():
        add("tls-config", data)
    from .wan_dhcp_loop_targets import seeds as wan_dhcp_loop_seeds
    for data in wan_dhcp_loop_seeds():
        add("wan-dhcp-loop", data)
    from .tcp_peer_targets import seeds as peer_ids_tcp_seeds
    for data in peer_ids_tcp_seeds():
        add("peer-ids-tcp", data)
    from .ops_reload_targets import seeds as ops_reload_seeds
    for data in ops_reload_seeds():
        add("ops-reload", data)
    from .reload_restart_targets import seeds as reload_restart_seeds
    for data in reload_restart_seeds():
        add("reload-restart", data)

    # ---- fuzz37: port-share, ifconfig-pool-persist's file
    from .portshare_targets import seeds as port_share_seeds
    for data in port_share_seeds():
        add("port-share", data)
    from .poolfile_targets import seeds as pool_persist_seeds
    for data in pool_persist_seeds():
        add("pool-persist", data)
    from .capath_targets import seeds as capath_seeds
    for data in capath_seeds():
        add("capath", data)
    from .wan_dhcp_stop_targets import seeds as wan_dhcp_stop_seeds
    for data in wan_dhcp_stop_seeds():
        add("wan-dhcp-stop", data)

    # ---- wan38: peer-chosen values in the scripts' environments
    from .script_env_targets import seeds as script_env_seeds
    for data in script_env_seeds():
        add("script-env", data)

    # ---- fuzz38: the client's batched TLS flight, multicast through a tun server, rtnetlink hints
    from .tls_targets import seeds_flight_batch
    for data in seeds_flight_batch():
        add("flight-batch", data)
    from .netlink_targets import seeds as netlink_seeds
    for data in netlink_seeds():
        add("netlink", data)
    from .mcast_targets import seeds as mcast_tun_seeds
    for data in mcast_tun_seeds():
        add("mcast-tun", data)
    # ---- fuzz40: the route keeper, relink, client-connect output, ccd reader, dh files, budgets
    from . import ccd40_targets, dh_budget_targets, route_keep_targets
    for target, fn in (("route-keeper", route_keep_targets.seeds_route_keeper),
                       ("wan-lan-relink", route_keep_targets.seeds_relink),
                       ("connect-output", ccd40_targets.seeds_connect_output),
                       ("ccd-reader", ccd40_targets.seeds_ccd_reader),
                       ("dh-file", dh_budget_targets.seeds_dh_file),
                       ("mcast-budget", dh_budget_targets.seeds_mcast_budget)):
        for data in fn():
            add(target, data)
    # ---- fuzz42: <connection> blocks, the MSS clamp with tun-mtu, env-filter, GSO refusals
    from . import conn42_targets
    for target, fn in (("connection-block", conn42_targets.seeds_connection_block),
                       ("mss-tunmtu", conn42_targets.seeds_mss_tunmtu),
                       ("env-filter", conn42_targets.seeds_env_filter),
                       ("gso-refusal", conn42_targets.seeds_gso_refusal),
                       ("pull-conn", conn42_targets.seeds_pull_conn),
                       ("mgmt-words", conn42_targets.seeds_mgmt_words)):
        for data in fn():
            add(target, data)
    # fuzz45: the multi-peer containment target
    from .contain_targets import seeds as contain_seeds
    for data in contain_seeds():
        add("contain", data)
    # lanatk38's caps: an answer of more records than the rebinding check reads (TCP and UDP
    # clients), a DHCP request of a PAD run and of more than 64 options
    q = encode_query(0x3800, "many.example", 1)
    for n in (128, 129, 400):
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((93, 184, 216, 34))
        answer = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, n, 0, 0) + q[12:] + rr * n
        for tcp in (0, 1):
            add("dns", bytes((tcp,)) + q + DNS_SEP + b"\x03" + answer)
    discover, mac = bytes((53, 1, 1)), bytes.fromhex("525400123499")
    add("dhcp-server", b"\x01" + mac + discover + bytes(4000) + b"\xff")               # a 4 KiB run of PAD
    add("dhcp-server", b"\x01" + mac + discover + bytes((12, 1, 0x61)) * 63 + b"\xff")  # 64 options: read
    add("dhcp-server", b"\x01" + mac + discover + bytes((12, 1, 0x61)) * 64 + b"\xff")  # 65: refused

    # ---- configs
    for text in (CLIENT_OVPN, SERVER_CONF, INLINE_OVPN, CCD):
        add("ovpn-config", text.encode())
    for text in TOMLS:
        add("toml-config", text.encode())

    dicts = out.parent / "dicts"
    dicts.mkdir(exist_ok=True)
    for target, words in dictionaries().items():
        if only is not None and target not in only:
            continue
        (dicts / f"{target}.dict").write_text("".join(_dict_line(w) + "\n" for w in words))

    # ---- fuzz47: a malicious HTTP/SOCKS proxy's answers, a client's auth-gen-token
    from .authtoken_targets import seeds as auth_token_seeds
    from .proxy_targets import seeds as proxy_seeds
    for target, items in proxy_seeds().items():
        for data in items:
            add(target, data)
    for data in auth_token_seeds():
        add("auth-token", data)
    from .authtoken_targets import iv_proto_seeds
    for data in iv_proto_seeds():
        add("iv-proto", data)
    from .refusal_targets import seeds as refusal_seeds
    for data in refusal_seeds():
        add("refusal-remnant", data)
    # ---- fuzz48: the LAN DNS forwarder's sockets
    from .dns_tcp_targets import seeds as dns_tcp_seeds
    for data in dns_tcp_seeds():
        add("dns-tcp", data)
    from .tunnel_targets import seeds as tunnel_seeds
    for data in tunnel_seeds():
        add("tunnel-push", data)
    from .rtnl_targets import seeds as rtnl_seeds
    for data in rtnl_seeds():
        add("rtnl-reply", data)
    # ---- fuzz49: the management interface before its password
    from .mgmt_login_targets import seeds as mgmt_login_seeds
    for data in mgmt_login_seeds().values():
        add("mgmt-login", data)
    from .crresponse_targets import seeds_cr_response
    for data in seeds_cr_response():
        add("cr-response", data)
    from .crresponse_targets import seeds as cr_runs_seeds
    for data in cr_runs_seeds():
        add("cr-runs", data)
    from .client_control_targets import seeds as client_control_seeds
    for data in client_control_seeds():
        add("client-control", data)
    from .layer2_targets import seeds as layer2_seeds
    for data in layer2_seeds():
        add("layer2-config", data)
    # ---- fuzz50: client-crresponse's commands, the login throttle's tables
    from .cr_command_targets import seeds as cr_command_seeds
    for data in cr_command_seeds():
        add("cr-command", data)
    from .mgmt_throttle_targets import seeds as mgmt_throttle_seeds
    for data in mgmt_throttle_seeds():
        add("mgmt-throttle", data)

    return write_seeds(out, seeds, only)


def write_seeds(out: Path, seeds: dict[str, list[bytes]], only: set[str] | None = None) -> dict[str, tuple[int, int, int]]:
    """Write the generated seeds beside whatever else the folders hold: a seed file is written
    only when missing, and only the files this script wrote before (listed in MANIFEST) and no
    longer generates are removed. Why: the folders also hold the inputs campaigns picked
    (`measure --pick --save`), hand-written ones and crashers' reductions; rewriting every folder
    (what this did until fuzz34) deleted them (client-push 56 -> 23 seeds, control-script 68 -> 15).
    Some generated seeds differ from run to run (a real TLS handshake's randoms: control-*, part
    of data, p2p-key-method): those are replaced, not piled up. -> target: (written, removed, in folder)."""
    manifest = out.parent / MANIFEST
    own: dict[str, set[str]] = {}
    if manifest.exists():
        for line in manifest.read_text().split():
            t, _, name = line.partition("/")
            own.setdefault(t, set()).add(name)
    counts = {}
    for target, items in seeds.items():
        if only is not None and target not in only:
            continue
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        names = {hashlib.sha1(data).hexdigest(): data for data in items}
        written = removed = 0
        for name, data in names.items():
            if not (d / name).exists():
                (d / name).write_bytes(data)
                written += 1
        for name in own.get(target, set()) - set(names):
            if (d / name).exists():
                (d / name).unlink()
                removed += 1
        own[target] = set(names)
        counts[target] = (written, removed, sum(1 for _ in d.iterdir()))
    manifest.write_text("".join(f"{t}/{n}\n" for t in sorted(own) for n in sorted(own[t])))
    return counts


def dhcp_server_seeds() -> list[bytes]:
    """Seeds for the dhcp-server target: whole datagrams (mode 0) and option sequences (mode 1)."""
    mac = bytes.fromhex("525400123456")
    t = lambda k: bytes((53, 1, k))  # noqa: E731
    req, sid = bytes((50, 4, 198, 18, 50, 101)), bytes((54, 4, 198, 18, 50, 1))
    params = bytes((55, 6, 1, 3, 6, 15, 119, 51)) + bytes((61, 7, 1)) + mac + bytes((57, 2, 5, 220))
    seq = [t(1) + params + b"\xff", t(3) + req + sid + params + b"\xff", t(4) + req + sid + b"\xff",
           t(3) + req + b"\xff", t(7) + sid + b"\xff", t(8) + params + b"\xff"]
    hdr = (struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, 7, 0, 0x8000, bytes(4), bytes(4), bytes(4), bytes(4),
                       mac.ljust(16, b"\0")) + bytes(192) + b"\x63\x82\x53\x63")
    return ([b"\x00" + hdr + m for m in seq] + [b"\x01" + mac + b"\xfe\xfe".join(seq)]
            + [b"\x01" + mac + seq[0] + b"\xfe\xfe" + seq[1] + b"\xfe\xfe" + seq[2]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=SEEDS)
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    a = ap.parse_args()
    only = {t for t in a.targets.split(",") if t} or None
    for target, (written, removed, n) in sorted(generate(a.out, only).items()):
        print(f"{target:20s} {written} written, {removed} of its own removed, {n} in the folder")


if __name__ == "__main__":
    main()
