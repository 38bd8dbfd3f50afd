"""How long a client waits before its next connection attempt: OpenVPN 2.6's restart pause.

Why one function: every way an attempt ends (no connect, a TLS or auth failure, a lost tunnel,
SIGUSR1, a server's RESTART or AUTH_FAILED,TEMP) leads to the same wait in OpenVPN 2.6 (init.c
socket_restart_pause, run before each attempt but the first), and ours used to skip it between
the remotes of one round, doubling it only after each round: a client with three dead remotes
knocked on all three at once, again and again. Measured with Debian's 2.6.14 (`remote` x2 over
TCP, `connect-retry 2 5`, nothing listening): "Restart pause, 2 second(s)" before every attempt,
4 s after the 10th (five rounds), then 5 (the maximum); after a server-poll-timeout no pause at
all, whatever the round (its restart_sleep_seconds -1): the poll itself was the wait.
A point-to-point tls-server listening again is no client: 2.6 waits 1 s over TCP whatever
connect-retry says (its PROTO_TCP_SERVER case), connect-retry's N over UDP, and doubles neither
(its backoff is for TCP clients and UDP tls-clients only).
"""
from __future__ import annotations

TCP_SERVER_PAUSE = 1.0    # s: proto tcp-server listens again after this, whatever connect-retry says
AUTH_RETRY_PAUSE = 10      # s: `auth-retry nointeract` replaces connect-retry's seconds with it
BACKOFF_AFTER_ROUNDS = 5   # rounds of the remotes in vain before the pause doubles each round
MAX_SHIFT = 15             # the doubling stops there (2.6's min(backoff, 15))


def restart_pause(connect_retry: float, connect_retry_max: float, unsuccessful: int, remotes: int,
                  auth_retry_nointeract: bool = False, server_backoff: int = 0, poll_timeout: bool = False,
                  listening: str = "") -> float:
    """Seconds before the next attempt. `unsuccessful`: remotes begun since a tunnel was last up
    (OpenVPN's unsuccessful_attempts; the same remote again, or a name's next address, is not
    one); `server_backoff`: the N of AUTH_FAILED,TEMP[backoff N], a least wait (this once);
    `poll_timeout`: the attempt ended at server-poll-timeout with no answer;
    `auth_retry_nointeract`: `auth-retry nointeract` only (2.6: auth_retry_get() == AR_NOINTERACT;
    `auth-retry interact` keeps connect-retry's pause, as 2.6.14 logs "Restart pause, 1
    second(s)" for it, and ours waited 10 s); `listening`: "udp" or "tcp" for a point-to-point
    tls-server about to wait for its peer again ("" for a client: it connects). Never above
    `connect_retry_max`, so neither a hostile N nor the doubling parks the client for good."""
    if poll_timeout:
        return 0.0
    sec = TCP_SERVER_PAUSE if listening == "tcp" else connect_retry
    if auth_retry_nointeract:
        sec = float(AUTH_RETRY_PAUSE)
    if listening:
        return sec
    shift = unsuccessful // max(remotes, 1) - (BACKOFF_AFTER_ROUNDS - 1)
    if shift > 0:
        sec = max(sec, 1.0) * (1 << min(shift, MAX_SHIFT))
    if server_backoff > 0:
        sec = max(sec, float(server_backoff))
    return min(sec, connect_retry_max)
