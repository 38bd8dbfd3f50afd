"""What the client tells the services around it (LAN DHCP/DNS/RA, host DNS, status): the tunnel
went up with what the server pushed, or went down.

Why a hook rather than calls from the client into each service: the client's policy (connect,
reconnect, move packets) must not know which services a deployment runs. run_toml.py and cli.py
choose the observers; each gets the pump once (`attach`) to register its own sockets and timers,
so everything still runs on the one pump, and is told of every change (`tunnel_changed`). An
observer that raises is our bug: it is counted and logged by the pump's fault counters and the
tunnel goes on (a LAN service must never take the tunnel down).

Two steps up, as OpenVPN 2.6's client has them: tunnel-up (addresses set, the `up` script run --
where 2.6's users set the pushed DNS, update-resolv-conf reading foreign_option_N) and CONNECTED
("Initialization Sequence Completed", once the routes are in). They are one moment unless
`route-delay N` holds the routes back N seconds (gateway/route_delay.py); meanwhile the client
says `routes_wait`: the DNS services (host resolver, LAN DNS forwarder, DHCP's DNS options) act
on `dns_up` then, as 2.6's up script does, and everything that needs the routes (router
advertisements, systemd's "Completed", ...) waits for `up`. The default is the safe one: a
service that reads only `up` waits for the routes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from ..openvpn.keymethod import PushedOptions
    from .loop import Pump


@dataclass(frozen=True)
class TunnelState:
    """The client's tunnel as the services see it."""
    up: bool
    remote: str = ""                    # "198.18.0.1:1194/udp" while up or connecting, else ""
    tun_name: str | None = None         # the TUN device (kept across reconnects: persist-tun)
    pushed: "PushedOptions | None" = None   # what the server pushed (None while down)
    # route-delay: the tunnel is up (addresses, the up script) but its routes wait; `up` is
    # False until they are in (CONNECTED).
    routes_wait: bool = False

    @property
    def dns_up(self) -> bool:
        """Whether the pushed DNS applies now: from tunnel-up, before route-delay's routes, as
        2.6's up script sets it (init.c do_open_tun runs it before the delay's timer starts)."""
        return self.up or self.routes_wait


@dataclass
class ClientCounters:
    """Running totals for status lines and the status file (read, never reset by the client)."""
    bytes_in: int = 0                   # tunnel payload bytes received (TUN writes)
    bytes_out: int = 0                  # tunnel payload bytes sent (TUN reads)
    wire_in: int = 0                    # transport bytes received (what OpenVPN calls "TCP/UDP read bytes")
    wire_out: int = 0                   # transport bytes sent
    renegotiations: int = 0             # data-channel keys installed after the first
    connections: int = 0                # tunnels brought up
    ipv6_refused: int = 0               # IPv6 packets answered "no route" under a pushed block-ipv6
    source_lost: int = 0                # reconnects because the connection's source address left the host
    proxy_failures: int = 0             # attempts an HTTP proxy ended (refused, broken or silent answer, closed)
    up_since: float | None = None       # wall-clock time the current tunnel came up
    extra: dict[str, int] = field(default_factory=dict)


class TunnelObserver(Protocol):
    def attach(self, pump: "Pump", counters: Callable[[], ClientCounters]) -> None:
        """Register sockets/timers on the pump (called once, before connecting)."""

    def tunnel_changed(self, state: TunnelState) -> None:
        """The tunnel came up (with what was pushed), its routes went in, or it went down."""

    def close(self) -> None:
        """The gateway is stopping: undo what was set up (restore resolv.conf, ...)."""

    # Optional, not part of the protocol: `log_counters(self) -> None`, called on SIGUSR2
    # (ClientGateway.log_counters) by an observer that keeps counters of its own, to log them now.
