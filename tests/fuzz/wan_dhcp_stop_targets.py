"""The wan-dhcp-stop fuzz target: the WAN DHCP client's stop paths and its changes to the NIC
(appliance/boot/dhcp_client.py `Lease.stop`, `_apply`, `_remove`, the renewal loop's exits), in
wan-dhcp-loop's world (virtual clock, a real server and a rogue; wan_dhcp_loop_targets.py), but
with the real `_apply` and `_remove` run against a fake netlink (`IPRoute`) whose interface can
vanish and come back.

Why a target: wan-dhcp-loop records what the client does to the NIC instead of running it, and
never stops the client; the stop at shutdown (the undo stack's `lease.stop`, while the renewal
thread is in the middle of a transaction), and a NIC that disappears (a USB adapter pulled, a
VM's NIC hot-unplugged) under a bind or a removal, were reached by no input (fuzz36's report).

Input: byte 0 as wan-dhcp-loop's (the lease, T1/T2, sends failing); byte 1: the message number
(% 64) at whose sending `Lease.stop` is called (as the shutdown's undo would, from the main
thread: the renewal thread is then between its REQUEST and the reply), 63: never; byte 2: the
message number (% 64) from which the interface is gone (63: never; bit 6: it comes back 3
messages later, with no address and no route, as a re-created device); then wan-dhcp-loop's script, one byte per message.

Oracles (besides wan-dhcp-loop's own, which still run):
- after stop() returns the NIC holds no address (when it still exists) and nothing is applied
  again, no default route set; the renewal loop ends by itself, with at most 4 more messages sent
  and no more than one transaction's wait (reply_wait x tries) of virtual time;
- whatever the interface does, nothing escapes the renewal loop, the loop never spins (the
  world's SAME_INSTANT and MAX_SENDS bounds), its failures are logged at most once per
  retry_min;
- an address is removed only by stop() or once its lease ran out.
"""
from __future__ import annotations

import ipaddress
import logging

from .wan_dhcp_loop_targets import MAC, FakeSocket, World, _Broken, _check, _policy, _Stop

NEVER = 63


class _Addr(dict):
    def get_attr(self, name: str):
        return self["address"] if name == "IFA_ADDRESS" else None


class FakeIPRoute:
    """The netlink calls _apply and _remove make, on the world's one interface (index 7)."""

    def __init__(self, w) -> None:
        self.w = w

    def __enter__(self):
        return self

    def __exit__(self, *_a) -> None:
        pass

    def link_lookup(self, ifname: str) -> list[int]:
        return [7] if self.w.iface and ifname == "wan0" else []

    def _index(self, index: int) -> None:
        if not self.w.iface or index != 7:
            raise OSError(19, "No such device")

    def get_addr(self, index: int, family: int) -> list:
        self._index(index)
        return [_Addr(address=a, prefixlen=p) for a, p in self.w.addrs]

    def flush_addr(self, index: int, family: int) -> None:
        """_apply's replacement of what the NIC holds by an ACKed address (checked at the add)."""
        self._index(index)
        _check(not self.w.stopped, "the NIC flushed by a bind after stop()")
        self.w.addrs.clear()
        self.w.route = None

    def addr(self, cmd: str, index: int, address: str, prefixlen: int) -> None:
        self._index(index)
        if cmd == "add":
            _check(not self.w.stopped, f"{address} added to the NIC after stop()")
            _check(any(a == address for _x, a in self.w.acked), f"{address} applied, never ACKed to us")
            self.w.addrs.append((address, prefixlen))
            self.w.nic = (address, prefixlen)
        elif cmd == "del":
            if (address, prefixlen) not in self.w.addrs:
                raise OSError(99, "Cannot assign requested address")
            self.w.on_remove(address, prefixlen)
            self.w.addrs.remove((address, prefixlen))
            if self.w.nic == (address, prefixlen):
                self.w.nic = None
                self.w.route = None

    def link(self, cmd: str, index: int, state: str) -> None:
        self._index(index)

    def route(self, cmd: str, dst: str, gateway: str, oif: int) -> None:
        self._index(oif)
        _check(not self.w.stopped, "a default route set after stop()")
        self.w.route = gateway
        self.w.router = gateway


class _StopEvent:
    """The client's stop event over the virtual clock: a wait advances it, unless set."""

    def __init__(self, w) -> None:
        self.w, self.flag = w, False

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        self.flag = True

    def wait(self, seconds: float) -> bool:
        if self.flag:
            return True
        self.w.advance(max(0.0, seconds))
        return self.flag


class _Failures(logging.Handler):
    def __init__(self, w) -> None:
        super().__init__(logging.WARNING)
        self.w = w
        self.at: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "DHCP renewal failed" in record.getMessage():
            self.at.append(self.w.now)


def make_wan_dhcp_stop():
    from appliance.boot import dhcp_client as dc
    log = logging.getLogger("vpn-appliance")
    real = (dc.time, dc.random, dc.IPRoute)
    pol = _policy()

    def one(data: bytes) -> None:
        if len(data) < 3:
            return
        stop_at, gone = data[1] % 64, data[2]
        w = World(bytes(data[:1]) + data[3:])
        w.iface, w.addrs, w.route, w.stopped = True, [], None, False
        gone_at, back_after = gone % 64, bool(gone & 0x40)
        ev = _StopEvent(w)
        stop_state = {"sends": None, "t": None}

        def on_remove(address: str, prefixlen: int) -> None:
            lease = w.lease
            _check(w.stopped or (lease is not None and w.now >= lease.expires)
                   or (lease is not None and (address, prefixlen) != (lease.address, lease.prefixlen)),
                   f"{address} removed at {w.now} before its lease ran out ({lease and lease.expires})")
        w.on_remove = on_remove

        class Sock(FakeSocket):
            def sendto(self, data_: bytes, dest: tuple[str, int]) -> int:
                n = len(w.sends)
                if gone_at != NEVER and n == gone_at:
                    w.iface = False
                if gone_at != NEVER and back_after and n == gone_at + 3:
                    # A device that vanished and came back is a new one to the kernel: no
                    # address and no route through it (its routes went with the old one).
                    w.iface = True
                    w.addrs.clear()
                    w.nic = None
                    w.route = None
                if stop_state["sends"] is not None:
                    _check(n - stop_state["sends"] <= 4, f"{n - stop_state['sends']} messages sent after stop()")
                if stop_at != NEVER and n >= stop_at and w.lease is not None and not w.stopped:
                    w.stopped = True
                    w.lease.stop()
                    stop_state["sends"], stop_state["t"] = n, w.now
                    if w.iface:
                        _check(not w.addrs, f"the NIC holds {w.addrs} after stop()")
                return super().sendto(data_, dest)

        class Client(dc._Client):
            def _socket(self):
                w.sockets += 1
                if w.nic_down & 2 and w.sockets % 5 == 4:
                    raise OSError(19, "No such device")
                return Sock(w)

        def check_nic() -> None:
            lease = w.lease
            if w.stopped or not w.iface or lease is None:
                return
            if lease.on_nic and w.now < lease.expires and w.addrs:
                _check(w.nic == (lease.address, lease.prefixlen), f"NIC {w.nic} while the lease is {lease}")
        w.check_nic = check_nic
        # The world's early end once the client holds the server's lease must not cut short the
        # loop's own end after stop() (which is what is checked then).
        w.settled = (lambda settled: lambda: not w.stopped and settled())(w.settled)

        failures = _Failures(w)
        dc.time, dc.random, dc.IPRoute = w, __import__("random").Random(7), lambda: FakeIPRoute(w)
        log.addHandler(failures)
        old_level = log.level
        log.setLevel(logging.WARNING)
        ended = False
        try:
            c = Client("wan0", MAC, [ipaddress.IPv4Network("198.18.50.0/24")], pol, ev, clock=w.monotonic,
                       rand=w.rng.random)
            try:
                got = c.acquire()
                assert got is not None
                offer, sent = got
                lease = dc.Lease("wan0", offer.address, offer.prefixlen, offer.router, list(offer.dns), offer.server,
                                 offer.lease_time, _stop=ev)
                w.lease = lease
                try:
                    c.bind(lease, offer, sent, "boot")
                except OSError:
                    pass                       # the interface gone at boot: the caller's error (nics.py)
                c.keep_renewed(lease)
                ended = True
            except _Stop:
                pass
            except _Broken as e:
                raise AssertionError(str(e)) from None
        finally:
            dc.time, dc.random, dc.IPRoute = real
            log.removeHandler(failures)
            log.setLevel(old_level)
        if w.stopped:
            assert ended, "the renewal loop went on after stop()"
            assert w.now - stop_state["t"] <= pol.reply_wait * pol.tries + 1, \
                f"the renewal loop ended {w.now - stop_state['t']:.1f} virtual s after stop()"
            if w.iface:
                assert not w.addrs and w.route is None, f"after stop(): NIC {w.addrs} via {w.route}"
        for a, b in zip(failures.at, failures.at[1:]):
            assert b - a >= pol.retry_min - 1e-6, f"renewal failures logged {b - a:.1f} s apart"
    return one


def seeds() -> list[bytes]:
    def r(real: int = 0, rogue: int = 0, delay: int = 1) -> int:
        return real | rogue << 2 | delay << 5
    return [
        bytes([4, 2, NEVER]) + bytes([r()] * 6),                          # stop while RENEWING
        bytes([4, 1, NEVER]),                                             # stop at the first renewal
        bytes([2, 5, NEVER]) + bytes([r(), r(), r(1)] + [r(1)] * 10),     # stop after the lease ran out
        bytes([4, NEVER, 2]) + bytes([r()] * 8),                          # the NIC gone for good
        bytes([4, NEVER, 2 | 64]) + bytes([r()] * 8),                     # gone, back without an address
        bytes([6, 6, 3]) + bytes([r(), r(), r(1, 2), r(1, 2)]),           # gone, then stop
        bytes([4, 3, NEVER]) + bytes([r(2), r(0, 5), r()] * 3),           # stop in a NAK round
        bytes([3, NEVER, 4 | 64]) + bytes([r(), r(), r(3), r(3), r(), r()]),
    ]
