"""What a parsed OpenVPN config holds: the typed Options (and a ccd file's CcdOptions).

Why plain dataclasses with defaults: the gateways, the settings builder (settings.py) and `check`
read fields by name; a default here is OpenVPN 2.6's default, so a profile that says nothing
behaves as OpenVPN would. Which directive sets which field is declared in the directive table
(directives.py), not here; a test checks that every field below is set by some directive.
"""
from __future__ import annotations

import ipaddress
from dataclasses import MISSING, dataclass, field, fields

from ..ciphers import DEFAULT_DATA_CIPHERS
from ..httpproxy import HttpProxy
from ..socksproxy import SocksProxy
from ..clientnat import NatRule
from ..keymethod import DnsServer
from ..errors import ConfigError
from ..replay import DEFAULT_SIZE as DEFAULT_REPLAY_WINDOW
from ..replay import DEFAULT_TIME_LIMIT as DEFAULT_REPLAY_TIME

DEFAULT_CIPHERS = list(DEFAULT_DATA_CIPHERS)
MSSFIX_DEFAULT = 1492          # OpenVPN 2.6: `mssfix` alone or absent means `mssfix 1492 mtu` (tun-mtu 1500)
TUN_MTU_DEFAULT = 1500         # and with any other tun-mtu, `mssfix <tun-mtu> fixed` (settings.mssfix_in_force)


class ConfigErrors(ConfigError):
    """Several config errors at once, one `file:line: directive: why` per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        Exception.__init__(self, "\n".join(str(e) for e in errors))
        self.path = errors[0].path if errors else None
        self.line = errors[0].line if errors else None
        self.directive = errors[0].directive if errors else None
        self.message = str(self)


@dataclass(frozen=True)
class Remote:
    host: str
    port: int
    proto: str  # "udp" | "tcp"
    # Address family the remote line asked for: "4" (udp4/tcp4), "6" (udp6/tcp6), "" (a protocol
    # without one: either), None (no protocol on the line: the profile-wide `proto`'s family).
    family: str | None = None
    # http-proxy (CONNECT) or socks-proxy (SOCKS5 CONNECT): reached through it, credentials resolved
    proxy: HttpProxy | SocksProxy | None = None
    # Its connection's own settings (config/connection_entry.py): the whole profile with its
    # <connection> block's lines (or its own link-mtu derivation) in place; None: the profile's.
    entry: "Options | None" = field(default=None, compare=False, repr=False)


# `route remote_host ...`: the network is the server's address as connected (OpenVPN 2.6's keyword).
REMOTE_HOST = "remote_host"


@dataclass(frozen=True)
class Route:
    network: str
    netmask: str
    gateway: str | None
    metric: int | None

    def __iter__(self):
        return iter((self.network, self.netmask, self.gateway, self.metric))

    def resolved(self, remote_ip: str) -> "Route | None":
        """This route with `remote_host` made the server's IPv4 address; None when there is none
        to take (an IPv6 server: 2.6 has no IPv4 remote_host then either)."""
        if self.network != REMOTE_HOST:
            return self
        net = route_network(self.network, remote_ip)
        return None if net is None else Route(net, self.netmask, self.gateway, self.metric)


def route_network(network: str, remote_ip: str) -> str | None:
    """A route's network as the routes go in: `remote_host` is the connected server's IPv4
    address (None for an IPv6 server), anything else itself. The one place for the keyword, a
    profile's route (Route.resolved) and a pushed one's (gateway/tunnel.py): 2.6's route.c reads
    it in either (get_special_addr)."""
    if network != REMOTE_HOST:
        return network
    try:
        ipaddress.IPv4Address(remote_ip)
    except ValueError:
        return None
    return remote_ip


@dataclass(frozen=True)
class Route6:
    """A `route-ipv6 NET/BITS [GW] [METRIC]` line: `network` is "address/bits", host bits cleared."""
    network: str
    gateway: str | None
    metric: int | None

    def __iter__(self):
        return iter((self.network, self.gateway, self.metric))


@dataclass
class CcdOptions:
    ifconfig_push: tuple[str, str] | None = None
    iroutes: list[tuple[str, str]] = field(default_factory=list)
    iroutes6: list[str] = field(default_factory=list)                 # iroute-ipv6: "net/bits", host bits cleared
    ifconfig_ipv6_push: tuple[str, int, str | None] | None = None     # (address, bits, remote or None)
    push: list[str] = field(default_factory=list)
    push_reset: bool = False
    # push-remove PREFIX, each with how many of this file's push lines came before it: it takes
    # out of what is pushed so far every option beginning with PREFIX (ccd.with_ccd_pushes).
    push_remove: list[tuple[int, str]] = field(default_factory=list)
    disable: bool = False
    vlan_pvid: int | None = None         # the client's VLAN (vlan-tagging), else the server's vlan-pvid
    # `push-remove ifconfig` / `push-remove ifconfig-ipv6` (OpenVPN's push_remove_option): the
    # address is kept from the push for the rest of the client's connection, whatever file says
    # ifconfig-push after; only an ifconfig-ipv6-push after the IPv6 one lifts it (options.c).
    # IPv6: None when the file says neither, else whether the later of the two was the remove.
    block_ifconfig: bool = False
    block_ifconfig_ipv6: bool | None = None
    # What OpenVPN 2.6 also takes per client (multi.c CLIENT_CONNECT_OPT_MASK; ccd.py says which):
    # the server-side keepalive timers of this client's session (`ping-restart` and `ping-exit`
    # set one timer there, the later line winning: either ends the client's instance), its
    # compression framing, and the lists its data cipher is chosen from at the push (as written,
    # case included: ciphers.per_client, compat48).
    ping: int | None = None
    ping_restart: int | None = None
    comp: str | None = None                              # framing: stub, stub-v2, lzo-stub, lzo, lz4, lz4-v2
    data_ciphers: tuple[str, ...] | None = None
    fallback: tuple[str, bool] | None = None             # (cipher, whether the fallback is on for it)
    where: dict[str, str] = field(default_factory=dict, compare=False)   # "comp"... -> "file:line", for the log
    # Lines 2.6 skips with a warning (FILE:LINE, directive, why), logged by ccd.py's note_skipped;
    # not part of what the client is given (a reload compares the rest).
    skipped: list[tuple[int, str, str]] = field(default_factory=list, compare=False)


@dataclass(init=False)              # __init__ below
class Options:
    path: str = "<string>"
    ignore_scripts: bool = False     # parsed with `run --no-scripts` ([vpn] ignore_scripts): a reload parses the same way
    cmdline: str | None = None       # OpenVPN's command line, as config text (cmdline.py): a reload reads it again
    role: str = "client"
    client: bool = False
    pull: bool = False
    tls_client: bool = False
    tls_server: bool = False
    mode: str = "p2p"
    # Point-to-point TLS link (no `pull`, no `mode server`: config/p2p.py): set by finish(); the
    # client gateway runs it, as tls-client (dials) or tls-server (waits for the one peer).
    p2p: bool = False
    floating: bool = False                       # float: p2p tls-server: any port of its `remote` may be the peer
    ifconfig: tuple[str, str] | None = None      # p2p: (local, remote) or (local, netmask) with topology subnet
    remotes: list[Remote] = field(default_factory=list)
    connection_remotes: list[Remote] = field(default_factory=list)   # <connection> blocks' (they replace remotes)
    remote_random: bool = False
    connect_retry: float = 1.0
    connect_retry_max: float = 300.0
    connect_retry_max_count: int | None = None
    server_poll_timeout: float = 120.0
    ca: bytes | None = None
    capath: str | None = None                    # capath DIR: hashed CA/CRL files (tls.py _add_capath)
    cert: bytes | None = None
    key: bytes | None = None
    extra_certs: bytes | None = None             # extra-certs: sent after our certificate
    pkcs12: bytes | None = None                  # the DER file; cert/key/ca from it once opened (keyunlock.py)
    tls_auth: str | None = None
    key_direction: int | None = None
    tls_crypt: str | None = None
    tls_crypt_v2: str | None = None
    tls_crypt_v2_force_cookie: bool = False
    auth_user_pass: tuple[str, str] | None = None
    auth_user_pass_required: bool = False
    auth_user_pass_file: str | None = None      # the file it came from (absolute), None if inline or typed
    auth_nocache: bool = False                  # auth-nocache: credentials fetched at each use, not kept
    remote_cert_tls: str | None = None
    remote_cert_eku: str | None = None          # name or dotted OID the peer's EKU must list
    remote_cert_ku: list[int] | None = None     # [] = keyUsage must exist; else one of these bit sets
    verify_x509_name: tuple[str, str] | None = None
    auth_user_pass_optional: bool = False       # server: a login without credentials goes to the check too
    x509_username_field: tuple[str, ...] = ()   # x509-username-field: the peer's name from these fields
    x509_track: tuple[str, ...] = ()            # x509-track: the arguments as written (`+` = every depth)
    peer_fingerprint: list[bytes] = field(default_factory=list)
    verify_hash: list[bytes] = field(default_factory=list)    # verify-hash: the issuer's (depth 1) fingerprints
    verify_hash_algo: str = "SHA1"                  # verify-hash's algorithm: SHA1 (its default) or SHA256
    tls_version_min: str | None = None
    tls_version_max: str | None = None
    tls_cipher: str | None = None               # as written; None: OpenVPN's default TLS 1.2 list
    tls_ciphersuites: str | None = None         # as written; None: OpenSSL's TLS 1.3 default
    tls_groups: str | None = None               # as written; None: OpenSSL's default groups
    ecdh_curve: str | None = None               # the one key-exchange group (wins over tls_groups)
    tls_cert_profile: str | None = None         # insecure|legacy|preferred|suiteb; None: OpenSSL's level 2
    data_ciphers: list[str] = field(default_factory=lambda: list(DEFAULT_CIPHERS))
    data_ciphers_fallback: str | None = None
    cipher: str | None = None
    auth: str = "SHA1"
    reneg_sec: int = 3600
    reneg_bytes: int | None = None
    reneg_pkts: int | None = None
    tran_window: int = 3600
    hand_window: int = 60
    tls_timeout: float = 2.0
    replay_window: int = DEFAULT_REPLAY_WINDOW
    replay_time: float = DEFAULT_REPLAY_TIME
    ping: int = 0
    ping_restart: int = 0
    ping_exit: int = 0
    inactive: tuple[int, int] | None = None      # (seconds, minimum bytes) of tunnel traffic; gateway/inactivity.py
    keepalive: tuple[int, int] | None = None
    lport: int | None = None                     # as given (a pulling client binds when it is)
    # OpenVPN 2.6's local port: the last `port` or `lport` line's (`rport` leaves it alone; options.c
    # sets ce.local_port from those two, ce.remote_port from port/rport). What a server listens on
    # and a bound client binds, each connection entry its own.
    local_port: int = 1194
    local: str | None = None
    bind: bool = False                  # `bind`: a client binds local_port and local
    nobind: bool = False
    multihome: bool = False                      # UDP server: answer from the address written to
    port: int = 1194
    proto: str = "udp"
    proto_family: str | None = None

    def family_of(self, r: Remote) -> str | None:
        """The family a remote may use: its own line's (`remote h p udp6`), else the profile's
        `proto` (`proto udp4`); None or "": either, IPv4 first."""
        return self.proto_family if r.family is None else (r.family or None)
    dev: str = "tun"
    dev_type: str = "tun"                       # tun (layer 3) or tap (layer 2: a client only), finish() decides
    server_bridge: tuple[str, str, str, str] | str | None = None   # server-bridge IP MASK START END | "dhcp" | "nogw"
    tun_mtu: int = TUN_MTU_DEFAULT
    mssfix: int | None = None                   # None: OpenVPN's default (settings.mssfix_in_force); 0: off
    mssfix_mtu: bool = True                     # the value counts the outer IP+UDP/TCP headers
    mssfix_fixed: bool = False                  # `mssfix N fixed`: N is the inner IP packet (MSS = N - 40)
    mssfix_kept: int = 0                        # the N a later bare `mssfix` leaves (2.6 clamps with it under link-mtu)
    global_tun_mtu: int | None = None           # a connection entry's: the profile's own tun-mtu, which 2.6
                                                # compares with 1500 for the default mssfix (None: tun_mtu)
    fragment: int = 0                           # fragment N: datagrams of at most N bytes (0: off)
    fragment_mtu: bool = False                  # `fragment N mtu`: N counts the outer IP+UDP headers
    tun_mtu_extra: int = 0                      # tun-mtu-extra: counted against mssfix, as OpenVPN (tap: 32)
    route_gateway: str | None = None            # route-gateway: a tap client's default route gateway
    route_delay: tuple[int, int] | None = None  # route-delay [N [W]]: (N, W); see gateway/route_delay.py
    lladdr: str | None = None                   # lladdr: a tap device's MAC address (aa:bb:cc:dd:ee:ff)
    vlan_tagging: bool = False                  # a tap server's 802.1Q VLANs per client (l2switch.py)
    vlan_accept: str = "all"                    # which frames the TAP device's port takes: tagged|untagged|all
    vlan_pvid: int = 1                          # the TAP port's own VLAN, and a client's unless its ccd says
    link_mtu: int | None = None                 # link-mtu/udp-mtu N: tun_mtu is derived from it (parser.finish)
    tun_mtu_max: int = 0                        # client: the largest tun-mtu a server may push (0: 1600)
    verb: int = 1
    explicit_exit_notify: int = 0
    comp_lzo: str | None = None
    compress: str | None = None
    comp_flags: int = 0                          # OpenVPN 2.6's COMP_F_* as its parser leaves them (d_security.py)
    redirect_gateway: list[str] | None = None
    redirect_private: list[str] | None = None    # redirect-private FLAGS: the server's host route kept, no redirect
    # Both directives' lines in file order, (is redirect-gateway, flags): 2.6 folds them into one
    # flag set in that order (profile_push.redirect_in_effect), which the two lists above lose.
    redirect_lines: list[tuple[bool, list[str]]] = field(default_factory=list)
    tls_mtu: int = 1250                          # max-packet-size: the largest control-channel packet
    route: list[Route] = field(default_factory=list)
    route_ipv6: list[Route6] = field(default_factory=list)   # a client's into its TUN; a server's into its TUN too
    route_nopull: bool = False
    # The profile's own network options that a server may also push (d_profile.py; route_ipv6
    # above too); the client applies them with the pushed ones, as OpenVPN 2.6 (openvpn/profile_push.py).
    route_metric: int = 0                        # route-metric: routes without a metric get it (0: none)
    dhcp_options: list[tuple[str, str]] = field(default_factory=list)  # client: the profile's dhcp-option lines
    block_ipv6: bool = False                     # block-ipv6: no IPv6 leaves outside the tunnel
    client_nat: list[NatRule] = field(default_factory=list)   # client-nat lines (openvpn/clientnat.py)
    dns_servers: dict[int, DnsServer] = field(default_factory=dict)   # `dns server N ...` by priority
    dns_search_domains: list[str] = field(default_factory=list)       # `dns search-domains ...`
    session_timeout: int = 0                     # session-timeout N: a client exits N s into a connection
    mark: int = 0                                # mark N: SO_MARK on the VPN socket (gateway/system.py); 0: none
    bind_dev: str | None = None                  # bind-dev DEV: SO_BINDTODEVICE on the VPN socket
    mtu_disc: int | None = None                  # mtu-disc: IP(V6)_MTU_DISCOVER on the VPN socket; None: the kernel's
    shaper: int = 0                              # shaper N: bytes/s to the link at most (gateway/shaper.py); 0: none
    route_noexec: bool = False                   # no route added: pushed, redirect-gateway, `route` lines
    auth_retry: bool = False                     # auth-retry nointeract: AUTH_FAILED reconnects
    auth_retry_interact: bool = False            # auth-retry interact: ... with credentials asked again
    tls_exit: bool = False                       # a TLS error ends the run instead of a reconnect
    remap_usr1: str | None = None                # "SIGTERM": every SIGUSR1 (sent or a restart of ours) ends the run
    pull_filter: list[tuple[str, str]] = field(default_factory=list)
    http_proxy: HttpProxy | None = None          # http-proxy (+ http-proxy-option), global; finish() gives it to the remotes
    http_proxy_user_pass: tuple[str, str] | None = field(default=None, repr=False)   # http-proxy-user-pass
    socks_proxy: SocksProxy | None = None        # socks-proxy (TCP remotes only), global
    port_share: tuple[str, int, str | None] | None = None   # port-share HOST PORT [DIR] (DIR absolute)
    # server
    server: tuple[str, str] | None = None
    server_ipv6: str | None = None
    ifconfig_ipv6: tuple[str, int, str] | None = None    # server: its own IPv6 address, bits, remote
    ifconfig_ipv6_pool: str | None = None               # "address/bits": the IPv6 pool's start (with ifconfig-ipv6)
    topology: str = "net30"
    ifconfig_pool: tuple[str, str, str | None] | None = None
    server_nopool: bool = False                         # `server NET MASK nopool`: no pool of its own
    ifconfig_push_constraint: tuple[str, str] | None = None   # server: a client address outside is logged
    push: list[str] = field(default_factory=list)
    client_to_client: bool = False
    duplicate_cn: bool = False
    force_key_material_export: bool = False
    max_clients: int = 1024
    max_routes_per_client: int = 256             # addresses + iroutes routed to one client (OpenVPN's default)
    connect_freq: tuple[int, int] | None = None          # connect-freq N SEC: new sessions per SEC seconds
    connect_freq_initial: tuple[int, int] = (100, 10)    # connect-freq-initial N SEC: stateless replies
    verify_client_cert: str = "require"
    auth_user_pass_verify: tuple[str, str] | None = None
    auth_user_pass_verify_script: tuple[tuple[str, ...], str] | None = None   # (argv, via-file|via-env)
    auth_pam: tuple[str, tuple[tuple[str, str], ...]] | None = None   # plugin auth-pam: (service, pairs) (d_plugin.py)
    auth_gen_token: tuple[int, int] | None = None      # (lifetime, renewal); renewal 0: reneg-sec
    auth_gen_token_secret: bytes | None = None         # its HMAC key (gentoken.parse_secret)
    auth_gen_token_external: bool = False              # external-auth: the command judges tokens too
    client_config_dir: str | None = None
    ccd_exclusive: bool = False
    username_as_common_name: bool = False
    # operation (d_ops.py)
    crl_verify: tuple[str, str] | None = None            # ("file"|"dir"|"inline", path or PEM)
    management: tuple | None = None                      # (path, "unix", None) | (host, port, pwfile)
    management_client_auth: bool = False                 # logins wait for client-auth/client-deny
    management_hold: bool = False                        # client: wait for `hold release` before connecting
    management_query_passwords: bool = False             # client: auth-user-pass asked of the management client
    management_query_remote: bool = False                # client: each remote asked of the management client (>REMOTE)
    management_query_proxy: bool = False                 # client: each remote's proxy asked of it (>PROXY)
    ns_cert_type: str | None = None             # ns-cert-type server|client (tls.py _check_ns_cert_type)
    setenv: dict[str, str] = field(default_factory=dict)  # setenv / setenv-safe: every command's environment
    push_peer_info: bool = False                         # client: UV_*, IV_PLAT_VER, IV_SSL in the peer info
    management_signal: bool = False                      # client: a management client leaving restarts the connection
    management_forget_disconnect: bool = False           # client: ... makes it forget the credentials
    static_challenge: tuple[str, bool] | None = None     # (text, echo): >PASSWORD:...SC:echo,text
    management_log_cache: int | None = None              # lines of log history kept for `log all`
    management_client_user: int | None = None           # uid a unix-socket management client must have
    management_client_group: int | None = None           # gid (primary) it must have
    status: tuple[str, int] | None = None                # (file, seconds)
    status_version: int = 1
    ifconfig_pool_persist: tuple[str, int] | None = None  # (file, seconds; 0: read only)
    script_security: int = 1
    cd_dir: str | None = None                            # cd DIR (absolute): the process's directory (cli)
    tmp_dir: str | None = None                           # via-file and deferred-auth files (default: $TMPDIR, /tmp)
    client_connect: list[str] | None = None
    client_disconnect: list[str] | None = None
    client_crresponse: list[str] | None = None
    learn_address: list[str] | None = None              # learn-address CMD (gateway/learn.py)
    tls_verify: list[str] | None = None                 # tls-verify CMD, either role (gateway/tlsverify.py)
    tls_export_cert: str | None = None                  # tls-export-cert DIR: the certificate to tls-verify as a file
    tls_crypt_v2_verify: list[str] | None = None        # tls-crypt-v2-verify CMD, server (gateway/tlsverify.py)
    dns_helper: str | None = None                        # up/down update-resolv-conf|update-systemd-resolved
    down_root: list[tuple[str, list[str]]] = field(default_factory=list)  # down-root plugin: (program, argv)
    # the client's own scripts (config/client_scripts.py; run by gateway/client_scripts.py): argv each
    up_script: list[str] | None = None
    down_script: list[str] | None = None
    route_up_script: list[str] | None = None
    route_pre_down_script: list[str] | None = None
    ipchange_script: list[str] | None = None
    up_restart: bool = False                             # up-restart: down/up again at each reconnect
    down_pre: bool = False                               # down-pre: the down script before the TUN goes
    allow_recursive_routing: bool = False                # TUN packets to the peer's own address are sent, not dropped
    persist_tun: bool = False                            # persist-tun: a reconnect keeps the up side (no down/up)
    management_up_down: bool = False                     # >UPDOWN:UP/DOWN with the up/down environment
    # process settings (d_misc.py; applied by host/privileges.py)
    askpass_password: str | None = None          # askpass FILE: the private key's password (until unlocked)
    log_file: tuple[str, bool] | None = None     # log / log-append: (absolute path, append)
    writepid: str | None = None
    daemon: str | None = None           # `daemon [NAME]`: background at start, syslog as NAME (host/daemon.py)
    syslog: str | None = None           # `syslog [NAME]`: the log to syslog as NAME
    user: str | None = None
    group: str | None = None
    nice: int = 0
    mlock: bool = False
    # bookkeeping: where each setting came from, and notes for `check`
    source: dict[str, tuple[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __init__(self, **given: object) -> None:
        """Every field from `given` (by keyword: parser.py, dataclasses.replace, tests) or its default,
        as the generated one did. Written, not generated: a dataclass compiles its __init__ at
        import, and this one's ~200 parameters were ~5 ms of every process's start (helper startup49)."""
        for name, default, factory in _OPTION_DEFAULTS:
            if name in given:
                setattr(self, name, given.pop(name))
            elif factory is not None:
                setattr(self, name, factory())
            elif default is not MISSING:
                setattr(self, name, default)
            else:
                raise TypeError(f"Options.__init__() missing required argument: {name!r}")
        if given:
            raise TypeError(f"Options.__init__() got an unexpected keyword argument {next(iter(given))!r}")


_OPTION_DEFAULTS = tuple((f.name, f.default, None if f.default_factory is MISSING else f.default_factory)
                         for f in fields(Options) if f.init)


# Fields no directive sets directly: derived in finish() or bookkeeping.
DERIVED_FIELDS = frozenset({"path", "ignore_scripts", "cmdline", "role", "p2p", "source", "notes", "global_tun_mtu"})
