"""Hostile peers for the attack tests (issue 7), as Python snippets run in a namespace: datagrams from
source port 0 sent from a raw socket, TCP connections reset while the server answers, zero-length
and oversized TCP frames at a server, and a hostile TCP "server" that answers with them."""
from __future__ import annotations

import subprocess
import sys

from .netns import Netns

# A P_CONTROL_HARD_RESET_CLIENT_V2 as a client without tls-auth sends it: opcode 7 << 3 (key id 0),
# an 8-byte session id, an empty ack array, message packet-id 0 (openvpn-wire-notes.md §2a).
HARD_RESET = "bytes([7 << 3]) + os.urandom(8) + bytes([0]) + struct.pack('!I', 0)"

# Datagrams from source port 0, from a raw socket (the kernel adds the IP header; the UDP header is
# ours, checksum 0 = none): hard resets, and garbage of several sizes.
PORT0_SENDER = f"""
import os, socket, struct, sys
dst, dport, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
def udp(payload):
    return struct.pack("!HHHH", 0, dport, 8 + len(payload), 0) + payload
n = 0
for _ in range(rounds):
    for p in [{HARD_RESET}, os.urandom(1), os.urandom(14), {HARD_RESET}, os.urandom(300), bytes(60)]:
        s.sendto(udp(p), (dst, 0))
        n += 1
print("sent", n, flush=True)
"""

# TCP connections that send a framed hard reset, then reset the connection (SO_LINGER 0: close
# sends an RST) while the server is answering; every other one waits a little first.
RST_CLIENT = f"""
import os, socket, struct, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
done = 0
for i in range(n):
    try:
        s = socket.create_connection((dst, port), timeout=5)
    except OSError:
        time.sleep(0.05)
        continue
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    p = {HARD_RESET}
    s.sendall(struct.pack("!H", len(p)) + p)
    try:
        if i % 3 == 1:
            time.sleep(0.005)
        elif i % 3 == 2:
            # More to answer: a second reset, another session id. The server may already have
            # closed this connection (a limit per address), so the send may meet its reset.
            s.sendall(struct.pack("!H", len(p)) + p)
    except OSError:
        pass
    s.close()
    done += 1
print("done", done, flush=True)
"""

# Zero-length and oversized frames at a TCP server, each on its own connection.
BAD_FRAMES_CLIENT = f"""
import os, socket, struct, sys, time
dst, port = sys.argv[1], int(sys.argv[2])
p = {HARD_RESET}
cases = [
    b"\\x00\\x00",                                        # a zero length first
    struct.pack("!H", len(p)) + p + b"\\x00\\x00",        # a zero length after a good frame
    b"\\xff\\xff" + os.urandom(65535),                    # the largest frame, garbage
    b"\\xff\\xff" + os.urandom(65535) + b"\\xff\\xff" + os.urandom(65535) + b"\\x00\\x00",
    b"\\xff\\xff" + os.urandom(3000),                     # a large frame cut short
]
for data in cases:
    for _ in range(3):
        try:
            s = socket.create_connection((dst, port), timeout=5)
            s.sendall(data)
            time.sleep(0.2)
            s.close()
        except OSError as e:
            print("connection:", e, flush=True)
print("sent", len(cases) * 3, flush=True)
"""

# A hostile TCP "server": every connection gets a zero-length frame or the largest garbage frame.
HOSTILE_SERVER = """
import os, socket, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port))
l.listen(8)
print("listening", flush=True)
while True:
    c, a = l.accept()
    c.settimeout(5)
    try:
        c.recv(4096)                     # the client's hard reset
        c.sendall(b"\\x00\\x00" if mode == "zero" else b"\\xff\\xff" + os.urandom(65535))
        print("sent", mode, "to", a[0], flush=True)
        time.sleep(1)
    except OSError as e:
        print("connection:", e, flush=True)
    c.close()
"""


# A host on a bridged LAN forging DHCP ACKs (atk50): broadcast frames, from port 67 to port 68,
# each with a fresh transaction id and client hardware address (so no DHCP client takes one as
# its own), naming ROUTER as the router. Every bridged tap client's data path reads them as any
# ACK (OpenVPN 2.6's route-gateway dhcp does too). Argv: interface, router, server id, interval
# (s), count -- bounded, and the test kills it by PID anyway.
FORGED_DHCP_ACKS = r"""
import os, socket, struct, sys, time
ifname, router, server, every, count = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
a = socket.inet_aton
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
def csum(b):
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n >> 16:
        n = (n & 0xFFFF) + (n >> 16)
    return ~n & 0xFFFF
for i in range(count):
    mac = bytes([2]) + os.urandom(5)
    opts = (bytes([53, 1, 5, 54, 4]) + a(server) + bytes([51, 4]) + struct.pack("!I", 3600)
            + bytes([1, 4]) + a("255.255.255.0") + bytes([3, 4]) + a(router) + bytes([255]))
    bootp = (bytes([2, 1, 6, 0]) + os.urandom(4) + struct.pack("!HH", 0, 0x8000) + bytes(4) + a("198.19.1.200")
             + bytes(8) + mac + bytes(10) + bytes(192) + bytes([99, 130, 83, 99]) + opts)
    bootp += bytes(300 - len(bootp)) if len(bootp) < 300 else b""
    udp = struct.pack("!HHHH", 67, 68, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, a(server), a("255.255.255.255"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(b"\xff" * 6 + mac + b"\x08\x00" + ip + udp)
    time.sleep(every)
print("sent", count, flush=True)
"""

def run_py(ns: Netns, code: str, *args, timeout: float = 120) -> str:
    """Run a Python snippet in a namespace, to its end."""
    r = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", code, *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"attack script failed: {r.stdout}{r.stderr}"
    return r.stdout


def send_forged_probes(src4: str, src6: str, dst4: str, dst6: str, mark: bytes, echo_id: int) -> None:
    """Run inside a namespace (scapy, raw sockets): an echo request carrying `mark`, a TCP SYN and
    a UDP datagram to closed ports, each to dst4/dst6 from the forged src4/src6, three times --
    what makes a kernel answer (echo reply, reset, ICMP error) to an address that never asked.
    The kill-switch tests look for those answers on the WAN."""
    from scapy.all import ICMP, IP, TCP, UDP, ICMPv6EchoRequest, IPv6, Raw, send

    pkts = []
    for net, src, dst in ((IP, src4, dst4), (IPv6, src6, dst6)):
        echo = ICMP(type=8, id=echo_id, seq=1) if net is IP else ICMPv6EchoRequest(id=echo_id, seq=1)
        pkts += [net(src=src, dst=dst) / echo / Raw(mark),
                 net(src=src, dst=dst) / TCP(sport=40001, dport=9, flags="S") / Raw(mark),
                 net(src=src, dst=dst) / UDP(sport=40002, dport=9) / Raw(mark)]
    send(pkts, count=3, inter=0.05, verbose=False)


def forged_probes_from(ns: Netns, src4: str, src6: str, dst4: str, dst6: str, mark: bytes, echo_id: int) -> None:
    """send_forged_probes run in namespace `ns`."""
    from .tools import REPO
    run_py(ns, f"import sys; sys.path.insert(0, {str(REPO)!r}); from lab.attacks import send_forged_probes; "
               f"send_forged_probes({src4!r}, {src6!r}, {dst4!r}, {dst6!r}, {mark!r}, {echo_id})", timeout=60)
