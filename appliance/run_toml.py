"""`vpn-appliance run appliance.toml` (on a host) and the VM's PID 1: NICs, rules, then the VPN.

Order matters, and is the point of this module: load and validate everything first (a config
error exits 2 before anything changes); configure the NICs (router/nics.py); install the kill
switch and NAT; switch forwarding on; only then start the tunnel. So there is no moment where LAN
traffic could leave the WAN in clear. Everything we add is recorded in an Undo list and removed on
the way out, newest first: forwarding goes off before the kill switch goes.
"""
from __future__ import annotations

import dataclasses

import functools
import ipaddress
import logging
import os
import socket
import sys

from pyroute2.netlink.exceptions import NetlinkError

from . import gateway, native
from .lan import lan_observers
from .config.mgmt_listen import management_side
from .host.workdir import enter_cd_dir
from .host.setup_signals import SetUpSignals, StoppedInSetUp
from .gateway.credentials import ask_credentials
from .config.schema import ApplianceConfig, load_appliance_config, server_reload, validate_runtime
from .openvpn.config import Options, Remote
from .host.process_files import check_start_paths
from .openvpn.errors import ConfigError
from .router import killswitch
from .router.killswitch import Endpoint
from .router.nics import (Undo, configure_nic, enable_forwarding, find_link, keep_nic_redirects, lan_address6,
                          write_resolv_conf)

log = logging.getLogger("vpn-appliance")

_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def resolve_remotes(opts: Options, wan_ipv6: bool = False,
                    getaddrinfo=socket.getaddrinfo) -> list[Endpoint]:
    """Resolve each remote once, before the kill switch blocks DNS on the WAN, and pin the
    addresses in the options so reconnects need no DNS either.

    Families: `proto udp4/tcp4` (opts.proto_family "4") only IPv4, `udp6/tcp6` only IPv6,
    otherwise both, IPv4 first (as the client tries them). IPv6 addresses are kept only when the
    WAN has IPv6 (`address6` or `slaac`): without it they could never be reached, and pinning them
    would only make each reconnect round slower."""
    endpoints: list[Endpoint] = []
    pinned: list[Remote] = []
    wants_v6_only = False
    for r in opts.remotes:
        fam = opts.family_of(r)
        wants_v6_only |= fam == "6"
        want = {"4": (socket.AF_INET,), "6": (socket.AF_INET6,)}.get(fam or "", (socket.AF_INET, socket.AF_INET6))
        if not wan_ipv6:
            want = tuple(f for f in want if f != socket.AF_INET6)
        try:
            infos = getaddrinfo(r.host, r.port, socket.AF_UNSPEC,
                                socket.SOCK_DGRAM if r.proto == "udp" else socket.SOCK_STREAM)
        except OSError as e:
            log.warning("cannot resolve remote %s: %s (skipped)", r.host, e)
            continue
        infos = sorted((i for i in infos if i[0] in want), key=lambda i: i[0] != socket.AF_INET)
        if not infos:
            log.warning("remote %s has no %s address (skipped)", r.host,
                        " or ".join("IPv4" if f == socket.AF_INET else "IPv6" for f in want) or "usable")
        for ip in dict.fromkeys(str(i[4][0]).split("%", 1)[0] for i in infos):
            endpoints.append(Endpoint(ip, r.port, r.proto))
            # (its <connection> block's settings kept: its keys must stay with its server)
            pinned.append(dataclasses.replace(r, host=ip, proxy=None))
    if not pinned:
        if wants_v6_only and not wan_ipv6:
            raise RuntimeError("the profile asks for IPv6 (udp6/tcp6) but the WAN has no IPv6:"
                               " set `address6` or `slaac = true` in [wan]")
        raise RuntimeError("none of the remotes resolves to an address the WAN can reach"
                           + ("" if wan_ipv6 else " (IPv4 only: the WAN has no IPv6)"))
    opts.remotes = pinned
    return endpoints


def port_share_endpoint(opts: Options, getaddrinfo=socket.getaddrinfo) -> Endpoint | None:
    """A server's `port-share HOST PORT`: HOST resolved once, before the kill switch blocks DNS on
    the WAN (its first address, IPv4 first, as the server takes it), so the relay's connections
    may leave the WAN there (on loopback or the LAN nothing stops them anyway). RuntimeError if
    it does not resolve."""
    if opts.port_share is None or opts.proto != "tcp":
        return None
    host, port, _dir = opts.port_share
    try:
        infos = getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except OSError as e:
        raise RuntimeError(f"port-share: cannot resolve {host}: {e}") from e
    infos = sorted(infos, key=lambda i: i[0] != socket.AF_INET)
    if not infos:
        raise RuntimeError(f"port-share: {host} has no address")
    return Endpoint(str(infos[0][4][0]).split("%", 1)[0], port, "tcp")


def lan_networks(cfg: ApplianceConfig, lan_if: str | None) -> list[str]:
    """The LAN's networks: its IPv4 network, its IPv6 prefix, and those `[lan] routes` names as
    behind a router there. The kill switch takes only these sources from the LAN NIC, and the
    client installs no pushed route inside them (gateway/tunnel.py)."""
    nets: list[str] = []
    if cfg.lan is not None and lan_if is not None:
        nets.append(str(cfg.lan.address.network))
        a6 = lan_address6(cfg.lan, lan_if)
        if a6 is not None:
            nets.append(str(a6.network))
        nets += [str(r.network) for r in cfg.lan.routes or ()]     # behind a LAN router, routed there
    return nets


def lan_networks4(cfg: ApplianceConfig) -> list[ipaddress.IPv4Network]:
    """The LAN's IPv4 networks (its own and `[lan] routes`'): no WAN DHCP lease may overlap them."""
    if cfg.lan is None:
        return []
    nets = [cfg.lan.address.network, *(r.network for r in cfg.lan.routes or ())]
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def server_listen(cfg: ApplianceConfig) -> tuple[int, str] | None:
    """A server's (port, proto) as its socket is bound (ServerGateway.bind_addr): the last `port`
    or `lport` line's, as OpenVPN 2.6 (`rport` is a remote's). The kill switch lets this port's
    replies out of the WAN; it opened `port`'s (what `rport` set), so a profile with `lport`, or
    `rport` after `port`, had its server's packets dropped once their conntrack entry lapsed."""
    o = cfg.vpn_options
    return (o.local_port, o.proto) if cfg.vpn.role == "server" else None


def install_rules(cfg: ApplianceConfig, wan_if: str, lan_if: str | None, endpoints: list[Endpoint],
                  undo: Undo, wan_ipv6: bool = False) -> str:
    """Kill switch + NAT, before the tunnel exists; returns the ruleset text (for logs/tests)."""
    listen = server_listen(cfg)
    lan_nets = lan_networks(cfg, lan_if)                 # the only sources taken from the LAN NIC
    text = killswitch.render_router(wan_if, cfg.tun_name, lan_if, cfg.lan.nat if cfg.lan else False,
                                    cfg.vpn.role, endpoints, listen, wan_ipv6, lan_nets,
                                    management_port(cfg, wan_if, lan_if))
    with undo.step():                   # the tables and their flush as one (Undo.step)
        killswitch.apply_ruleset(text)
        undo.push("nftables tables", killswitch.flush)
    log.info("kill switch installed (wan %s, tun %s, lan %s)", wan_if, cfg.tun_name, lan_if or "-")
    log.debug("ruleset:\n%s", text)
    return text


def management_port(cfg: ApplianceConfig, wan_if: str, lan_if: str | None) -> tuple[str, int] | None:
    """(interface, port) of a server's management interface on a WAN or LAN address: the kill
    switch opens its port there only (config/mgmt_listen.py; the loader refused any other place)."""
    o = cfg.vpn_options
    side = management_side(cfg.wan, cfg.lan, o.management) if cfg.vpn.role == "server" else None
    if side is None:
        return None
    ifname = wan_if if side == "wan" else lan_if
    return (ifname, o.management[1]) if ifname is not None else None


def setup_logging(level: str, verbose: int) -> None:
    from .logsetup import setup_logging as _setup
    _setup(max(logging.DEBUG, _LEVELS[level] - 10 * verbose), replace=True)


def missing_nic(cfg) -> ConfigError | None:
    """A `[wan]`/`[lan]` NIC (by `name` or `mac`) this host does not have, as an error at its
    TOML line, found before anything is changed (exit 1, a setup failure: the NIC may come with
    other hardware). It said only "no network interface with name eth9", after the hostname."""
    for sec, nic in (("wan", cfg.wan), ("lan", cfg.lan)):
        if nic is None:
            continue
        try:
            find_link(nic.name, nic.mac)
        except RuntimeError as e:
            key = "name" if nic.name else "mac"
            return ConfigError(f"{e} on this host", cfg.path, cfg.source.get((sec, key)), f"{sec}.{key}")
    return None


def run_toml(path: str, verbose: int = 0) -> int:
    """Load, configure, protect, run; 2 on a config error, 1 on a setup failure."""
    path = os.path.abspath(path)        # read again by a reload, after the profile's `cd`
    try:
        cfg = load_appliance_config(path)
        tls = validate_runtime(cfg)
        check_start_paths(cfg.vpn_options)      # here, not in `check`: a bundle's paths are the VM's
        user, pw = ask_credentials(cfg.vpn_options) if cfg.vpn.role == "client" else ("", "")
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    if (why := enter_cd_dir(cfg.vpn_options)) is not None:     # as a host run (host/workdir.py)
        print(why, file=sys.stderr)
        return 1
    setup_logging(cfg.appliance.log_level, verbose)
    native.log_data_path(log)
    opts = cfg.vpn_options
    for f, d in (("log_file", "log/log-append"), ("writepid", "writepid"), ("daemon", "daemon"), ("syslog", "syslog")):
        if getattr(opts, f) is not None:
            log.info("%s: not applied by the appliance TOML run: its log is the console, its PID is 1 "
                     "(a host run of the profile applies it)", d)
    if opts.nice:                # user/group/mlock: refused by the TOML's loader (config/schema.py)
        from .host.privileges import apply_nice
        apply_nice(opts.nice)
    opts.dev = cfg.tun_name  # a fixed name, so the rules installed now match the TUN made later
    if (why := missing_nic(cfg)) is not None:
        log.error("%s", why)
        return 1
    undo = Undo()
    # Not PID 1 (a host's run): outside the gateway's loop -- from configure_nic until the loop
    # takes the signals (the remotes' DNS in between), and while the undo list runs -- SIGTERM and
    # SIGINT stop the run with everything restored, SIGHUP/SIGUSR1/SIGUSR2 are ignored as 2.6
    # ignores them until its start is done; Python's default actions ended the process before the
    # `finally` below, leaving the host's redirect switches, forwarding, addresses and the kill
    # switch as set (review44c, host44; host/setup_signals.py, tests/unit/test_stop_during_setup.py).
    # PID 1 (the VM) gets no default action, so nothing changes there.
    sigs = SetUpSignals() if os.getpid() != 1 else None
    if sigs is not None:
        sigs.install()
        undo.guard = sigs.step          # no stop signal between a change and its undo's push
    try:
        return _set_up_and_run(path, cfg, opts, tls, user, pw, undo, sigs)
    except StoppedInSetUp as e:
        log.info("%s: stopping (restoring what was set)", e.name)
        return 0
    finally:
        # A stop signal can still be raised as `restoring()` begins (CPython runs a pending
        # handler when a call starts): one that came as the loop ended lands there, and skipped
        # undo.run() (review45c: the host's switches, addresses and kill switch stayed as set).
        # Caught here, in this frame (a function's first instruction can run a handler too);
        # the handler switches to restoring before it raises, so no later signal raises.
        if sigs is not None:
            try:
                sigs.restoring()                # the undo list runs whole
            except StoppedInSetUp as e:
                log.info("%s: stopping (restoring what was set)", e.name)
        _restore(sigs, undo)


def _set_up_and_run(path, cfg, opts, tls, user, pw, undo: Undo, sigs: SetUpSignals | None) -> int:
    """The host's set-up, then the gateway's run: run_toml's body, whose stop signal (raised
    anywhere in here, the error branch's log line included) run_toml catches."""
    try:
        if os.getpid() == 1:
            socket.sethostname(cfg.appliance.hostname)
            if cfg.wan.dns:
                write_resolv_conf(cfg.wan.dns)
        keep_nic_redirects((cfg.wan, cfg.lan), undo)       # first in, so last out
        wan_if = configure_nic(cfg.wan, undo, avoid=lan_networks4(cfg))
        lan_if = configure_nic(cfg.lan, undo) if cfg.lan is not None else None
        wan_ipv6 = cfg.wan.address6 is not None or cfg.wan.slaac
        share = port_share_endpoint(opts) if cfg.vpn.role == "server" else None
        endpoints = resolve_remotes(opts, wan_ipv6) if cfg.vpn.role == "client" else [share] if share else []
        install_rules(cfg, wan_if, lan_if, endpoints, undo, wan_ipv6)
        if lan_if is not None:
            # Only now, and so undone (newest first) before the kill switch goes: forwarding
            # switched on ahead of the rules (the remotes' resolution in between) or off after
            # them (the run's end, which a server's HALT times) forwarded LAN packets out of the
            # WAN in clear (tests/unit/test_forwarding_order.py).
            enable_forwarding(undo, ipv6=lan_address6(cfg.lan, lan_if) is not None)
        _log_ignored(sigs)
        if cfg.vpn.role == "server":
            gw = gateway.server_gateway(opts, tls)
            if share is not None:
                gw.portshare_target = (share.address, share.port)    # resolved before the kill switch
            gw.ops.reload_options = functools.partial(server_reload, path, cfg)   # the TOML, read again
            return gw.run()
        observers = lan_observers(cfg, wan_if, lan_if, opts)
        return gateway.client_gateway(opts, user, pw, observers=tuple(observers),
                                      lan_nets=lan_networks(cfg, lan_if)).run()
    except (RuntimeError, OSError, NetlinkError) as e:
        log.error("%s", e)
        return 1


def _restore(sigs: SetUpSignals | None, undo: Undo) -> None:
    """The undo list, whole (`sigs` already restoring: no signal raises now), then the signals'
    handlers as they were."""
    undo.run()
    if sigs is not None:
        _log_ignored(sigs)
        sigs.uninstall()


def _log_ignored(sigs: SetUpSignals | None) -> None:
    if sigs is not None and (names := sigs.take_ignored()):
        log.info("%s outside the tunnel's loop (setting up or restoring the host): ignored, as "
                 "OpenVPN 2.6 ignores them until its start is done", names)
