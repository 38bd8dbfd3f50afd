"""One link to a peer, UDP or TCP, as whole OpenVPN packets in and out.

Why: the gateway should not care whether packets arrive as datagrams or inside a TCP stream;
TCP's 2-byte length framing is applied and removed here (StreamFramer), and a broken stream
surfaces as ConnectionError so the gateway can restart.
"""
from __future__ import annotations

from ..openvpn.framing import StreamFramer, frame
from .tcp import TcpTransport
from .udp import UdpTransport


class UdpLink:
    def __init__(self, transport: UdpTransport, addr: tuple | None = None) -> None:
        self.t = transport
        self.addr = addr

    def fileno(self) -> int:
        return self.t.fileno()

    def recv_packets(self) -> list:
        return [d for d, _a in self.t.recv_batch(64)]

    def send_packets(self, packets: list) -> None:
        if packets:
            self.t.send_batch(packets, self.addr)

    @property
    def wants_write(self) -> bool:
        return False

    def flush(self) -> bool:
        return True

    def close(self) -> None:
        self.t.close()


class TcpLink:
    def __init__(self, transport: TcpTransport) -> None:
        self.t = transport
        self.framer = StreamFramer()

    def fileno(self) -> int:
        return self.t.fileno()

    def recv_packets(self) -> list:
        data = self.t.recv()   # raises ConnectionError on EOF
        return self.framer.feed(data) if data else []

    def send_packets(self, packets: list) -> None:
        if packets:
            self.t.send(b"".join(frame(bytes(p)) for p in packets))

    @property
    def wants_write(self) -> bool:
        return self.t.wants_write

    def flush(self) -> bool:
        return self.t.flush()

    def close(self) -> None:
        self.t.close()
