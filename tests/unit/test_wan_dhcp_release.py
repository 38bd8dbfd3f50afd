"""wan38: the WAN DHCP client's DHCPRELEASE at an orderly stop (RFC 2131 4.4.6, table 5) and
the lease's address given back to a NIC that lost it (appliance/boot/dhcp_client.py). Against
dnsmasq: tests/interop/test_wan_dhcp_release.py."""
from __future__ import annotations

import socket
import struct
import time

from appliance.boot import dhcp_client as dc

MAC = bytes.fromhex("525400123456")


def _options(msg: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 240
    while msg[i] != 255:
        out.append((msg[i], msg[i + 2:i + 2 + msg[i + 1]]))
        i += 2 + msg[i + 1]
    assert i == len(msg) - 1
    return out


def test_a_release_carries_ciaddr_and_the_server_id_and_nothing_a_release_must_not():
    m = dc.build_release(0x01020304, MAC, "198.18.62.10", "198.18.62.1")
    op, htype, hlen, hops, xid, secs, flags = struct.unpack_from("!BBBBIHH", m)
    assert (op, htype, hlen, hops, xid, secs, flags) == (1, 1, 6, 0, 0x01020304, 0, 0)
    assert m[12:16] == socket.inet_aton("198.18.62.10")                    # ciaddr: the released address
    assert m[16:28] == bytes(12)                                            # yiaddr, siaddr, giaddr 0
    assert m[28:44] == MAC + bytes(10) and m[44:236] == bytes(192)          # chaddr; no sname, file
    assert m[236:240] == dc.MAGIC
    opts = _options(m)
    assert opts == [(53, bytes([7])), (54, socket.inet_aton("198.18.62.1")), (61, b"\x01" + MAC)]
    # The client id is the one our DISCOVER/REQUEST carry: the server finds the lease by it.
    assert (61, b"\x01" + MAC) in _options(dc.build_message(dc.REQUEST, 1, MAC, "198.18.62.10"))


class _Calls:
    def __init__(self) -> None:
        self.released: list[tuple] = []
        self.removed: list[tuple] = []


def _lease(calls: _Calls, monkeypatch, **kw) -> dc.Lease:
    monkeypatch.setattr(dc, "release", lambda *a: calls.released.append(a) or True)
    monkeypatch.setattr(dc, "_remove", lambda *a: calls.removed.append(a))
    args = dict(mac=MAC, expires=time.monotonic() + 600)
    args.update(kw)
    return dc.Lease("wan0", "198.18.62.10", 24, "198.18.62.1", [], "198.18.62.1", 600, **args)


def test_stop_releases_a_lease_that_holds_then_removes_the_address(monkeypatch):
    calls = _Calls()
    lease = _lease(calls, monkeypatch)
    lease.stop()
    assert calls.released == [("wan0", MAC, "198.18.62.10", "198.18.62.1")]
    assert calls.removed == [("wan0", "198.18.62.10", 24)] and lease._stop.is_set()


def test_stop_releases_nothing_without_a_server_id_a_lease_or_an_address_on_the_nic(monkeypatch):
    for kw in (dict(server=None), dict(expires=time.monotonic() - 1), dict(on_nic=False), dict(mac=b"")):
        calls = _Calls()
        lease = _lease(calls, monkeypatch)
        for k, v in kw.items():
            setattr(lease, k, v)
        lease.stop()
        assert calls.released == [], kw


def test_release_on_a_nic_that_is_gone_sends_nothing_and_returns_at_once(monkeypatch):
    class NoNic:
        def __enter__(self):
            return self

        def __exit__(self, *_a) -> None:
            pass

        def link_lookup(self, ifname: str) -> list[int]:
            return []
    monkeypatch.setattr(dc, "IPRoute", NoNic)
    assert dc.release("wan0", MAC, "198.18.62.10", "198.18.62.1") is False


# ---------------------------------------------------------------- the address given back

_HEADER = {"flags": 0x2}       # NLM_F_MULTI, not NLM_F_DUMP_INTR: a whole dump (rtnl.whole_dump)


class _Addr(dict):
    def get_attr(self, name: str):
        return self["address"] if name == "IFA_ADDRESS" else None


class FakeNic:
    """The netlink calls reapply makes, on one interface (index 3)."""

    def __init__(self, up: bool = True, addrs=(), default: bool = False) -> None:
        self.up, self.addrs, self.default = up, list(addrs), default
        self.added: list[tuple] = []

    def __call__(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *_a) -> None:
        pass

    def link_lookup(self, ifname: str) -> list[int]:
        return [3]

    def get_links(self, index: int) -> list[dict]:
        return [{"flags": dc.IFF_UP if self.up else 0}]

    def get_addr(self, index: int, family: int) -> list:
        return [_Addr(address=a, prefixlen=p, header=_HEADER) for a, p in self.addrs]

    def get_routes(self, family: int, table: int) -> list[dict]:
        return [{"dst_len": 0 if self.default else 24, "header": _HEADER}]

    def addr(self, cmd: str, index: int, address: str, prefixlen: int) -> None:
        self.added.append(("addr", address, prefixlen))
        self.addrs.append((address, prefixlen))

    def route(self, cmd: str, dst: str, gateway: str, oif: int) -> None:
        self.added.append(("route", dst, gateway))
        self.default = True


def _client() -> dc._Client:
    import threading
    return dc._Client("wan0", MAC, [], dc.Policy(), threading.Event())


def _held() -> dc.Lease:
    return dc.Lease("wan0", "198.18.62.10", 24, "198.18.62.1", [], "198.18.62.1", 600,
                    expires=time.monotonic() + 600)


def test_reapply_gives_a_flushed_nic_its_address_and_default_route(monkeypatch):
    nic = FakeNic()
    monkeypatch.setattr(dc, "IPRoute", nic)
    assert _client().reapply(_held()) is True
    assert nic.added == [("addr", "198.18.62.10", 24), ("route", "0.0.0.0/0", "198.18.62.1")]


def test_reapply_after_a_link_down_up_adds_the_lost_default_route_only(monkeypatch):
    nic = FakeNic(addrs=[("198.18.62.10", 24)])
    monkeypatch.setattr(dc, "IPRoute", nic)
    assert _client().reapply(_held()) is False and nic.added == []       # no link event: an operator's route
    assert _client().reapply(_held(), link_back=True) is True
    assert nic.added == [("route", "0.0.0.0/0", "198.18.62.1")]
    nic.added.clear()
    assert _client().reapply(_held(), link_back=True) is False and nic.added == []   # a default route exists


def test_reapply_leaves_a_down_nic_a_stopped_client_and_a_lease_that_ran_out_alone(monkeypatch):
    for nic, lease, stopped in ((FakeNic(up=False), _held(), False), (FakeNic(), _held(), True),
                                (FakeNic(), dc.Lease("wan0", "198.18.62.10", 24, None, [], None, 600,
                                                     expires=time.monotonic() - 1), False)):
        monkeypatch.setattr(dc, "IPRoute", nic)
        c = _client()
        if stopped:
            c.stop.set()
        assert c.reapply(lease) is False and nic.added == []
    lease = _held()
    lease.on_nic = False
    nic = FakeNic()
    monkeypatch.setattr(dc, "IPRoute", nic)
    assert _client().reapply(lease) is False and nic.added == []


def test_drain_reads_a_burst_and_sees_our_link_go_down():
    """_drain on a socketpair standing in for the netlink socket: RTM_NEWLINK messages for our
    index with and without IFF_UP, for another index, and a truncated one."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    try:
        idx = socket.if_nametoindex("lo")

        def newlink(index: int, flags: int) -> bytes:
            body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
            return struct.pack("=IHHII", 16 + len(body), dc.RTM_NEWLINK, 0, 0, 0) + body
        b.send(newlink(idx, dc.IFF_UP))
        b.send(newlink(idx + 1000, 0))
        b.send(b"\x01\x02")
        assert dc._drain(a, "lo") == (True, False)
        assert dc._drain(a, "lo") == (False, False)
        b.send(newlink(idx, dc.IFF_UP) + newlink(idx, 0))
        assert dc._drain(a, "lo") == (True, True)
        b.send(struct.pack("=IHHII", 0, dc.RTM_NEWLINK, 0, 0, 0) + bytes(16))    # nlmsg_len 0: no loop
        assert dc._drain(a, "lo") == (True, False)

        def addr(kind: int, family: int, index: int) -> bytes:
            body = struct.pack("=BBBBI", family, 64, 0, 0, index) + bytes(20)
            return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body
        # net41: an address removed from our NIC is a hint, IPv6 as IPv4; an address added (an
        # RA's lifetime refresh) or removed elsewhere is not
        for family in (socket.AF_INET, socket.AF_INET6):
            b.send(addr(dc.RTM_DELADDR, family, idx))
            assert dc._drain(a, "lo") == (True, False)
        b.send(addr(dc.RTM_NEWADDR, socket.AF_INET6, idx) + addr(dc.RTM_DELADDR, socket.AF_INET6, idx + 1000))
        b.send(addr(dc.RTM_NEWADDR, socket.AF_INET, idx))
        assert dc._drain(a, "lo") == (False, False)
        b.send(addr(dc.RTM_NEWADDR, socket.AF_INET6, idx)[:20])                  # too short to tell: a hint
        assert dc._drain(a, "lo") == (True, False)
    finally:
        a.close()
        b.close()


def test_the_relink_thread_ends_once_stopped_and_survives_a_failing_check(monkeypatch):
    """watch_link on an interface that does not exist: every check fails (logged, at most once
    per RELINK_TICK), the loop waits between tries (no spin), and stop() ends it."""
    import threading
    c = dc._Client("nowan38x0", MAC, [], dc.Policy(), threading.Event())
    calls = []

    def failing(_ifname: str) -> bool:
        calls.append(time.monotonic())
        raise OSError(19, "No such device")
    monkeypatch.setattr(dc, "_link_up", failing)
    monkeypatch.setattr(dc, "RELINK_TICK", 0.0)
    t = threading.Thread(target=c.watch_link, args=(_held(),), daemon=True)
    t.start()
    end = time.monotonic() + 30
    while len(calls) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    c.stop.set()
    t.join(10)
    assert not t.is_alive() and len(calls) >= 3
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert min(gaps) >= 0.45, gaps                     # each failure waits 0.5 s: never a spin


def test_a_stop_that_sends_no_release_says_why_in_one_line(monkeypatch, caplog):
    """The README promises one log line when no RELEASE goes out (the NIC gone, the lease run out
    or without a server id); the operator reading a shutdown's log must not have to guess."""
    caplog.set_level("INFO")
    real_release = dc.release
    for kw, why in ((dict(server=None), "no server id"), (dict(expires=time.monotonic() - 1), "ran out")):
        caplog.clear()
        calls = _Calls()
        lease = _lease(calls, monkeypatch)
        for k, v in kw.items():
            setattr(lease, k, v)
        lease.stop()
        lines = [r.getMessage() for r in caplog.records if "DHCPRELEASE" in r.getMessage()]
        assert len(lines) == 1 and why in lines[0], (kw, lines)

    class NoNic:
        def __enter__(self):
            return self

        def __exit__(self, *_a) -> None:
            pass

        def link_lookup(self, ifname: str) -> list[int]:
            return []
    monkeypatch.setattr(dc, "IPRoute", NoNic)
    caplog.clear()
    assert real_release("wan0", MAC, "198.18.62.10", "198.18.62.1") is False
    lines = [r.getMessage() for r in caplog.records if "DHCPRELEASE" in r.getMessage()]
    assert len(lines) == 1 and "gone" in lines[0], lines


def test_a_flapping_wan_gets_its_lease_back_each_time_but_not_a_warning_each_time(monkeypatch, caplog):
    """A link flapping many times a second: the address is put back at every check, and said
    at most NoteLimit.BURST times at once (logpace.py), then with a count."""
    from appliance.logpace import NoteLimit
    caplog.set_level("INFO", "vpn-appliance")
    now = [0.0]
    c = dc._Client("wan0", MAC, [], dc.Policy(), __import__("threading").Event(), clock=lambda: now[0])
    lease = dc.Lease("wan0", "198.18.62.10", 24, "198.18.62.1", [], "198.18.62.1", 600, expires=600.0)
    for _ in range(50):                                   # 10 checks a second for 5 s, each after a flush
        nic = FakeNic()
        monkeypatch.setattr(dc, "IPRoute", nic)
        assert c.reapply(lease, link_back=True) is True
        now[0] += 0.1
    said = [r for r in caplog.records if "added again" in r.getMessage()]
    assert len(said) == NoteLimit.BURST
    now[0] += 60
    monkeypatch.setattr(dc, "IPRoute", FakeNic())
    assert c.reapply(lease, link_back=True)
    assert "47 more times since the last such line" in caplog.records[-1].getMessage()
