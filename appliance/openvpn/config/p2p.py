"""What a point-to-point TLS config (no `pull`, no `mode server`) may hold, as OpenVPN 2.6 checks it.

Why its own module: the third shape of an OpenVPN config (two routers, one `tls-server` and one
`tls-client`, each with `ifconfig LOCAL REMOTE` and its own routes) shares most of a client's
rules (parser.finish's client branch runs for it too); what differs is decided here, once:
the TLS role that is allowed, what the peer gives us instead of a push (nothing: our address and
routes come from our own lines), and the few transports our single-peer runner handles.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .parser import ParseState


def finish_p2p(p: "ParseState") -> None:
    """Checks of a p2p config once the whole file is read (called by parser.finish)."""
    o = p.o
    line = lambda n: o.source.get(n, (p.path, None))[1]  # noqa: E731
    if o.tls_client and o.tls_server:
        # As OpenVPN 2.6 (options.c): "specify only one of --tls-server, --tls-client, or --secret".
        d = max(("tls-server", "tls-client"), key=lambda n: line(n.replace("-", "_")) or 0)    # the later line
        p.err(d, "specify only one of tls-server and tls-client (as OpenVPN 2.6)", line(d.replace("-", "_")))
        return
    if o.auth_user_pass is not None or o.auth_user_pass_required:
        # As OpenVPN 2.6 (options.c): only a pulling client sends a username and password.
        p.err("auth-user-pass", "requires `pull` (as OpenVPN 2.6): a point-to-point peer checks no passwords",
              line("auth_user_pass") or line("auth_user_pass_required"))
    if getattr(o, "dev_type", None) == "tap" or (o.dev or "").startswith("tap"):
        # OpenVPN's p2p tap reads `ifconfig LOCAL NETMASK` and bridges frames; this runner sets
        # up a routed TUN link only.
        p.err("dev", "a point-to-point link here is a TUN link (layer 3): dev tap is not supported for it",
              line("dev") or line("dev_type"))
    if o.ifconfig is None:
        # OpenVPN would bring a TUN up without addresses (for an up script to configure); here the
        # appliance configures the link, so it must know the addresses (ifconfig-ipv6 comes beside).
        p.err("ifconfig", "a point-to-point link here needs `ifconfig LOCAL REMOTE` (ifconfig-ipv6 may come "
              "beside it): no peer pushes the tunnel's addresses", None)
    if o.ifconfig is not None:
        local, second = o.ifconfig
        p.line = line("ifconfig")
        if o.topology == "subnet":
            try:
                ipaddress.IPv4Network(f"0.0.0.0/{second}")
            except ValueError:
                p.err("ifconfig", f"with topology subnet the second address is the netmask; {second} is none "
                      "(as OpenVPN 2.6)", line("ifconfig"))
        elif local == second:
            # As OpenVPN 2.6 (options.c): "local and remote/netmask --ifconfig addresses must be different".
            p.err("ifconfig", "local and remote addresses must be different (as OpenVPN 2.6)", line("ifconfig"))
    if o.proto == "tcp" and "tcp_server" not in o.source and "tcp_client" not in o.source:
        # As OpenVPN 2.6 (options.c): only `client` or `server` say which end of TCP a plain `tcp` is.
        p.err("proto", "tcp is ambiguous in this context: specify tcp-server or tcp-client (as OpenVPN 2.6)",
              line("proto"))
    if o.tls_server:
        if "tcp_client" in o.source:
            p.err("proto", "a point-to-point tls-server here waits for its peer: proto udp or tcp-server "
                  "(tcp-client is not supported)", o.source["tcp_client"][1])
        if o.floating and o.proto == "tcp":
            p.line = line("floating")
            p.note("float", "no effect over TCP (a connection keeps its address), as in OpenVPN")
        if len(o.remotes) > 1:
            p.err("remote", "a point-to-point tls-server takes one `remote` at most (the peer it accepts)",
                  p.remote_lines[1][0] if len(p.remote_lines) > 1 else None)
        if o.connection_remotes:
            p.err("connection", "a point-to-point tls-server takes no <connection> blocks",
                  o.source["connection_remotes"][1])
        if o.http_proxy is not None or o.socks_proxy is not None:
            d = "http-proxy" if o.http_proxy is not None else "socks-proxy"
            p.err(d, "a point-to-point tls-server waits for its peer; it reaches no one through a proxy",
                  line(d.replace("-", "_")))
        if (o.cert is None or o.key is None) and o.pkcs12 is None:
            # As OpenVPN 2.6: the TLS server must present a certificate.
            p.err("cert", "a tls-server needs cert and key (or pkcs12)", None)
        if o.nobind:
            p.err("nobind", "a point-to-point tls-server must listen on its port (lport/port)", line("nobind"))
        if o.tls_verify:
            # Its command would have to judge a second, untrusted session beside the live one.
            p.err("tls-verify", "is not supported on a point-to-point tls-server here (use verify-x509-name, "
                  "peer-fingerprint or a CA of its own)", line("tls_verify"))
        if o.tls_crypt_v2:
            p.err("tls-crypt-v2", "a point-to-point tls-server cannot use client keys (tls-crypt-v2 is for "
                  "`mode server`); use tls-crypt", line("tls_crypt_v2"))
    else:
        if not o.remotes:
            p.err("remote", "a point-to-point tls-client needs a `remote` (the tls-server it connects to)", None)
        if "tcp_server" in o.source:
            p.err("proto", "a point-to-point tls-client connects (udp or tcp-client); tcp-server is not supported",
                  o.source["tcp_server"][1])
