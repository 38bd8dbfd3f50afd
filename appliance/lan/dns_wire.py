"""The little of the DNS wire format (RFC 1035) a forwarder needs: header, the one question, and
the replies it makes itself (SERVFAIL, REFUSED, FORMERR).

Why so little: the forwarder passes messages through opaque. It reads only what it must to match
an answer to its query (ID and question) and to answer by itself; everything after the question
(EDNS, answers) is the client's and the server's business. The question's name is walked label by
label with explicit bounds and no compression pointers (a query's question is the first name of the
message, so a pointer there can only point into the header or forward: never legitimate), so no
loop, no recursion, no allocation beyond the message itself.

Every `*_untrusted` function takes network bytes and raises only BadDns.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = 12
MAX_NAME = 255                  # RFC 1035 3.1: a name's wire form is at most 255 octets
UDP_MIN = 512                   # RFC 1035 4.2.1: what every client takes over UDP (the most without EDNS)
T_OPT = 41                      # RFC 6891: the EDNS pseudo-record; its CLASS is the sender's UDP size
# The most we answer over UDP, whatever size a query's EDNS record offers (DNS Flag Day 2020's
# 1232, the default of BIND, Unbound, Knot and PowerDNS since): a bigger answer goes out as TC and
# the client asks over TCP. Why: a forged LAN source got answers of up to its query's EDNS size
# (4096: ~60x the query) aimed at a victim; at 1232 that is ~20x, and anything larger needs a TCP
# handshake the forger cannot complete. It also keeps answers out of IP fragments.
UDP_MAX = 1232
# Records of a query looked at for its OPT: a query has none in its answer and authority sections
# and one OPT (maybe a TSIG after it) in the additional; a 4 KiB query of 338 records before its
# OPT cost ~80 us to walk, at a LAN host's 100 queries a second per address. An OPT further back
# counts as no EDNS (512, the safe side).
QUERY_RECORDS = 8

QR = 0x8000
OPCODE_MASK = 0x7800
TC = 0x0200
RD = 0x0100
RA = 0x0080
RCODE_MASK = 0x000F

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
CLASS_IN = 1


class BadDns(ValueError):
    """A message we will not forward or match (its reason is the message)."""


class TooManyRecords(BadDns):
    """More records than a caller's walk reads (`records_untrusted`'s `limit`): it must not take
    the message as checked."""


@dataclass(frozen=True, slots=True)
class Question:
    """The one question of a message: (name in wire form, lower-cased; type; class)."""
    name: bytes
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Message:
    """What the forwarder reads of a message: header fields and the question."""
    id: int
    flags: int
    question: Question
    question_end: int           # offset just past the question (what an own reply copies)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)


def _name_untrusted(data: bytes, pos: int) -> tuple[bytes, int]:
    """An uncompressed name at `pos`: (lower-cased wire form, offset after it)."""
    start = pos
    end = len(data)
    while True:
        if pos >= end:
            raise BadDns("name runs past the message")
        ln = data[pos]
        if ln & 0xC0:
            raise BadDns("compressed or extended label in the question")
        pos += 1 + ln
        if pos - start > MAX_NAME:
            raise BadDns("name longer than 255 octets")
        if ln == 0:
            break
    if pos > end:
        raise BadDns("name runs past the message")
    return data[start:pos].lower(), pos


def parse_untrusted(data: bytes) -> Message:
    """Header and the single question of a query or an answer; BadDns for anything else
    (short header, QDCOUNT != 1, a bad name, a truncated question)."""
    if len(data) < HEADER:
        raise BadDns("shorter than a DNS header")
    mid, flags, qd = struct.unpack_from("!HHH", data, 0)
    if qd != 1:
        raise BadDns(f"QDCOUNT {qd}, not 1")
    name, pos = _name_untrusted(data, HEADER)
    if pos + 4 > len(data):
        raise BadDns("question truncated")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Message(mid, flags, Question(name, qtype, qclass), pos + 4)


def udp_limit_untrusted(data: bytes, msg: Message) -> int:
    """The largest UDP answer the sender of query `data` gets: the UDP payload size of its EDNS
    OPT record (RFC 6891 6.2.3, floored at 512 as 6.2.5 asks, capped at UDP_MAX), else 512. Anything that does not
    parse counts as no EDNS (512: the safe side). The walk is bounded: at most QUERY_RECORDS
    records, and names are skipped within the message."""
    if len(data) < HEADER:
        return UDP_MIN
    an, ns, ar = struct.unpack_from("!HHH", data, 6)
    pos, end = msg.question_end, len(data)
    for i in range(min(an + ns + ar, QUERY_RECORDS)):
        while True:                              # the owner name: labels, ended by 0 or a pointer
            if pos >= end:
                return UDP_MIN
            ln = data[pos]
            if ln & 0xC0 == 0xC0:
                pos += 2
                break
            if ln & 0xC0:
                return UDP_MIN
            pos += 1 + ln
            if ln == 0:
                break
        if pos + 10 > end:
            return UDP_MIN
        rtype, rclass = struct.unpack_from("!HH", data, pos)
        if rtype == T_OPT and i >= an + ns:
            return min(UDP_MAX, max(UDP_MIN, rclass))
        pos += 10 + struct.unpack_from("!H", data, pos + 8)[0]
    return UDP_MIN


def records_untrusted(data: bytes, msg: Message, limit: int | None = None) -> list[tuple[int, int, int, int]]:
    """Every resource record after the question, in all three sections: (type, class, RDATA
    offset, RDATA end). BadDns when the counts, a name or a length do not fit the message. Owner
    names are skipped, never followed (a pointer ends a name): no loop, and each record moves on
    by at least 11 bytes, so hostile counts cost at most len(data) / 11 steps -- some 6,000 in a
    64 KiB message, ~0.65 us each. With `limit`, TooManyRecords when the header counts more than
    that, before any record is read: the walk's cost is the caller's bound, not the sender's."""
    if len(data) < HEADER:
        raise BadDns("shorter than a DNS header")
    an, ns, ar = struct.unpack_from("!HHH", data, 6)
    if limit is not None and an + ns + ar > limit:
        raise TooManyRecords(f"{an + ns + ar} records, more than the {limit} read")
    pos, end = msg.question_end, len(data)
    out: list[tuple[int, int, int, int]] = []
    for _ in range(an + ns + ar):
        while True:
            if pos >= end:
                raise BadDns("record runs past the message")
            ln = data[pos]
            if ln & 0xC0 == 0xC0:
                pos += 2
                break
            if ln & 0xC0:
                raise BadDns("extended label type")
            pos += 1 + ln
            if ln == 0:
                break
        if pos + 10 > end:
            raise BadDns("record header runs past the message")
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        start = pos + 10
        pos = start + rdlen
        if pos > end:
            raise BadDns("RDATA runs past the message")
        out.append((rtype, rclass, start, pos))
    return out


def truncated(query: bytes, msg: Message, answer_flags: int) -> bytes:
    """What a UDP client gets instead of an answer over its size limit: the header (the query's ID,
    the answer's flags and RCODE) with TC set, and the question -- no records, so the client asks
    again over TCP (RFC 1035 4.2.1, RFC 2181 9)."""
    return struct.pack("!HHHHHH", msg.id, answer_flags | TC, 1, 0, 0, 0) + query[HEADER:msg.question_end]


def query_id_untrusted(data: bytes) -> int | None:
    """The ID of something too broken to parse (for FORMERR), or None below two bytes."""
    return struct.unpack_from("!H", data, 0)[0] if len(data) >= 2 else None


def with_id(data: bytes, new_id: int) -> bytes:
    """The message with another ID (the one copy forwarding makes)."""
    return struct.pack("!H", new_id) + data[2:]


def reply(query: bytes, msg: Message, rcode: int) -> bytes:
    """Our own answer to a parsed query: its ID and question, QR set, RD copied, RA set, no
    records (a SERVFAIL while the tunnel is down, REFUSED over a limit)."""
    flags = QR | (msg.flags & (OPCODE_MASK | RD)) | RA | rcode
    return struct.pack("!HHHHHH", msg.id, flags, 1, 0, 0, 0) + query[HEADER:msg.question_end]


def answer(query: bytes, msg: Message, records: list[tuple[int, bytes]], ttl: int = 0) -> bytes:
    """Our own NOERROR answer to a parsed query: `reply`'s header and question, then `records`
    (type, RDATA) of the question's name (a pointer to it) and class, TTL `ttl`."""
    flags = QR | (msg.flags & (OPCODE_MASK | RD)) | RA
    out = struct.pack("!HHHHHH", msg.id, flags, 1, len(records), 0, 0) + query[HEADER:msg.question_end]
    for rtype, rdata in records:
        out += struct.pack("!HHHIH", 0xC00C, rtype, msg.question.qclass, ttl, len(rdata)) + rdata
    return out


def formerr(mid: int, flags: int = 0) -> bytes:
    """FORMERR with no question: for a query we could not parse (RFC 1035 4.1.1)."""
    return struct.pack("!HHHHHH", mid, QR | (flags & (OPCODE_MASK | RD)) | FORMERR, 0, 0, 0, 0)


def rcode(data: bytes) -> int:
    return data[3] & RCODE_MASK if len(data) >= 4 else -1


def encode_query(mid: int, name: str, qtype: int = 1, rd: bool = True) -> bytes:
    """A plain query (tests, benchmarks and the lab use it; the forwarder never builds queries)."""
    wire = b"".join(bytes((len(lb),)) + lb for lb in (x.encode() for x in name.rstrip(".").split(".")) if lb)
    return struct.pack("!HHHHHH", mid, RD if rd else 0, 1, 0, 0, 0) + wire + b"\0" + struct.pack("!HH", qtype, 1)
