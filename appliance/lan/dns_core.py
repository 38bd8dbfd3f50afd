"""The DNS forwarder's decisions, without I/O: which queries are taken, what goes to which server
with which ID, which answer belongs to which query, when to retry, when to give up.

Why sans-I/O: every rule an attacker on the LAN (or a spoofer on the path) could probe lives here
and is tested in memory (tests/unit/test_dns_core.py, with hypothesis) and fuzzed
(tests/fuzz/targets.py `dns`); appliance/lan/dns_forwarder.py only moves bytes between sockets
and this core, and carries out the actions it returns.

The rules:
- servers empty (tunnel down, or nothing pushed): every query is answered SERVFAIL at once; no
  other resolver is ever asked.
- at most `max_outstanding` queries in flight in all and `max_per_source` per LAN address; over
  that, REFUSED at once (counted) -- except that a full table gives up its oldest query (SERVFAIL)
  for a new one once that has waited `jostle` seconds. The per-source limit alone does not keep
  one host from filling the table: a LAN host can send UDP queries from many LAN addresses (the
  answers go to them; it needs none), and names whose servers never answer keep each query for
  all its attempts (4.5 s), so some 60 queries a second would otherwise have every other host
  REFUSED. Evicting the oldest (as unbound's jostle-timeout does) makes that flood need ~500 a
  second and still lets answers that come within `jostle` through. And a full table's oldest
  query goes at once, whatever its age, when its LAN address holds at least two queries more
  than the newcomer's: with queries from 51 LAN addresses, each within its rate, answered but
  slowly (a tunnel the flood itself congests: ~100 ms), the table stayed full of queries younger
  than `jostle` and another host's queries were REFUSED or lost (5 of 12 answered in the lab);
  now a host with fewer queries waiting always gets in at the expense of one with more. Nor does
  `jostle` end the oldest query for a newcomer whose address holds more than the oldest's: a
  flooding host could otherwise end every slow query of a quiet one. O(1): only the oldest
  query is looked at.
- each LAN address may send `rate` queries a second (`burst` at once; a token bucket per address,
  `max_buckets` of them, the oldest forgotten first): beyond that a UDP query is dropped unread
  (no answer: an answer would make us a reflector for a forged source) and a TCP one is REFUSED
  and its connection closed (see `query`).
  Why: the outstanding limits bound what waits, not what passes. The lab's dnsmasq answers at
  once, so one LAN host flooding from one address had ~9000 queries a second forwarded through the
  tunnel, each with its own upstream socket: the pump fell behind the LAN socket, the kernel
  dropped what did not fit its buffer, and another host lost about a quarter of its queries (the
  attack lab in lab/reliability/RESULTS.md, "LAN host attacks"). A dropped query costs a dict
  lookup instead, so the pump keeps up. unbound's `ip-ratelimit` is the same idea.
  A host can use many LAN addresses, though (51 in the lab: ~4000 queries a second forwarded, the
  pump behind again, another host losing 5 of 12). So the LAN as a whole gets `lan_rate` (a
  shared bucket) -- except for a quiet address, one within `quiet_rate` (a second bucket per
  address): a host that asks a few names a second is never held up by the others' flood, and the
  flooding addresses share what is left (at 500 a second the tunnel's round trip still rose to
  ~50 ms and a query took up to 1 s; at 200, 30 ms and 0.6 s). The limit of this: a host may use
  every address of the LAN at `quiet_rate` each (254 IPv4 addresses: ~1300 a second), and a
  host forging a new source per query (any IPv6 address of the /64 passes the kill switch)
  starts each one quiet. Only the sender's MAC tells those apart, which a UDP socket does not see.
- each attempt gets a fresh random 16-bit ID (and the shell a fresh socket, so a fresh random
  source port); an answer counts only if it comes from the server and port asked, carries that ID,
  is a response, and repeats the question (name compared case-insensitively). Anything else is
  dropped and counted, and the query keeps waiting for the real answer.
- an attempt unanswered within `attempt_timeout` is sent again with a new ID to the next server;
  after `max_attempts` the client gets SERVFAIL.
- a truncated (TC) answer is passed through to a UDP client (which retries over TCP, RFC 1035
  4.2.1) and retried upstream over TCP for a TCP client.
- an answer larger than a UDP client takes (512 bytes, or the UDP size its query's EDNS record
  gives, at least 512) reaches it as header + question with TC set, as a resolver answers: a
  server that ignores the client's limit (or a hostile one) must not hand the LAN client a
  datagram it may cut, drop or misread; the client asks again over TCP, which we serve.
- the tunnel going down (or the servers changing) ends every outstanding query with SERVFAIL.
- single-label names and reverse lookups of the LAN's and private addresses are answered here
  (NXDOMAIN), tunnel up or down, and never reach the VPN's servers (`local`, dns_local.py says
  which and why); within the rates, as any query.
- an answer giving an address of the LAN, of the appliance or loopback (A/AAAA in any section,
  SVCB/HTTPS hints) reaches the client as NODATA, counted and logged at a limited rate, unless
  its question is under an allowed domain (`rebind`, dns_rebind.py says which and why: DNS
  rebinding). One whose records cannot be walked ends its attempt (it matched the attempt's ID:
  the server's own), the next server asked; one of more records than the check reads
  (dns_rebind.MAX_RECORDS) is answered SERVFAIL unread: never passed unchecked.
"""
from __future__ import annotations

import ipaddress
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Callable, Hashable

from . import dns_wire as w
from . import dns_rebind
from .dns_local import LocalZones

Server = tuple[str, int]


@dataclass(frozen=True)
class Limits:
    max_outstanding: int = 256          # queries in flight in all
    max_per_source: int = 32            # ... per LAN address
    attempt_timeout: float = 1.5        # seconds an upstream attempt waits for its answer
    max_attempts: int = 3               # attempts per query (over the servers in turn)
    jostle: float = 0.5                 # a full table's oldest query older than this makes room
    rate: float = 100.0                 # queries a second from one LAN address (a busy host sends a few)
    burst: float = 200.0                # ... at once (a page load, a resolver's start)
    max_buckets: int = 4096             # LAN addresses whose rate is tracked (the oldest forgotten first)
    lan_rate: float = 200.0             # queries a second from all LAN addresses that are not quiet
    quiet_rate: float = 5.0             # an address is quiet while within this rate ...
    quiet_burst: float = 50.0           # ... and this burst (a second bucket per address)
    tc_rate: float = 100.0              # UDP queries over their address's rate answered TC, a second per address


@dataclass(frozen=True, slots=True)
class Reply:
    """Send `data` to the LAN client `client` (the shell's opaque handle)."""
    client: object
    data: bytes


@dataclass(frozen=True, slots=True)
class Send:
    """Send `data` to `server` for upstream query `token`, over TCP if `tcp`, from a fresh socket
    (closing any earlier one of this token); call `timeout(token)` at `deadline`."""
    token: int
    server: Server
    data: bytes
    tcp: bool
    deadline: float


@dataclass(frozen=True, slots=True)
class Done:
    """Upstream query `token` is finished: close its socket, disarm its timer."""
    token: int


@dataclass(frozen=True, slots=True)
class Log:
    """Log `text` as a warning (the core decides how often: rate-limited where it comes from)."""
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """End the LAN TCP connection `client` (after sending what is queued for it, if it can)."""
    client: object


Action = Reply | Send | Done | Close | Log
OVER_ONE = "one LAN address's query rate"


@dataclass(slots=True)
class Pending:
    client: object
    source: Hashable
    client_id: int
    client_tcp: bool
    question: w.Question
    query: bytes                     # the client's query as received (its ID replaced per attempt)
    first: int                       # index of the first server asked
    attempts: int = 0
    upstream_id: int = -1
    server: Server = ("", 0)
    tcp: bool = False
    started: float = 0.0            # when the client's query came in
    udp_limit: int = w.UDP_MIN       # the largest answer a UDP client takes (EDNS, >= 512)


def _random_id() -> int:
    return secrets.randbits(16)


@dataclass
class ForwarderCore:
    limits: Limits = field(default_factory=Limits)
    random_id: Callable[[], int] = _random_id
    servers: list[Server] = field(default_factory=list)
    pending: dict[int, Pending] = field(default_factory=dict)
    per_source: dict[Hashable, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    buckets: dict[Hashable, list[float]] = field(default_factory=dict)   # source -> [tokens, quiet, refilled]
    local: LocalZones | None = None     # questions answered here, never forwarded (dns_local.py)
    rebind: dns_rebind.RebindFilter | None = None   # answers with LAN/own addresses blocked (dns_rebind.py)

    def __post_init__(self) -> None:
        self._lan = [2 * self.limits.lan_rate, None]     # the shared bucket: tokens, refilled
        self._tokens = itertools.count(1)
        self._rr = 0                 # the server a new query asks first (spread over the servers)

    def count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    # ---------------------------------------------------------------- the tunnel
    def set_servers(self, servers: list[Server]) -> list[Action]:
        """New upstream servers (empty: the tunnel is down). Outstanding queries were asked of
        the old ones through the old tunnel: each is ended with SERVFAIL."""
        out: list[Action] = []
        for token in list(self.pending):
            out += self._finish(token, w.SERVFAIL, "ended by a tunnel change")
        self.servers = list(servers)
        self._rr = 0
        return out

    # ---------------------------------------------------------------- from the LAN
    def admit(self, source: Hashable, now: float) -> str | None:
        """None when one query from `source` is within its rate and, unless the address is quiet,
        the LAN's (see the module doc); else which rate it is over. O(1)."""
        lim = self.limits
        b = self.buckets.get(source)
        if b is None:
            if len(self.buckets) >= lim.max_buckets:
                del self.buckets[next(iter(self.buckets))]    # forgotten: it starts full again, no harm
            b = self.buckets[source] = [lim.burst, lim.quiet_burst, now, lim.tc_rate]
        else:
            elapsed = max(0.0, now - b[2])
            b[0] = min(lim.burst, b[0] + elapsed * lim.rate)
            b[1] = min(lim.quiet_burst, b[1] + elapsed * lim.quiet_rate)
            b[3] = min(lim.tc_rate, b[3] + elapsed * lim.tc_rate)
            b[2] = now
        if b[0] < 1.0:
            return OVER_ONE
        b[0] -= 1.0             # also when the LAN's bucket refuses it: what it sends is what it is held to
        if b[1] >= 1.0:         # quiet
            b[1] -= 1.0
            return None
        lan = self._lan
        if lan[1] is not None:
            lan[0] = min(2 * lim.lan_rate, lan[0] + max(0.0, now - lan[1]) * lim.lan_rate)
        lan[1] = now
        if lan[0] < 1.0:
            return "the LAN's query rate"
        lan[0] -= 1.0
        return None

    def _slip(self, key: Hashable) -> bool:
        """May this UDP query over its address's rate be answered TC (a token of `tc_rate`)?"""
        b = self.buckets.get(key)
        if b is None or b[3] < 1.0:
            return False
        b[3] -= 1.0
        return True

    def query(self, client: object, source: Hashable, data: bytes, now: float, tcp: bool = False) -> list[Action]:
        """A query from a LAN client; never raises for any `data`.

        A UDP source is anyone's to forge: a LAN host sending 150 queries a second with another
        host's address emptied that address's bucket, and every query of the real host was
        dropped. So TCP, whose handshake proves the source, has its own bucket per address, and
        a UDP query over its address's rate is answered TC (header and question: no larger than
        the query, no records) up to `tc_rate` a second per address, dropped beyond: the real
        host asks again over TCP and is answered (RRL's "slip", as BIND and Knot do it). The
        forger then needs about `rate` + `tc_rate` / share queries a second to keep that share
        of the host's queries from a TC; the TC answers cost the pump a parse and a send each,
        bounded by `tc_rate` per address, and a flood beyond still costs a dict lookup."""
        key = ("tcp", source) if tcp else source
        over = self.admit(key, now)
        if over is not None and not tcp:
            if over == OVER_ONE and self._slip(key):
                try:
                    msg = w.parse_untrusted(data)
                except w.BadDns:
                    msg = None
                if msg is not None and not msg.is_response and not msg.flags & w.OPCODE_MASK:
                    self.count(f"answered TC: over {over}")
                    flags = w.QR | (msg.flags & w.RD) | w.RA
                    return [Reply(client, w.truncated(data, msg, flags))]
            self.count(f"dropped: over {over}")
            return []
        try:
            msg = w.parse_untrusted(data)
        except w.BadDns:
            self.count("malformed query")
            mid = w.query_id_untrusted(data)
            if mid is None or (len(data) >= 4 and data[2] & 0x80):
                return []            # nothing to answer, or a response sent to us: drop
            return [Reply(client, w.formerr(mid, int.from_bytes(data[2:4], "big")))]
        if msg.is_response:
            self.count("response from the LAN")
            return []
        if msg.flags & w.OPCODE_MASK:
            self.count("not a standard query")
            return [Reply(client, w.reply(data, msg, w.NOTIMP))]
        if over is not None:
            self.count(f"refused: over {over}")
            refused = Reply(client, w.reply(data, msg, w.REFUSED))
            if over == OVER_ONE:
                # Over its own rate on TCP, the connection ends too: answering each pipelined
                # query REFUSED cost ~25 us, and one host's 64 connections full of them took the
                # pump (the tunnel's too) at whatever speed it sent -- where its UDP queries cost
                # a dict lookup. The client reconnects (a handshake each) and retries.
                self.count("TCP connection closed: over one LAN address's query rate")
                return [refused, Close(client)]
            return [refused]
        if self.local is not None:
            here = self.local.answer(msg.question.name, msg.question.qtype, msg.question.qclass)
            if here is not None:
                rcode, why, records = here
                self.count(why)
                return [Reply(client, w.answer(data, msg, records) if records else w.reply(data, msg, rcode))]
        if not self.servers:
            self.count("answered SERVFAIL: no tunnel DNS")
            return [Reply(client, w.reply(data, msg, w.SERVFAIL))]
        if self.per_source.get(source, 0) >= self.limits.max_per_source:
            self.count("refused: too many outstanding for one LAN host")
            return [Reply(client, w.reply(data, msg, w.REFUSED))]
        out: list[Action] = []
        if len(self.pending) >= self.limits.max_outstanding:
            oldest = next(iter(self.pending))       # tokens grow: the first is the oldest query
            mine = self.per_source.get(source, 0)
            theirs = self.per_source.get(self.pending[oldest].source, 0)
            lighter = theirs >= mine + 2            # after it, they still hold as many as we do
            if not lighter and (theirs < mine or now - self.pending[oldest].started < self.limits.jostle):
                self.count("refused: too many outstanding")
                return [Reply(client, w.reply(data, msg, w.REFUSED))]
            out = self._finish(oldest, w.SERVFAIL, "answered SERVFAIL: oldest ended to make room")
        token = next(self._tokens)
        first = self._rr % len(self.servers)
        self._rr += 1
        p = Pending(client, source, msg.id, tcp, msg.question, bytes(data), first, started=now,
                    udp_limit=w.UDP_MIN if tcp else w.udp_limit_untrusted(data, msg))
        self.pending[token] = p
        self.per_source[source] = self.per_source.get(source, 0) + 1
        self.count("forwarded")
        return out + [self._attempt(token, p, now, tcp=False)]

    def client_gone(self, client: object) -> list[Action]:
        """A TCP client closed: its outstanding queries are dropped (nobody to answer)."""
        out: list[Action] = []
        for token, p in list(self.pending.items()):
            if p.client is client:
                self._release(token)
                out.append(Done(token))
        return out

    # ---------------------------------------------------------------- from upstream
    def answer(self, token: int, server: Server, data: bytes, now: float) -> list[Action]:
        """An answer arrived on the socket of upstream query `token` from `server`; it ends the
        query only if it matches it in every respect (see the module doc). Never raises."""
        p = self.pending.get(token)
        if p is None:
            self.count("late answer")
            return []
        if server != p.server:
            self.count("answer from another address")
            return []
        try:
            msg = w.parse_untrusted(data)
        except w.BadDns:
            self.count("malformed answer")
            return []
        if not msg.is_response or msg.id != p.upstream_id or msg.question != p.question:
            self.count("mismatched answer")
            return []
        if msg.truncated and p.client_tcp and not p.tcp:
            self.count("truncated answer retried over TCP")
            return [self._attempt(token, p, now, tcp=True, same_server=True)]
        out: list[Action] = []
        # Checked only when records reach the client: an answer over a UDP client's size goes as
        # header and question (below), and walking a 64 KiB one costs the pump some 5-15 ms.
        if (self.rebind is not None and (p.client_tcp or len(data) <= p.udp_limit)
                and not self.rebind.allowed(p.question.name)):
            try:
                records = w.records_untrusted(data, msg, dns_rebind.MAX_RECORDS)     # walked once
                hit = self.rebind.offending(data, msg, records=records)
                edns = hit is not None and dns_rebind.has_opt(data, msg, records)
            except dns_rebind.TooManyRecords:
                # Fail closed, at once and unread: walking it cost the pump ~0.65 us a record.
                return self._finish(token, w.SERVFAIL, dns_rebind.TOO_MANY)
            except w.BadDns:
                if not msg.truncated or p.client_tcp:
                    # Its ID says the server asked sent it: that attempt ends here (the next
                    # server, or SERVFAIL after the last). Waiting for a good one let a hostile
                    # resolver have each of its answers walked, for 1.5 s at its own rate.
                    self.count("malformed answer")
                    return self.failed(token, now)
                self.count("truncated answer with unreadable records sent as TC only")
                self._release(token)
                query = w.parse_untrusted(p.query)
                return [Reply(p.client, w.truncated(p.query, query, msg.flags)), Done(token)]
            if hit is not None and dns_rebind.null_answer(hit):
                self.count(dns_rebind.BLOCKED_NULL)
                data = dns_rebind.blocked(data, msg, edns)
            elif hit is not None:
                self.count(dns_rebind.BLOCKED)
                data = dns_rebind.blocked(data, msg, edns)
                unlogged = self.rebind.note(now)
                if unlogged is not None:
                    out.append(Log(f"DNS forwarder: possible DNS rebinding: the answer for {_name(p.question.name)} "
                                   f"gave {_address(hit)} (a LAN, own or loopback address): the LAN host got no "
                                   f"records" + (f" ({unlogged} more blocked since the last such line)"
                                                 if unlogged else "")))
        self._release(token)
        if not p.client_tcp and len(data) > p.udp_limit:
            self.count("answer over the UDP client's size sent truncated")
            query = w.parse_untrusted(p.query)      # parsed once already: cannot fail
            return out + [Reply(p.client, w.truncated(p.query, query, msg.flags)), Done(token)]
        self.count("answered")
        return out + [Reply(p.client, w.with_id(data, p.client_id)), Done(token)]

    def failed(self, token: int, now: float) -> list[Action]:
        """Upstream query `token` timed out (or its socket failed): the next attempt, or SERVFAIL."""
        p = self.pending.get(token)
        if p is None:
            return []
        self.count("upstream timeout or error")
        if p.attempts >= self.limits.max_attempts or not self.servers:
            return self._finish(token, w.SERVFAIL, "answered SERVFAIL: no answer from upstream")
        return [self._attempt(token, p, now, tcp=p.tcp)]

    # ---------------------------------------------------------------- inside
    def _attempt(self, token: int, p: Pending, now: float, tcp: bool, same_server: bool = False) -> Send:
        if not same_server:
            p.server = self.servers[(p.first + p.attempts) % len(self.servers)]
            p.attempts += 1
        p.upstream_id = self.random_id() & 0xFFFF
        p.tcp = tcp
        return Send(token, p.server, w.with_id(p.query, p.upstream_id), tcp, now + self.limits.attempt_timeout)

    def _release(self, token: int) -> Pending:
        p = self.pending.pop(token)
        n = self.per_source.get(p.source, 0) - 1
        if n > 0:
            self.per_source[p.source] = n
        else:
            self.per_source.pop(p.source, None)
        return p

    def _finish(self, token: int, rcode: int, reason: str) -> list[Action]:
        p = self._release(token)
        self.count(reason)
        msg = w.parse_untrusted(p.query)     # parsed once already: cannot fail
        return [Reply(p.client, w.reply(p.query, msg, rcode)), Done(token)]


def _name(wire: bytes) -> str:
    """A question's name for a log line (non-printable bytes escaped)."""
    out, i = [], 0
    while i < len(wire) and wire[i]:
        out.append(wire[i + 1:i + 1 + wire[i]].decode("latin-1"))
        i += 1 + wire[i]
    return ".".join(out).encode("unicode_escape").decode("ascii") or "."


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))
