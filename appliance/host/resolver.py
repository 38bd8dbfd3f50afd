"""Pushed DNS on the host (`vpn-appliance run profile.ovpn`): the observer that follows the tunnel.

What users expect from update-systemd-resolved / update-resolv-conf: while the tunnel is up the
host resolves with the servers and domains the VPN server pushed; when it goes down or the
program ends (SIGTERM/SIGINT: the gateway's cleanup calls `close`) the host's resolver is as it
was; after a crash the next start puts it back (resolv_conf.py keeps the original inside the file).

The backend is chosen once, at attach: systemd-resolved per link when it runs (resolved.py),
otherwise /etc/resolv.conf (resolv_conf.py). Not used in the VM: there the LAN DNS forwarder
takes the pushed servers, and the appliance's own resolver is not touched.

A resolver that refuses (read-only /etc, resolvectl failing) is logged and the tunnel goes on:
DNS is the host's convenience, never a reason to drop the tunnel.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Protocol

from .dns_settings import DnsSettings, from_pushed
from .resolv_conf import RESOLV_CONF, ResolvConf
from .resolved import Resolved, resolved_running

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")


class Backend(Protocol):
    def apply(self, dns: DnsSettings, link: str) -> None: ...

    def restore(self) -> None: ...


def choose_backend(resolv_conf: str = RESOLV_CONF) -> Backend:
    if resolved_running():
        log.info("host DNS: systemd-resolved is running; pushed DNS goes to the tunnel's link")
        return Resolved()
    rc = ResolvConf(resolv_conf)
    rc.recover()
    log.info("host DNS: no systemd-resolved; pushed DNS goes into %s while the tunnel is up", resolv_conf)
    return rc


class HostDns:
    """TunnelObserver: apply the pushed DNS while the tunnel is up, undo it otherwise."""

    def __init__(self, redirect_gateway: list[str] | None = None,
                 backend: Callable[[], Backend] = choose_backend) -> None:
        self.redirect_gateway = redirect_gateway      # the profile's own, when the server pushes none
        self._make = backend
        self.backend: Backend | None = None
        self.errors = 0

    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        try:
            self.backend = self._make()
        except Exception as e:  # noqa: BLE001 - DNS must not stop the tunnel
            self._failed("choosing the resolver", e)

    def tunnel_changed(self, state: "TunnelState") -> None:
        if self.backend is None:
            return
        try:
            if state.up and state.pushed is not None:
                dns = from_pushed(state.pushed, self.redirect_gateway)
                if dns.empty:
                    log.info("host DNS: the server pushed no DNS; the host's resolver is unchanged")
                    self.backend.restore()
                    return
                self.backend.apply(dns, state.tun_name or "tun0")
            else:
                self.backend.restore()
        except Exception as e:  # noqa: BLE001
            self._failed("applying" if state.up else "restoring", e)

    def close(self) -> None:
        if self.backend is not None:
            try:
                self.backend.restore()
            except Exception as e:  # noqa: BLE001
                self._failed("restoring", e)

    def _failed(self, what: str, e: Exception) -> None:
        self.errors += 1
        log.error("host DNS: %s failed: %s (the tunnel is not affected)", what, e)
