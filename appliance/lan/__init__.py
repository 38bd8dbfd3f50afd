"""Services the appliance offers its LAN in router mode: DHCP, a DNS forwarder, IPv6 router
advertisements and the status line. Each is a tunnel observer (gateway/observers.py) on the
client's one pump; `lan_observers` picks them from the appliance TOML (run_toml.py calls it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .ra import ra_observers

if TYPE_CHECKING:
    from ..config.schema import ApplianceConfig
    from ..gateway.observers import TunnelObserver


def lan_observers(cfg: "ApplianceConfig", wan_if: str, lan_if: str | None) -> list["TunnelObserver"]:
    """The observers the TOML asks for (one line per service below; empty without a [lan])."""
    out: list["TunnelObserver"] = []
    out += ra_observers(cfg, lan_if)            # IPv6 router advertisements (lan/ra.py)
    return out
