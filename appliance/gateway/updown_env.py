"""The client's up/down environment: what OpenVPN 2.6's client holds in its environment set when
the tunnel comes up (init.c run_up_down and do_route), one place for both readers here: the
down-root command (host/down_root.py: OpenVPN's plugin runs it with the environment of the UP
call) and the management interface's >UPDOWN:UP / >UPDOWN:DOWN lines (management-up-down).

What is in it, as Debian's 2.6 client shows it (tests/interop/test_down_root_vs_openvpn.py): the
settings (config, verb, daemon*, each remote's proto_N/remote_N/remote_port_N), the server
chain's variables (tls_* and X509_* of each depth, as tls-verify gets them: ssl_verify.c sets them
in the same set, so every later script sees them), common_name and the server's address
(trusted_/untrusted_ip, _port), the tunnel's addresses (ifconfig_*), routes (route_*), the
DHCP options as foreign_option_N, then dev, dev_type, tun_mtu, script_context. The plugin's UP
call comes before do_route, so `redirect_gateway` is in the management lines only; nothing sets
`script_type` before it (no up script runs here) and `signal` is set for the down call only.

Returned in the order OpenVPN's management lines list them: its set prepends each variable (the
newest first), the settings last in their own order (see up_env).
"""
from __future__ import annotations

import ipaddress
import os

from ..openvpn.config.model import route_network
from ..openvpn.profile_push import device_mtu
from ..openvpn.tls import cert_env
from .script_env import with_globals


def proto_name(proto: str, family: str | None) -> str:
    """OpenVPN's proto2ascii(proto, af, false): udp, tcp-client, udp4, tcp6-client, ..."""
    fam = family if family in ("4", "6") else ""
    return f"udp{fam}" if proto == "udp" else f"tcp{fam}-client"


def settings_env(opts, started: float) -> dict[str, str]:
    """options.c setenv_settings: set at start, the oldest part of the set."""
    e = {"config": opts.path, "verb": str(opts.verb), "daemon": "0", "daemon_log_redirect": "0",
         "daemon_start_time": str(int(started)), "daemon_pid": str(os.getpid())}
    for i, r in enumerate(opts.remotes, 1):
        e[f"proto_{i}"] = proto_name(r.proto, r.family)
        if opts.lport is not None and not opts.nobind:
            e[f"local_port_{i}"] = str(opts.local_port)
        e[f"remote_{i}"] = r.host
        e[f"remote_port_{i}"] = str(r.port)
        if r.proxy is not None:
            e[f"http_proxy_server_{i}"] = r.proxy.host
            e[f"http_proxy_port_{i}"] = str(r.proxy.port)
    return e


def _vpn_gateway(pushed, opts) -> str | None:
    # `dhcp` names no gateway: 2.6 sets route_vpn_gateway only once a DHCP reply gave one, after
    # the routes (and these variables) were set
    if pushed.route_gateway and pushed.route_gateway != "dhcp":
        return pushed.route_gateway
    if opts.dev_type == "tap":                  # the profile's route-gateway; ifconfig holds a netmask
        return opts.route_gateway if opts.route_gateway != "dhcp" else None
    if pushed.ifconfig and pushed.topology != "subnet":
        return pushed.ifconfig[1]
    return None


def _gateless(gw: str | None) -> bool:
    """Whether a route's gateway is the VPN gateway's (none given, `vpn_gateway`)."""
    return gw in (None, "", "vpn_gateway")


def _route_gateway(gw: str | None, vpn_gw: str | None, net_gw: str | None, remote_ip: str) -> str:
    if gw in (None, "", "vpn_gateway"):
        return vpn_gw or "0.0.0.0"
    if gw == "net_gateway":
        return net_gw or "0.0.0.0"
    if gw == "remote_host":
        return remote_ip
    return gw


def _mask(netmask: str | None) -> str:
    return netmask or "255.255.255.255"


def route_env(routes, routes_ipv6, vpn_gw: str | None, net_gateway: str | None, remote_ip: str,
              default_metric: int | None, v6_remote: str | None) -> dict[str, str]:
    """route.c setenv_routes / setenv_routes_ipv6 as do_route leaves them, oldest first: the
    gateways, then each route's network, netmask, gateway and metric (IPv6: network/bits and
    gateway -- the tunnel's remote when the line names none). One place for the client's pushed
    routes and the server's own `route`/`route-ipv6` lines (its down-root and >UPDOWN lines)."""
    e: dict[str, str] = {}
    if net_gateway is not None:
        e["route_net_gateway"] = net_gateway
    if vpn_gw is not None:
        e["route_vpn_gateway"] = vpn_gw
    for i, (net, mask, gw, metric) in enumerate(routes, 1):
        e[f"route_network_{i}"] = route_network(net, remote_ip) or net      # remote_host: the server's
        e[f"route_netmask_{i}"] = _mask(mask)
        e[f"route_gateway_{i}"] = _route_gateway(gw, vpn_gw, net_gateway, remote_ip)
        m = metric if metric is not None else (default_metric or None)
        if m is not None:
            e[f"route_metric_{i}"] = str(m)
    for i, (net, gw, metric) in enumerate(routes_ipv6, 1):
        e[f"route_ipv6_network_{i}"] = net
        e[f"route_ipv6_gateway_{i}"] = gw if gw else (v6_remote or "::")
        if metric is not None:
            e[f"route_ipv6_metric_{i}"] = str(metric)
    return e


def up_env(opts, pushed, *, remote: tuple, chain: list, common_name: str, dev: str,
           net_gateway: str | None, started: float, redirect: bool | None = None) -> dict[str, str]:
    """The environment at UP, newest first. `remote`: the server's (ip, port); `chain`: its
    verified certificates, its own first; `net_gateway`: the host's default gateway before the
    tunnel (route_net_gateway; None: none); `redirect`: for the management lines (do_route's
    redirect_gateway), None for the plugin's call."""
    e: dict[str, str] = {}                      # oldest first here; reversed at the end
    for depth in range(len(chain) - 1, -1, -1):   # verify_cert: deepest first
        e.update(reversed(cert_env(chain[depth], depth, opts.x509_track).items()))
    ip, port = remote[0], remote[1]
    v6 = ":" in ip
    for name in (("untrusted_ip6" if v6 else "untrusted_ip"), "untrusted_port"):
        e[name] = ip if name.endswith(("ip", "ip6")) else str(port)
    e["trusted_ip6" if v6 else "trusted_ip"] = ip
    e["trusted_port"] = str(port)
    e["common_name"] = common_name
    # The push's setenv-safe variables (2.6 sets them as it reads the push, after the handshake's
    # and before the tunnel's; with the foreign options, in push order there), over the profile's.
    # A name set again is deleted and added anew there (env_set_add), so it moves to the newest.
    dhcp = pushed.dhcp_options if pushed is not None else []
    n_pushed = min(getattr(pushed, "dhcp_pushed", len(dhcp)), len(dhcp))
    own = len(dhcp) - n_pushed                  # the profile's dhcp-options come first (profile_push.py)
    for i, (k, v) in enumerate(dhcp[:own], 1):
        e[f"foreign_option_{i}"] = f"dhcp-option {k} {v}".rstrip()
    safe = pushed.setenv_safe if pushed is not None else {}
    after = getattr(pushed, "setenv_safe_after", {}) if pushed is not None else {}
    names = iter(safe)
    name = next(names, None)
    for j in range(n_pushed + 1):
        while name is not None and after.get(name, 0) <= j:
            e.pop(name, None)
            e[name] = safe[name]
            name = next(names, None)
        if j < n_pushed:
            k, v = dhcp[own + j]
            e[f"foreign_option_{own + j + 1}"] = f"dhcp-option {k} {v}".rstrip()
    while name is not None:                     # (none: each was set after at most n_pushed)
        e.pop(name, None)
        e[name] = safe[name]
        name = next(names, None)
    if pushed is not None and pushed.ifconfig:
        e["ifconfig_local"] = pushed.ifconfig[0]
        # On tap the second value is always a netmask (2.6: no topology there).
        subnet = pushed.topology == "subnet" or opts.dev_type == "tap"
        e["ifconfig_netmask" if subnet else "ifconfig_remote"] = pushed.ifconfig[1]
    if pushed is not None and pushed.ifconfig_ipv6:
        local, remote6 = pushed.ifconfig_ipv6
        iface = ipaddress.ip_interface(local)
        e["ifconfig_ipv6_local"] = str(iface.ip)
        e["ifconfig_ipv6_netbits"] = str(iface.network.prefixlen)
        if remote6:
            e["ifconfig_ipv6_remote"] = remote6
    if pushed is not None:
        v6_remote = pushed.ifconfig_ipv6[1] if pushed.ifconfig_ipv6 and pushed.ifconfig_ipv6[1] else None
        vpn_gw = _vpn_gateway(pushed, opts)
        routes = pushed.routes
        if opts.dev_type == "tap" and vpn_gw is None and any(_gateless(r[2]) for r in routes):
            # 2.6's init_route_list fails on such a route ("needs a gateway parameter": on tap
            # with route-gateway dhcp, the router comes later) and then sets no route_*_N at all.
            routes = []
        e.update(route_env(routes, pushed.routes_ipv6, vpn_gw, net_gateway, ip, pushed.route_metric, v6_remote))
    e["script_context"] = "init"
    e["tun_mtu"] = str(device_mtu(opts, pushed))
    e["dev"] = dev
    e["dev_type"] = opts.dev_type
    if redirect is not None:
        e["redirect_gateway"] = "1" if redirect else "0"
    # The settings and setenv variables come last, in the order they were set: OpenVPN sets them
    # in the process's set, which the connection's inherits (env_set_inherit) one by one from
    # its newest, so reversed once more.
    settings = settings_env(opts, started)
    newest_first = dict(reversed(e.items()))
    return {**newest_first, **with_globals(settings, newest_first, opts.setenv)}
