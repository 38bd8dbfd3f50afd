"""`vpn-appliance check`: every resolved setting with the line it came from.

How a field is shown is declared with the directive that sets it (`show` in the table): key
material and passwords are summarised, never printed. Defaults are marked `(default)`.
"""
from __future__ import annotations

from dataclasses import fields

from .model import Options
from .table import FIELD_DIRECTIVES

_HIDDEN = {"source", "notes", "path", "ignore_scripts"}


def render_options(o: Options) -> str:
    """`name = value   # file:line` for each setting; secrets summarised; defaults marked."""
    out = []
    for f in fields(Options):
        if f.name in _HIDDEN:
            continue
        v = getattr(o, f.name)
        for entry in FIELD_DIRECTIVES.get(f.name, []):
            if entry.show and f.name in entry.show:
                v = entry.show[f.name](v)
                break
        src = o.source.get(f.name)
        where = f"# {src[0]}:{src[1]}" if src else "# (default)"
        if f.name == "role":
            v, where = _role(o)
        out.append(f"{f.name.replace('_', '-')} = {v}   {where}")
    out.append(_derived_mss(o))
    return "\n".join(out)


def _role(o: Options) -> tuple[str, str]:
    """The role as the config makes it, with what decided it. A point-to-point config runs on the
    client's code (`role` holds "client" for it) but is no client: it neither pulls nor is
    pushed, and its end is its TLS role; shown as "client" it misled the reader."""
    line = lambda n: ":".join(map(str, o.source[n])) if n in o.source else None     # noqa: E731
    if o.role == "server":
        why = line("server") or line("mode") or line("server_bridge")
        return "server", f"# {why}" if why else "# (derived)"
    if o.p2p:
        end = "tls-server" if o.tls_server else "tls-client"
        why = line("tls_server" if o.tls_server else "tls_client")
        return f"p2p ({end} end of a point-to-point link, no pull)", f"# {why}" if why else "# (derived)"
    why = line("client") or line("pull") or line("tls_client")
    return "client", f"# {why}" if why else "# (derived)"


def _derived_mss(o: Options) -> str:
    """The MSS TCP SYNs are clamped to, per transport, as OpenVPN 2.6 computes it for the cipher
    with the most overhead this config may negotiate (so users can compare with OpenVPN's log)."""
    from ..settings import tcp_mss   # settings builds on this package: imported when rendering
    protos = sorted({r.proto for r in o.remotes} or {o.proto})
    names = list(o.data_ciphers) + [c for c in (o.data_ciphers_fallback, o.cipher) if c]
    mss = {p: min(tcp_mss(o, None, p == "tcp", cipher=c) or 0 for c in names) or None for p in protos}
    return f"tcp-mss = {mss}   # derived: mssfix, tun-mtu, proto, data-ciphers (OpenVPN 2.6 rules)"
