"""The client's status file (`status FILE [N]`), as Debian's OpenVPN 2.6 client writes it:

    OpenVPN STATISTICS
    Updated,2026-11-30 17:18:02
    TUN/TAP read bytes,216
    TUN/TAP write bytes,168
    TCP/UDP read bytes,2420
    TCP/UDP write bytes,2456
    Auth read bytes,168
    END

Measured in the lab (tests/interop/test_client_status.py compares the two files): a client
writes this block whatever `status-version` says (1, 2 and 3 give the same lines; the versions
only shape a server's client list, gateway/status.py), first when it starts (all zeros, before
connecting), then every N seconds (default 60). The `Updated` time and the atomic file
replacement are gateway/status.py's, one code path with the server's file. One difference, on
purpose: OpenVPN leaves the last periodic file behind at exit; we write the final counts then,
so what a tool reads after the run is the run's total.

Counters (gateway/observers.py ClientCounters): TUN/TAP read = payload bytes sent into the
tunnel, TUN/TAP write = payload bytes received from it, TCP/UDP = transport bytes, Auth read =
authenticated data-channel payload received (OpenVPN's count equals its TUN writes; so does ours).
The counters run over the whole process (reconnects included), as OpenVPN's do.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Callable

from .status import STATUS_OPEN, tstr, write_file

if TYPE_CHECKING:
    from .loop import Pump
    from .observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")


def render_client(c: "ClientCounters", now: float) -> list[str]:
    return ["OpenVPN STATISTICS", f"Updated,{tstr(now)}",
            f"TUN/TAP read bytes,{c.bytes_out}", f"TUN/TAP write bytes,{c.bytes_in}",
            f"TCP/UDP read bytes,{c.wire_in}", f"TCP/UDP write bytes,{c.wire_out}",
            f"Auth read bytes,{c.bytes_in}", "END"]


class ClientStatusFile:
    """TunnelObserver: write the status file at start, every `interval` seconds and at exit."""

    def __init__(self, path: str, interval: int, wall: Callable[[], float]) -> None:
        self.path = path
        self.interval = interval
        self.wall = wall
        self.pump: "Pump | None" = None
        self.counters: "Callable[[], ClientCounters] | None" = None
        self.failed = False
        self.held_fd: int | None = None

    def before_privilege_drop(self) -> None:
        """`user`/`group` (cli.py): open the file while root, written through it when its
        directory is not the user's (gateway/status.py write_file), as OpenVPN keeps it open."""
        try:
            self.held_fd = os.open(self.path, STATUS_OPEN, 0o644)   # a FIFO without a reader: ENXIO, not a hang
        except OSError as e:
            log.warning("status file %s: %s", self.path, e.strerror or e)

    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        self.pump, self.counters = pump, counters
        self._tick()

    def _tick(self) -> None:
        self.write()
        if self.pump is not None:
            self.pump.timers.arm(("client-status", id(self)), self.pump.clock() + self.interval, self._tick)

    def write(self) -> None:
        if self.counters is None:
            return
        try:
            write_file(self.path, render_client(self.counters(), self.wall()), self.held_fd)
            self.failed = False
        except OSError as e:
            if not self.failed:           # once per failure streak, not every N seconds
                log.warning("status file %s: %s", self.path, e.strerror or e)
            self.failed = True

    def tunnel_changed(self, state: "TunnelState") -> None:
        """OpenVPN's client file has no tunnel state; nothing to do."""

    def close(self) -> None:
        self.write()
        if self.pump is not None:
            self.pump.timers.cancel(("client-status", id(self)))
        if self.held_fd is not None:
            os.close(self.held_fd)
            self.held_fd = None
