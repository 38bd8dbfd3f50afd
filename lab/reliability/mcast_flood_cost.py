"""What k clients flooding multicast together (dev tun, client-to-client) cost a server of n
clients: in memory, on a fake clock, the copies sealed for real (one established session's
encrypt_many stands in for each client's, so each copy pays a real AEAD seal and the Python
path around it; the datagram each copy would be, ~1-2 us more, is not sent). Why: the
per-sender budgets (datapath.BCAST_COPY_RATE) let k flooders cost k x ~5% of the loop; the
server-wide one (BCAST_SERVER_RATE) bounds it whatever k is (README: helper mcast40).

    python -m lab.reliability.mcast_flood_cost [--clients 1000] [--flooders 20] [--seconds 5]

Prints copies a second and the CPU seconds spent per second of flooding (1.0 = the whole loop).
Run it with PYTHONPATH pointing at another checkout to measure that code (the "before")."""
from __future__ import annotations

import argparse
import struct
import time
from types import SimpleNamespace

from appliance.openvpn.datapath import ServerDataPath

from .packet_costs import setup


def _mc(k: int) -> bytes:
    udp = struct.pack("!HHHH", 5353, 5353, 16, 0) + struct.pack("!Q", k)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 1, 17, 0, bytes([198, 19, 0, 2]),
                       bytes([224, 0, 0, 251])) + udp


class Disp:
    """n established stand-in clients sharing one real server-side session for their seals."""

    def __init__(self, n: int, session) -> None:
        self.st = SimpleNamespace(max_routes_per_client=4)
        self.on_forget = self.on_reconcile = None
        self.sealed = 0
        self.by_addr = {f"c{i}": SimpleNamespace(addr=f"c{i}", session=session, alive=True, common_name=f"c{i}",
                                                 vid=0) for i in range(n)}

    def receive(self, packet, addr, now):
        return self.by_addr[addr], [packet]

    def route_packet(self, p):
        return None

    def note_sent(self, rec, now):
        self.sealed += 1


def measure(clients: int, flooders: int, seconds: int, per_tick: int = 3) -> dict[str, float]:
    d0, _key, [(c0, _a0), _] = setup()
    rec = d0.route(c0.pushed.ifconfig[0])
    d = Disp(clients, rec.session)
    dp = ServerDataPath(d, lambda cipher, v2: 1300, True)
    copies = 0
    k = 0
    cpu = 0.0
    for tick in range(seconds * 100):              # 10 ms ticks; each flooder per_tick packets a tick
        now = 10.0 + tick / 100
        sends: dict = {}
        t0 = time.process_time()
        for f in range(flooders):
            for _ in range(per_tick):
                k += 1
                dp.from_link(_mc(k), f"c{f}", now, lambda q: None, sends)
        cpu += time.process_time() - t0
        copies += sum(len(v) for v in sends.values())
    return {"copies a second": round(copies / seconds), "loop share (CPU s per s)": round(cpu / seconds, 3),
            "us per copy": round(cpu / max(copies, 1) * 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--flooders", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args(argv)
    for k, v in measure(a.clients, a.flooders, a.seconds).items():
        print(f"{v:>12}  {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
