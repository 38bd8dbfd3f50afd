"""Point-to-point TLS: the two roles of a link between two peers that push nothing (no `pull`, no
`mode server`), as OpenVPN 2.6 runs them.

Why subclasses of the client and server roles: the handshake, the key-method message and
renegotiation are theirs unchanged; what p2p changes is only what happens around the key-method
messages. Neither side pushes or asks: each side's peer-info says what it can do, and both ends
reach the same data-channel parameters from the two messages alone (OpenVPN 2.6 ssl_ncp.c
p2p_mode_ncp, "P2P NCP"):
  - the cipher: the first of the tls-server's data-ciphers that the tls-client also lists
    (get_p2p_ncp_cipher); without the peer's IV_CIPHERS (an older peer) the fallback cipher;
  - keys from TLS-EKM when both announce it (IV_PROTO bit 3), else the key-method 2 PRF;
  - P_DATA_V2 with a peer-id both sides derive when both announce DATA_V2: the 3 bytes TLS-EKM
    exports under "EXPORTER-OpenVPN-p2p-peerid", or 0x76706e ('vpn') without EKM;
  - EXIT on the control channel when both announce CC_EXIT_NOTIFY.
The peer-info a p2p peer sends is OpenVPN 2.6's "detail 1" (ssl.c push_peer_info): IV_CIPHERS and
IV_PROTO only; with `push-peer-info` its "detail 3", the version, platform, compression and
push-peer-info lines too, but never a client's IV_MTU or IV_NCP (those go with `pull`). Our tunnel's addresses and routes are our own config's (the gateway's business).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .ciphers import is_supported
from .compression import STUB_PEER_INFO
from .errors import RemoteProtocolError
from .keymethod import KeyMethod2, PushedOptions, iv_proto, peer_info_var
from .keystate import KeyState
from .opcodes import IV_PROTO_CC_EXIT_NOTIFY, IV_PROTO_DATA_V2, IV_PROTO_TLS_KEY_EXPORT
from .roles import ClientRole, ServerRole

if TYPE_CHECKING:
    from .session import Session

IV_PROTO_DNS_OPTION = 1 << 6       # we read no `dns` from a p2p peer, but 2.6 announces it; harmless
IV_PROTO_NCP_P2P = 1 << 5          # "I negotiate the data channel from the two key-method messages"
P2P_PEER_ID_LABEL = b"EXPORTER-OpenVPN-p2p-peerid"
P2P_DEFAULT_PEER_ID = 0x76706E     # 'v' 'p' 'n': OpenVPN 2.6's peer-id without TLS-EKM


def p2p_peer_info(data_ciphers: list[str], ekm: bool, full: bool = False, comp: tuple[str, ...] | None = None,
                  extra: tuple[str, ...] = ()) -> str:
    """Our peer-info as a 2.6 p2p peer's: IV_CIPHERS and IV_PROTO (with the DNS-option bit 2.6's
    sets; not its dynamic tls-crypt bit, which this engine does not do). `full` (push-peer-info,
    2.6's detail 3): its version, platform and TCPNL lines before them, the compression lines
    (`comp`) and `extra` (settings.peer_info_extra: IV_SSL, IV_PLAT_VER, setenv UV_*...) after."""
    proto = (IV_PROTO_DATA_V2 | IV_PROTO_CC_EXIT_NOTIFY | IV_PROTO_NCP_P2P | IV_PROTO_DNS_OPTION
             | (IV_PROTO_TLS_KEY_EXPORT if ekm else 0))
    lines = [f"IV_CIPHERS={':'.join(data_ciphers)}", f"IV_PROTO={proto}"]
    if full:
        lines = ["IV_VER=2.6.0", "IV_PLAT=linux", "IV_TCPNL=1", *lines,
                 *(comp if comp is not None else STUB_PEER_INFO), *extra]
    return "\n".join(lines) + "\n"


def _our_peer_info(s: Session) -> str:
    cfg = s.cfg
    return p2p_peer_info(cfg.data_ciphers, cfg.advertise_ekm, cfg.push_peer_info, cfg.comp_peer_info,
                         cfg.peer_info_extra)


def p2p_cipher(server_list: list[str], client_list: list[str]) -> str | None:
    """The first of the tls-server's ciphers the tls-client lists too, or None. Compared exactly,
    case included, as 2.6.14's get_p2p_ncp_cipher (strcmp in tls_item_in_cipher_list; ours
    compared without case before compat48), an empty name matching nothing."""
    theirs = set(client_list)
    for c in server_list:
        if c and c in theirs:
            return c
    return None


def negotiate(s, ks: KeyState) -> None:
    """Both key-method messages are known (or ours is about to go with what it says): set the
    data channel's cipher, key derivation, peer-id and exit notice on `s`, as OpenVPN 2.6 does
    for key id 0 (later keys keep them). RemoteProtocolError when no cipher fits: as 2.6's
    "failed to negotiate cipher with peer", the connection does not come up."""
    s.peer_info = ks.remote_km.peer_info_dict() if ks.remote_km is not None else {}
    proto = iv_proto(s.peer_info)
    cipher = None
    theirs = peer_info_var(s.peer_info, "IV_CIPHERS")     # as 2.6 finds it: anywhere in the text
    if proto & IV_PROTO_NCP_P2P and theirs:
        ours = list(s.cfg.data_ciphers)
        offered = theirs.split(":")
        cipher = p2p_cipher(ours, offered) if not s.is_client else p2p_cipher(offered, ours)
    if cipher is None:
        cipher = s.cfg.data_ciphers_fallback
        if cipher is None:
            raise RemoteProtocolError("failed to negotiate a data cipher with the peer (no common data-ciphers) "
                                      "and no data-ciphers-fallback is set")
    if not is_supported(cipher):
        raise RemoteProtocolError(f"negotiated data cipher {cipher} is not supported here")
    s.cipher = cipher
    p2p = bool(proto & IV_PROTO_NCP_P2P)
    s.cc_exit = p2p and bool(proto & IV_PROTO_CC_EXIT_NOTIFY)
    s.ekm = p2p and s.cfg.advertise_ekm and bool(proto & IV_PROTO_TLS_KEY_EXPORT)
    s.peer_id = None
    if p2p and proto & IV_PROTO_DATA_V2:
        s.peer_id = P2P_DEFAULT_PEER_ID
        if s.ekm:
            b = ks.tls.export_keying_material(P2P_PEER_ID_LABEL, 3)
            s.peer_id = int.from_bytes(b, "big")


def p2p_text_message(s, text: str) -> None:
    """A control-channel text from the peer of a p2p link, either role: EXIT restarts the link
    (2.6's SIGUSR1 "remote-exit"); nothing else is spoken there (no push, no auth)."""
    if text.startswith("EXIT"):
        s._fail("peer exited (EXIT)", restart=True)
    else:
        s._warn(f"unknown control message: {text[:60]}")


class P2PClientRole(ClientRole):
    """tls-client without pull: dials, sends the first reset and key-method message; the data
    channel is up once the tls-server's key-method message is read."""

    def fill_key_method(self, km: KeyMethod2) -> None:
        km.pre_master = self.s.cfg.random_bytes(48)
        km.peer_info = _our_peer_info(self.s)

    def got_key_method(self, ks: KeyState, km: KeyMethod2, now: float) -> None:
        s = self.s
        if ks.key_id == 0 and not s.established:
            negotiate(s, ks)
        s._install_keys(ks, now)

    def text_message(self, ks: KeyState, text: str, now: float) -> None:
        p2p_text_message(self.s, text)


class P2PServerRole(ServerRole):
    """tls-server without mode server: answers the one peer's reset; no password, no push. Its
    key-method message carries our peer-info, so the tls-client reaches the same parameters."""

    def fill_key_method(self, km: KeyMethod2) -> None:
        km.peer_info = _our_peer_info(self.s)

    def got_key_method(self, ks: KeyState, km: KeyMethod2, now: float) -> None:
        s = self.s
        if ks.key_id == 0 and not s.established:
            negotiate(s, ks)
        if not ks.sent_km:
            s._send_key_method(ks)
        s._install_keys(ks, now)

    def keys_installed(self, ks: KeyState) -> None:
        self.s._set_established()

    def text_message(self, ks: KeyState, text: str, now: float) -> None:
        p2p_text_message(self.s, text)

    def peer_exit_restarts(self) -> bool:
        return True            # the peer went away: wait for it again, as 2.6's SIGUSR1

    def refuse(self, ks: KeyState | None, reason: str, temporary: bool = False) -> None:
        """A peer we will not keep (its certificate changed on renegotiation): no AUTH_FAILED (a
        p2p peer reads none) and no end of the run, as a `mode server` client's would be: the
        link starts over and waits for its peer again (2.6's SIGUSR1 on a TLS error)."""
        self.s._fail(reason, restart=True, tls_error=True)

    def exit_notification(self) -> None:
        ClientRole.exit_notification(self)       # explicit-exit-notify's rounds, timed by the gateway

    def notify_exit(self, first: bool) -> bool:
        return ClientRole.notify_exit(self, first)


def p2p_network(opts) -> PushedOptions:
    """What a pulling client would be pushed, from our own config's lines: `ifconfig LOCAL REMOTE`
    (net30/p2p: a point-to-point address; topology subnet: LOCAL with the netmask) and
    `ifconfig-ipv6 ADDR/BITS REMOTE`, as OpenVPN 2.6 sets them on Linux (tun.c do_ifconfig). The
    profile's routes, route-ipv6 and redirect-gateway are added by the tunnel as for any client."""
    p = PushedOptions()
    p.ifconfig = opts.ifconfig
    p.topology = "subnet" if opts.topology == "subnet" else "p2p"
    if opts.ifconfig_ipv6 is not None:
        addr, bits, remote = opts.ifconfig_ipv6
        p.ifconfig_ipv6 = (f"{addr}/{bits}", remote)
    p.complete = True
    return p
