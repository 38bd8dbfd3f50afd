"""A netlink dump the kernel marks NLM_F_DUMP_INTR (the table changed while it was read in parts)
is read again, and after DUMP_TRIES such reads it is refused (DumpInterrupted), never decided on:
appliance/tun/rtnl.py's own requests (the pushed address's check, net_gateway, the host's
addresses) and the pyroute2 dumps the router's keepers decide with (tun/rtnl.whole_dump; pyroute2
0.9.7 hands such a dump over as whole). A fake socket answers as the kernel does, marking as told."""
from __future__ import annotations

import socket
import struct

import pytest

from appliance.router.routes import RouteSet
from appliance.tun import rtnl

_ROUTE_A = ("198.18.1.1", 5)       # (gateway, oif) of the default route in a dump's first version
_ROUTE_B = ("198.18.2.1", 6)       # ... and after the change that interrupted it


def _default_route(gw: str, oif: int) -> bytes:
    body = rtnl._RTMSG.pack(socket.AF_INET, 0, 0, 0, rtnl.RT_TABLE_MAIN, rtnl.RTPROT_STATIC, 0, rtnl.RTN_UNICAST, 0)
    return body + rtnl._attr(rtnl.RTA_GATEWAY, socket.inet_aton(gw)) + rtnl._attr(rtnl.RTA_OIF, struct.pack("=I", oif))


def _msg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    n = rtnl._NLMSGHDR.size + len(body)
    return rtnl._NLMSGHDR.pack(n, mtype, flags, seq, 0) + body + b"\0" * (rtnl._align(n) - n)


class FakeKernel:
    """Answers each dump request with one route message and NLMSG_DONE; the first `marked`
    answers carry NLM_F_DUMP_INTR (on the route, or `on_done`: on NLMSG_DONE alone, as the kernel
    marks a dump whose change came after its last entry) and name the old route."""

    def __init__(self, marked: int, on_done: bool = False) -> None:
        self.marked, self.on_done, self.requests, self._out = marked, on_done, 0, b""

    def send(self, data: bytes) -> int:
        _n, _t, flags, seq, _p = rtnl._NLMSGHDR.unpack_from(data)
        assert flags & rtnl.NLM_F_DUMP == rtnl.NLM_F_DUMP
        self.requests += 1
        intr = rtnl.NLM_F_DUMP_INTR if self.requests <= self.marked else 0
        route = _default_route(*(_ROUTE_A if intr else _ROUTE_B))
        self._out = (_msg(rtnl.RTM_NEWROUTE, rtnl.NLM_F_MULTI | (0 if self.on_done else intr), seq, route)
                     + _msg(rtnl.NLMSG_DONE, rtnl.NLM_F_MULTI | intr, seq, struct.pack("=i", 0)))
        return len(data)

    def recv(self, _n: int) -> bytes:
        out, self._out = self._out, b""
        assert out, "a receive with nothing asked"
        return out

    def close(self) -> None:
        pass


@pytest.fixture
def kernel(monkeypatch):
    made: list[FakeKernel] = []

    def use(marked: int, on_done: bool = False) -> FakeKernel:
        k = FakeKernel(marked, on_done)
        made.append(k)

        def fake_init(self) -> None:
            self.sock, self.seq = k, 0
        monkeypatch.setattr(rtnl.Rtnl, "__init__", fake_init)
        return k
    return use


@pytest.mark.parametrize("on_done", [False, True])
def test_an_interrupted_dump_is_read_again_and_the_whole_one_decides(kernel, on_done):
    k = kernel(marked=rtnl.DUMP_TRIES - 1, on_done=on_done)
    # net_gateway: the client's pre-tunnel default route (excluded routes, block-local, the
    # redirect's host route to the server) comes from the whole dump, not the marked ones.
    assert RouteSet.net_gateway() == _ROUTE_B
    assert k.requests == rtnl.DUMP_TRIES


def test_a_dump_interrupted_each_time_is_refused_not_decided_on(kernel):
    k = kernel(marked=10)
    with pytest.raises(rtnl.DumpInterrupted) as e:
        RouteSet.net_gateway()
    assert k.requests == rtnl.DUMP_TRIES
    assert isinstance(e.value, rtnl.NetlinkError)            # the callers' OSError handling applies
    assert "route dump changed while it was read, 4 times in a row (NLM_F_DUMP_INTR)" in str(e.value)


def test_an_uninterrupted_dump_is_read_once(kernel):
    k = kernel(marked=0)
    with rtnl.Rtnl() as nl:
        assert nl.default_routes(socket.AF_INET) == [(rtnl.RT_TABLE_MAIN, _ROUTE_B[1], _ROUTE_B[0], 0)]
    assert k.requests == 1


def _pyroute2_dump(marks: list[int]):
    """A pyroute2-like dump method: each call returns one message, its header flags the next of `marks`."""
    calls = []

    def dump():
        calls.append(1)
        return ({"header": {"flags": rtnl.NLM_F_MULTI | marks[min(len(calls), len(marks)) - 1]},
                 "call": len(calls)},)
    return dump, calls


def test_a_pyroute2_dump_marked_interrupted_is_read_again():
    dump, calls = _pyroute2_dump([rtnl.NLM_F_DUMP_INTR, 0])
    assert [m["call"] for m in rtnl.whole_dump(dump, "address")] == [2]
    dump, calls = _pyroute2_dump([rtnl.NLM_F_DUMP_INTR])
    with pytest.raises(rtnl.DumpInterrupted, match="address dump changed"):
        rtnl.whole_dump(dump, "address")
    assert len(calls) == rtnl.DUMP_TRIES


@pytest.mark.root
def test_the_real_kernel_answers_through_the_same_path():
    from pyroute2 import IPRoute
    with rtnl.Rtnl() as nl:
        assert any(idx == socket.if_nametoindex("lo") for _f, _a, _p, idx in nl.addrs(socket.AF_INET))
    with IPRoute() as ipr:
        assert any(m["index"] == socket.if_nametoindex("lo") for m in rtnl.whole_dump(ipr.get_links, "link"))
