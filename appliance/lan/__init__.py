"""Services the appliance offers its LAN in router mode: DHCP, a DNS forwarder, IPv6 router
advertisements and the status line. Each is a tunnel observer (gateway/observers.py) on the
client's one pump; `lan_observers` picks them from the appliance TOML (run_toml.py calls it).

Nothing is imported here at module level: every server and client imports lan.dhcp_codec (the
tap data path's DHCP reading, openvpn/dhcprouter.py), and a package __init__ that imported the
services made each of them load the RA and status-line modules too (helper startup47)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.schema import ApplianceConfig
    from ..gateway.observers import TunnelObserver


def lan_observers(cfg: "ApplianceConfig", wan_if: str, lan_if: str | None, opts=None) -> list["TunnelObserver"]:
    """The observers the TOML asks for (one line per service below; empty without a [lan]);
    `opts`: the OpenVPN profile's options (its `route` lines name the VPN's networks too)."""
    from .ra import ra_observers
    from .status_line import status_observers
    out: list["TunnelObserver"] = []
    dhcp = None
    if cfg.lan is not None and lan_if is not None and cfg.lan.dhcp_range is not None:
        from .dhcp_server import DhcpService
        dhcp = DhcpService.from_config(cfg.lan, lan_if, getattr(cfg.lan, "dns_forwarder", True))
        out.append(dhcp)
    if cfg.lan is not None and cfg.vpn.role == "client" and cfg.lan.dns_forwarder:
        from ..router.nics import lan_address6
        from .dns_forwarder import DnsForwarder
        from .dns_local import route_networks
        addr6 = lan_address6(cfg.lan, lan_if) if lan_if else None   # the address the RAs name (RDNSS)
        out.append(DnsForwarder([str(cfg.lan.address.ip)] + ([str(addr6.ip)] if addr6 else []), lan_if,
                                lan_networks=[cfg.lan.address.network, *([addr6.network] if addr6 else []),
                                              *(r.network for r in cfg.lan.routes or ())],
                                leases=dhcp,           # lease host names answered from the DHCP server
                                profile_networks=route_networks(getattr(opts, "route", ()),
                                                                getattr(opts, "route_ipv6", ())),
                                rebind_protection=cfg.lan.dns_rebind_protection,
                                rebind_allow=cfg.lan.dns_rebind_allow))
    out += ra_observers(cfg, lan_if)            # IPv6 router advertisements (lan/ra.py)
    out += status_observers(cfg, out)          # last: it reads the others (DHCP's lease_count)
    return out
