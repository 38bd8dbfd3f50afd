"""The options string a peer sends in its key-method message (OCC), as OpenVPN 2.6 builds it
(options.c options_string, mtu.c calc_options_string_link_mtu) for the same config.

Why it matters: a 2.6 peer compares the string with the one it expects and logs a warning for
each difference (at verb 7), and with `opt-verify` it drops the connection. Ours used to be one
fixed form (link-mtu 1549, AES-256-GCM's figures); Debian's client without a `cipher` line, and
so the server it talks to, uses the BF-CBC form (link-mtu 1541, `auth SHA1,keysize 128`), and
every other cipher, digest, compression, fragment or TCP setting changes the figures too.

2.6's link-mtu is a legacy figure: tun-mtu, plus the payload's own overhead (a tap device's
extra, a v1 compression byte, a fragment header, a CBC cipher's packet id), plus the headers
(TCP's length, the opcode, the crypto overhead as OpenVPN 2.3 counted it: IV and block size
for AEAD ciphers too). Without a `cipher` line 2.6's cipher name is BF-CBC, counted as no
cipher plus 16 bytes and never announced (not in data-ciphers).
"""
from __future__ import annotations

import ipaddress

from ..frozen_record import FrozenRecord
from .keys import digest_size

# What OpenSSL reports for the ciphers we run, as 2.6 reads them for the figure: key bits, IV
# bytes, block size (cipher_kt_block_size: GCM's is AES-CBC's 16; ChaCha20-Poly1305 has no CBC
# twin and stays 1), and whether it is AEAD (a 16-byte tag, no HMAC).
_CIPHERS = {
    "AES-128-GCM": (128, 12, 16, True), "AES-192-GCM": (192, 12, 16, True), "AES-256-GCM": (256, 12, 16, True),
    "CHACHA20-POLY1305": (256, 12, 1, True),
    "AES-128-CBC": (128, 16, 16, False), "AES-192-CBC": (192, 16, 16, False), "AES-256-CBC": (256, 16, 16, False),
}
_AEAD_TAG = 16
TUN_MTU_DEFAULT = 1500      # 2.6's tun-mtu when the config sets none
_PACKET_ID = 4              # TLS mode: the short packet id
_BF_CBC_OVERHEAD = 8 + 8    # 2.6 counts BF-CBC as no cipher plus its block and IV
V1_COMPRESSION = ("lzo-stub", "stub", "lzo", "lz4")     # a framing byte on every packet (stub-v2, lz4-v2: none)


class OccInputs(FrozenRecord):
    """The settings 2.6's options string reads, from our parsed config (settings.occ_inputs)."""
    dev_type: str = "tun"
    tun_mtu: int = 1500
    tun_mtu_extra: int = 0           # a tap device's 32
    comp: str | None = None          # the session's framing (settings.comp_framing); None: no compression line
    fragment: bool = False
    key_direction: int | None = None
    cipher: str | None = None        # the `cipher` line; None: 2.6's BF-CBC
    data_ciphers: tuple[str, ...] = ()
    auth: str = "SHA1"
    tls_auth: bool = False
    p2p: bool = False                # a point-to-point link (no pull, no mode server)
    ifconfig: tuple[str, str] | None = None
    topology: str = "net30"
    ifconfig_ipv6: bool = False
    occ_tun_mtu: int | None = None   # with link-mtu: the tun-mtu 2.6 counts the link-mtu figure from (1500)


def protocol_header(cipher: str | None, auth: str, tcp: bool) -> int:
    """2.6's frame_calculate_protocol_header_size as it counts at start (TLS mode: a one-byte opcode,
    the short packet id; the crypto overhead as the OCC figure counts it) for the configured
    `cipher` (None: 2.6's BF-CBC, which OpenSSL 3 lacks: counted as no cipher, the HMAC alone).
    What `link-mtu N` leaves for the tun device: N less this (init.c get_frame_mtu). Checked with
    Debian's 2.6.14 at verb 4 ("Data Channel MTU parms"): link-mtu 1400 gives tun_mtu 1375
    without a cipher line, 1351 with AES-256-GCM, and over TCP 1373, 1333 (AES-128-CBC, SHA256),
    1364 (CHACHA20-POLY1305)."""
    tcp_len = 2 if tcp else 0
    spec = _CIPHERS.get(cipher or "")
    if spec is None:
        return tcp_len + 1 + _PACKET_ID + digest_size(auth)
    _bits, iv, block, aead = spec
    if aead:
        return tcp_len + 1 + _PACKET_ID + _AEAD_TAG + iv + block
    return tcp_len + 1 + block + iv + digest_size(auth)       # CBC: the packet id is in the payload


def link_mtu(i: OccInputs, tcp: bool) -> int:
    """2.6's calc_options_string_link_mtu (TLS mode, no peer-id yet: a one-byte opcode). With
    `link-mtu` in the config 2.6 still counts from its tun-mtu option, unset and so 1500
    (`occ_tun_mtu`), while the string's tun-mtu is the one derived from link-mtu."""
    payload = (i.occ_tun_mtu or i.tun_mtu) + i.tun_mtu_extra + (1 if i.comp in V1_COMPRESSION else 0) + (4 if i.fragment else 0)
    header = (2 if tcp else 0) + 1
    spec = _CIPHERS.get(i.cipher or "")
    digest = 0 if spec is not None and spec[3] else digest_size(i.auth)
    if spec is None:                                # BF-CBC: "none" plus its block and IV
        return payload + _BF_CBC_OVERHEAD + header + _PACKET_ID + digest
    _bits, iv, block, aead = spec
    if aead:
        return payload + header + _PACKET_ID + _AEAD_TAG + iv + block
    return payload + _PACKET_ID + header + block + iv + digest      # CBC: the packet id is payload


def _ifconfig(i: OccInputs) -> str | None:
    """2.6's ifconfig_options_string for a p2p TUN (local string): the far end first, or with
    topology subnet the network and its mask."""
    if i.ifconfig is None:
        return None
    local, second = i.ifconfig
    if i.topology == "subnet":
        net = ipaddress.IPv4Network(f"{local}/{second}", strict=False)
        return f"{net.network_address} {second}"
    return f"{second} {local}"


def options_string(i: OccInputs, tcp: bool, tls_client: bool) -> str:
    """The string this end sends (2.6's options_string with remote=false)."""
    tls_role = "tls-client" if tls_client else "tls-server"
    proto = ("TCPv4_CLIENT" if tls_client else "TCPv4_SERVER") if tcp else "UDPv4"
    parts = ["V4", f"dev-type {i.dev_type}", f"link-mtu {link_mtu(i, tcp)}", f"tun-mtu {i.tun_mtu}", f"proto {proto}"]
    if i.p2p:
        if i.ifconfig_ipv6:
            parts.append("tun-ipv6")
        ios = _ifconfig(i)
        if ios:
            parts.append(f"ifconfig {ios}")
    if i.comp is not None:
        parts.append("comp-lzo")        # 2.6: "a compression context is active", whatever its kind
    if i.fragment:
        parts.append("mtu-dynamic")
    if i.key_direction is not None:
        parts.append(f"keydir {i.key_direction}")
    spec = _CIPHERS.get(i.cipher or "")
    name = i.cipher if spec is not None else "BF-CBC"
    if i.p2p or name in i.data_ciphers:             # announced only when this end would use it
        parts.append(f"cipher {name}")
    parts.append("auth [null-digest]" if spec is not None and spec[3] else f"auth {i.auth}")
    parts.append(f"keysize {spec[0] if spec is not None else 128}")
    if i.tls_auth:
        parts.append("tls-auth")
    parts += ["key-method 2", tls_role]
    return ",".join(parts)


def with_comp_lzo(options: str) -> str:
    """2.6's options_string_compat_lzo: the string as a `compress migrate` server sends it to a
    client whose own says comp-lzo (link-mtu one more, `,comp-lzo` at the end)."""
    head, sep, rest = options.partition(",link-mtu ")
    mtu, comma, tail = rest.partition(",")
    if not sep or not mtu.isdigit():
        return options
    return f"{head},link-mtu {int(mtu) + 1}{comma}{tail},comp-lzo"
