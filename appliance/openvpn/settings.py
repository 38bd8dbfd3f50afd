"""From parsed Options to what the engine needs: one SessionConfig builder for both roles, the
control-channel protection, TLS settings, the server's settings, and the TCP MSS.

Why one builder: the client and the server used to copy Options fields into SessionConfig in two
places that drifted (the server never got replay-window, ping-exit or the early-negotiation flag
the same way). `session_config(opts, role, ...)` is the only place an Options field becomes a
SessionConfig field; the per-role functions the pumps call are thin wrappers over it.

Kept apart from the config package (which only reads text) and session.py (which knows no files),
so both stay testable on their own.
"""
from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Callable

from . import ciphers, gentoken, keyfiles, wrapping
from .compression import COMP_F_ADVERTISE_STUBS_ONLY, COMP_F_ALLOW_STUB_ONLY, SEND_FRAMING, STUB_PEER_INFO
from .config import MSSFIX_DEFAULT, TUN_MTU_DEFAULT, Options
from .errors import ConfigError, located
from .fragment import HEADER_LEN as FRAGMENT_HEADER
from .keyunlock import unlock as unlock_key
from .mss import INNER_HEADERS, encap_room
from .occstring import TUN_MTU_DEFAULT, OccInputs
from .passdb import PasswordDb
from .layer2 import layer2_pool, tap_address
from .addresspool import AddressPool, AddressPool6
from .session import Role, SessionConfig
from .crl import background_reader, capath_warning
from .crl import checker as crl_checker
from .tls import DEFAULT_TLS_VERSION_MIN, TlsSettings, check_offer, context_for, key_exchange_groups

if TYPE_CHECKING:
    from .server import ServerSettings
    from .serveraddressing import Addressing


def protection(opts: Options) -> str:
    """The control-channel protection the config asks for: none | tls-auth | tls-crypt | tls-crypt-v2.
    A server's tls-crypt-v2 may have a tls-auth or tls-crypt key beside it (shared_protection)."""
    if opts.tls_crypt_v2:
        return "tls-crypt-v2"
    return shared_protection(opts)


def shared_protection(opts: Options) -> str:
    """The shared key's protection: tls-auth | tls-crypt | none. Beside a server's tls-crypt-v2 it
    is what clients without a key of their own use, as in OpenVPN 2.6 (its manual: "the server
    will detect whether the client is using client-specific keys"; init.c sets the shared wrap and
    the tls-crypt-v2 server key side by side, ssl_pkt.c read_control_auth takes the client's key
    from a P_CONTROL_HARD_RESET_CLIENT_V3 or P_CONTROL_WKC_V1 and the shared key otherwise): a
    server moves its clients to tls-crypt-v2 one by one. A client has one (parser.finish)."""
    if opts.tls_auth:
        return "tls-auth"
    if opts.tls_crypt:
        return "tls-crypt"
    return "none"


def wrapper_factory(opts: Options, is_server: bool) -> Callable[[], object]:
    """A callable making one control-channel wrapper per session (each owns its replay state).
    A server's wrappers are its dispatcher's (one per client key, or the shared key's); for a
    tls-crypt-v2 server this is the shared key's (check_key_material reads its file), else PlainWrapper."""
    kind = protection(opts)
    if is_server and kind == "tls-crypt-v2":
        kind = shared_protection(opts)
    # replay-window N T holds for the control channel's packet ids too, as in OpenVPN 2.6
    # (ssl.c session_init); wrapping.py says why the time limit matters there.
    n, t = opts.replay_window, opts.replay_time or None
    if kind == "tls-auth":
        key = _keyfile("tls-auth", keyfiles.parse_static_key, opts.tls_auth)
        direction, digest = opts.key_direction, opts.auth or "SHA1"
        return lambda: wrapping.TlsAuthWrapper(key, direction, digest, replay_window=n, replay_time=t)
    if kind == "tls-crypt":
        key = _keyfile("tls-crypt", keyfiles.parse_static_key, opts.tls_crypt)
        return lambda: wrapping.TlsCryptWrapper(key, is_server, replay_window=n, replay_time=t)
    if kind == "tls-crypt-v2" and not is_server:
        kc, wkc = _keyfile("tls-crypt-v2", keyfiles.parse_tls_crypt_v2_client_key, opts.tls_crypt_v2)
        return lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, replay_window=n, replay_time=t)
    return wrapping.PlainWrapper


# OpenVPN 2.6's words (init.c, at start), so a user who greps for them finds them here too.
NO_SERVER_CERT_CHECK = ("WARNING: No server certificate verification method has been enabled.  "
                        "See http://openvpn.net/howto.html#mitm for more info.")


def checks_server_certificate(opts: Options) -> bool:
    """Whether a client config checks that the peer's certificate is a server's (or that one):
    without `remote-cert-tls`, `remote-cert-eku`, `verify-x509-name` or `peer-fingerprint`, any
    certificate the CA signed is taken -- another client's too, which lets that client play the
    server (OpenVPN's "mitm" note). The same set OpenVPN 2.6 counts, less `tls-verify`, a command
    whose checks we cannot judge (`remote-cert-ku` alone does not count, as there)."""
    return bool(opts.remote_cert_tls or opts.remote_cert_eku or opts.verify_x509_name or opts.peer_fingerprint
                or opts.ns_cert_type == "server")


def tls_settings(opts: Options, is_server: bool, crl_reader: Callable | None = None) -> TlsSettings:
    """`crl_reader`: where a large crl-verify file is read (crl.background_reader), its first
    reading included, which the caller starts (tls.crl.refresh()); without one the file is read
    here, on the caller's thread."""
    return TlsSettings(
        ca=opts.ca, cert=opts.cert, key=opts.key, is_server=is_server,
        remote_cert_tls=opts.remote_cert_tls, verify_x509_name=opts.verify_x509_name, ns_cert_type=opts.ns_cert_type,
        peer_fingerprints=list(opts.peer_fingerprint), remote_cert_eku=opts.remote_cert_eku,
        remote_cert_ku=None if opts.remote_cert_ku is None else list(opts.remote_cert_ku),
        tls_version_min=opts.tls_version_min or DEFAULT_TLS_VERSION_MIN, tls_version_max=opts.tls_version_max,
        verify_client_cert=opts.verify_client_cert,
        crl=crl_checker(opts.crl_verify, opts.ca, crl_reader),     # either role: the peer's chain, as OpenVPN
        tls_cipher=opts.tls_cipher, tls_ciphersuites=opts.tls_ciphersuites,
        tls_groups=key_exchange_groups(opts.tls_groups, opts.ecdh_curve),
        username_field=opts.x509_username_field,
        verify_hash=list(opts.verify_hash), verify_hash_algo=opts.verify_hash_algo,
        cert_profile=opts.tls_cert_profile,
        hold_for_verdict=bool(opts.tls_verify),      # the gateway runs the command (gateway/tlsverify.py)
        capath=opts.capath, capath_warn=capath_warning if opts.capath else None,
    )


def comp_framing(opts: Options) -> str | None:
    """The framing every session starts with; `compress migrate` has none (OpenVPN 2.6: no
    compression algorithm) until its push gives one to a client that announced compression.
    "lzo", "lz4", "lz4-v2": real compression, received only (compression.py)."""
    if opts.compress == "migrate":
        return None
    if opts.compress is not None:
        return opts.compress
    if opts.comp_lzo is not None:
        return "lzo-stub" if opts.comp_lzo == "no" else "lzo"
    return None


def comp_flags(opts: Options) -> int:
    """OpenVPN 2.6's compression flags after options_postprocess: a config that set none and
    compresses nothing allows and advertises stubs only."""
    flags = opts.comp_flags
    if flags == 0 and comp_framing(opts) not in SEND_FRAMING:
        flags = COMP_F_ALLOW_STUB_ONLY | COMP_F_ADVERTISE_STUBS_ONLY
    return flags


def comp_peer_info(opts: Options) -> tuple[str, ...]:
    """The client's compression lines in its peer-info, as 2.6 built with LZO and LZ4 sends them
    (comp.c, comp_generate_peer_info_string): the algorithms unless only stubs are advertised,
    then IV_LZO_STUB in their place; the stubs always. A profile without any compression line
    advertises stubs only (2.6's default flags), and so sends IV_LZO_STUB, IV_COMP_STUB and
    IV_COMP_STUBv2 too (before, ours sent none of them there)."""
    if comp_flags(opts) & COMP_F_ADVERTISE_STUBS_ONLY:
        return STUB_PEER_INFO
    return ("IV_LZ4=1", "IV_LZ4v2=1", "IV_LZO=1", "IV_COMP_STUB=1", "IV_COMP_STUBv2=1")


def occ_inputs(opts: Options) -> OccInputs:
    """What OpenVPN 2.6's options string reads of this config (occstring.py)."""
    return OccInputs(
        dev_type=opts.dev_type, tun_mtu=opts.tun_mtu,
        # (2.6 counts a tun-mtu-extra line on a tun device too, tap's default 32 on tap only)
        tun_mtu_extra=opts.tun_mtu_extra if opts.dev_type == "tap" or "tun_mtu_extra" in opts.source else 0,
        comp=comp_framing(opts), fragment=bool(opts.fragment), key_direction=opts.key_direction,
        cipher=opts.cipher, data_ciphers=tuple(opts.data_ciphers),
        auth=opts.auth or "SHA1",
        tls_auth=bool(opts.tls_auth), p2p=bool(opts.p2p), ifconfig=opts.ifconfig, topology=opts.topology,
        ifconfig_ipv6=opts.ifconfig_ipv6 is not None,
        occ_tun_mtu=TUN_MTU_DEFAULT if opts.link_mtu is not None else None)


def session_config(opts: Options, role: Role, *, proto: str | None = None, tls: TlsSettings | None = None,
                   make_wrapper: Callable[[], object] | None = None, peer_id: int | None = None,
                   username: str = "", password: str = "", advertise_ekm: bool = True,
                   verify_user: Callable[[str, str, str | None], bool] | None = None) -> SessionConfig:
    """The one Options → SessionConfig mapping, for either role. `tls`/`make_wrapper` may be passed
    in so a server builds them once for all its clients."""
    client = role == Role.CLIENT
    ping, ping_restart = opts.ping, opts.ping_restart       # keepalive already expanded per role
    return SessionConfig(
        role=role, tls=tls if tls is not None else tls_settings(opts, not client),
        make_wrapper=make_wrapper if make_wrapper is not None else wrapper_factory(opts, not client),
        proto=proto or opts.proto, data_ciphers=list(opts.data_ciphers),
        data_ciphers_fallback=opts.data_ciphers_fallback,   # p2p: `cipher` too (config/parser.py)
        auth=opts.auth or "SHA1", reneg_sec=opts.reneg_sec, reneg_bytes=opts.reneg_bytes,
        reneg_pkts=opts.reneg_pkts, tran_window=opts.tran_window, hand_window=opts.hand_window,
        tls_timeout=opts.tls_timeout, ping=ping, ping_restart=ping_restart,
        ping_exit=opts.ping_exit if client else 0,
        explicit_exit_notify=opts.explicit_exit_notify if client else 0,
        comp=comp_framing(opts), comp_peer_info=comp_peer_info(opts),
        comp_stub_only=bool(comp_flags(opts) & COMP_F_ALLOW_STUB_ONLY), tun_mtu=opts.tun_mtu, dev_type=opts.dev_type,
        tun_mtu_extra=opts.tun_mtu_extra if opts.dev_type == "tap" else 0, tun_mtu_max=opts.tun_mtu_max, tls_mtu=opts.tls_mtu,
        replay_window=opts.replay_window, replay_time=opts.replay_time or None,
        early_negotiation=client and bool(opts.tls_crypt_v2),
        advertise_ekm=advertise_ekm, pull_filter=list(opts.pull_filter) if client else [],
        route_nopull=client and opts.route_nopull, auth_retry=client and opts.auth_retry,
        username=username, password=password, peer_id=peer_id, verify_user=verify_user,
        peer_info_extra=peer_info_extra(opts) if client else (),
        fragment_room=fragment_room(opts, opts.proto_family == "6" or ":" in (opts.local or "")),
        occ=occ_inputs(opts),
    )


def fragment_room(opts: Options, ipv6_transport: bool) -> int:
    """`fragment N [mtu]` -> the UDP payload bytes each datagram may take (0: no fragmentation).
    With `mtu`, N counts the outer IP and UDP headers, whose size depends on the transport's
    family (the client sets it again once it knows the address: gateway/client.py)."""
    if not opts.fragment:
        return 0
    return encap_room(opts.fragment, False, opts.fragment_mtu, ipv6_transport)


# OpenVPN 2.6 builds the peer info in 512 * 3 bytes and leaves out what does not fit (buf_safe).
PEER_INFO_MAX = 1536


def peer_info_extra(opts: Options) -> tuple[str, ...]:
    """The client's peer-info lines beyond its own, as OpenVPN 2.6's client adds them (ssl.c
    push_peer_info, detail 2 with `pull`, 3 with push-peer-info): `setenv IV_GUI_VER` and
    `IV_SSO` always (a web-login server reads IV_SSO to know the client can show its URL); with
    push-peer-info also IV_SSL, IV_PLAT_VER (the kernel release) and the setenv UV_* and
    IV_PLAT_VER variables -- the newest setenv first, as OpenVPN walks its environment. Not
    IV_HWADDR (the default gateway's MAC address: nobody asked this appliance to tell it)."""
    out: list[str] = []
    if opts.push_peer_info:
        import os

        from cryptography.hazmat.backends.openssl.backend import backend
        out += [f"IV_SSL={backend.openssl_version_text()}", f"IV_PLAT_VER={os.uname().release}"]
    for k, v in reversed(opts.setenv.items()):
        if k in ("IV_GUI_VER", "IV_SSO") or (opts.push_peer_info and (k.startswith("UV_") or k == "IV_PLAT_VER")):
            out.append(f"{k}={v}")
    kept, size = [], 0
    for line in out:
        if "\n" in line or size + len(line.encode()) + 1 > PEER_INFO_MAX // 2:
            continue          # half of OpenVPN's buffer: its own variables take the rest
        kept.append(line)
        size += len(line.encode()) + 1
    return tuple(kept)


def client_session_config(opts: Options, proto: str, username: str = "", password: str = "",
                          advertise_ekm: bool = True,
                          credentials: Callable[[], tuple[str, str]] | None = None) -> SessionConfig:
    """`credentials`: fetched at each key-method message instead of username/password (auth-nocache)."""
    if opts.role != "client":
        raise ConfigError("not a client configuration (needs `client` or `tls-client` + `pull`)")
    cfg = session_config(opts, Role.CLIENT, proto=proto, username=username, password=password,
                         advertise_ekm=advertise_ekm)
    cfg.credentials = credentials
    return cfg


def p2p_session_config(opts: Options, proto: str, tls: TlsSettings | None = None) -> SessionConfig:
    """A point-to-point link's session (openvpn/p2p.py): the TLS role the config names, no
    credentials, the client-side timers (ping-exit, explicit-exit-notify) on both ends, as 2.6.
    `tls`: settings shared by the sessions of one listen (p2p_session_maker)."""
    if not opts.p2p:
        raise ConfigError("not a point-to-point configuration (tls-server or tls-client without pull)")
    role = Role.SERVER if opts.tls_server else Role.CLIENT
    cfg = session_config(opts, role, proto=proto, tls=tls)
    cfg.p2p = True
    cfg.ping_exit = opts.ping_exit
    cfg.explicit_exit_notify = opts.explicit_exit_notify
    # 2.6 sends a p2p peer only IV_CIPHERS and IV_PROTO, unless push-peer-info (p2p.py)
    cfg.push_peer_info = opts.push_peer_info
    cfg.peer_info_extra = peer_info_extra(opts) if opts.push_peer_info else ()
    cfg.early_negotiation = bool(opts.tls_crypt_v2) and not opts.tls_server
    return cfg


def p2p_session_maker(opts: Options, proto: str) -> Callable[[], SessionConfig]:
    """The p2p tls-server's session configs for one listen: the live session's and each takeover
    candidate's. Why one TlsSettings for all: built per session, each re-read the `crl-verify`
    file on the event loop (~0.35 s at 100,000 entries), and a stranger's reset a second (no key
    needed without tls-auth) starts a candidate a second. The CRL is read once here; a change is
    seen at the next check and read by the CRL worker when large, as the server does."""
    tls = tls_settings(opts, bool(opts.tls_server))
    if tls.crl is not None:
        tls.crl.reader = background_reader
    return lambda: p2p_session_config(opts, proto, tls)


_EPHEMERAL_TOKEN_KEY: list[bytes] = []


def _ephemeral_token_key() -> bytes:
    """auth-gen-token without auth-gen-token-secret: one random key for the life of the process.
    Not one per settings build: a reload (SIGHUP) keeps its clients connected, and a new key would
    make each one's token fail at its next renegotiation. A restart makes a new one, as OpenVPN."""
    if not _EPHEMERAL_TOKEN_KEY:
        _EPHEMERAL_TOKEN_KEY.append(gentoken.new_secret())
    return _EPHEMERAL_TOKEN_KEY[0]


def _pool6(opts: Options) -> AddressPool6 | None:
    """server-ipv6's pool, or ifconfig-ipv6-pool's (beside ifconfig-ipv6, parser.finish checks)."""
    if opts.server_ipv6:
        return AddressPool6(opts.server_ipv6)
    if opts.ifconfig_ipv6_pool and opts.ifconfig_ipv6:
        addr, bits, _remote = opts.ifconfig_ipv6
        return AddressPool6(opts.ifconfig_ipv6_pool, start=opts.ifconfig_ipv6_pool.partition("/")[0],
                            server_ip=addr, push_bits=bits)
    return None


def _local_ip6(opts: Options) -> str | None:
    """The server's own IPv6 address on its TUN: server-ipv6's ::1, or ifconfig-ipv6's."""
    if opts.server_ipv6:
        return str(ipaddress.IPv6Network(opts.server_ipv6).network_address + 1)
    return opts.ifconfig_ipv6[0] if opts.ifconfig_ipv6 else None


def _constraint(opts: Options) -> tuple[int, int] | None:
    """ifconfig-push-constraint as the two integers OpenVPN 2.6 compares (multi.c). `server NET
    MASK` with dev tap or topology subnet sets it to NET/MASK itself, as 2.6's helper.c does after
    the file is read -- so there it replaces an `ifconfig-push-constraint` line (config check notes
    it): a ccd or client-connect `ifconfig-push` outside the server's network is logged."""
    c = opts.ifconfig_push_constraint
    if opts.server is not None and (opts.dev_type == "tap" or opts.topology == "subnet"):
        c = opts.server
    return None if c is None else (int(ipaddress.IPv4Address(c[0])), int(ipaddress.IPv4Address(c[1])))


def server_settings(opts: Options, ccd_loader=None, passdb_text: str | None = None,
                    defer_auth: bool = False, tls: TlsSettings | None = None,
                    wall_clock: Callable[[], float] = time.time,
                    check_command: Callable[..., object] | None = None) -> ServerSettings:
    """A server config → the dispatcher's settings (pool, pushes, per-client session configs).
    `defer_auth`: password checks come out as AuthRequested events for the caller to run off its
    event loop (the gateway does); otherwise sessions run them inline (engine tests). `tls`: the
    TLS settings check_key_material made from `opts` (their CRL read once, not once more here).
    `wall_clock`: the seconds since the epoch auth-gen-token's tokens carry (tests give their own).
    `check_command`: the check an auth-user-pass-verify command makes (the gateway runs it,
    deferred, with the client's environment: gateway/authscript.py; the engine runs no command)."""
    # The dispatcher's modules are loaded here, not with this module: a client's start imports
    # settings too and never runs a server (tests/unit/test_server_imports.py).
    from .server import ServerSettings
    from .serveraddressing import server_addressing
    if opts.role != "server":
        raise ConfigError("not a server configuration (needs `server` or `mode server` + `tls-server`)")
    push = list(opts.push)
    if opts.keepalive and not any(p.startswith("ping ") for p in push):
        i, t = opts.keepalive
        push += [f"ping {i}", f"ping-restart {t}"]
    pool = None
    if opts.dev_type == "tap":
        pool, push = layer2_pool(opts, push)        # dev tap: server / server-bridge / by hand (layer2.py)
    addressing = server_addressing(opts)        # dev tun: `server`, or written out (serveraddressing.py)
    if addressing is not None:
        pool = addressing.make_pool()
    verify_user = None
    user_known = None
    if opts.auth_user_pass_verify:
        if passdb_text is None:
            raise ConfigError("auth-user-pass-verify: password file not loaded")
        passdb = PasswordDb.parse(passdb_text, opts.auth_user_pass_verify[0])
        verify_user, user_known = passdb.verify, passdb.users.__contains__
    elif opts.auth_user_pass_verify_script or opts.auth_pam is not None:
        if check_command is None or not defer_auth:
            raise ConfigError("auth-user-pass-verify: a command (or the auth-pam plugin's check) is run by the "
                              "gateway only (deferred)")
        verify_user = check_command      # any user its check accepted may log in on a token, as OpenVPN
    if tls is None:
        tls = tls_settings(opts, True)
    kind, shared = protection(opts), shared_protection(opts)
    static_key = keyfiles.parse_static_key(opts.tls_auth or opts.tls_crypt) if shared != "none" else None
    v2key = keyfiles.parse_tls_crypt_v2_server_key(opts.tls_crypt_v2) if kind == "tls-crypt-v2" else None

    token_policy = None
    if opts.auth_gen_token is not None and (verify_user is not None or opts.management_client_auth):
        lifetime, renewal = opts.auth_gen_token
        token_policy = gentoken.TokenPolicy(opts.auth_gen_token_secret or _ephemeral_token_key(), lifetime,
                                            renewal or opts.reneg_sec)

    def per_client(peer_id: int) -> SessionConfig:
        # The dispatcher wraps and unwraps control packets itself (one key per server or per client).
        cfg = session_config(opts, Role.SERVER, tls=tls, make_wrapper=lambda: None, peer_id=peer_id,
                             verify_user=None if defer_auth else verify_user)
        # management-client-auth: every login goes out as an event too (the gateway asks the
        # management client; gateway/mgmt_auth.py), with or without a check of its own.
        cfg.defer_auth = defer_auth and (verify_user is not None or opts.management_client_auth)
        cfg.gen_token, cfg.wall_clock = token_policy, wall_clock
        cfg.token_user_known = user_known if token_policy is not None else None
        cfg.token_external = opts.auth_gen_token_external
        cfg.require_ekm = opts.force_key_material_export
        cfg.comp_migrate = opts.compress == "migrate"
        return cfg

    return ServerSettings(
        session_config=per_client, protection=kind, static_key=static_key, shared_protection=shared,
        key_direction=opts.key_direction, auth_digest=opts.auth or "SHA1", v2_server_key=v2key, pool=pool,
        pool6=_pool6(opts), local_ip6=_local_ip6(opts),
        local_ip4=_local_ip4(addressing, pool, opts),
        push=push, client_to_client=opts.client_to_client, duplicate_cn=opts.duplicate_cn,
        max_clients=opts.max_clients, max_routes_per_client=opts.max_routes_per_client, hand_window=opts.hand_window, ccd=ccd_loader,
        ifconfig_push_constraint=_constraint(opts),
        tcp=opts.proto == "tcp", ccd_exclusive=opts.ccd_exclusive, force_cookie=opts.tls_crypt_v2_force_cookie,
        username_as_cn=opts.username_as_common_name, connect_freq=opts.connect_freq,
        connect_freq_initial=opts.connect_freq_initial, verify_user=verify_user,
        defer_auth=defer_auth and verify_user is not None,
        v2_verify=kind == "tls-crypt-v2" and bool(opts.tls_crypt_v2_verify),
        layer2=opts.dev_type == "tap",
        vlan=(opts.vlan_accept, opts.vlan_pvid) if opts.vlan_tagging else None,
        addressing_push=(addressing.push, addressing.push_after) if addressing is not None else ((), ()),
    )


def _local_ip4(addressing: Addressing | None, pool: AddressPool | None, opts: Options) -> bytes | None:
    """The server's own IPv4 address on its TUN (packets to it are its host's), packed: ifconfig's
    (`server`'s NET+1), or a tap server's pool's (server-bridge's IP). A tap `server NET MASK
    nopool` has no pool but its TAP device still has NET+1 (review49a: a ccd's ifconfig-push of
    it was admitted there, refused with the pool)."""
    ip = addressing.local if addressing is not None else pool.server_ip if pool is not None else None
    if not ip and opts.dev_type == "tap" and (own := tap_address(opts)) is not None:
        ip = own[0]
    return ipaddress.IPv4Address(ip).packed if ip else None


# ------------------------------------------------------------------ MSS
def data_overhead(opts: Options, cipher: str | None = None, data_v2: bool = True) -> int:
    """Per-packet data-channel overhead: of `cipher`, or the largest among the ciphers this config
    may negotiate (a server clamps for whichever its clients pick)."""
    if cipher is not None:
        return ciphers.overhead(cipher, opts.auth, data_v2)
    names = list(opts.data_ciphers) + [c for c in (opts.data_ciphers_fallback, opts.cipher) if c]
    return ciphers.max_overhead(names, opts.auth, data_v2)


def mssfix_in_force(opts: Options) -> tuple[int, bool, bool]:
    """The `mssfix` a config runs with, as OpenVPN 2.6 decides it (options.c,
    options_postprocess_mutate_ce; checked with Debian's 2.6.14 `--verb 4`): (N, `mtu`, `fixed`),
    N 0 for no clamping. The one place the default is decided.

    Without `mssfix N` (no mssfix, or `mssfix` alone): `fragment N` gives `N mtu`; else a
    `link-mtu` (no tun-mtu) leaves clamping off (or, as 2.6, at the N of an `mssfix N` that a
    bare `mssfix` followed, with `mtu`); else the profile's tun-mtu 1500 (the default)
    gives `1492 mtu`, and any other tun-mtu gives `<tun-mtu> fixed` -- the TUN's own MTU bounds
    the inner packet, so MSS = tun-mtu - 40 whatever the cipher, tap's tun-mtu-extra or the
    transport. Why 2.6 does so: a non-default tun-mtu is taken to solve the path MTU already.
    The tun-mtu compared with 1500 is the profile's even for a <connection> block's own
    (global_tun_mtu), the N the block's. A pushed tun-mtu changes nothing: the clamp is
    decided from the config before the pull, in 2.6 as here (the client's rule is built at
    connect time)."""
    if opts.mssfix is not None:
        return opts.mssfix, opts.mssfix_mtu, opts.mssfix_fixed and opts.mssfix > 0
    if opts.fragment:
        return opts.fragment, True, False
    if opts.link_mtu is not None:
        return opts.mssfix_kept, True, False    # 0 unless a bare `mssfix` followed an `mssfix N`
    ref = opts.tun_mtu if opts.global_tun_mtu is None else opts.global_tun_mtu
    if ref == TUN_MTU_DEFAULT:
        return MSSFIX_DEFAULT, True, False
    return opts.tun_mtu, True, True


def tcp_mss(opts: Options, overhead: int | None, tcp_transport: bool, ipv6_transport: bool = False,
            cipher: str | None = None, data_v2: bool = True) -> int | None:
    """The MSS to clamp TCP SYNs to, with OpenVPN 2.6's `mssfix` meaning (frame_calculate_mssfix);
    None when `mssfix 0` turned clamping off. Give `cipher` (and `data_v2`) for OpenVPN's exact
    figure, CBC block rounding included; or an `overhead` (data_overhead(), DataKey.overhead()).
    A compression framing byte (comp-lzo no, compress stub) counts, as in OpenVPN."""
    n, mtu_flag, fixed = mssfix_in_force(opts)
    if n == 0:
        return None
    if fixed:
        return n - INNER_HEADERS          # the inner packet's own bound: nothing of the tunnel counts
    room = encap_room(n, tcp_transport, mtu_flag, ipv6_transport)
    if cipher is not None:
        spec = ciphers.spec(cipher)
        if spec is None:
            raise ValueError(f"unsupported cipher {cipher}")
        payload = spec.max_payload(room, opts.auth, data_v2)
    elif overhead is not None:
        payload = room - overhead
    else:
        raise ValueError("tcp_mss needs a cipher or an overhead")
    # (`compress migrate`: a migrated client may frame with comp-lzo's byte)
    comp_byte = 1 if comp_framing(opts) in ("lzo-stub", "stub", "lzo", "lz4") or opts.compress == "migrate" else 0
    # tun-mtu-extra and the fragment header count as payload overhead too (mtu.c
    # frame_calculate_payload_overhead).
    frag = FRAGMENT_HEADER if opts.fragment else 0
    return payload - comp_byte - frag - opts.tun_mtu_extra - INNER_HEADERS


def mss_rule(opts: Options, tcp_transport: bool, ipv6_transport: bool = False) -> Callable[[str, bool], int | None]:
    """For the data path: (negotiated cipher, P_DATA_V2?) -> the MSS to clamp to (None: no clamping)."""
    return lambda cipher, data_v2: tcp_mss(opts, None, tcp_transport, ipv6_transport, cipher=cipher, data_v2=data_v2)


def check_key_material(opts: Options, crl_reader: Callable | None = None) -> TlsSettings:
    """Decode the keys and certificates the way a session will (ConfigError if they are bad), so
    `check` and the start-up checks catch them before anything runs. Returns the TLS settings
    made on the way, for server_settings: the CRL is read once (a 100,000-entry file costs
    ~0.35 s a reading). With `crl_reader` the CRL is not read yet: its reading (tls.crl.refresh())
    and its check (check_crl) are the caller's (a reload, gateway/ops.py). Every error is placed
    on the line of the directive it names (located()): a key of the wrong kind said only
    "static key: missing '-----BEGIN ...' line", naming neither the file nor the directive."""
    is_server = opts.role == "server" or (opts.p2p and opts.tls_server)    # the TLS role, p2p's too
    try:
        wrapper_factory(opts, is_server)
        if is_server and protection(opts) == "tls-crypt-v2":
            _keyfile("tls-crypt-v2", keyfiles.parse_tls_crypt_v2_server_key, opts.tls_crypt_v2)
        unlock_key(opts)             # an encrypted key: with askpass FILE's password (or typed: cli.py)
        tls = tls_settings(opts, is_server, crl_reader)
        if crl_reader is None:
            check_crl(opts, tls)
        check_mss(opts)
        context_for(tls)             # the first session takes this one (not built twice)
        check_offer(tls)
    except ConfigError as e:
        raise located(opts, e) from None
    check_entries(opts, is_server)
    return tls


def check_entries(opts: Options, is_server: bool) -> None:
    """Each connection's own key and MTU settings (its <connection> block's) decoded and checked
    at start as the profile's are, an error on the block's line: a bad key in the second block
    must stop the start, not the connection that reaches it an hour later."""
    for r in opts.remotes:
        e = r.entry
        if e is None or e is opts:
            continue
        try:
            wrapper_factory(e, is_server)
            check_mss(e)
        except ConfigError as err:
            raise located(e, err) from None


def _keyfile(directive: str, parse: Callable, text):
    """parse(text), a key file's decoding, its error naming `directive` (located() adds the line)."""
    try:
        return parse(text)
    except ConfigError as e:
        if e.directive is not None:
            raise
        raise ConfigError(e.message, directive=directive) from None


# The smallest MSS a TCP peer takes (Linux's tcp_min_snd_mss), for IPv6 (20 bytes below IPv4's).
MSS_MIN = 48


def check_mss(opts: Options) -> None:
    """Refuse an mssfix / tun-mtu-extra pair that leaves TCP no usable MSS (`mssfix 1450` with
    `tun-mtu-extra 1400`, or a tiny mssfix): OpenVPN's 16-bit figure wraps round and it clamps
    nothing; ours went negative and every TCP SYN through the tunnel raised, ending the client
    it was for. ConfigError at the tun-mtu-extra line (else mssfix's)."""
    n, _, fixed = mssfix_in_force(opts)
    if n == 0 or (fixed and opts.mssfix is None):
        return                      # (tun-mtu's floor, 100, leaves the default `fixed` an MSS of 60)
    names = list(dict.fromkeys([*opts.data_ciphers, *(c for c in (opts.data_ciphers_fallback, opts.cipher) if c)]))
    worst = None
    for c in names:
        for tcp in (False, True):
            try:
                m = tcp_mss(opts, None, tcp, True, cipher=c)
            except ValueError:
                continue                     # a cipher we do not run is refused elsewhere
            if m is not None and (worst is None or m < worst):
                worst = m
    if worst is not None and worst - 20 < MSS_MIN:
        d = "tun_mtu_extra" if opts.tun_mtu_extra else "mssfix"
        path, line = opts.source.get(d, (opts.path, None))
        raise ConfigError(f"mssfix {n} less the tunnel's overhead"
                          f"{f' and tun-mtu-extra {opts.tun_mtu_extra}' if opts.tun_mtu_extra else ''} leaves TCP "
                          f"an MSS of {worst} ({worst - 20} over IPv6), below {MSS_MIN + 20}: no TCP connection "
                          "could use the tunnel; raise mssfix or lower tun-mtu-extra", path, line, d.replace("_", "-"))


def check_crl(opts: Options, tls: TlsSettings) -> None:
    """Refuse a CRL (read whole) that revokes nothing under our CAs: a revocation the admin meant
    would not be enforced. ConfigError at crl-verify's line."""
    if tls.crl is not None and tls.crl.strays:
        path, line = opts.source.get("crl_verify", (opts.path, None))
        raise ConfigError(tls.crl.strays[0], path, line, "crl-verify")
