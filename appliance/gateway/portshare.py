"""port-share's relay on the server's pump: a TCP connection that did not start as an OpenVPN
client (openvpn/portshare.py decides) is joined to a new connection to HOST:PORT, bytes both ways.

Why on the pump and not in a process of its own (as OpenVPN's ps.c forks one): one loop, nothing
blocks it. OpenVPN's proxy connects with a blocking 5-second connect, stalling every relayed
connection meanwhile; here the connect is non-blocking, with the same 5 seconds.

Bounds, as a hostile client would test them (each ends at most its own connection, counted by
reason in the server's drop counters, which are logged at most every 5 s):
- MAX_RELAYS relayed connections at once (PER_SOURCE_RELAYS from one address, an IPv6 /64). Why a
  cap (OpenVPN has none): each holds two descriptors and up to 2 x BUFFER bytes, so 128 relays
  hold at most 256 descriptors and 16 MiB, and one source cannot take them all from the others.
  A new foreign connection from a source at its cap is closed at once. With the table full, the
  relay quiet the longest is closed to make room if it has been quiet EVICT_QUIET seconds, else
  the newcomer is closed (counted; the evictions also logged, at most every LOG_EVERY s). Quiet
  is by rate, not by the last byte: a relay counts as busy again only once it has moved
  ACTIVE_BYTES (either way) since it last did, so 8 sources x 16 connections trickling a byte
  now and then (under IDLE_TIMEOUT) no longer hold every relay for good: they are the quiet ones.
- BUFFER bytes per direction, with back-pressure: a side is read only while its bytes have room
  towards the other, so a slow reader stops its counterpart's sender through TCP itself (the
  kernel's windows), and an endless writer costs no more than BUFFER.
- CONNECT_TIMEOUT (5 s, OpenVPN's) for HOST to answer; refused or unreachable: the client's
  connection is closed (as OpenVPN: it closes the socket it was handed).
- IDLE_TIMEOUT with no byte moving either way: both closed (OpenVPN has no such limit; without
  one a cap could be filled for good by connections that never speak).
- Half-close: a side's FIN is passed on once its bytes are delivered (shutdown of our writing to
  the other side), and the other direction goes on (OpenVPN's proxy closes both at the first EOF,
  losing an answer still on its way). Both directions finished: closed. A reset: closed.
A client that sends nothing before the decision is no relay yet: the server's hand-window (60 s,
OpenVPN's, which also waits that long for its bytes) and per-source limits hold it.

DIR (`port-share HOST PORT DIR`): a file per relayed connection, named after our end of the
connection to HOST (`[AF_INET]127.0.0.1:40312`, the peer address the web server sees) and holding
the client's address (`[AF_INET]198.18.0.2:51234`), as OpenVPN's journal; removed when the relay
ends. Written before any client byte goes to HOST (so the web server finds it with the request),
under a temporary name and renamed (never seen half-written), through a descriptor of the
directory opened at start (a directory renamed or replaced by a symlink later changes nothing),
never following a symlink, with a name that can only be an address (journal_name).
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
from typing import Callable

from ..openvpn.portshare import journal_name, sockaddr_text
from ..openvpn.sources import source_group
from .eventlog import fmt_addr
from .loop import Faults, Pump

log = logging.getLogger("vpn-appliance")

MAX_RELAYS = 128
PER_SOURCE_RELAYS = 16
BUFFER = 64 << 10
CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 300.0
# Full table: a relay quiet this long may be closed for a newcomer. 20 s: a web exchange in
# progress (a request and its answer, a backend computing for a few seconds) is never cut, and
# a keep-alive connection idle that long costs its browser one reconnect; longer would let a
# filler hold the table with fewer bytes (see ACTIVE_BYTES).
EVICT_QUIET = 20.0
# What makes a relay busy for the eviction: 1 KiB moved since it last counted busy. An HTTP
# request with its answer is more; a TLS keep-alive or a websocket ping (tens of bytes) is not,
# nor a byte every few seconds. A filler that keeps 128 relays busy must move 128 KiB every 20 s
# (~52 kbit/s) through the backend, instead of nothing.
ACTIVE_BYTES = 1024
LOG_EVERY = 10.0           # at most one log line of evictions this often (with a count)
SPIN_LIMIT = 1000          # wake-ups in a row that move nothing: our bug; that relay ends


class JournalDir:
    """port-share's DIR, through a descriptor opened once (see the module doc)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def write(self, name: str, text: str) -> None:
        tmp = f".{name}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o640, dir_fd=self.fd)
        except FileExistsError:      # left by a crash (the port was ours then too): not followed, replaced
            os.unlink(tmp, dir_fd=self.fd)
            fd = os.open(tmp, flags, 0o640, dir_fd=self.fd)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def remove(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        os.close(self.fd)


class _End:
    """One side's socket as a pump port (its own identity: the pump keys ports by object)."""
    __slots__ = ("sock",)

    def __init__(self, sock) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


class Relay:
    __slots__ = ("rid", "src", "peer", "c", "b", "c2b", "b2c", "connecting", "c_eof", "b_eof",
                 "c_shut", "b_shut", "last", "journal", "spins", "moved", "on_c", "on_b", "busy", "busy_moved")

    def __init__(self, rid: int, src: str, peer: tuple, client_sock, backend_sock, head: bytes, now: float) -> None:
        self.rid, self.src, self.peer = rid, src, peer
        self.c, self.b = _End(client_sock), _End(backend_sock)
        self.c2b = bytearray(head)
        self.b2c = bytearray()
        self.connecting = True
        self.c_eof = self.b_eof = False        # that side sent its FIN (nothing more to read)
        self.c_shut = self.b_shut = False      # we passed the other side's FIN on to it
        self.last = now                        # the last byte either way (IDLE_TIMEOUT)
        self.busy = now                        # when it last moved ACTIVE_BYTES more (the eviction's order)
        self.busy_moved = 0
        self.journal: str | None = None
        self.spins = 0
        self.moved = 0


class PortShare:
    """The relays of one server. `adopt` takes a connection found foreign; `close` ends all."""

    def __init__(self, pump: Pump, faults: Faults, clock: Callable[[], float],
                 connect: Callable[[tuple], object], target: tuple[str, int], journal: JournalDir | None) -> None:
        self.pump, self.faults, self.clock = pump, faults, clock
        self.connect = connect                 # Ports.tcp_connect: a TcpTransport, maybe still connecting
        self.target = target
        self.journal = journal
        self.relays: dict[int, Relay] = {}
        self.per_source: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._evicted = 0                      # since the last log line of it
        self._evicted_logged: float | None = None

    def _count(self, why: str) -> None:
        self.faults.count(f"port-share: {why}")

    # ---------------------------------------------------------------- a new relay
    def adopt(self, transport, peer: tuple, head: bytes) -> bool:
        """Relay the client connection `transport` (its first bytes `head` already read) to the
        target; False (and the connection closed) when a cap or the connect refuses it."""
        src = source_group(str(peer[0]))
        if self.per_source.get(src, 0) >= PER_SOURCE_RELAYS:
            # First: a source at its cap closes none of the others' relays.
            self._count(f"connection refused ({PER_SOURCE_RELAYS} relayed from one address already)")
            transport.close()
            return False
        if len(self.relays) >= MAX_RELAYS and not self._evict_quietest(peer):
            self._count(f"connection refused ({MAX_RELAYS} relayed already)")
            transport.close()
            return False
        try:
            backend = self.connect(self.target)
        except OSError as e:
            self._count(f"backend unreachable ({errno.errorcode.get(e.errno or 0, e.strerror or e)})")
            transport.close()
            return False
        now = self.clock()
        r = Relay(next(self._ids), src, peer, transport.sock, backend.sock, head, now)
        r.connecting = bool(getattr(backend, "connecting", False))
        self.relays[r.rid] = r
        self.per_source[src] = self.per_source.get(src, 0) + 1
        r.on_c = (lambda: self._wake(r.rid), lambda: self._wake(r.rid))
        r.on_b = (lambda: self._wake(r.rid), lambda: self._wake(r.rid, connect_check=True))
        self._count("connections relayed")
        log.debug("port-share: %s relayed to %s (#%d)", fmt_addr(peer), fmt_addr(self.target), r.rid)
        if r.connecting:
            self.pump.timers.arm(("port-share", r.rid), now + CONNECT_TIMEOUT, lambda: self._timer(r.rid))
            self._interest(r)
        else:
            self._connected(r)
        return True

    def _evict_quietest(self, newcomer: tuple) -> bool:
        """The table is full: close the relay quiet the longest (`busy`), if EVICT_QUIET or more,
        for `newcomer`; False when every relay was busy more recently."""
        now = self.clock()
        r = min(self.relays.values(), key=lambda x: x.busy)
        if now - r.busy < EVICT_QUIET:
            return False
        self._count("quiet relay closed to make room")
        self._end(r)
        self._evicted += 1
        if self._evicted_logged is None or now - self._evicted_logged >= LOG_EVERY:
            log.warning("port-share: all %d relays taken: %d quiet for %g s or more closed to make room "
                        "(last of %s, for %s)", MAX_RELAYS, self._evicted, EVICT_QUIET, fmt_addr(r.peer),
                        fmt_addr(newcomer))
            self._evicted, self._evicted_logged = 0, now
        return True

    def _connected(self, r: Relay) -> None:
        r.connecting = False
        if self.journal is not None:
            try:
                name = journal_name(r.b.sock.getsockname())
                self.journal.write(name, sockaddr_text(r.peer))
                r.journal = name
            except (OSError, ValueError) as e:
                # As OpenVPN: the connection is relayed all the same, the web server just finds no file.
                self._count(f"journal file not written ({getattr(e, 'strerror', None) or e})")
        r.last = self.clock()
        self.pump.timers.arm(("port-share", r.rid), r.last + IDLE_TIMEOUT, lambda: self._timer(r.rid))
        self._move(r)

    # ---------------------------------------------------------------- events
    def _wake(self, rid: int, connect_check: bool = False) -> None:
        r = self.relays.get(rid)
        if r is None:
            return
        if r.connecting:
            if not connect_check:
                # The client's bytes while HOST has not answered: buffered (up to BUFFER).
                self._move(r)
                return
            err = r.b.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._count(f"backend unreachable ({errno.errorcode.get(err, err)})")
                self._end(r)
                return
            self._connected(r)
            return
        self._move(r)

    def _timer(self, rid: int) -> None:
        r = self.relays.get(rid)
        if r is None:
            return
        now = self.clock()
        if r.connecting:
            self._count("backend did not answer in time")
            self._end(r)
        elif now >= r.last + IDLE_TIMEOUT:
            # The deadline as it was armed (r.last + IDLE_TIMEOUT), not `now - r.last`: for some
            # r.last the difference rounds below IDLE_TIMEOUT at that very deadline, and the
            # timer re-armed itself there and fired again without end.
            self._count("idle relay closed")
            self._end(r)
        else:
            self.pump.timers.arm(("port-share", r.rid), r.last + IDLE_TIMEOUT, lambda: self._timer(rid))

    # ---------------------------------------------------------------- moving bytes
    def _move(self, r: Relay) -> None:
        """One step each way, as far as the sockets take it now; then watch for what is wanted."""
        before = r.moved
        try:
            if not r.c_eof and len(r.c2b) < BUFFER:
                r.c_eof = self._read(r, r.c, r.c2b, "client")
            if not r.connecting:
                if r.c2b:
                    self._write(r, r.b, r.c2b)
                if not r.b_eof and len(r.b2c) < BUFFER:
                    r.b_eof = self._read(r, r.b, r.b2c, "backend")
                if r.b2c:
                    self._write(r, r.c, r.b2c)
                if r.c_eof and not r.c2b and not r.b_shut:
                    _shut(r.b.sock)
                    r.b_shut = True
                    r.moved += 1
                if r.b_eof and not r.b2c and not r.c_shut:
                    _shut(r.c.sock)
                    r.c_shut = True
                    r.moved += 1
        except _Gone as e:
            self._count(str(e))
            self._end(r)
            return
        if r.b_shut and r.c_shut:
            self._end(r)                  # both directions delivered and finished
            return
        if r.moved != before:
            r.last = self.clock()
            r.spins = 0
            if r.moved - r.busy_moved >= ACTIVE_BYTES:
                r.busy, r.busy_moved = r.last, r.moved
        else:
            r.spins += 1
            if r.spins >= SPIN_LIMIT:
                self.faults.count("internal error")
                log.error("port-share: relay #%d woken %d times without moving a byte; closed", r.rid, r.spins)
                self._end(r)
                return
        self._interest(r)

    def _read(self, r: Relay, end: _End, buf: bytearray, side: str) -> bool:
        """Read what fits into `buf`; True at the side's EOF."""
        try:
            data = end.sock.recv(BUFFER - len(buf))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            raise _Gone(f"{side} connection {_errname(e)}") from e
        if not data:
            r.moved += 1
            return True
        buf += data
        r.moved += len(data)
        return False

    def _write(self, r: Relay, end: _End, buf: bytearray) -> None:
        try:
            n = end.sock.send(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            side = "client" if end is r.c else "backend"
            raise _Gone(f"{side} connection {_errname(e)}") from e
        del buf[:n]
        r.moved += n

    def _interest(self, r: Relay) -> None:
        p = self.pump
        p.interest(r.c, *r.on_c, read=not r.c_eof and len(r.c2b) < BUFFER, write=bool(r.b2c) and not r.c_shut)
        p.interest(r.b, *r.on_b, read=not r.connecting and not r.b_eof and len(r.b2c) < BUFFER,
                   write=r.connecting or (bool(r.c2b) and not r.b_shut))

    # ---------------------------------------------------------------- ending
    def _end(self, r: Relay) -> None:
        if self.relays.pop(r.rid, None) is None:
            return
        n = self.per_source.get(r.src, 0) - 1
        if n > 0:
            self.per_source[r.src] = n
        else:
            self.per_source.pop(r.src, None)
        self.pump.timers.cancel(("port-share", r.rid))
        for end in (r.c, r.b):
            self.pump.unwatch(end)
            try:
                end.sock.close()
            except OSError:
                pass
        if r.journal is not None and self.journal is not None:
            try:
                self.journal.remove(r.journal)
            except OSError as e:
                self._count(f"journal file not removed ({e.strerror or e})")
        log.debug("port-share: relay #%d of %s ended", r.rid, fmt_addr(r.peer))

    def close(self) -> None:
        for r in list(self.relays.values()):
            self._end(r)
        if self.journal is not None:
            self.journal.close()
            self.journal = None


class _Gone(Exception):
    """A side's connection failed (reset, refused write): that relay ends."""


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise _Gone(f"shutdown failed ({_errname(e)})") from e


def _errname(e: OSError) -> str:
    if e.errno:
        return f"failed ({errno.errorcode.get(e.errno, e.errno)})"
    return "failed"
