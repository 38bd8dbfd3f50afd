"""systemd's readiness notifications (sd_notify), as Debian's OpenVPN 2.6 sends them.

Why: Debian's units for OpenVPN (openvpn-client@.service, openvpn-server@.service) are
`Type=notify`: systemd counts the service as started only when the program says READY=1 on the
socket named by $NOTIFY_SOCKET, and kills it when that never comes (TimeoutStartSec). A host that
swaps `/usr/sbin/openvpn` for this program in such a unit needs the same messages, at the same
moments (OpenVPN 2.6 init.c):
- once the config is read and passwords are asked, before connecting or opening the device
  (context_init_1): `READY=1`, `STATUS=Pre-connection initialization successful`, `MAINPID=`;
- each time the tunnel comes up (a client; again after a reconnect), or the server has started
  (initialization_sequence_completed): `STATUS=Initialization Sequence Completed`.
`systemctl status` then shows the same status line as with OpenVPN.

Without $NOTIFY_SOCKET (not under systemd, or a unit of another type) nothing is sent. The socket
is made at start, while still root: a later send needs no privilege. Failures are logged once
and never stop the run (systemd's own sd_notify ignores them as well).
"""
from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")

PRE_CONNECT = "READY=1\nSTATUS=Pre-connection initialization successful\nMAINPID={pid}"
COMPLETED = "STATUS=Initialization Sequence Completed"


class SdNotify:
    """The notifications above, to one $NOTIFY_SOCKET; also a TunnelObserver (the client's ups)."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        # Non-blocking: a receiver that does not read (NOTIFY_SOCKET pointed at someone's socket, or a
        # stuck manager) would otherwise stop the event loop at a reconnect's notification.
        self.sock: socket.socket | None = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.failed = False

    def send(self, text: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendto(text.encode(), self.address)
            return True
        except OSError as e:
            if not self.failed:
                self.failed = True
                log.warning("systemd notification not sent (%s): %s", _printable(self.address), e.strerror or e)
            return False

    def ready(self) -> None:
        self.send(PRE_CONNECT.format(pid=os.getpid()))

    def completed(self) -> None:
        self.send(COMPLETED)

    # ---------------------------------------------------------------- TunnelObserver
    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        pass

    def tunnel_changed(self, state: "TunnelState") -> None:
        if state.up:
            self.completed()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def from_environment(env: Mapping[str, str] = os.environ) -> SdNotify | None:
    """The notifier for $NOTIFY_SOCKET, or None: unset, empty, or not a path or an abstract
    address (`@name`) -- systemd's vsock form is not for a host service."""
    value = env.get("NOTIFY_SOCKET", "")
    if value.startswith("@"):
        address: str | bytes = b"\0" + os.fsencode(value[1:])     # (as the environment's bytes were)
    elif value.startswith("/"):
        address = value
    else:
        if value:
            log.info("NOTIFY_SOCKET %r is no unix socket: systemd is not told of readiness", value)
        return None
    try:
        return SdNotify(address)
    except OSError as e:
        log.warning("systemd notification socket: %s", e.strerror or e)
        return None


def _printable(address: str | bytes) -> str:
    text = "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else address
    return text.encode(errors="backslashreplace").decode()
