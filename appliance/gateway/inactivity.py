"""`inactive N [BYTES]`: end what carried no more than BYTES of tunnel traffic in N seconds.

A client exits ("Inactivity timeout (--inactive), exiting", as OpenVPN logs it); a server
disconnects that client (its other clients stay). A server may also push `inactive` to its
clients, which then use the pushed value.

Checked the way OpenVPN 2.6 checks it with DCO (forward.c, check_inactivity_timeout): every N
seconds the tunnel bytes counted since the last check (both directions) are compared with BYTES;
more, and the next check is N seconds later; otherwise it ends. So it ends N to 2N seconds after
the last traffic. OpenVPN without DCO instead restarts its N seconds at every tunnel packet: that
would be a clock read per packet on our hot path, for a timer of minutes.

Tunnel bytes, as OpenVPN counts them (what reached or left the TUN): the data keys' byte counts
minus Session.not_traffic -- keepalive pings, OCC messages, and payloads the server refused
(compressed, not IP, a source the client does not own). Those never reach the tunnel, so a
client sending them keeps nothing alive.
"""
from __future__ import annotations

from dataclasses import dataclass

INACTIVE_LOG = "Inactivity timeout (--inactive)"


@dataclass
class Inactivity:
    """One tunnel's check. `seconds` > 0; `min_bytes`: more than this much traffic counts as activity."""
    seconds: int
    min_bytes: int
    base: int                   # the traffic total at the last check that saw activity
    due: float                  # when the next check runs

    @classmethod
    def start(cls, setting: tuple[int, int] | None, total: int, now: float) -> "Inactivity | None":
        if not setting or setting[0] <= 0:
            return None
        return cls(setting[0], setting[1], total, now + setting[0])

    def expired(self, total: int, now: float) -> bool:
        """At `due`: True when the tunnel was idle; otherwise the next check is N seconds on."""
        if total - self.base > self.min_bytes:
            self.base = total
            self.due = now + self.seconds
            return False
        return True
