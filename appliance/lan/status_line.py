"""One status line on the console (stderr log): at every tunnel change and every
`[appliance] status_interval` seconds (0: only on change).

    status: tunnel up, remote 198.18.0.1:1194/udp, tun0 up 0:05:12, bytes in 1234567 out 89012, renegotiations 2, LAN leases 3

A tunnel observer (gateway/observers.py) reading the client's running counters; its timer is on
the client's one pump. Why a line of its own when the event log already says "tunnel up": on a
serial console of a VM nobody scrolls back, and one line with everything at a fixed interval is
what someone looking at it (or a log collector) wants. Bytes are the tunnel's payload bytes (what
went into and came out of the TUN device), exact, so two lines can be subtracted.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_line(state: "TunnelState | None", c: "ClientCounters", leases: int | None, now: float) -> str:
    """The status line (without the log prefix); pure, for tests."""
    up = state is not None and state.dns_up
    waiting = state is not None and not state.up and state.routes_wait
    parts = [f"status: tunnel {'up, routes waiting (route-delay)' if waiting else 'up' if up else 'down'}"]
    if up and state is not None:
        parts.append(f"remote {state.remote or '-'}")
        since = f" up {_duration(now - c.up_since)}" if c.up_since is not None else ""
        parts.append(f"{state.tun_name or '-'}{since}")
    parts.append(f"bytes in {c.bytes_in} out {c.bytes_out}")
    parts.append(f"renegotiations {c.renegotiations}")
    if leases is not None:
        parts.append(f"LAN leases {leases}")
    return ", ".join(parts)


def status_observers(cfg, others: list) -> list:
    """The TOML run's status services: the console line every `[appliance] status_interval`
    seconds (with the DHCP server's lease count when one is among `others`), and the profile's
    `status FILE [N]` (gateway/client_status.py) as on a host."""
    from ..gateway.client_status import ClientStatusFile
    leases = next((o.lease_count for o in others if callable(getattr(o, "lease_count", None))), None)
    out: list = [StatusLine(cfg.appliance.status_interval, leases)]
    st = getattr(cfg.vpn_options, "status", None)
    if st is not None and cfg.vpn_options.role == "client":
        out.append(ClientStatusFile(st[0], st[1], time.time))
    return out


class StatusLine:
    """TunnelObserver: the line on every change and every `interval` seconds."""

    def __init__(self, interval: float, lease_count: Callable[[], int] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.lease_count = lease_count
        self.wall = wall
        self.state: "TunnelState | None" = None
        self.pump: "Pump | None" = None
        self.counters: "Callable[[], ClientCounters] | None" = None
        self._key = ("status-line", id(self))

    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        self.pump, self.counters = pump, counters
        self._arm()

    def _arm(self) -> None:
        if self.pump is not None and self.interval > 0:
            self.pump.timers.arm(self._key, self.pump.clock() + self.interval, self._tick)

    def _tick(self) -> None:
        self._arm()
        self.emit()

    def tunnel_changed(self, state: "TunnelState") -> None:
        self.state = state
        self.emit()
        self._arm()          # the next periodic line counts from this one

    def emit(self) -> None:
        if self.counters is None:
            return
        leases: int | None = None
        if self.lease_count is not None:
            try:
                leases = int(self.lease_count())
            except Exception:  # noqa: BLE001 - a LAN service's bug must not stop the status line
                leases = None
        log.info("%s", format_line(self.state, self.counters(), leases, self.wall()))

    def close(self) -> None:
        if self.pump is not None:
            self.pump.timers.cancel(self._key)
