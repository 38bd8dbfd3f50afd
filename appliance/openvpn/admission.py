"""Who may start a handshake with the server, and how many may be in progress.

Why apart from the dispatcher: these are the anti-flood rules, worth reading on their own. Only
established clients count toward max-clients, so half-open handshakes cannot lock real clients
out by that count; instead handshakes in progress are bounded in total and per source address,
cookie-less ones (old tls-crypt-v2 clients, address unproven) more tightly and one per client
session id (a captured reset replayed from spoofed sources opens one session, not many; the
others must prove their address by a cookie exchange first), and
OpenVPN's connect-freq / connect-freq-initial rate limits apply.
"""
from __future__ import annotations

from typing import Protocol

from .count_checks import full_for_a_newcomer
from .server_model import StreamKey
from .sources import source_group


class FrequencyLimit:
    """At most `count` events per `period` seconds, in fixed windows (OpenVPN's frequency_limit,
    behind connect-freq and connect-freq-initial). `period` 0: no limit."""

    __slots__ = ("count", "period", "start", "n")

    def __init__(self, count: int, period: float) -> None:
        self.count, self.period = count, period
        self.start = float("-inf")
        self.n = 0

    def allow(self, now: float) -> bool:
        if not self.period:
            return True
        if now >= self.start + self.period:
            self.start, self.n = now, 0
        self.n += 1
        return self.n <= self.count


def _limit(cur: FrequencyLimit | None, setting) -> FrequencyLimit | None:
    """The limit for `setting` ((count, period) or None): the running one when it is unchanged."""
    if not setting:
        return None
    if cur is not None and (cur.count, cur.period) == tuple(setting):
        return cur
    return FrequencyLimit(setting[0], setting[1])


def source_of(addr) -> object:
    """The source a client address counts for: the IP of a UDP (ip, port[, ...]) tuple or of a
    TCP connection's StreamKey, grouped as sources.source_group says (IPv6 by /64); other keys
    as they are."""
    if isinstance(addr, tuple) and addr:
        return source_group(addr[0])
    return source_group(addr.ip) if isinstance(addr, StreamKey) else addr


class _Rec(Protocol):
    source: object
    half_open: bool
    unverified: bytes | None


class Admission:
    """The counters behind the admission rules; the dispatcher reports each record's life."""

    def __init__(self, st) -> None:
        self.n_established = 0                       # what max-clients counts
        self.n_half_open = 0
        self.n_unverified = 0
        self.by_source: dict[object, int] = {}
        self.unverified_sids: set[bytes] = set()     # client session ids of cookie-less sessions
        # Handshakes in progress, oldest first (dicts keep insertion order): id(rec) -> (rec, since).
        self.in_progress: dict[int, tuple[_Rec, float]] = {}
        self.connect_limit: FrequencyLimit | None = None
        self.initial_limit: FrequencyLimit | None = None
        self.apply(st)

    def apply(self, st) -> None:
        """(Re)read the settings: at start and at a reload, which may add, change or remove
        connect-freq / connect-freq-initial (a limit left unchanged keeps its window)."""
        self.st = st
        self.connect_limit = _limit(self.connect_limit, st.connect_freq)
        self.initial_limit = _limit(self.initial_limit, st.connect_freq_initial)

    def refuse_stateless_answer(self, now: float) -> str | None:
        """connect-freq-initial: why a reset may not be answered now (None: it may)."""
        if self.initial_limit is not None and not self.initial_limit.allow(now):
            return "connect-freq-initial limit reached"
        return None

    def sid_in_cookie_less_handshake(self, client_sid: bytes) -> bool:
        """Whether a cookie-less handshake (at some address) has this client session id."""
        return bytes(client_sid) in self.unverified_sids

    def refuse_unverified(self) -> str | None:
        """Why a cookie-less session may not start (None: it may). A session id already in one
        is not refused here: the dispatcher answers it with a cookie (server.py _on_reset)."""
        if self.n_unverified >= self.st.max_unverified:
            return "too many cookie-less handshakes in progress"
        return None

    def refuse_new(self, addr, now: float, replaces_client: bool = False) -> str | None:
        """Why a new session may not be created now (None: it may). `replaces_client`: it comes
        from the address (IP and port) of an established client, which it replaces once
        established itself: a client restarting behind a fixed port or a NAT mapping. That is no
        extra client (OpenVPN 2.6 hands such a reset to the address's existing instance, whose
        slot max-clients already counts), so a full server does not make it wait for its old
        session to time out; every other limit still applies."""
        st = self.st
        if full_for_a_newcomer(self.n_established, st.max_clients, replaces_client):
            return "max-clients reached"
        if self.n_half_open >= st.max_half_open:
            return "too many handshakes in progress"
        if not self.source_has_room(addr):
            return "too many handshakes in progress from one address"
        if self.connect_limit is not None and not self.connect_limit.allow(now):
            return "connect-freq limit reached"
        return None

    def source_has_room(self, addr) -> bool:
        """Whether the per-source limit lets one more handshake start from `addr`'s source."""
        return self.by_source.get(source_of(addr), 0) < self.st.max_half_open_per_source

    def opened(self, rec: _Rec, addr, unverified_sid: bytes | None, now: float = 0.0) -> None:
        rec.source = src = source_of(addr)
        rec.half_open = True
        self.n_half_open += 1
        self.in_progress[id(rec)] = (rec, now)
        self.by_source[src] = self.by_source.get(src, 0) + 1
        if unverified_sid is not None:
            rec.unverified = bytes(unverified_sid)
            self.n_unverified += 1
            self.unverified_sids.add(rec.unverified)

    def oldest_in_progress(self) -> tuple[_Rec, float] | None:
        """The handshake in progress that started first, and when (None if there is none)."""
        return next(iter(self.in_progress.values()), None)

    def _handshake_over(self, rec: _Rec) -> None:
        rec.half_open = False
        self.n_half_open -= 1
        self.in_progress.pop(id(rec), None)
        n = self.by_source.get(rec.source, 0) - 1
        if n > 0:
            self.by_source[rec.source] = n
        else:
            self.by_source.pop(rec.source, None)
        if rec.unverified is not None:
            self.n_unverified -= 1
            self.unverified_sids.discard(rec.unverified)

    def established(self, rec: _Rec) -> None:
        if rec.half_open:
            self._handshake_over(rec)
            self.n_established += 1

    def gone(self, rec: _Rec) -> None:
        if rec.half_open:
            self._handshake_over(rec)
        else:
            self.n_established -= 1

    def reconcile(self, admitted: list[_Rec]) -> int:
        """After our bug while forgetting a session (its gone() skipped): every count recomputed
        from the records still admitted -- the one source of truth -- so a session that is gone
        no longer holds a max-clients slot, a handshake slot or its source's share. Not on the
        data path (ServerDispatcher.reconcile, only when its books are suspect). Returns how
        many sessions the counts held beyond (or short of) those records."""
        live = {id(r): r for r in admitted}
        half = [r for r in live.values() if r.half_open]
        n_est = len(live) - len(half)
        fixed = abs(self.n_established - n_est) + abs(self.n_half_open - len(half))
        self.n_established, self.n_half_open = n_est, len(half)
        # Oldest first still: the survivors keep their order and their start times.
        self.in_progress = {k: v for k, v in self.in_progress.items() if k in live and live[k].half_open}
        for r in half:
            self.in_progress.setdefault(id(r), (r, 0.0))
        by_source: dict[object, int] = {}
        for r in half:
            by_source[r.source] = by_source.get(r.source, 0) + 1
        self.by_source = by_source
        unverified = [r.unverified for r in half if r.unverified is not None]
        self.n_unverified, self.unverified_sids = len(unverified), set(unverified)
        return fixed
