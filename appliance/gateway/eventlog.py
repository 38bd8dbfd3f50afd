"""Engine events as log lines, for both roles, in one place (matched by type)."""
from __future__ import annotations

import logging

from ..openvpn import events as ev
from ..openvpn.keymethod import WINDOWS_ONLY_PUSHED
from .status import vm_rss

log = logging.getLogger("vpn-appliance")


def fmt_addr(addr) -> str:
    """198.18.0.1:1194, [2001:db8::1]:1194 for IPv6, tcp#N/IP for a TCP connection key; a multihome
    server's client address (3 items, IPv6 5: the local address it wrote to last) with `via LOCAL`."""
    if isinstance(addr, tuple):
        text = f"[{addr[0]}]:{addr[1]}" if ":" in str(addr[0]) else f"{addr[0]}:{addr[1]}"
        return f"{text} via {addr[-1]}" if len(addr) in (3, 5) and addr[-1] is not None else text
    return str(addr)


# Items of each kind (routes, ignored and filtered options) named in the "server pushed:" line;
# the rest only counted. Why: a server's push may hold 1024 options, each ignored one kept up to
# 256 characters, and the line listed them all: ~250 KB at each push (again at each reconnect a
# server's RESTART asks for), to the VM's serial console too, where the write holds the loop.
MAX_SUMMARY_ITEMS = 8
MAX_WORD = 32           # a single pushed word shown in the line (the compression mode)
MAX_ADDR = 64           # an address as pushed (an IPv6 one with its bits is 43 characters at most)


def some_of(items: list[str], what: str, sep: str = "; ") -> str:
    """The first MAX_SUMMARY_ITEMS of `items`, then how many there are in all."""
    shown = sep.join(items[:MAX_SUMMARY_ITEMS])
    return f"{shown}{sep}... ({len(items)} {what} in all)" if len(items) > MAX_SUMMARY_ITEMS else shown


def push_summary(p, layer2: bool = False) -> str:
    """`layer2`: a tap session, where a topology means nothing (2.6's tap server pushes none, and
    the line said the default net30 over a tap device's address and netmask)."""
    if p is None:
        return "nothing"
    parts = []
    if p.ifconfig:
        parts.append(f"ifconfig {p.ifconfig[0]} {p.ifconfig[1]}")
    if p.ifconfig_ipv6:          # (helper host44: the line said nothing of IPv6 before)
        parts.append(" ".join(("ifconfig-ipv6", *(x[:MAX_ADDR] for x in p.ifconfig_ipv6 if x))))
    if not layer2:
        parts.append(f"topology {p.topology}")
    routes = p.routes
    for net, mask, _g, _m in routes[:MAX_SUMMARY_ITEMS]:
        parts.append(f"route {net} {mask}")
    if len(routes) > MAX_SUMMARY_ITEMS:
        parts.append(f"... ({len(routes)} routes in all)")
    routes6 = p.routes_ipv6
    for net6, _g6, _m6 in routes6[:MAX_SUMMARY_ITEMS]:
        parts.append(f"route-ipv6 {net6[:MAX_ADDR]}")
    if len(routes6) > MAX_SUMMARY_ITEMS:
        parts.append(f"... ({len(routes6)} IPv6 routes in all)")
    if p.block_ipv6:
        parts.append("block-ipv6")
    if p.tun_mtu is not None:
        parts.append(f"tun-mtu {p.tun_mtu}")
    if p.redirect_gateway is not None:
        parts.append("redirect-gateway " + " ".join(p.redirect_gateway))
    if p.redirect_private is not None:
        parts.append("redirect-private " + " ".join(p.redirect_private))
    # compression (compress wins, as compression.pushed_compression); the peer's word, escaped by
    # the control-channel parser, cut short: `comp-lzo <anything>` passes as lzo
    if p.compress is not None:
        parts.append(f"compress {p.compress[:MAX_WORD]}")
    elif p.comp_lzo is not None:
        parts.append(f"comp-lzo {p.comp_lzo[:MAX_WORD]}")
    if getattr(p, "route_delay", None) is not None:
        parts.append(f"route-delay {p.route_delay[0]}")
    if p.ping:
        parts.append(f"ping {p.ping}")
    if p.ping_restart:
        parts.append(f"ping-restart {p.ping_restart}")
    if p.ignored:
        parts.append("ignored: " + some_of(p.ignored, "ignored"))
    if p.filtered:
        parts.append("dropped by pull-filter: " + some_of(p.filtered, "dropped"))
    return ", ".join(parts)


def log_unrecognized(p) -> None:
    """The pushed options OpenVPN 2.6's Linux client does not know (Windows-only ones: block-outside-dns
    ...), one error line each in 2.6's words, the tunnel going on as there (MAX_SUMMARY_ITEMS
    lines at most, then their number)."""
    items = getattr(p, "unrecognized", None) or []
    for where in items[:MAX_SUMMARY_ITEMS]:
        why = "a Windows-only option" if where.rpartition(": ")[2] in WINDOWS_ONLY_PUSHED else "extra parameters"
        log.error("Options error: Unrecognized option or missing or extra parameter(s) in %s (%s, as OpenVPN 2.6 "
                  "on Linux reads it): not applied, the tunnel goes on", where, why)
    if len(items) > MAX_SUMMARY_ITEMS:
        log.error("... %d such pushed options in all", len(items))


def log_malformed(p) -> None:
    """The pushed options with a bad value (keymethod.PushedOptions.malformed), one error line
    each as OpenVPN 2.6 logs them ("Options error: ..." at its push-errors level), what was done
    with each said; MAX_SUMMARY_ITEMS lines at most per push, then their number (a server
    pushing a thousand bad options writes a few lines, and a reconnect loop is paced by its
    backoff)."""
    items = getattr(p, "malformed", None) or []
    for what in items[:MAX_SUMMARY_ITEMS]:
        log.error("Options error: %s; the rest of the push is taken, as OpenVPN 2.6 does", what)
    if len(items) > MAX_SUMMARY_ITEMS:
        log.error("... %d pushed options with a bad value in all", len(items))


def log_client_event(e: object) -> None:
    """The client's view (TunnelUp is logged by the client once the TUN is configured)."""
    match e:
        case ev.HandshakeCompleted():
            log.info("TLS handshake done (key %d): %s %s, group %s, peer certificate CN=%s", e.key_id,
                     e.tls_version, e.tls_cipher, e.tls_group or "-", e.peer_common_name)
        case ev.KeyRenegotiated():
            log.info("data channel key renegotiated (key id %d, %s)", e.key_id, e.cipher)
        case ev.AuthFailed():
            log.error("authentication failed: %s", e.message)
        case ev.AuthPending():
            log.warning("the server checks our login out of band (AUTH_PENDING%s): waiting up to %d s for it",
                        f",{e.keywords}" if e.keywords else "", e.wait)
        case ev.ServerInfo():
            # Warning level: a web login's URL (WEB_AUTH::...) is something the user must see.
            log.warning("message from the server (%s): %s", e.kind, e.text)
        case ev.Decompressing():
            log.info("the server compresses what it sends (%s): decompressing it (first compressed packet "
                     "%d -> %d bytes); ours go uncompressed", e.mode, e.compressed, e.decompressed)
        case ev.Warning():
            log.warning("%s", e.message)
        case ev.SessionClosed() if e.restart:
            log.warning("connection reset: %s", e.reason)
        case ev.SessionClosed():
            log.error("session ended: %s", e.reason)


def log_server_event(rec, e: object) -> None:
    """One line per client event, prefixed with who: CN/address."""
    who = f"{rec.common_name or rec.session.peer_common_name or '?'}/{fmt_addr(rec.addr)}"
    match e:
        case ev.ClientAuthenticated():
            log.info("%s: authenticated (CN=%s%s%s)", who, e.common_name,
                     f", user {e.username}" if e.username else "",
                     f", tls-crypt-v2 {rec.v2_metadata}" if rec.v2_metadata else "")
        case ev.TunnelUp():
            # (no IPv4 address: its IPv6 one; neither -- a full pool lets a client in so, as 2.6 --: none)
            log.info("%s: connected, address %s, cipher %s, peer-id %s, VmRSS %s", who,
                     rec.vaddr or rec.vaddr6 or "none", e.cipher, rec.peer_id, vm_rss())
        case ev.KeyRenegotiated():
            log.info("%s: key renegotiated (key id %d)", who, e.key_id)
        case ev.ClientFloated():
            log.info("%s: moved from %s to %s (same session, by peer-id)%s", who, fmt_addr(e.old_addr),
                     fmt_addr(e.new_addr),
                     f"; {e.unreported} more moves since the last such line" if e.unreported else "")
        case ev.SessionClosed():
            log.info("%s: disconnected: %s", who, e.reason)
        case ev.ExitHeld():
            log.info("%s: exit notification (EXIT): disconnecting in %g s, as OpenVPN 2.6", who, e.seconds)
        case ev.Decompressing():
            log.info("%s: the client compresses what it sends (%s): decompressing it (first compressed packet "
                     "%d -> %d bytes); ours go uncompressed", who, e.mode, e.compressed, e.decompressed)
        case ev.Warning():
            log.warning("%s: %s", who, e.message)
