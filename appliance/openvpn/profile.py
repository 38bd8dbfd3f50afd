"""From parsed OpenVPN options to what a Session needs (wrapper factory, TLS settings, timers).

Kept apart from options.py (which only reads text) and session.py (which knows no files), so
both stay testable on their own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import keyfiles, wrapping
from .errors import ConfigError
from .options import Options
from .session import Role, SessionConfig
from .tls import TlsSettings

if TYPE_CHECKING:
    from .server import ServerSettings


def wrapper_factory(opts: Options, is_server: bool) -> Callable[[], object]:
    """A callable making one control-channel wrapper per session (each owns its replay state)."""
    if opts.tls_auth:
        key = keyfiles.parse_static_key(opts.tls_auth)
        direction = opts.key_direction
        digest = opts.auth or "SHA1"
        return lambda: wrapping.TlsAuthWrapper(key, direction, digest)
    if opts.tls_crypt:
        key = keyfiles.parse_static_key(opts.tls_crypt)
        return lambda: wrapping.TlsCryptWrapper(key, is_server)
    if opts.tls_crypt_v2 and not is_server:
        kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(opts.tls_crypt_v2)
        return lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc)
    return wrapping.PlainWrapper


def tls_settings(opts: Options, is_server: bool) -> TlsSettings:
    return TlsSettings(
        ca=opts.ca, cert=opts.cert, key=opts.key, is_server=is_server,
        remote_cert_tls=opts.remote_cert_tls, verify_x509_name=opts.verify_x509_name,
        peer_fingerprints=list(opts.peer_fingerprint or []),
        tls_version_min=opts.tls_version_min or "1.2", tls_version_max=opts.tls_version_max,
        verify_client_cert=getattr(opts, "verify_client_cert", "require") or "require",
    )


def comp_framing(opts: Options) -> str | None:
    if opts.compress is not None:
        return "stub-v2" if opts.compress == "stub-v2" else "stub"
    if opts.comp_lzo is not None:
        return "lzo-stub"
    return None


def client_session_config(opts: Options, proto: str, username: str = "", password: str = "",
                          advertise_ekm: bool = True) -> SessionConfig:
    if opts.role != "client":
        raise ConfigError("not a client configuration (needs `client` or `tls-client` + `pull`)")
    ping, ping_restart = opts.ping, opts.ping_restart
    return SessionConfig(
        role=Role.CLIENT, tls=tls_settings(opts, False), make_wrapper=wrapper_factory(opts, False),
        proto=proto, data_ciphers=list(opts.data_ciphers),
        data_ciphers_fallback=opts.data_ciphers_fallback or opts.cipher,
        auth=opts.auth or "SHA1", reneg_sec=opts.reneg_sec, reneg_bytes=opts.reneg_bytes,
        reneg_pkts=opts.reneg_pkts, tran_window=opts.tran_window, hand_window=opts.hand_window,
        tls_timeout=opts.tls_timeout, ping=ping, ping_restart=ping_restart, ping_exit=opts.ping_exit,
        username=username, password=password, explicit_exit_notify=opts.explicit_exit_notify,
        comp=comp_framing(opts), tun_mtu=opts.tun_mtu, early_negotiation=bool(opts.tls_crypt_v2),
        advertise_ekm=advertise_ekm, pull_filter=list(opts.pull_filter),
    )


def server_settings(opts: Options, ccd_loader=None, passdb_text: str | None = None) -> "ServerSettings":
    """A server config → the dispatcher's settings (pool, pushes, per-client session configs)."""
    from .server import AddressPool, AddressPool6, ServerSettings
    if opts.role != "server":
        raise ConfigError("not a server configuration (needs `server` or `mode server` + `tls-server`)")
    proto = opts.proto
    ping, ping_restart = opts.ping, opts.ping_restart
    push = list(opts.push)
    if opts.keepalive:
        i, t = opts.keepalive
        ping, ping_restart = i, 2 * t
        if not any(p.startswith("ping ") for p in push):
            push += [f"ping {i}", f"ping-restart {t}"]
    pool = None
    topology = opts.topology or "net30"
    if opts.server:
        net, mask = opts.server
        start = end = None
        if opts.ifconfig_pool:
            start, end = opts.ifconfig_pool[0], opts.ifconfig_pool[1]
        pool = AddressPool(net, mask, topology, start, end)
    verify_user = None
    if opts.auth_user_pass_verify:
        from .passdb import PasswordDb
        if passdb_text is None:
            raise ConfigError("auth-user-pass-verify: password file not loaded")
        verify_user = PasswordDb.parse(passdb_text, opts.auth_user_pass_verify[0]).verify
    tls = tls_settings(opts, True)
    wrapkind = "tls-auth" if opts.tls_auth else "tls-crypt" if opts.tls_crypt else \
        "tls-crypt-v2" if opts.tls_crypt_v2 else "none"
    static_key = keyfiles.parse_static_key(opts.tls_auth or opts.tls_crypt) if wrapkind in ("tls-auth", "tls-crypt") else None
    v2key = keyfiles.parse_tls_crypt_v2_server_key(opts.tls_crypt_v2) if wrapkind == "tls-crypt-v2" else None

    def session_config(peer_id: int) -> SessionConfig:
        return SessionConfig(
            role=Role.SERVER, tls=tls, make_wrapper=lambda: None, proto=proto,
            data_ciphers=list(opts.data_ciphers), data_ciphers_fallback=opts.data_ciphers_fallback or opts.cipher,
            auth=opts.auth or "SHA1", reneg_sec=opts.reneg_sec, reneg_bytes=opts.reneg_bytes,
            reneg_pkts=opts.reneg_pkts, tran_window=opts.tran_window, hand_window=opts.hand_window,
            tls_timeout=opts.tls_timeout, ping=ping, ping_restart=ping_restart, comp=comp_framing(opts),
            tun_mtu=opts.tun_mtu, peer_id=peer_id, verify_user=verify_user,
        )

    return ServerSettings(
        session_config=session_config, protection=wrapkind, static_key=static_key,
        key_direction=opts.key_direction, auth_digest=opts.auth or "SHA1", v2_server_key=v2key, pool=pool,
        pool6=AddressPool6(opts.server_ipv6) if opts.server_ipv6 else None,
        push=push, client_to_client=opts.client_to_client, duplicate_cn=opts.duplicate_cn,
        max_clients=opts.max_clients, hand_window=opts.hand_window, ccd=ccd_loader,
        ccd_exclusive=getattr(opts, "ccd_exclusive", False), tcp=proto == "tcp",
    )
