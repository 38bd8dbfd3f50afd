"""`vpn-appliance run appliance.toml` (on a host) and the VM's PID 1: NICs, rules, then the VPN.

Order matters, and is the point of this module: load and validate everything first (a config
error exits 2 before anything changes); configure the NICs; install the kill switch and NAT;
only then start the tunnel. So there is no moment where LAN traffic could leave the WAN in clear.
Everything we add is recorded in an Undo list and removed on the way out, newest first.

The NIC functions (find_link, configure_nic, enable_forwarding, ...) are small and separate so the
VM's PID 1 can call them on its own too.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from typing import Callable

from pyroute2.netlink.exceptions import NetlinkError

from . import gateway
from .config.schema import ApplianceConfig, Lan, Wan, load_appliance_config, validate_runtime
from .openvpn.errors import ConfigError
from .openvpn.config import Options, Remote
from .router import killswitch
from .router.killswitch import Endpoint

log = logging.getLogger("vpn-appliance")

_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


class Undo:
    """What we changed, as callables run newest-first on exit; one failure does not stop the rest."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> None:
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - best effort on the way out, and say so
                log.warning("undo %s: %s", what, e)


# ------------------------------------------------------------------ NICs
def find_link(name: str | None = None, mac: str | None = None) -> tuple[int, str]:
    """(index, ifname) of the NIC with this name or MAC address; RuntimeError if there is none."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        for link in ipr.get_links():
            ifname = link.get_attr("IFLA_IFNAME")
            addr = (link.get_attr("IFLA_ADDRESS") or "").lower()
            if (name is not None and ifname == name) or (mac is not None and addr == mac.lower()):
                return link["index"], ifname
    raise RuntimeError(f"no network interface with {'name ' + name if name else 'MAC ' + str(mac)}")


def configure_static(ifname: str, address: ipaddress.IPv4Interface, undo: Undo) -> None:
    """Bring the link up and add the address (removed again on exit unless it was already there)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=idx, state="up")
        try:
            ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        except NetlinkError as e:
            if e.code != 17:  # EEXIST: configured already (PID 1 did it, or a restart)
                raise
            log.info("%s already has %s", ifname, address)
            return

    def remove() -> None:
        with IPRoute() as ipr2:
            ipr2.addr("del", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
    undo.push(f"address {address} on {ifname}", remove)
    log.info("%s: address %s, up", ifname, address)


def add_default_route(gateway: ipaddress.IPv4Address, undo: Undo) -> None:
    """Default route via the WAN gateway; an existing default route is kept (and reported)."""
    from .router.routes import RouteSet
    rs = RouteSet()
    rs.add("0.0.0.0", 0, gateway=str(gateway))
    if rs.added:
        undo.push(f"default route via {gateway}", rs.remove_all)
        log.info("default route via %s", gateway)
    else:
        log.warning("a default route exists already; kept it (not via %s)", gateway)


def configure_dhcp(ifname: str, undo: Undo) -> None:
    """DHCP on the WAN through the image's client in appliance.boot.net, when it is there."""
    try:
        from .boot import dhcp_client as net  # type: ignore[attr-defined]
    except ImportError:
        raise RuntimeError("wan.dhcp = true but this build has no DHCP client (appliance.boot.net);"
                           " use a static `address` and `gateway`") from None
    fn = next((getattr(net, n) for n in ("dhcp_configure", "configure_dhcp", "dhcp") if hasattr(net, n)), None)
    if fn is None:
        raise RuntimeError("appliance.boot.net has no DHCP entry point (dhcp_configure/configure_dhcp/dhcp)")
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
    result = fn(ifname)
    stop = getattr(result, "stop", None) or getattr(result, "release", None)
    if callable(stop):
        undo.push(f"DHCP on {ifname}", stop)
    log.info("%s: configured by DHCP%s", ifname, f" ({result})" if result is not None else "")


def configure_nic(nic: Wan | Lan, undo: Undo) -> str:
    """Find the NIC (by name or MAC), give it its address (static or DHCP); returns its name."""
    _, ifname = find_link(nic.name, nic.mac)
    if nic.mac:
        log.info("%s: the NIC with MAC %s (%s)", ifname, nic.mac, "wan" if isinstance(nic, Wan) else "lan")
    if isinstance(nic, Wan) and nic.dhcp:
        configure_dhcp(ifname, undo)
        return ifname
    assert nic.address is not None
    configure_static(ifname, nic.address, undo)
    if isinstance(nic, Wan) and nic.gateway is not None:
        add_default_route(nic.gateway, undo)
    return ifname


def enable_forwarding(undo: Undo, path: str = IP_FORWARD) -> None:
    """Router mode: the kernel forwards LAN ↔ tunnel (the kill switch decides what may pass)."""
    with open(path) as f:
        old = f.read().strip()
    if old != "1":
        with open(path, "w") as f:
            f.write("1\n")

        def restore() -> None:
            with open(path, "w") as f2:
                f2.write(old + "\n")
        undo.push("ip_forward", restore)
    log.info("IPv4 forwarding on")


def write_resolv_conf(dns: tuple[ipaddress.IPv4Address, ...], path: str = "/etc/resolv.conf") -> None:
    """Only as PID 1: a host's own resolver configuration is not ours to change."""
    with open(path, "w") as f:
        f.writelines(f"nameserver {d}\n" for d in dns)


# ------------------------------------------------------------------ VPN side
def resolve_remotes(opts: Options) -> list[Endpoint]:
    """Resolve each remote once, before the kill switch blocks DNS on the WAN, and pin the
    addresses in the options so reconnects need no DNS either."""
    endpoints: list[Endpoint] = []
    pinned: list[Remote] = []
    for r in opts.remotes:
        try:
            infos = socket.getaddrinfo(r.host, r.port, socket.AF_INET,
                                       socket.SOCK_DGRAM if r.proto == "udp" else socket.SOCK_STREAM)
        except OSError as e:
            log.warning("cannot resolve remote %s: %s (skipped)", r.host, e)
            continue
        for ip in dict.fromkeys(i[4][0] for i in infos):
            endpoints.append(Endpoint(ip, r.port, r.proto))
            pinned.append(Remote(ip, r.port, r.proto))
    if not pinned:
        raise RuntimeError("none of the remotes resolves to an IPv4 address")
    opts.remotes = pinned
    return endpoints


def install_rules(cfg: ApplianceConfig, wan_if: str, lan_if: str | None, endpoints: list[Endpoint],
                  undo: Undo) -> str:
    """Kill switch + NAT, before the tunnel exists; returns the ruleset text (for logs/tests)."""
    o = cfg.vpn_options
    listen = (o.port, o.proto) if cfg.vpn.role == "server" else None
    text = killswitch.render_router(wan_if, cfg.tun_name, lan_if, cfg.lan.nat if cfg.lan else False,
                                    cfg.vpn.role, endpoints, listen)
    killswitch.apply_ruleset(text)
    undo.push("nftables tables", killswitch.flush)
    log.info("kill switch installed (wan %s, tun %s, lan %s)", wan_if, cfg.tun_name, lan_if or "-")
    log.debug("ruleset:\n%s", text)
    return text


def _credentials(opts: Options) -> tuple[str, str]:
    if opts.auth_user_pass:
        return opts.auth_user_pass
    if opts.auth_user_pass_required:
        if not sys.stdin.isatty():
            src = opts.source.get("auth_user_pass_required") or opts.source.get("auth_user_pass")
            raise ConfigError("the appliance runs unattended: put the username and password in an"
                              " <auth-user-pass> block (two lines) or a file", src[0] if src else opts.path,
                              src[1] if src else None, "auth-user-pass")
        import getpass
        user = input("Username: ")
        return user, getpass.getpass("Password: ")
    return "", ""


def setup_logging(level: str, verbose: int) -> None:
    lv = max(logging.DEBUG, _LEVELS[level] - 10 * verbose)
    logging.basicConfig(stream=sys.stderr, level=lv, force=True,
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S")


def run_toml(path: str, verbose: int = 0) -> int:
    """Load, configure, protect, run; 2 on a config error, 1 on a setup failure."""
    try:
        cfg = load_appliance_config(path)
        validate_runtime(cfg)
        user, pw = _credentials(cfg.vpn_options) if cfg.vpn.role == "client" else ("", "")
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    setup_logging(cfg.appliance.log_level, verbose)
    opts = cfg.vpn_options
    opts.dev = cfg.tun_name  # a fixed name, so the rules installed now match the TUN made later
    undo = Undo()
    try:
        if os.getpid() == 1:
            socket.sethostname(cfg.appliance.hostname)
            if cfg.wan.dns:
                write_resolv_conf(cfg.wan.dns)
        wan_if = configure_nic(cfg.wan, undo)
        lan_if = configure_nic(cfg.lan, undo) if cfg.lan is not None else None
        if lan_if is not None:
            enable_forwarding(undo)
        endpoints = resolve_remotes(opts) if cfg.vpn.role == "client" else []
        install_rules(cfg, wan_if, lan_if, endpoints, undo)
        if cfg.vpn.role == "server":
            return gateway.server_gateway(opts).run()
        return gateway.client_gateway(opts, user, pw).run()
    except (RuntimeError, OSError, NetlinkError) as e:
        log.error("%s", e)
        return 1
    finally:
        undo.run()
