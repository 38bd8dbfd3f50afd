"""appliance/tun/addr_watch.py against the kernel, in a namespace this module creates (prefix `aw`)
and deletes: an `ip addr del` of our address is seen, other changes and forged netlink messages
do not make our address look gone, IPv4 and IPv6 alike. The test process enters the namespace
with setns(2) for each test's body (as tests/unit/test_rtnl.py)."""
from __future__ import annotations

import ctypes
import os
import select
import shutil
import socket
import struct
import subprocess
import uuid

import pytest

from appliance.tun.addr_watch import AddressWatch
from lab.netns import Netns

pytestmark = [pytest.mark.root, pytest.mark.netns]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
A4, B4, A6 = "198.18.41.1", "198.18.43.2", "fd00:41::1"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@pytest.fixture
def inside():
    assert os.geteuid() == 0, "these tests need root (network namespaces)"
    assert shutil.which("ip"), "iproute2 `ip` is required"
    ns = Netns(f"aw{uuid.uuid4().hex[:10]}")
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        for cmd in ("link add wan type veth peer name wanp", "link set wan up", "link set wanp up",
                    f"addr add {A4}/24 dev wan", f"addr add {B4}/24 dev wan", f"-6 addr add {A6}/64 dev wan nodad"):
            subprocess.run(["ip", "-n", ns.name, *cmd.split()], check=True, timeout=10, capture_output=True)
        fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
        try:
            _setns(fd)
            yield ns.name
        finally:
            _setns(home)
            os.close(fd)
    finally:
        os.close(home)
        ns.delete()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


def _wait(w: AddressWatch, seconds: float = 3.0) -> bool:
    """Read until something was seen or `seconds` passed (a bounded loop)."""
    for _ in range(int(seconds / 0.1)):
        if select.select([w], [], [], 0.1)[0] and w.removed():
            return True
    return False


def test_our_address_removed_is_seen_and_no_longer_local(inside):
    w = AddressWatch()
    try:
        assert not w.removed()
        assert w.is_local(A4) and w.is_local(A6) and not w.is_local("198.18.41.99")
        _ip("addr", "del", f"{A4}/24", "dev", "wan")
        assert _wait(w), "RTM_DELADDR not seen"
        assert not w.is_local(A4) and w.is_local(B4)
        _ip("-6", "addr", "del", f"{A6}/64", "dev", "wan")
        assert _wait(w)
        assert not w.is_local(A6)
        assert w.stats["removals"] >= 2
    finally:
        w.close()


def test_an_added_address_is_no_removal(inside):
    w = AddressWatch()
    try:
        _ip("addr", "add", "198.18.41.7/24", "dev", "wan")
        assert not _wait(w, 0.5)
        assert w.is_local("198.18.41.7")
    finally:
        w.close()


def test_a_forged_deladdr_from_a_process_is_ignored(inside):
    """Only the kernel (port 0) speaks for the addresses: a message another socket sends to
    ours is dropped unread, and is_local asks the kernel anyway."""
    w = AddressWatch()
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        s.bind((0, 0))
        body = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, socket.if_nametoindex("wan"))
        msg = struct.pack("=IHHII", 16 + len(body), 21, 0, 1, s.getsockname()[0]) + body
        my_port = w.sock.getsockname()[0]
        try:
            s.sendto(msg, (my_port, 0))
        except PermissionError:
            pytest.skip("this kernel refuses user-to-user netlink unicast: nothing to forge")
        assert not _wait(w, 0.5)
        assert w.is_local(A4)
    finally:
        s.close()
        w.close()


def test_a_burst_is_read_in_bounded_slices(inside):
    w = AddressWatch()
    try:
        for i in range(10, 30):
            _ip("addr", "add", f"198.18.42.{i}/32", "dev", "wan")
        for i in range(10, 30):
            _ip("addr", "del", f"198.18.42.{i}/32", "dev", "wan")
        select.select([w], [], [], 2)
        seen = w.removed(limit=2)
        assert w.has_pending, "40 messages read in one call of limit 2"
        for _ in range(100):
            seen = w.removed(limit=16) or seen
            if not w.has_pending:
                break
        assert seen and not w.has_pending
    finally:
        w.close()


def test_an_added_address_does_not_wake_the_watch(inside):
    """The kernel drops RTM_NEWADDR before it reaches the socket (a socket filter): the client's
    loop is not woken by the TUN's own address at each push, on the way to the first packet's
    answer. A removal still comes through."""
    w = AddressWatch()
    try:
        assert w.filtered
        _ip("addr", "add", "198.18.41.8/24", "dev", "wan")
        _ip("-6", "addr", "add", "fd00:41::8/64", "dev", "wan", "nodad")
        assert not select.select([w], [], [], 0.5)[0], "an added address made the watch readable"
        _ip("addr", "del", "198.18.41.8/24", "dev", "wan")
        assert _wait(w), "RTM_DELADDR not seen behind the filter"
    finally:
        w.close()
