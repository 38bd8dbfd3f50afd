"""`inactive N [BYTES]`: end what carried no more than BYTES of tunnel traffic in N seconds.

A client exits ("Inactivity timeout (--inactive), exiting", as OpenVPN logs it); a server
disconnects that client (its other clients stay). A server may also push `inactive` to its
clients, which then use the pushed value.

OpenVPN 2.6 without DCO restarts its N seconds at each tunnel packet that brings the bytes since
the last restart to BYTES, so it ends N seconds after the last traffic; with DCO it compares the
bytes every N seconds, which ends it N to 2N seconds after. Restarting a timer per packet would be
a clock read per packet on our hot path, for a timer of minutes. Here the byte count is looked at
every check_interval(N) seconds (N/16, at least half a second): a look that finds more than BYTES
since the last activity found takes its own time as the last activity, and the end comes at the
first look N seconds after that. The traffic came before that look and at most an interval before
it, so the end comes N seconds to N + 2 intervals after the last traffic (N + 1 interval for a
client, whose own timer also fires at the deadline itself): never early, and late by at most
max(1 s, N/8) -- the server looks at all its clients in one sweep per interval, not a timer each.

The server counts tunnel bytes as OpenVPN does (what reached or left the TUN): the data keys' counts
minus Session.not_traffic -- keepalive pings, OCC messages, and payloads the server refused
(compressed, not IP, a source the client does not own, for another client without
client-to-client). Those never reach the tunnel, so a client sending them keeps nothing alive.
"""
from __future__ import annotations

from dataclasses import dataclass

INACTIVE_LOG = "Inactivity timeout (--inactive)"


def check_interval(seconds: int) -> float:
    """How often the traffic is looked at for `inactive N`: N/16 (a sixteenth of lateness at
    most), at least half a second, so a server with many clients and a small N sweeps at most
    twice a second."""
    return max(0.5, seconds / 16)


@dataclass
class Inactivity:
    """One tunnel's check. `seconds` > 0; `min_bytes`: more than this much traffic counts as activity."""
    seconds: int
    min_bytes: int
    base: int                   # the traffic total when activity was last found (or at the start)
    since: float                # when it was found: the look that found it (or the start)

    @classmethod
    def start(cls, setting: tuple[int, int] | None, total: int, now: float) -> "Inactivity | None":
        if not setting or setting[0] <= 0:
            return None
        return cls(setting[0], setting[1], total, now)

    @property
    def interval(self) -> float:
        return check_interval(self.seconds)

    def expired(self, total: int, now: float) -> bool:
        """A look at the traffic total: True when no more than `min_bytes` came in N seconds."""
        if total - self.base > self.min_bytes:
            self.base, self.since = total, now
            return False
        return now >= self.since + self.seconds

    def next_look(self, now: float) -> float:
        """When a tunnel with its own timer (the client) looks next: an interval on, or at the
        deadline itself if that comes sooner."""
        return min(now + self.interval, self.since + self.seconds)
