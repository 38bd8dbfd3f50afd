"""The wan-dhcp-loop fuzz target: the WAN DHCP client's state machine (appliance/boot/dhcp_client.py
`_Client`: acquire, bind, keep_renewed's BOUND / RENEWING / REBINDING / INIT, NAK rounds, expiry)
in a simulated world with a virtual clock, a real DHCP server and a rogue on the same segment.

Why a target: wan-dhcp stops at one transaction's reading of replies; what keeps the WAN up for
days is the loop around it -- timers, retransmissions, NAKs (anyone's to send), a rogue answering
first, the lease running out -- and that needed a clock and a network, so only hand-written unit
tests reached it.

The world: the client's socket is a fake one (each message it sends is answered by the world,
datagrams arrive at virtual times), its sleeps and waits advance a virtual clock, the NIC is a
record (`_apply`/`_remove` replaced), xids come from a seeded generator. The real server
(198.18.36.1) owns one address for us (198.18.36.100, another after it "renumbers") and answers
by the rules: an OFFER of it, an ACK of a REQUEST for it, a NAK of any other; it hears a unicast
only when sent to it. The rogue (198.18.36.66) hears everything.

Input: byte 0 the real server's lease (bits 0-2: 0 s .. 'infinite'), T1/T2 options (bits
3-4: none, valid, inverted, T1 0) and the NIC failing (bit 5: every 7th send raises ENETDOWN;
bit 6: every 5th socket cannot be made, ENODEV); then one byte per message the client sends: bits 0-1 the real
server's reaction (answer, silent, NAK, renumber), bits 2-4 the rogue's (none, a usable offer/ACK
of another address, an ACK of our address with its router and an infinite lease, junk from
one source, a reply for another xid, a NAK forged in the server's name, an answer of another
address before the server's, an unusable reply), bits 5-7 the server's delay (0 .. past the
client's wait). When the input runs out, the rogue is quiet and the server answers everything;
the world runs on for SETTLE virtual seconds.

Oracles, checked as the loop runs:
- nothing escapes and the renewal thread logs no internal error ("DHCP renewal failed");
- no spin: at most SAME_INSTANT messages without the virtual clock moving, MAX_SENDS in all;
- the NIC holds exactly the lease's address whenever a lease is bound and has not run out, and
  an address is removed only once its lease ran out;
- a REQUEST with our address as ciaddr is sent only while a lease holds that address, unicast to
  the lease's server when RENEWING (when it has one), broadcast when REBINDING;
- each bind's timers: min_renew <= T1 <= max_renew from the REQUEST, T1 <= T2 <= expiry; an ACK of
  the lease's own address from another server id keeps the router and lengthens nothing;
- rounds of DISCOVERs after a NAK at most one per nak_every;
- every address the NIC gets was offered and ACKed to one of our transactions;
- liveness: unless the rogue ever sent a usable offer or ACK, the client ends on the real
  server's current address and router.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct

SERVER, ROGUE = "198.18.36.1", "198.18.36.66"
MAC = b"\x52\x54\x00\x36\x00\x01"
LEASES = (0, 20, 60, 300, 3600, 86400, 0xFFFFFFFF, 120)
DELAYS = (0.0, 0.01, 0.5, 1.0, 2.0, 2.9, 3.5, 10.0)
SAME_INSTANT = 64
MAX_SENDS = 3000


class _Stop(BaseException):
    """The world's end (time or budget): unwinds the client out of any wait (a BaseException: the
    renewal thread's `except Exception` must not take it for a failed renewal)."""


class _Broken(BaseException):
    """An oracle broken inside the client's loop (raised past its `except Exception`); the target
    turns it into the AssertionError the runner records."""


def _check(cond: object, msg: str) -> None:
    if not cond:
        raise _Broken(msg)


def _policy():
    from appliance.boot.dhcp_client import Policy
    return Policy(reply_wait=3.0, tries=2, pause_first=5.0, pause_max=60.0, jitter=0.1, log_every=60.0,
                  retry_min=60.0, min_renew=30.0, max_renew=3600.0, nak_every=300.0)


SETTLE = 4 * 3600 + 2 * 300 + 600


def _reply(kind: int, xid: int, yiaddr: str, server_id: str | None, router: str | None = SERVER,
           lease: int | None = 3600, t1: int | None = None, t2: int | None = None, mask: str = "255.255.255.0",
           mac: bytes = MAC) -> bytes:
    from appliance.boot import dhcp_client as dc
    body = bytearray(dc.build_message(kind, xid, mac)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton(yiaddr)
    opts = bytes([53, 1, kind])
    if server_id:
        opts += bytes([54, 4]) + socket.inet_aton(server_id)
    if kind != dc.NAK:
        opts += bytes([1, 4]) + socket.inet_aton(mask)
        if router:
            opts += bytes([3, 4]) + socket.inet_aton(router)
        for code, v in ((51, lease), (58, t1), (59, t2)):
            if v is not None:
                opts += bytes([code, 4]) + struct.pack("!I", v & 0xFFFFFFFF)
    return bytes(body) + opts + b"\xff"


class World:
    def __init__(self, data: bytes) -> None:
        from appliance.boot import dhcp_client as dc
        self.dc = dc
        self.now = 1000.0
        self.script = data[1:]
        self.at = 0
        cfg = data[0] if data else 0
        self.lease_time = LEASES[cfg & 7]
        tmode = (cfg >> 3) & 3
        lt = self.lease_time
        self.t1, self.t2 = {0: (None, None), 1: (lt // 4, lt // 2), 2: (lt // 2, lt // 4), 3: (0, None)}[tmode]
        self.nic_down = (cfg >> 5) & 3                # 1: every 7th send fails, 2: every 5th socket, 3: both
        self.sockets = 0
        self.address_n = 100                       # the real server's address for us: 198.18.36.<n>
        self.end: float | None = None              # set when the script runs out
        self.sends: list[tuple[float, int, int, str, str | None, str]] = []   # now, kind, xid, dest, requested, ciaddr
        self.same_instant = 0
        self.last_send_at = -1.0
        self.nic: tuple[str, int] | None = None
        self.router: str | None = None
        self.acked: set[tuple[int, str]] = set()   # (xid, address) some ACK gave
        self.rogue_usable = False
        self.lease = None                          # the client's Lease once bound
        self.nak_rounds: list[float] = []
        self.raw = None                            # the last answer held_terms saw
        self.queue: list[tuple[float, bytes, tuple[str, int]]] = []
        self.rng = random.Random(int.from_bytes(data[:8].ljust(8, b"\0"), "big"))

    @property
    def address(self) -> str:
        return f"198.18.36.{self.address_n}"

    # -- the clock
    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.advance(max(0.0, s))

    def advance(self, s: float) -> None:
        self.now += s
        if self.end is not None and (self.now >= self.end or self.settled()):
            raise _Stop()

    def settled(self) -> bool:
        """The script is over and the client holds the real server's lease: the liveness oracle
        holds, nothing more to see (the rest of SETTLE only costs time)."""
        lease = self.lease
        return (lease is not None and lease.address == self.address and lease.on_nic
                and self.nic == (self.address, 24) and self.router == SERVER)

    # -- the script
    def reaction(self) -> int | None:
        if self.at < len(self.script):
            self.at += 1
            return self.script[self.at - 1]
        if self.end is None:
            self.end = self.now + SETTLE
        return None

    def on_send(self, data: bytes, dest: tuple[str, int]) -> None:
        dc = self.dc
        kind = data[242]                                   # option 53 comes first in build_message
        xid = struct.unpack_from("!I", data, 4)[0]
        ciaddr = socket.inet_ntoa(data[12:16])
        opts = _options(data)
        requested = socket.inet_ntoa(opts[50]) if 50 in opts else None
        self.sends.append((self.now, kind, xid, dest[0], requested, ciaddr))
        _check(len(self.sends) <= MAX_SENDS, f"{len(self.sends)} messages sent in {self.now - 1000:.0f} virtual s: a spin")
        if self.now == self.last_send_at:
            self.same_instant += 1
            _check(self.same_instant <= SAME_INSTANT, f"{self.same_instant} messages at one instant: a spin")
        else:
            self.same_instant, self.last_send_at = 0, self.now
        self._check_request(kind, dest, ciaddr)
        r = self.reaction()
        real, rogue, delay = (0, 0, 0.01) if r is None else (r & 3, (r >> 2) & 7, DELAYS[r >> 5])
        hears = dest[0] in ("255.255.255.255", SERVER)
        ours = requested or (ciaddr if ciaddr != "0.0.0.0" else None)
        if real == 3:
            self.address_n = 100 + (self.address_n - 99) % 50
        lt, t1, t2 = self.lease_time, self.t1, self.t2
        if hears and real != 1:
            if kind == dc.DISCOVER:
                self._arrive(delay, _reply(dc.OFFER, xid, self.address, SERVER, SERVER, lt, t1, t2), SERVER)
            elif kind == dc.REQUEST:
                if real != 2 and ours == self.address:
                    self.acked.add((xid, self.address))
                    self._arrive(delay, _reply(dc.ACK, xid, self.address, SERVER, SERVER, lt, t1, t2), SERVER)
                else:
                    self._arrive(delay, _reply(dc.NAK, xid, "0.0.0.0", SERVER), SERVER)
        answer = dc.OFFER if kind == dc.DISCOVER else dc.ACK
        other = f"198.18.36.{150 + (xid % 50)}"
        if rogue == 1:
            self.rogue_usable = True
            self.acked.add((xid, other))
            self._arrive(delay / 2, _reply(answer, xid, other, ROGUE, ROGUE, 600), ROGUE)
        elif rogue == 2 and ours:
            self.rogue_usable = True
            self.acked.add((xid, ours))
            self._arrive(0.0, _reply(answer, xid, ours, ROGUE, ROGUE, 0xFFFFFFFF), ROGUE)
        elif rogue == 3:
            n = 1 + (self.rng.random() < 0.5) * 20
            for _ in range(n):
                self._arrive(0.0, bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(0, 300))), ROGUE)
        elif rogue == 4:
            self._arrive(0.0, _reply(answer, xid ^ 1, other, ROGUE, ROGUE), ROGUE)
        elif rogue == 5:
            self._arrive(0.0, _reply(dc.NAK, xid, "0.0.0.0", SERVER), (ROGUE, 67))
        elif rogue == 6:
            self.rogue_usable = True
            self.acked.add((xid, other))
            self._arrive(0.0, _reply(answer, xid, other, SERVER, ROGUE, 120), (ROGUE, 67))
        elif rogue == 7:
            self._arrive(0.0, _reply(answer, xid, "198.18.36.0", ROGUE, "10.0.0.1"), ROGUE)

    def _arrive(self, delay: float, data: bytes, source) -> None:
        src = source if isinstance(source, tuple) else (source, 67)
        self.queue.append((self.now + delay, data, src))
        self.queue.sort(key=lambda q: q[0])

    def recv(self, timeout: float | None) -> tuple[bytes, tuple[str, int]]:
        limit = self.now + (timeout if timeout is not None else 3600.0)
        if self.queue and self.queue[0][0] <= limit:
            at, data, src = self.queue.pop(0)
            if at > self.now:
                self.advance(at - self.now)
            return data, src
        self.advance(limit - self.now)
        raise socket.timeout()

    # -- oracles on what the client does
    def _check_request(self, kind: int, dest: tuple[str, int], ciaddr: str) -> None:
        dc = self.dc
        if kind != dc.REQUEST or ciaddr == "0.0.0.0":
            return
        lease = self.lease
        _check(lease is not None and lease.on_nic and ciaddr == lease.address,
               f"a REQUEST with ciaddr {ciaddr} while the lease is {lease}")
        _check(self.now < lease.expires, "a RENEWING/REBINDING REQUEST after the lease ran out")
        state = dc.phase(self.now, lease.renew_at, lease.rebind_at, lease.expires)
        _check(state in (dc.RENEWING, dc.REBINDING), f"a REQUEST with ciaddr in state {state}")
        want = lease.server if state == dc.RENEWING and lease.server else "255.255.255.255"
        _check(dest[0] == want, f"{state} REQUEST sent to {dest[0]}, not {want}")

    def check_nic(self) -> None:
        lease = self.lease
        if lease is not None and lease.on_nic and self.now < lease.expires:
            _check(self.nic == (lease.address, lease.prefixlen), f"NIC {self.nic} while the lease is {lease}")


def _options(data: bytes) -> dict[int, bytes]:
    out, i = {}, 240
    while i < len(data) and data[i] != 255:
        out[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out


class FakeSocket:
    def __init__(self, world: World) -> None:
        self.w, self.timeout = world, None

    def setsockopt(self, *_a) -> None:
        pass

    def setblocking(self, _flag: bool) -> None:
        pass

    def settimeout(self, t: float) -> None:
        self.timeout = t

    def recv_into(self, _buf, _n: int = 0) -> int:
        """Transaction.begin's drain: what has arrived by now is discarded."""
        if self.w.queue and self.w.queue[0][0] <= self.w.now:
            self.w.queue.pop(0)
            return 1
        raise BlockingIOError()

    def sendto(self, data: bytes, dest: tuple[str, int]) -> int:
        self.w.check_nic()
        if self.w.nic_down & 1 and len(self.w.sends) % 7 == 6:
            self.w.sends.append((self.w.now, 0, 0, dest[0], None, "0.0.0.0"))
            raise OSError(100, "Network is down")
        self.w.on_send(bytes(data), dest)
        return len(data)

    def recvfrom(self, _n: int) -> tuple[bytes, tuple[str, int]]:
        return self.w.recv(self.timeout)

    def close(self) -> None:
        pass


class _Event:
    """The client's stop event over the virtual clock: a wait advances it."""

    def __init__(self, world: World) -> None:
        self.w = world

    def is_set(self) -> bool:
        return False

    def set(self) -> None:
        pass

    def wait(self, seconds: float) -> bool:
        self.w.advance(max(0.0, seconds))
        return False


class _FailedRenewal(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "DHCP renewal failed" in record.getMessage():
            self.failed.append(record.getMessage())


def make_wan_dhcp_loop():
    from appliance.boot import dhcp_client as dc
    log = logging.getLogger("vpn-appliance")
    real = (dc.time, dc.random, dc._apply, dc._remove, dc.held_terms)
    real_held_terms = dc.held_terms

    def one(data: bytes) -> None:
        w = World(data)
        pol = _policy()
        failed = _FailedRenewal()

        def apply(_ifname: str, offer) -> None:
            _check(any(a == offer.address for _x, a in w.acked), f"{offer.address} applied, never ACKed to us")
            w.nic, w.router = (offer.address, offer.prefixlen), offer.router

        def remove(_ifname: str, address: str, prefixlen: int) -> None:
            lease = w.lease
            _check(lease is not None and w.now >= lease.expires,
                   f"{address} removed at {w.now} before its lease ran out ({lease and lease.expires})")
            if w.nic == (address, prefixlen):
                w.nic = w.router = None

        def held_terms(lease, offer):
            w.raw = offer                          # the ACK as it came, before held_terms
            return real_held_terms(lease, offer)

        class Client(dc._Client):
            def _socket(self):
                w.sockets += 1
                if w.nic_down & 2 and w.sockets % 5 == 4:
                    raise OSError(19, "No such device")      # SO_BINDTODEVICE on a NIC gone
                return FakeSocket(w)

            def bind(self, lease, offer, sent, how):
                raw, w.raw = w.raw, None
                held = w.lease is not None and lease.on_nic and w.now < lease.expires
                old = (lease.address, lease.router, lease.server, lease.lease_time)
                super().bind(lease, offer, sent, how)
                _check(pol.min_renew - 1e-6 <= lease.renew_at - sent <= pol.max_renew + 1e-6, "T1 out of bounds")
                _check(lease.renew_at <= lease.rebind_at <= lease.expires, "T1 <= T2 <= expiry broken")
                if held and old[0] == lease.address:
                    _check(lease.server == old[2], f"the held address's server id {old[2]} -> {lease.server}")
                    if raw is None or raw.server is None or raw.server != old[2]:
                        _check(lease.router == old[1] and lease.lease_time <= old[3],
                               f"an ACK of the held address from server id {raw and raw.server} (not the "
                               f"lease's {old[2]}): router {old[1]} -> {lease.router}, lease {old[3]} -> "
                               f"{lease.lease_time}")
                w.check_nic()

            def _round(self, keep, say, held=None, nak_server=None, keep_server=None):
                if held is not None:
                    _check(not w.nak_rounds or w.now >= w.nak_rounds[-1] + pol.nak_every,
                           "two rounds of DISCOVERs after NAKs within nak_every")
                    w.nak_rounds.append(w.now)
                return super()._round(keep, say, held, nak_server, keep_server)

        dc.time, dc.random = w, random.Random(7)
        dc._apply, dc._remove, dc.held_terms = apply, remove, held_terms
        log.addHandler(failed)
        old_level = log.level
        log.setLevel(logging.WARNING)
        try:
            c = Client("wan0", MAC, [ipaddress.IPv4Network("198.18.50.0/24")], pol, _Event(w), clock=w.monotonic,
                       rand=w.rng.random)
            try:
                got = c.acquire()
                assert got is not None
                offer, sent = got
                lease = dc.Lease("wan0", offer.address, offer.prefixlen, offer.router, list(offer.dns), offer.server,
                                 offer.lease_time)
                w.lease = lease
                c.bind(lease, offer, sent, "boot")
                c.keep_renewed(lease)
            except _Stop:
                pass
            except _Broken as e:
                raise AssertionError(str(e)) from None
        finally:
            dc.time, dc.random, dc._apply, dc._remove, dc.held_terms = real
            log.removeHandler(failed)
            log.setLevel(old_level)
        assert not failed.failed, f"the renewal thread hit an internal error: {failed.failed[0]}"
        if not w.rogue_usable:
            assert w.nic == (w.address, 24) and w.router == SERVER, \
                f"after {SETTLE} s of an honest server: NIC {w.nic} via {w.router}, server's {w.address}"
    return one


def seeds() -> list[bytes]:
    def r(real: int = 0, rogue: int = 0, delay: int = 1) -> int:
        return real | rogue << 2 | delay << 5
    return [
        b"", bytes([4]), bytes([6]), bytes([0]), bytes([1 | 8]), bytes([4 | 16]), bytes([3 | 24]),
        bytes([4]) + bytes([r(1)] * 12),                               # a silent server at boot
        bytes([4]) + bytes([r(), r(), r(2), r(0, 0, 6), r(1), r(1)]),  # NAK in RENEWING, slow answers
        bytes([3]) + bytes([r(), r(), r(3), r(3), r(), r()]),          # renumbering
        bytes([4]) + bytes([r(), r(), r(0, 5)] * 4),                   # forged NAKs
        bytes([4]) + bytes([r(0, 1), r(0, 1), r(), r()]),              # a rogue's offer first
        bytes([6]) + bytes([r(), r(), r(1, 2), r(1, 2), r(1, 2)]),     # rogue ACKs our address in REBINDING
        bytes([4]) + bytes([r(0, 3), r(0, 4), r(0, 7), r(0, 3), r(0, 6)]),
        bytes([2]) + bytes([r(), r(), r(1)] + [r(1)] * 20),           # a lease that runs out
        bytes([5 | 8]) + bytes([r(0, 0, 7)] * 6 + [r()] * 3),
        bytes([4 | 32]) + bytes([r()] * 12), bytes([2 | 64]) + bytes([r()] * 12),
        bytes([2 | 96]) + bytes([r(), r(), r(1), r(1), r(1), r(1), r(0, 5), r()] * 3),
    ]
