"""The forwarder's decisions in memory: limits, IDs, matching, retries, SERVFAIL when down."""
import itertools
import random

from hypothesis import given, settings, strategies as st

from appliance.lan import dns_wire as w
from appliance.lan.dns_core import Close, Done, ForwarderCore, Limits, Reply, Send

S1, S2 = ("198.19.0.1", 53), ("2001:db8:19::1", 53)


def core(servers=(S1, S2), **limits) -> ForwarderCore:
    ids = itertools.count(1000)
    c = ForwarderCore(Limits(**limits), random_id=lambda: next(ids))
    c.set_servers(list(servers))
    return c


def answer_for(send: Send, addr: str = "198.18.100.1", flags: int = 0x8180) -> bytes:
    """What a server answers to `send` (its ID and question, one A record)."""
    m = w.parse_untrusted(send.data)
    head = m.id.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\0\1\0\1\0\0\0\0"
    return head + send.data[12:m.question_end] + b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4" + bytes(map(int, addr.split(".")))


def test_tunnel_down_servfail_at_once_and_nothing_sent():
    c = core(servers=())
    q = w.encode_query(7, "secret.vpn.test")
    (r,) = c.query("cli", "198.18.50.10", q, 0.0)
    assert isinstance(r, Reply) and w.rcode(r.data) == w.SERVFAIL and r.data[:2] == q[:2]
    assert c.pending == {} and c.counts["answered SERVFAIL: no tunnel DNS"] == 1


def test_forwarded_with_a_fresh_id_and_answered_with_the_clients():
    c = core()
    q = w.encode_query(7, "secret.vpn.test")
    (s,) = c.query("cli", "198.18.50.10", q, 0.0)
    assert isinstance(s, Send) and s.server == S1 and not s.tcp and s.deadline == 1.5
    assert s.data[:2] == (1000).to_bytes(2, "big") and s.data[2:] == q[2:]
    r, d = c.answer(s.token, S1, answer_for(s), 0.1)
    assert r == Reply("cli", b"\0\7" + answer_for(s)[2:]) and d == Done(s.token)
    assert c.pending == {} and c.per_source == {}
    # the next query starts at the other server
    (s2,) = c.query("cli", "198.18.50.10", q, 0.2)
    assert s2.server == S2


def test_spoofed_or_mismatched_answers_dropped_counted_and_the_real_one_still_taken():
    c = core()
    (s,) = c.query("cli", "198.18.50.10", w.encode_query(7, "secret.vpn.test"), 0.0)
    good = answer_for(s)
    other_q = answer_for(Send(s.token, S1, w.with_id(w.encode_query(0, "evil.test"), 1000), False, 0))
    for server, data in [(("198.19.0.1", 5353), good), (S2, good), (("198.18.0.1", 53), good),
                         (S1, w.with_id(good, 999)), (S1, other_q), (S1, s.data), (S1, good[:20]), (S1, b"")]:
        assert c.answer(s.token, server, data, 0.1) == []
    assert c.counts["answer from another address"] == 3 and c.counts["mismatched answer"] == 3
    assert c.counts["malformed answer"] == 2
    # the question is matched without regard to case (0x20 randomisation by servers)
    upper = good[:12] + good[12:w.parse_untrusted(good).question_end].upper() + good[w.parse_untrusted(good).question_end:]
    r, _d = c.answer(s.token, S1, upper, 0.2)
    assert r.client == "cli"
    assert c.answer(s.token, S1, good, 0.3) == [] and c.counts["late answer"] == 1


def test_timeout_next_server_new_id_then_servfail():
    c = core(max_attempts=3)
    (s1,) = c.query("cli", "198.18.50.10", w.encode_query(7, "a.test"), 0.0)
    (s2,) = c.failed(s1.token, 1.5)
    (s3,) = c.failed(s1.token, 3.0)
    assert [s.server for s in (s1, s2, s3)] == [S1, S2, S1]
    assert len({s.data[:2] for s in (s1, s2, s3)}) == 3 and s3.deadline == 4.5
    assert c.answer(s1.token, S1, answer_for(s1), 3.1) == [] and c.counts["mismatched answer"] == 1  # old ID
    r, d = c.failed(s1.token, 4.5)
    assert w.rcode(r.data) == w.SERVFAIL and r.data[:2] == b"\0\7" and d == Done(s1.token)
    assert c.failed(s1.token, 5.0) == []


def test_limits_in_all_and_per_source_refused_and_counted():
    c = core(max_outstanding=4, max_per_source=3)
    q = w.encode_query(1, "a.test")
    sends = [c.query("a", "198.18.50.10", q, 0.0)[0] for _ in range(3)]
    assert all(isinstance(s, Send) for s in sends)
    (r,) = c.query("a", "198.18.50.10", q, 0.0)
    assert w.rcode(r.data) == w.REFUSED and c.counts["refused: too many outstanding for one LAN host"] == 1
    assert isinstance(c.query("b", "198.18.50.11", q, 0.0)[0], Send)       # the table is full
    # .12 holds none, .10 (whose query is the oldest) three: that one is ended to make room
    ended, _done, s = c.query("c", "198.18.50.12", q, 0.0)
    assert ended.client == "a" and w.rcode(ended.data) == w.SERVFAIL and isinstance(s, Send)
    # .10 two, .11 one, .12 one, all younger than jostle: nobody holds two more than .11
    (r,) = c.query("d", "198.18.50.11", q, 0.0)
    assert w.rcode(r.data) == w.REFUSED and c.counts["refused: too many outstanding"] == 1
    c.answer(sends[1].token, sends[1].server, answer_for(sends[1]), 0.1)
    assert isinstance(c.query("a", "198.18.50.10", q, 0.2)[0], Send)


def test_one_host_from_many_lan_addresses_cannot_lock_the_others_out():
    """A LAN host sends queries from 8 forged LAN addresses (32 each, the per-source limit), for
    names whose servers never answer: the table is full. Another host's query is still forwarded
    once the oldest has waited `jostle`; that one gets SERVFAIL (counted). A table full of
    queries younger than that still refuses (the bound holds)."""
    c = core(max_outstanding=256, max_per_source=32)
    q = w.encode_query(1, "slow.attacker.test")
    now = 0.0
    for host in range(8):
        for _ in range(32):
            now += 0.01
            (s,) = c.query(("spoofed", host, now), f"198.18.50.{100 + host}", q, now)
            assert isinstance(s, Send)
    assert len(c.pending) == 256
    # the victim, 1 s after the flood began: the flood's oldest queries are still being retried
    victim = w.encode_query(9, "www.example.test")
    out = c.query("victim", "198.18.50.10", victim, 1.0)
    sends = [a for a in out if isinstance(a, Send)]
    assert len(sends) == 1 and w.parse_untrusted(sends[0].data).question == w.parse_untrusted(victim).question
    (evicted,) = [a for a in out if isinstance(a, Reply)]
    assert evicted.client == ("spoofed", 0, 0.01) and w.rcode(evicted.data) == w.SERVFAIL
    assert c.counts["answered SERVFAIL: oldest ended to make room"] == 1 and len(c.pending) == 256
    r, _ = c.answer(sends[0].token, sends[0].server, answer_for(sends[0]), 1.05)
    assert r.client == "victim" and w.rcode(r.data) == w.NOERROR
    # a table of young queries (all within jostle), one per address, refuses the newcomer
    c2 = core(max_outstanding=4, max_per_source=4)
    for i in range(4):
        c2.query(i, f"198.18.50.{100 + i}", q, 0.1 * i)
    (r,) = c2.query("victim", "198.18.50.10", victim, 0.45)
    assert w.rcode(r.data) == w.REFUSED and c2.counts["refused: too many outstanding"] == 1


def test_a_lan_host_with_fewer_queries_waiting_always_gets_in_and_a_heavier_one_cannot_jostle_it():
    """51 LAN addresses of one host, each within its rate, keep the table full of queries
    younger than `jostle` (their server answers, but slowly): another host's query still gets in,
    ending the oldest query of an address holding two more than it. And a flooding address cannot
    end a quiet host's slow query through `jostle`: it holds more than that host."""
    c = core(max_outstanding=8, max_per_source=4)
    q = w.encode_query(1, "slow.attacker.test")
    for i in range(8):
        c.query(("flood", i), f"198.18.50.{200 + i % 4}", q, 0.01 * i)    # two each, all young
    victim = w.encode_query(9, "www.example.test")
    ended, _done, s = c.query("victim", "198.18.50.10", victim, 0.1)
    assert ended.client == ("flood", 0) and w.rcode(ended.data) == w.SERVFAIL and isinstance(s, Send)
    assert c.counts["answered SERVFAIL: oldest ended to make room"] == 1 and len(c.pending) == 8
    # a quiet host's query has waited 1 s (older than jostle) in a full table; an address holding
    # three asks again: it is REFUSED, and the quiet host's query keeps waiting for its answer
    c2 = core(max_outstanding=4, max_per_source=4)
    (slow,) = c2.query("victim", "198.18.50.10", victim, 0.0)
    for i in range(3):
        c2.query(("flood", i), "198.18.50.200", q, 0.1)
    (r,) = c2.query(("flood", 3), "198.18.50.200", q, 1.0)
    assert w.rcode(r.data) == w.REFUSED and slow.token in c2.pending


def test_tunnel_down_ends_outstanding_with_servfail():
    c = core()
    sends = [c.query(i, "198.18.50.10", w.encode_query(i, "a.test"), 0.0)[0] for i in range(3)]
    out = c.set_servers([])
    replies = [a for a in out if isinstance(a, Reply)]
    assert sorted(r.client for r in replies) == [0, 1, 2] and all(w.rcode(r.data) == w.SERVFAIL for r in replies)
    assert sorted(a.token for a in out if isinstance(a, Done)) == sorted(s.token for s in sends)
    assert c.pending == {} and c.per_source == {}
    assert c.answer(sends[0].token, S1, answer_for(sends[0]), 0.1) == []


def test_truncated_answer_passed_to_udp_clients_and_retried_over_tcp_for_tcp_clients():
    c = core()
    (s,) = c.query("udp-cli", "h", w.encode_query(1, "big.test"), 0.0)
    r, _ = c.answer(s.token, s.server, answer_for(s, flags=0x8380), 0.1)
    assert w.parse_untrusted(r.data).truncated
    (s,) = c.query("tcp-cli", "h", w.encode_query(2, "big.test"), 0.0, tcp=True)
    assert not s.tcp
    (t,) = c.answer(s.token, s.server, answer_for(s, flags=0x8380), 0.1)
    assert t.tcp and t.server == s.server and t.data[:2] != s.data[:2]
    r, d = c.answer(s.token, s.server, answer_for(t), 0.2)
    assert r.client == "tcp-cli" and not w.parse_untrusted(r.data).truncated


def big_answer_for(send: Send, size: int, flags: int = 0x8180) -> bytes:
    """An answer to `send` of exactly `size` bytes: as many A records as fit, the rest in the
    last record's RDATA (a server ignoring the client's limit, or a hostile one)."""
    m = w.parse_untrusted(send.data)
    rr = b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4\xc6\x12\x64\x01"
    head_q = send.data[12:m.question_end]
    n = (size - 12 - len(head_q)) // len(rr)
    body = rr * (n - 1)
    last = size - 12 - len(head_q) - len(body) - 12
    body += b"\xc0\x0c\0\x10\0\1\0\0\0\x3c" + last.to_bytes(2, "big") + b"x" * last    # TXT-ish filler
    head = m.id.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\0\1" + n.to_bytes(2, "big") + b"\0\0\0\0"
    out = head + head_q + body
    assert len(out) == size
    return out


def edns_query(mid: int, name: str, size: int) -> bytes:
    q = w.encode_query(mid, name)
    return q[:10] + b"\0\1" + q[12:] + b"\0" + (41).to_bytes(2, "big") + size.to_bytes(2, "big") + bytes(6)


def test_answer_over_the_udp_clients_limit_is_sent_truncated():
    """A server that answers beyond what the client asked for (512 bytes without EDNS, else its
    EDNS size, at least 512): the UDP client gets header + question with TC, and asks over TCP."""
    for query, limit in [(w.encode_query(7, "big.test"), 512), (edns_query(7, "big.test", 1232), 1232),
                         (edns_query(7, "big.test", 200), 512), (edns_query(7, "big.test", 4096), 1232)]:
        c = core()
        for size, cut in [(limit, False), (limit + 1, True), (4000, True)]:
            (s,) = c.query("cli", "h", query, 0.0)
            big = big_answer_for(s, size, flags=0x8183)
            r, d = c.answer(s.token, s.server, big, 0.1)
            assert d == Done(s.token) and r.client == "cli"
            if not cut:
                assert r.data == query[:2] + big[2:]
                continue
            m = w.parse_untrusted(r.data)
            assert m.id == 7 and m.truncated and m.is_response and w.rcode(r.data) == w.NXDOMAIN
            assert r.data[4:12] == b"\0\1\0\0\0\0\0\0" and r.data[12:] == query[12:m.question_end]
        assert c.counts["answer over the UDP client's size sent truncated"] == 2 and c.counts["answered"] == 1
    # A forged LAN source offering EDNS 4096 gets at most 1232 bytes (not ~60x its query): more is TC.
    # over TCP the client takes anything up to 64 KiB: the big answer passes unchanged
    c = core()
    (s,) = c.query("tcp-cli", "h", w.encode_query(8, "big.test"), 0.0, tcp=True)
    big = big_answer_for(s, 4000)
    r, _ = c.answer(s.token, s.server, big, 0.1)
    assert r.data == b"\0\x08" + big[2:]


def test_malformed_and_odd_queries():
    c = core()
    assert c.query("x", "h", b"\1", 0.0) == []                                   # no ID to answer
    (r,) = c.query("x", "h", b"\1\2\1\0\0\2\0\0\0\0\0\0", 0.0)                  # QDCOUNT 2
    assert w.rcode(r.data) == w.FORMERR and r.data[:2] == b"\1\2"
    (r,) = c.query("x", "h", b"\1\2\1\0\0\1\0\0\0\0\0\0\xc0\x0c\0\1\0\1", 0.0)   # compression loop
    assert w.rcode(r.data) == w.FORMERR
    resp = w.reply(w.encode_query(3, "a.test"), w.parse_untrusted(w.encode_query(3, "a.test")), 0)
    assert c.query("x", "h", resp, 0.0) == [] and c.counts["response from the LAN"] == 1
    notify = bytearray(w.encode_query(4, "a.test"))
    notify[2] |= 0x20                                                             # opcode 4 (NOTIFY)
    (r,) = c.query("x", "h", bytes(notify), 0.0)
    assert w.rcode(r.data) == w.NOTIMP and c.pending == {}


def test_a_closed_tcp_client_frees_its_queries():
    c = core()
    (s,) = c.query("conn", "h", w.encode_query(1, "a.test"), 0.0, tcp=True)
    assert c.client_gone("conn") == [Done(s.token)] and c.pending == {} and c.per_source == {}


OPS = st.lists(st.tuples(st.sampled_from(["query", "junk", "answer", "spoof", "fail", "down", "up", "gone"]),
                         st.integers(0, 5), st.binary(max_size=40)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_any_sequence_keeps_the_bounds_and_answers_each_query_at_most_once(ops):
    c = core(max_outstanding=6, max_per_source=3, max_attempts=2)
    sends: dict[int, Send] = {}
    replies: dict[object, int] = {}
    clients = itertools.count()
    rnd = random.Random(len(ops))
    now = 0.0
    for op, n, blob in ops:
        now += 0.1
        if op == "query":
            out = c.query(next(clients), f"h{n}", w.encode_query(n, f"n{n}.test"), now, tcp=bool(n & 1))
        elif op == "junk":
            out = c.query(next(clients), f"h{n}", blob, now)
        elif op in ("answer", "spoof") and sends:
            s = rnd.choice(list(sends.values()))
            data = answer_for(s) if op == "answer" else blob
            out = c.answer(s.token, s.server if n else ("198.18.0.1", 53), data, now)
        elif op == "fail" and sends:
            out = c.failed(rnd.choice(list(sends)), now)
        elif op == "down":
            out = c.set_servers([])
        elif op == "up":
            out = c.set_servers([S1, S2][: 1 + n % 2])
        elif op == "gone":
            out = c.client_gone(n)
        else:
            out = []
        for a in out:
            if isinstance(a, Send):
                sends[a.token] = a
            elif isinstance(a, Done):
                sends.pop(a.token, None)
            else:
                replies[a.client] = replies.get(a.client, 0) + 1
        assert len(c.pending) <= 6 and all(v <= 3 for v in c.per_source.values())
        assert sum(c.per_source.values()) == len(c.pending)
        assert set(sends) == set(c.pending)
        assert all(v == 1 for v in replies.values())
    c.set_servers([])
    assert c.pending == {} and c.per_source == {}


def test_one_lan_address_is_held_to_its_query_rate_and_others_are_not():
    """A LAN host flooding queries that its server answers at once never hits the outstanding
    limits, so without a rate every query went through the tunnel on its own socket (the lab saw
    ~9000 a second from one host, and another host's queries lost in the kernel's full socket
    buffer). Beyond `burst`, a UDP query is dropped unanswered (an answer would be reflected at a
    forged source) and a TCP one REFUSED, its connection closed; the bucket refills at `rate`; another address is not
    affected; the table of addresses stays bounded."""
    c = core(rate=10.0, burst=20.0, max_buckets=3, tc_rate=5.0)
    q = w.encode_query(1, "a.test")
    sent = tc = 0
    for i in range(50):
        for a in c.query(("flood", i), "198.18.50.30", q, 0.0):
            if isinstance(a, Send):
                sent += 1
                c.answer(a.token, a.server, answer_for(a), 0.0)      # answered at once: nothing stays
            else:
                assert a.data[2] & 0x82 == 0x82 and a.data[6:12] == bytes(6)   # QR, TC, no records
                tc += 1
    assert sent == 20 and tc == 5 and c.counts["dropped: over one LAN address's query rate"] == 25 and c.pending == {}
    for i in range(20):                                # TCP has its own bucket (its source is proven)
        (s,) = c.query("tcp", "198.18.50.30", q, 0.0, tcp=True)
        c.answer(s.token, s.server, answer_for(s), 0.0)
    r, close = c.query("tcp", "198.18.50.30", q, 0.0, tcp=True)
    assert w.rcode(r.data) == w.REFUSED and c.counts["refused: over one LAN address's query rate"] == 1
    assert close == Close("tcp")                      # and that connection ends (test_dns_forwarder says why)
    assert isinstance(c.query("victim", "198.18.50.20", q, 0.0)[0], Send)
    assert c.query("flood", "198.18.50.30", q, 0.05) == []                  # 0.5 of a token back
    assert isinstance(c.query("flood", "198.18.50.30", q, 0.2)[0], Send)    # 2 tokens back by 0.2 s
    for n in range(10):
        c.query("many", f"fd00::{n}", q, 0.3)
    assert len(c.buckets) == 3


def test_many_flooding_addresses_share_the_lans_rate_and_a_quiet_one_is_not_held_up():
    """One host floods from 51 LAN addresses, each within its own rate: together they get
    `lan_rate`, and another host asking a few names a second gets every one of them through."""
    c = core(rate=100.0, burst=200.0, quiet_rate=10.0, quiet_burst=50.0, lan_rate=1000.0, max_outstanding=100_000,
             max_per_source=100_000)
    q = w.encode_query(1, "a.test")
    forwarded = victim = 0
    now = 0.0
    for step in range(2000):                    # 2 s: 25 queries a ms from the flood
        now = step / 1000
        for i in range(25):
            out = c.query("flood", f"198.18.50.{200 + (step * 25 + i) % 51}", q, now)
            forwarded += sum(isinstance(a, Send) for a in out)
        if step % 200 == 0:                     # 5 a second
            victim += sum(isinstance(a, Send) for a in c.query("victim", "198.18.50.20", q, now))
    assert victim == 10
    # each address's quiet 50 + 10 a second, then the LAN's burst of 2000 and 1000 a second (each
    # address alone would have had 400: 20,400)
    assert 4000 < forwarded <= 51 * (50 + 10 * 2) + 2000 + 1000 * 2, forwarded
    assert c.counts["dropped: over the LAN's query rate"] > 10_000


def test_a_host_forging_anothers_address_does_not_silence_it():
    """UDP sources are anyone's to forge: 150 queries a second with a victim's address emptied its
    bucket, and every query of the real host was dropped. Now a query over its address's rate is
    answered TC (within `tc_rate`), and the host's retry over TCP -- a source the handshake
    proves, with its own bucket -- is forwarded."""
    c = core(max_outstanding=100_000, max_per_source=100_000)
    q = w.encode_query(1, "a.test")
    victim = "198.18.50.20"
    for _ in range(200):                                   # the burst, at once
        c.query("forger", victim, q, 0.0)
    outcomes = []
    for step in range(300):                                # 2 s at 150 a second
        now = step / 150
        c.query("forger", victim, q, now)
        if step % 30 == 15:                                # the real host, 5 a second
            (a,) = c.query("victim", victim, w.encode_query(9, "mine.test"), now) or (None,)
            if isinstance(a, Reply) and a.data[2] & 0x02:
                (a,) = c.query("victim-tcp", victim, w.encode_query(9, "mine.test"), now, tcp=True)
            outcomes.append(type(a).__name__)
    assert outcomes == ["Send"] * 10
