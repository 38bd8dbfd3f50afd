"""What the pump needs from the outside world, as small protocols; the real ports live in
transport/ and tun/, the in-memory ones in lab/fakes.py.

Why protocols and not the classes: the pump takes its ports as arguments, so the same pump code
runs on sockets and /dev/net/tun in production and on in-memory fakes in tests/gateway/, where
faults (a send refused with EPERM, a reset stream, garbage reads) are injected at will.

Error contract, which every port keeps:
- A failure caused by one peer (its address refused by the kernel or a firewall, its stream reset,
  its bytes malformed) never raises out of a datagram port: it is counted in `stats`. A stream port
  raises ConnectionError, which ends that one connection.
- `PortGone` means the process's own resource failed (the TUN device vanished, the listening
  socket was closed). It is the only error the pump treats as fatal.
"""
from __future__ import annotations

from typing import Callable, Protocol

from ..ioerrors import PortGone

__all__ = ["PortGone", "TunPort", "DatagramPort", "StreamPort", "ListenerPort", "AddressWatchPort", "Ports", "Clock"]


class Readable(Protocol):
    def fileno(self) -> int: ...


class TunPort(Protocol):
    """The TUN device: IP packets in and out, in batches."""
    name: str
    stats: dict

    def fileno(self) -> int: ...

    def read_batch(self, max_packets: int) -> list:
        """Writable IP packets (MSS clamping edits them in place), valid until the next read_batch
        (tun/device.py: which have HEADROOM bytes in front in their buffer)."""
        ...

    def queue(self, pkt) -> None:
        """Queue one IP packet for the next flush (the port copies or merges it)."""
        ...

    def queue_many(self, pkts) -> None:
        """queue() of each packet of a batch, in order."""
        ...

    def flush(self) -> int: ...

    def set_tso(self, on: bool) -> None:
        """TCP super-packets from the kernel off (`shaper`: one packet a read, as 2.6), or back on."""
        ...

    def close(self) -> None: ...


class DatagramPort(Protocol):
    """A UDP socket: connected (client) or bound (server). Sends never raise for peer errors;
    they are counted in `errors` by errno name."""
    stats: dict
    errors: dict[str, int]

    def fileno(self) -> int: ...

    def recv_batch(self, max_datagrams: int) -> list[tuple[bytes, tuple]]: ...

    def recv_payloads(self, max_datagrams: int) -> list[bytes]: ...

    def send_batch(self, datagrams: list, addr: tuple | None = None) -> None: ...

    def close(self) -> None: ...


class StreamPort(Protocol):
    """One TCP connection as bytes; ConnectionError on EOF, reset or any refused write."""
    connecting: bool

    def connect_error(self) -> int: ...

    def fileno(self) -> int: ...

    def recv(self) -> bytes: ...

    def send(self, data: bytes, keep: bool = False) -> None: ...

    @property
    def wants_write(self) -> bool: ...

    def flush(self) -> bool: ...

    def close(self) -> None: ...


class ListenerPort(Protocol):
    """A listening TCP socket. accept() raises BlockingIOError when nobody waits, OSError (EMFILE,
    ENFILE, ENOBUFS, ECONNABORTED, ...) on a failed accept, PortGone if the socket itself is gone."""

    def fileno(self) -> int: ...

    def accept(self) -> tuple[StreamPort, tuple]: ...

    def close(self) -> None: ...


class AddressWatchPort(Protocol):
    """The host's addresses going away (tun/addr_watch.py): readable when one may have."""
    has_pending: bool

    def fileno(self) -> int: ...

    def removed(self, limit: int = 16) -> bool:
        """Whether an address may have left since the last call (read at most `limit` times)."""
        ...

    def is_local(self, address: str) -> bool: ...

    def close(self) -> None: ...


class Ports(Protocol):
    """How a gateway gets its ports: created by the caller (the CLI: real sockets; tests: fakes)."""

    def udp(self, local: tuple[str, int] | None, remote: tuple[str, int] | None,
            multihome: bool = False) -> DatagramPort:
        """`multihome` (a server's): the peers' addresses carry the local address each datagram
        was sent to as their last item, and sends to such an address leave from that one."""
        ...

    def tcp_connect(self, remote: tuple[str, int], local: tuple[str, int] | None = None) -> StreamPort:
        """Starts connecting (from `local` when given); `connecting` says whether to wait for
        writability and connect_error()."""
        ...

    def tcp_listen(self, local: tuple[str, int]) -> ListenerPort: ...

    def resolve(self, host: str, port: int, proto: str, family: str | None) -> list[tuple[str, int]]:
        """Every address of `host`, in the order to try them (never empty; OSError if none)."""
        ...

    def address_watch(self) -> AddressWatchPort:
        """OSError when the host offers none (the client then learns of a lost address at
        ping-restart, as before)."""
        ...


Clock = Callable[[], float]
