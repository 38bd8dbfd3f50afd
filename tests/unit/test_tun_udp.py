"""The TUN device and the batched UDP transport against the real kernel, inside network namespaces
this test creates (prefix `ut`) and always deletes (through lab.netns.Netns, whose on-disk record
lets the next run remove them should this one be killed). The test process enters a namespace with
setns(2) for the body of a test and returns to its own one in a fixture finalizer."""
from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import socket
import subprocess
import time
import uuid

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.packet import Raw

from appliance.router.links import configure_tun
from appliance.transport.udp import UdpTransport
from appliance.tun import device as device_module, offload
from appliance.tun.device import TunDevice
from lab.netns import Netns, wait_oper_up

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
TUN_ADDR, TUN_PEER = "198.18.200.1", "198.18.200.2"


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr.strip()}"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextlib.contextmanager
def _inside(name: str):
    """Run the block with this thread in namespace `name`; sockets made there stay there."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    ns = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(ns)
        yield
    finally:
        _setns(home)
        os.close(ns)
        os.close(home)

pytestmark = [pytest.mark.root, pytest.mark.netns]


@pytest.fixture
def netns():
    """Factory of fresh namespaces (lo up); all deleted afterwards even if the test fails."""
    assert os.geteuid() == 0, "these tests need root (network namespaces, TUN)"
    assert shutil.which("ip"), "iproute2 `ip` is required"
    made: list[Netns] = []

    def make() -> str:
        made.append(Netns(f"ut{uuid.uuid4().hex[:10]}"))    # lo up
        return made[-1].name

    try:
        yield make
    finally:
        for ns in made:
            ns.delete()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(ns.name in left for ns in made), f"namespaces left behind: {left}"


def _wait_readable(fd, timeout: float) -> bool:
    r, _, _ = select.select([fd], [], [], max(0.0, timeout))
    return bool(r)


def _valid(pkt: bytes) -> bool:
    """IPv4 header and L4 checksums as scapy recomputes them."""
    p = IP(bytes(pkt))
    q = p.copy()
    del q.chksum
    if TCP in q:
        del q[TCP].chksum
    if ICMP in q:
        del q[ICMP].chksum
    return bytes(IP(bytes(q))) == bytes(pkt)


def _read_until(tun: TunDevice, want, timeout: float = 3.0):
    """Packets from the TUN until `want(pkt)` is true for one (returned), bounded by time."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _wait_readable(tun, end - time.monotonic()):
            break
        for p in tun.read_packets():
            if p[0] >> 4 == 4 and want(IP(bytes(p))):
                return p
    raise AssertionError("expected packet did not arrive from the TUN")


# ------------------------------------------------------------------ TUN
def test_tun_ping_roundtrip(netns):
    ns = netns()
    with _inside(ns):
        tun = TunDevice("uttun0", vnet_hdr=False, mtu=1500)
        ping = None
        try:
            assert tun.name == "uttun0" and tun.hlen == 0
            configure_tun(tun.name, TUN_ADDR, 24, 1500)
            ping = subprocess.Popen(["ping", "-n", "-c", "1", "-W", "5", "-s", "300", TUN_PEER],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            req = _read_until(tun, lambda p: ICMP in p and p[ICMP].type == 8)
            assert _valid(req)
            r = IP(bytes(req))
            assert (r.src, r.dst) == (TUN_ADDR, TUN_PEER) and len(r[ICMP].payload) == 300
            reply = IP(src=TUN_PEER, dst=TUN_ADDR, ttl=64) / ICMP(type=0, id=r[ICMP].id, seq=r[ICMP].seq) / \
                Raw(bytes(r[ICMP].payload))
            assert tun.write_packets([bytes(reply)]) == 1
            out, _ = ping.communicate(timeout=10)
            assert ping.returncode == 0, out
            assert "1 received" in out
            assert tun.stats["written"] == 1 and tun.stats["read"] >= 1
        finally:
            if ping is not None and ping.poll() is None:
                ping.kill()
                ping.wait(5)
            tun.close()


def test_tun_write_of_garbage_is_dropped_not_raised(netns):
    ns = netns()
    with _inside(ns):
        tun = TunDevice("uttun1", vnet_hdr=True, mtu=1500)
        try:
            configure_tun(tun.name, TUN_ADDR, 24, 1500)
            # A header claiming IPv4 but truncated: the kernel refuses or drops it, we must not crash.
            n = tun.write_packets([b"\x45\x00\x00", bytes(IP(src=TUN_PEER, dst=TUN_ADDR) / ICMP())])
            assert n + tun.stats["write_dropped"] == 2
        finally:
            tun.close()


@pytest.mark.parametrize("tso, read, off", [(True, "read_packets", False), (True, "read_batch", False),
                                           (None, "read_batch", False), (True, "read_batch", True)])
def test_tun_vnet_hdr_tso_super_packets_split(netns, tso, read, off):
    """Play the TCP peer behind the TUN: the kernel then sends data as TSO super-packets, which
    the reads must cut into valid segments of at most the MTU, in sequence, with all the data.
    By default (tso None) TSO is asked for exactly when the compiled split is in use. `off`:
    turned off after opening (set_tso, as `shaper` does): the kernel sends MTU-sized packets,
    one a read, and the data still all arrives."""
    ns = netns()
    mtu = 1500
    expect_tso = (tso or offload.SPLIT_COMPILED) and not off
    with _inside(ns):
        tun = TunDevice("uttun2", vnet_hdr=True, mtu=mtu, tso=tso)
        if off:
            tun.set_tso(False)
            assert not tun.tso
        read_some = getattr(tun, read)
        sock = None
        try:
            assert tun.hlen == 10, tun.offload_note
            assert not tun.offload_note, tun.offload_note
            configure_tun(tun.name, TUN_ADDR, 24, mtu)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((TUN_PEER, 5201))
            syn = IP(bytes(_read_until(tun, lambda p: TCP in p and p[TCP].flags == "S")))
            assert _valid(bytes(syn))
            sport, isn = syn[TCP].sport, syn[TCP].seq
            my_isn = 0x10000000
            synack = IP(src=TUN_PEER, dst=TUN_ADDR) / TCP(sport=5201, dport=sport, seq=my_isn, ack=isn + 1,
                                                         flags="SA", window=65535,
                                                         options=[("MSS", 1460), ("NOP", None), ("WScale", 8)])
            assert tun.write_packets([bytes(synack)]) == 1
            end = time.monotonic() + 3
            while time.monotonic() < end:
                try:
                    sock.getpeername()
                    break
                except OSError:
                    _wait_readable(tun, 0.05)
                    read_some()  # the final ACK of the handshake
            else:
                raise AssertionError("TCP handshake through the TUN did not complete")

            data = os.urandom(300_000)
            sent = 0
            received = bytearray()
            next_seq = isn + 1
            end = time.monotonic() + 8
            segments = 0
            while len(received) < len(data) and time.monotonic() < end:
                if sent < len(data):
                    with contextlib.suppress(BlockingIOError):
                        sent += sock.send(data[sent:sent + 65536])
                if not _wait_readable(tun, 0.2):
                    continue
                acks = []
                for p in read_some():
                    assert len(p) <= mtu, f"segment of {len(p)} bytes exceeds the MTU"
                    if p[0] >> 4 != 4:
                        continue  # e.g. an IPv6 router solicitation from the kernel
                    assert _valid(bytes(p)), "segment with a bad checksum"
                    ip = IP(bytes(p))
                    if TCP not in ip or ip[TCP].sport != sport:
                        continue
                    payload = bytes(ip[TCP].payload)
                    if not payload:
                        continue
                    segments += 1
                    seq = ip[TCP].seq
                    behind = (next_seq - seq) & 0xFFFFFFFF
                    if 0 < behind < 1 << 31:
                        # The kernel retransmitted (its RTO fired before our ACK, on a loaded
                        # machine): a segment we already have, or its new tail only.
                        if behind >= len(payload):
                            continue
                        payload, seq = payload[behind:], next_seq
                    assert seq == next_seq, f"out of order: got seq {seq}, expected {next_seq}"
                    received += payload
                    next_seq = (seq + len(payload)) & 0xFFFFFFFF
                    acks.append(next_seq)
                if acks:
                    ack = IP(src=TUN_PEER, dst=TUN_ADDR) / TCP(sport=5201, dport=sport, seq=my_isn + 1,
                                                              ack=acks[-1], flags="A", window=65535)
                    tun.write_packets([bytes(ack)])
            assert bytes(received) == data, f"got {len(received)} of {len(data)} bytes"
            if expect_tso:
                assert tun.stats["super_packets"] >= 1, "the kernel never sent a TSO super-packet"
                assert tun.stats["segments"] > tun.stats["super_packets"]
            else:
                assert tun.stats["super_packets"] == 0, "super-packets without TSO asked for (or turned off)"
            assert tun.stats["offload_refused"] == 0
            assert segments >= len(data) // 1460
        finally:
            if sock is not None:
                sock.close()
            tun.close()


@pytest.mark.parametrize("tso", [False, True])
def test_tun_read_pool_sized_by_the_mtu_and_packets_over_it_still_whole(netns, tso):
    """A batch of 64 packets of the MTU (1,500) must leave read buffers of that order, not 64
    buffers of 64 KiB (~4.2 MB, held for the device's life, before). Packets still arrive whole: at the
    MTU, and over it when the device's MTU is raised behind the gateway's back (9,000) or told
    to it (a pushed tun-mtu); with TSO offered or not (super-packets: the test above)."""
    import tracemalloc

    ns = netns()
    name = f"uttp{int(tso)}"
    with _inside(ns):
        tun = TunDevice(name, vnet_hdr=True, mtu=1500, tso=tso)
        sock = None
        try:
            configure_tun(tun.name, TUN_ADDR, 24, 1500)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, 10, 2)       # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set
            sock.bind((TUN_ADDR, 0))

            def datagrams(count: int, payload: int, timeout: float = 5.0) -> list[bytes]:
                """Send `count` UDP datagrams of `payload` bytes into the TUN; read them back."""
                sent = [bytes([i]) * payload for i in range(count)]
                for d in sent:
                    sock.sendto(d, (TUN_PEER, 9))
                got: list[bytes] = []
                end = time.monotonic() + timeout
                while len(got) < count and time.monotonic() < end:
                    if not _wait_readable(tun, end - time.monotonic()):
                        break
                    got += [bytes(p) for p in tun.read_batch(64) if p[0] >> 4 == 4 and p[9] == 17]
                assert [g[28:] for g in got] == sent, f"{len(got)} of {count} datagrams came whole"
                return got

            tracemalloc.start()
            try:
                other = TunDevice(f"{name}b", vnet_hdr=True, mtu=1500, tso=tso)   # opened while traced
                at_open = sum(t.size for t in tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(True, device_module.__file__)]).traces)
                other.close()
                got = datagrams(64, 1500 - 28)
                # what the device module still holds after the batch: its read buffers and their
                # views, now ~64 x 2.2 KB (4 made with the device, before tracing)
                held = sum(t.size for t in tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(True, device_module.__file__)]).traces)
            finally:
                tracemalloc.stop()
            print(f"device at open: {at_open:,} bytes; after 64 packets: {held:,}")
            assert at_open < 20_000, f"a device holds {at_open:,} bytes from its open"
            assert all(len(g) == 1500 and _valid(g) for g in got), "a packet cut, or its checksums wrong"
            assert held < 200_000, f"after reading 64 packets of 1,500 bytes the device holds {held:,} bytes"
            assert tun.stats["spilled"] == 0

            _ip("link", "set", "dev", tun.name, "mtu", "9000")      # not told to the device
            assert all(len(g) == 9000 and _valid(g) for g in datagrams(2, 9000 - 28))
            assert tun.stats["spilled"] == 2
            tun.mtu = 9000                                          # told, as a pushed tun-mtu is
            assert all(len(g) == 9000 and _valid(g) for g in datagrams(2, 9000 - 28))
            assert tun.stats["spilled"] == 2
        finally:
            if sock is not None:
                sock.close()
            tun.close()


def test_tap_read_pool_holds_a_vlan_tagged_frame_and_a_double_tagged_one_comes_whole(netns):
    """review46b: a TAP device's pool buffers hold a frame of its MTU with one VLAN tag (MTU + 18)
    without spilling; a frame with two tags (802.1ad, MTU + 22: the kernel sends it once the
    device's MTU is raised behind the gateway's back) spills and still comes whole. Frames sent
    out of the TAP through a raw packet socket (this kernel has no 802.1Q module)."""
    ns = netns()
    with _inside(ns):
        tun = TunDevice("uttap%d", mtu=1500, tap=True)
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            _ip("link", "set", "dev", tun.name, "up")
            raw.bind((tun.name, 0))
            head = bytes.fromhex("020000004602" "020000004601")

            def frame(tags: int, fill: int) -> bytes:
                tag = b"".join(bytes.fromhex("8100") + (5 + t).to_bytes(2, "big") for t in range(tags))
                ip = bytes(IP(src=TUN_ADDR, dst=TUN_PEER, id=fill) / Raw(bytes([fill]) * (1500 - 20)))
                return head + tag + b"\x08\x00" + ip

            def read(count: int) -> list[bytes]:
                got: list[bytes] = []
                end = time.monotonic() + 10
                while len(got) < count and time.monotonic() < end:
                    if _wait_readable(tun, end - time.monotonic()):
                        got += [bytes(f) for f in tun.read_batch(64) if len(f) > 1400]
                return got

            sent = [frame(0, 1), frame(1, 2)]
            for f in sent:
                raw.send(f)
            assert read(2) == sent                      # 1,514 and 1,518 bytes
            assert tun.stats["spilled"] == 0
            _ip("link", "set", "dev", tun.name, "mtu", "1504")      # not told to the device
            sent = [frame(2, 3), frame(1, 4), frame(2, 5)]
            for f in sent:
                raw.send(f)
            assert read(3) == sent                      # 1,522, 1,518, 1,522: each whole, its own
            assert tun.stats["spilled"] == 2
        finally:
            raw.close()
            tun.close()


def test_tun_gro_write_delivers_merged_segments_to_a_local_socket(netns):
    """Play a TCP client behind the TUN and send 40 segments in one write_packets call: they must
    go into the kernel as one GSO super-packet, and the local socket must receive every byte."""
    ns = netns()
    with _inside(ns):
        tun = TunDevice("uttun3", vnet_hdr=True, mtu=1500)
        lsock = conn = None
        try:
            assert tun.gro, tun.offload_note
            configure_tun(tun.name, TUN_ADDR, 24, 1500)
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.bind((TUN_ADDR, 5202))
            lsock.listen(1)
            lsock.settimeout(10)
            isn = 0x20000000
            syn = IP(src=TUN_PEER, dst=TUN_ADDR) / TCP(sport=41000, dport=5202, seq=isn, flags="S", window=65535,
                                                      options=[("MSS", 1448)])
            assert tun.write_packets([bytes(syn)]) == 1
            synack = IP(bytes(_read_until(tun, lambda p: TCP in p and p[TCP].flags == "SA")))
            srv_seq = synack[TCP].seq + 1
            assert tun.write_packets([bytes(IP(src=TUN_PEER, dst=TUN_ADDR) /
                                            TCP(sport=41000, dport=5202, seq=isn + 1, ack=srv_seq, flags="A",
                                                window=65535))]) == 1
            conn, _ = lsock.accept()
            conn.settimeout(0.2)
            data = os.urandom(40 * 1448)
            segs = [bytes(IP(src=TUN_PEER, dst=TUN_ADDR, id=i, flags="DF") /
                          TCP(sport=41000, dport=5202, seq=isn + 1 + i * 1448, ack=srv_seq,
                              flags="PA" if i == 39 else "A", window=65535) /
                          Raw(data[i * 1448:(i + 1) * 1448])) for i in range(40)]
            assert tun.write_packets(segs) == 40
            assert tun.stats["gro_writes"] == 1 and tun.stats["gro_segments"] == 40
            got = bytearray()
            end = time.monotonic() + 5
            while len(got) < len(data) and time.monotonic() < end:
                with contextlib.suppress(socket.timeout):
                    got += conn.recv(65536)
            assert bytes(got) == data, f"socket received {len(got)} of {len(data)} bytes"
            # and the kernel acknowledges all of it
            _read_until(tun, lambda p: TCP in p and p[TCP].ack == (isn + 1 + len(data)) & 0xFFFFFFFF)
        finally:
            for sk in (conn, lsock):
                if sk is not None:
                    sk.close()
            tun.close()


def test_tun_gro_local_super_packet_with_a_corrupted_segment_never_reaches_the_socket(netns):
    """Segments to the TUN's own address merge without being summed by us (offload.py, local
    delivery): the kernel must verify the super-packet, so one segment corrupted before the VPN
    (its TCP checksum no longer matching) gets nothing wrong to the application, and the good
    segments sent again afterwards all arrive."""
    ns = netns()
    with _inside(ns):
        tun = TunDevice("uttun4", vnet_hdr=True, mtu=1500)
        assert tun.local_gro            # on by default, for flows a socket here owns (flow_owner.py)
        lsock = conn = None
        try:
            configure_tun(tun.name, TUN_ADDR, 24, 1500)
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.bind((TUN_ADDR, 5203))
            lsock.listen(1)
            lsock.settimeout(10)
            isn = 0x30000000
            syn = IP(src=TUN_PEER, dst=TUN_ADDR) / TCP(sport=41001, dport=5203, seq=isn, flags="S", window=65535,
                                                      options=[("MSS", 1448)])
            assert tun.write_packets([bytes(syn)]) == 1
            synack = IP(bytes(_read_until(tun, lambda p: TCP in p and p[TCP].flags == "SA")))
            srv_seq = synack[TCP].seq + 1
            assert tun.write_packets([bytes(IP(src=TUN_PEER, dst=TUN_ADDR) /
                                            TCP(sport=41001, dport=5203, seq=isn + 1, ack=srv_seq, flags="A",
                                                window=65535))]) == 1
            conn, _ = lsock.accept()
            conn.settimeout(0.2)
            data = os.urandom(20 * 1448)
            segs = [bytes(IP(src=TUN_PEER, dst=TUN_ADDR, id=i, flags="DF") /
                          TCP(sport=41001, dport=5203, seq=isn + 1 + i * 1448, ack=srv_seq,
                              flags="PA" if i == 19 else "A", window=65535) /
                          Raw(data[i * 1448:(i + 1) * 1448])) for i in range(20)]
            bad = bytearray(segs[7])
            bad[-100] ^= 0x01
            tun.write_packets(segs[:7] + [bytes(bad)] + segs[8:])
            assert tun.stats["gro_writes"] == 1 and tun.stats["gro_segments"] == 20
            assert tun._batch.local == frozenset((socket.inet_aton(TUN_ADDR),)), "local delivery path not taken"
            got = bytearray()
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                with contextlib.suppress(socket.timeout):
                    got += conn.recv(65536)
            assert bytes(got) == data[:len(got)], "corrupted bytes reached the application"
            assert len(got) < len(data), "a super-packet with a bad segment was accepted whole"
            tun.write_packets(segs)          # the sender's retransmission, intact
            end = time.monotonic() + 5
            while len(got) < len(data) and time.monotonic() < end:
                with contextlib.suppress(socket.timeout):
                    got += conn.recv(65536)
            assert bytes(got) == data, f"socket received {len(got)} of {len(data)} bytes"
        finally:
            for sk in (conn, lsock):
                if sk is not None:
                    sk.close()
            tun.close()


def test_tun_gro_masqueraded_reply_to_our_address_is_verified_here_not_merged_unsummed(netns):
    """Router mode: a LAN host's flow is masqueraded to the TUN's address, so the replies arrive
    addressed to us and are then forwarded. No socket here owns that flow (flow_owner.py), so its
    segments must take the verify-here path: a segment corrupted before the VPN is dropped by us
    (counted), never merged unsummed into a super-packet the kernel would re-checksum on the way
    out; the LAN host gets exactly the sent bytes once the sender resends."""
    r, lan = netns(), netns()
    a, b = f"va{r[2:8]}", f"vb{r[2:8]}"
    _ip("link", "add", a, "netns", r, "type", "veth", "peer", "name", b, "netns", lan)
    _ip("-n", r, "addr", "add", "198.18.201.1/24", "dev", a)
    _ip("-n", r, "link", "set", a, "up")
    _ip("-n", lan, "addr", "add", "198.18.201.2/24", "dev", b)
    _ip("-n", lan, "link", "set", b, "up")
    _ip("-n", lan, "route", "add", "default", "via", "198.18.201.1")
    wait_oper_up(r, a)
    wait_oper_up(lan, b)
    subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=10)
    with _inside(r):
        tun = TunDevice("uttun5", vnet_hdr=True, mtu=1500)
        conn = None
        try:
            configure_tun(tun.name, TUN_ADDR, 24, 1500)
            nft = (f"table ip utnat {{\n chain post {{\n type nat hook postrouting priority 100;\n"
                   f" oifname \"{tun.name}\" masquerade\n }}\n}}\n")
            n = subprocess.run(["nft", "-f", "-"], input=nft, capture_output=True, text=True, timeout=10)
            assert n.returncode == 0, n.stderr
            with _inside(lan):
                conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                conn.setblocking(False)
                conn.connect_ex((TUN_PEER, 5204))
            syn = IP(bytes(_read_until(tun, lambda p: TCP in p and p[TCP].flags == "S")))
            assert syn.src == TUN_ADDR, f"not masqueraded: {syn.summary()}"
            port, isn = syn[TCP].sport, 0x40000000
            assert tun.write_packets([bytes(IP(src=TUN_PEER, dst=TUN_ADDR) /
                                            TCP(sport=5204, dport=port, seq=isn, ack=syn[TCP].seq + 1, flags="SA",
                                                window=65535, options=[("MSS", 1448)]))]) == 1
            _read_until(tun, lambda p: TCP in p and p[TCP].flags == "A")      # the LAN host's ACK
            data = os.urandom(20 * 1448)
            segs = [bytes(IP(src=TUN_PEER, dst=TUN_ADDR, id=i, flags="DF") /
                          TCP(sport=5204, dport=port, seq=isn + 1 + i * 1448, ack=syn[TCP].seq + 1,
                              flags="PA" if i == 19 else "A", window=65535) /
                          Raw(data[i * 1448:(i + 1) * 1448])) for i in range(20)]
            bad = bytearray(segs[7])
            bad[-100] ^= 0x01
            tun.write_packets(segs[:7] + [bytes(bad)] + segs[8:])
            assert tun.owners.stats["not_owned"] >= 1 and tun.owners.stats["owned"] == 0, tun.owners.stats
            assert tun._batch.bad_checksums == 1, "the corrupted segment was not checked here"
            assert tun.stats["gro_writes"] >= 1, "the good segments were not merged"
            tun.write_packets(segs)          # the sender's retransmission, intact
            got = bytearray()
            end = time.monotonic() + 5
            while len(got) < len(data) and time.monotonic() < end:
                if _wait_readable(conn, 0.2):
                    with contextlib.suppress(BlockingIOError):
                        got += conn.recv(65536)
            assert bytes(got) == data, f"LAN host received {len(got)} of {len(data)} bytes (or wrong bytes)"
        finally:
            if conn is not None:
                conn.close()
            tun.close()


# ------------------------------------------------------------------ UDP
def _veth_pair(netns) -> tuple[str, str]:
    """Two namespaces joined by a 1500-MTU veth: 198.18.201.1 (A) and 198.18.201.2 (B)."""
    a, b = netns(), netns()
    _ip("-n", a, "link", "add", "utva", "mtu", "1500", "type", "veth", "peer", "name", "utvb", "netns", b)
    _ip("-n", a, "addr", "add", "198.18.201.1/24", "dev", "utva")
    _ip("-n", b, "addr", "add", "198.18.201.2/24", "dev", "utvb")
    _ip("-n", a, "link", "set", "utva", "up")
    _ip("-n", b, "link", "set", "utvb", "up")
    wait_oper_up(a, "utva")
    wait_oper_up(b, "utvb")
    return a, b


def _receive(t: UdpTransport, count: int, timeout: float = 10.0) -> list:
    got: list = []
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        if t.has_spill or _wait_readable(t, end - time.monotonic()):   # read past a limit: no readiness for it
            got += t.recv_batch()
    return got


@pytest.fixture
def udp_pair(netns):
    a, b = _veth_pair(netns)
    with _inside(b):
        rx = UdpTransport(("198.18.201.2", 51194), None, gro=True)
    with _inside(a):
        tx = UdpTransport(("198.18.201.1", 51195), ("198.18.201.2", 51194), gso=True)
    try:
        yield tx, rx
    finally:
        tx.close()
        rx.close()


def _data(i: int, size: int) -> bytes:
    """A datagram of `size` bytes that GSO may batch: it starts as an OpenVPN data packet (P_DATA_V2,
    first byte 0x48: only those share a run, transport/udp._runs), then says which it is."""
    return b"\x48" + bytes([i]) * (size - 1)


class _RecordingSock:
    """Delegates to the real socket and records the byte counts of each GRO receive."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sizes: list[int] = []

    def recvmsg_into(self, *a):
        r = self._sock.recvmsg_into(*a)
        self.sizes.append(r[0])
        return r

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_udp_gso_batch_arrives_complete_and_in_order(udp_pair):
    tx, rx = udp_pair
    assert rx.gro, "UDP_GRO should be available on this kernel"
    rec = rx.sock = _RecordingSock(rx.sock)
    rx._recv_from_many = None     # the Python twin, whose receives the wrapper sees (test_native_udp_from: both)
    dgrams = [b"\x48" + i.to_bytes(2, "big") + bytes([i]) * 997 for i in range(40)] + [b"\x48\xfftail" + bytes(300)]
    tx.send_batch(dgrams)
    assert tx.stats["gso_sends"] >= 1, "40 equal datagrams should go out in one GSO send"
    got = _receive(rx, len(dgrams))
    assert [bytes(d) for d, _ in got] == dgrams
    assert all(addr == ("198.18.201.1", 51195) for _, addr in got)
    assert rx.stats["received"] == len(dgrams)
    assert max(rec.sizes) > 1000, f"no coalesced receive happened ({rec.sizes}): the split path was not tested"


def test_udp_batches_of_mixed_sizes(udp_pair):
    tx, rx = udp_pair
    sizes = [1200] * 5 + [80] + [1400] * 3 + [1500] * 2 + [30]
    dgrams = [bytes([i]) * s for i, s in enumerate(sizes)]
    tx.send_batch(dgrams)
    got = _receive(rx, len(dgrams))
    assert [bytes(d) for d, _ in got] == dgrams


def test_udp_empty_datagrams_in_a_batch_each_arrive(udp_pair):
    """An empty datagram after a full one was folded into that GSO run as a zero-length last
    segment, and the kernel sent nothing for it: the receiver saw one datagram fewer."""
    tx, rx = udp_pair
    dgrams = [b"a" * 700, b"", b"b" * 700, b"b" * 700, b"", b""]
    tx.send_batch(dgrams)
    got = _receive(rx, len(dgrams))
    assert [bytes(d) for d, _ in got] == dgrams


def test_udp_oversized_datagrams_still_delivered(udp_pair):
    """1600-byte datagrams over a 1500-MTU link: GSO cannot send them, plain sends fragment."""
    tx, rx = udp_pair
    dgrams = [_data(i, 1600) for i in range(10)]
    tx.send_batch(dgrams)
    got = _receive(rx, len(dgrams))
    assert [bytes(d) for d, _ in got] == dgrams
    assert tx.stats["sent"] == len(dgrams) and tx.stats["send_dropped"] == 0
    assert tx.stats.get("gso_too_big") or not tx.gso, "the GSO attempt should have been refused"


def test_udp_gso_still_used_after_an_oversized_batch(udp_pair):
    """One batch of too-big datagrams must not switch GSO off for good (it would cost every later
    batch a system call per datagram)."""
    tx, rx = udp_pair
    tx.send_batch([_data(i, 1600) for i in range(4)])
    assert len(_receive(rx, 4)) == 4
    before = tx.stats["gso_sends"]
    normal = [_data(i, 1000) for i in range(8)]
    tx.send_batch(normal)
    assert [bytes(d) for d, _ in _receive(rx, 8)] == normal
    assert tx.gso and tx.stats["gso_sends"] == before + 1


def test_udp_unconnected_sendto_and_single_send(netns):
    a, b = _veth_pair(netns)
    with _inside(b):
        rx = UdpTransport(("198.18.201.2", 51196), None, gro=False)
    with _inside(a):
        tx = UdpTransport(("198.18.201.1", 0), None)
    try:
        dest = ("198.18.201.2", 51196)
        tx.send(b"one", dest)
        tx.send_batch([b"x" * 500] * 3, dest)
        got = _receive(rx, 4)
        assert [bytes(d) for d, _ in got] == [b"one"] + [b"x" * 500] * 3
    finally:
        tx.close()
        rx.close()
