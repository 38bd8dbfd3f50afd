"""The router VM through a 30 s WAN outage (issue 8, "Restart and recovery"): the tunnel comes back
by itself, and nothing from the LAN leaves in clear while it is gone.

    [lan ns] 198.18.50.2 ── brl ── tapl ─ eth1 [VM] eth0 ─ tapw ── brw ── vw1 ╳ vw2 ── 198.18.0.1 [srv ns]
                                                            capture ^      ^ cut      OpenVPN 2.6 server,
                                                                                       host 198.18.100.1
The cut is `ip link set vw1<tag> down` in the VM host's namespace: the WAN bridge's uplink port,
one hop upstream of the VM's TAP. The VM's NIC keeps its carrier, as when the upstream router or
the line behind the modem fails, so the guest kernel reports nothing to the appliance: only its
keepalive (ping-restart) can notice, and the test checks that it does. (Downing tapw would look
the same to the guest, since QEMU does not pass a TAP's state on, but would blind the capture.)

The capture runs on tapw, the VM's side of the cut, from before the cut until the tunnel is back,
so it holds every frame the VM's WAN NIC sent during the outage and the reconnection. Meanwhile the
LAN host keeps pinging and sending UDP to the far host (through the tunnel when it is up) and to
two outside addresses on the WAN side, each packet carrying a marker; a second capture on the LAN
host shows those probes were sent (so "0 leaked" is not "0 sent").

Measured here under TCG: ping-restart fired 10 s after the cut, the tunnel was back 11 s after the
link came up (the hard reset of the attempt started during the outage is resent after 2, 4, 8, 16 s;
the 16 s resend is the one that finds the link), 0 of ~190 WAN packets with a LAN address.

The server's keepalive is 2 s / 10 s (pushed to the VM as ping 2, ping-restart 10), so the VM's
ping-restart fires well inside the 30 s outage; OpenVPN's lab default (5 / 30) would race it.
"""
from __future__ import annotations

import ipaddress
import re
import struct
import sys
import time
from pathlib import Path

from lab.configs import server_config
from lab.netns import Proc
from lab.vm import OUT, accel, boot, lab_pki, ping, vm_topology, wait_ping
from tests.vm.test_image import build

OUTAGE = 30.0              # seconds the WAN is down
PING, PING_RESTART = 2, 10  # the server's keepalive, pushed to the VM
# "Within keepalive + backoff", from the moment the link is back: an attempt started during the
# outage resends its hard reset after 2, 4, 8, 16 s (the reliable layer doubles its timeout), so the
# resend that sees the link again is at most 16 s away; plus one ping-restart period in case the
# attempt in flight is stale, plus 10 s for the handshake under TCG on a loaded 2-core machine.
RECOVERY_BOUND = PING_RESTART + 16 + 10

VM_WAN, SERVER, FAR = "198.18.0.2", "198.18.0.1", "198.18.100.1"
VM_WAN_MAC = bytes.fromhex("525400000001")       # lab.vm.boot's WAN NIC
OUTSIDE = ("198.18.0.1", "198.18.200.1")        # outside the tunnel, on the WAN side
LAN_NET = ipaddress.ip_network("198.18.50.0/24")
MARK = b"LAN-LEAK-PROBE!!"                      # 16 bytes: ping -p takes at most 16
MARK_HEX = MARK.hex()
MARK_FIND = b"LEAK-PRO"                         # found in any copy, however ping aligns the pattern

UDP_PROBE = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
while True:
    for dst in ({FAR!r}, *{OUTSIDE!r}):
        try:
            s.sendto({MARK!r} * 4, (dst, 9)); n += 1
        except OSError:
            pass
    if n % 60 == 0:
        print("sent", n, flush=True)
    time.sleep(0.2)
"""


# ---------------------------------------------------------------- pcap reading (Ethernet, IPv4)
def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    assert linktype == 1, f"expected an Ethernet capture, got linktype {linktype}"
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        out.append((sec + frac / (1e9 if nano else 1e6), data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def _ipv4(b: bytes) -> tuple[str, str, int, bytes] | None:
    """(src, dst, proto, payload) of an IPv4 header at the start of b."""
    if len(b) < 20 or b[0] >> 4 != 4:
        return None
    ihl = (b[0] & 15) * 4
    return (str(ipaddress.ip_address(b[12:16])), str(ipaddress.ip_address(b[16:20])), b[9], b[ihl:])


def _is_vpn_flow(src: str, dst: str, proto: int, l4: bytes) -> bool:
    """UDP between the VM's WAN address and the server's port 1194, either way."""
    if proto != 17 or len(l4) < 4 or {src, dst} != {VM_WAN, SERVER}:
        return False
    sport, dport = struct.unpack("!HH", l4[:4])
    return (dst == SERVER and dport == 1194) or (src == SERVER and sport == 1194)


def classify(frames: list[tuple[float, bytes]]) -> dict:
    """Sort the capture: the OpenVPN UDP flow (and ICMP errors about it), ARP, anything else the
    VM sent ("other": must stay empty), and the lab's own frames towards the VM that are neither
    ("lab": the host side's IPv6 router solicitations and MLD reports on the bridge, not the VM's);
    count frames with a LAN address anywhere in their IPv4/ARP headers (an ICMP error's inner header
    included) and frames whose bytes carry the LAN probes' marker in clear, whoever sent them."""
    r = {"total": len(frames), "from_vm": 0, "vpn": 0, "arp": 0, "other": [], "lab": [], "lan_addr": [],
         "marked": []}
    for ts, f in frames:
        if MARK_FIND in f:
            r["marked"].append((ts, f[:64].hex()))
        if len(f) < 14:
            r["other"].append((ts, "runt", f.hex()))
            continue
        etype, body = struct.unpack("!H", f[12:14])[0], f[14:]
        from_vm = f[6:12] == VM_WAN_MAC
        r["from_vm"] += from_vm
        other = r["other"] if from_vm else r["lab"]
        if etype == 0x0806:
            r["arp"] += 1
            if len(body) >= 28 and any(ipaddress.ip_address(body[o:o + 4]) in LAN_NET for o in (14, 24)):
                r["lan_addr"].append((ts, "arp", body[:28].hex()))
            continue
        ip = _ipv4(body) if etype == 0x0800 else None
        if ip is None:
            other.append((ts, f"ethertype {etype:#06x}", f[:64].hex()))
            continue
        src, dst, proto, l4 = ip
        addrs = [src, dst]
        inner = _ipv4(l4[8:]) if proto == 1 and len(l4) >= 8 and l4[0] in (3, 11, 12) else None
        if inner is not None:
            addrs += inner[:2]
        if any(ipaddress.ip_address(a) in LAN_NET for a in addrs):
            r["lan_addr"].append((ts, f"{src} > {dst} proto {proto}", body[:48].hex()))
        if _is_vpn_flow(src, dst, proto, l4) or (inner is not None and {src, dst} == {VM_WAN, SERVER}
                                                 and _is_vpn_flow(*inner[:3], inner[3])):
            r["vpn"] += 1
        else:
            other.append((ts, f"{src} > {dst} proto {proto}", body[:48].hex()))
    return r


# ---------------------------------------------------------------- the test
def _first_reply_after(ping_log: str, after_wall: float) -> float | None:
    """ping -D: the wall time of the first echo reply after `after_wall`."""
    for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", ping_log, re.M):
        if float(m.group(1)) > after_wall:
            return float(m.group(1))
    return None


def _wait_console(q: Proc, pattern: str, after: int, timeout: float) -> float | None:
    """Monotonic time at which `pattern` shows in the console past offset `after` (polled every 0.1 s)."""
    rx, end = re.compile(pattern), time.monotonic() + timeout
    while time.monotonic() < end:
        if rx.search(q.log()[after:]):
            return time.monotonic()
        if not q.alive():
            return None
        time.sleep(0.1)
    return None


def test_router_vm_recovers_from_a_30s_wan_outage_without_leaking(tmp_path, figure):
    build(OUT)   # the default image (embedded default config: UDP to 198.18.0.1:1194, tls-crypt)
    with vm_topology(tmp_path) as t:
        vm, srv, lan, tag, procs = t["vm"], t["wan"], t["lan"], t["tag"], t["procs"]
        cut_if, tap = f"vw1{tag}", "tapw"

        def start(ns, argv, name):
            p = Proc(ns, argv, tmp_path / f"{name}.log")
            procs.append(p)
            return p

        cfg = tmp_path / "server.conf"
        text = server_config(lab_pki(), "udp", None, "tls-crypt")
        assert "keepalive 5 30" in text
        cfg.write_text(text.replace("keepalive 5 30", f"keepalive {PING} {PING_RESTART}"))
        ovpn = start(srv, ["openvpn", "--config", str(cfg)], "server")
        assert ovpn.wait_for("Initialization Sequence Completed", 20), ovpn.log()
        t0 = time.monotonic()
        q = boot(t, OUT)
        assert q.wait_for("tunnel up", 150), "appliance did not bring the tunnel up:\n" + q.log()[-4000:]
        boot_s = time.monotonic() - t0
        assert ping(lan, FAR, 3) >= 2, "LAN host does not reach the far host before the outage:\n" + q.log()[-3000:]

        # Captures: the VM's WAN TAP (what could leak), and the LAN host's NIC (what was sent).
        wan_pcap, lan_pcap = tmp_path / "wan.pcap", tmp_path / "lan.pcap"
        cap = start(vm, ["tcpdump", "-n", "-U", "-s", "0", "-i", tap, "-w", str(wan_pcap)], "cap-wan")
        cap_lan = start(lan, ["tcpdump", "-n", "-U", "-s", "0", "-i", f"vl2{tag}", "-w", str(lan_pcap)], "cap-lan")
        assert cap.wait_for("listening on", 60) and cap_lan.wait_for("listening on", 60), cap.log() + cap_lan.log()

        # The LAN host keeps trying: the far host (through the tunnel) and outside addresses.
        far_ping = start(lan, ["ping", "-n", "-D", "-O", "-i", "0.2", "-W", "1", "-p", MARK_HEX, FAR], "ping-far")
        out_pings = [start(lan, ["ping", "-n", "-i", "0.5", "-p", MARK_HEX, a], f"ping-{a}") for a in OUTSIDE]
        udp = start(lan, [sys.executable, "-c", UDP_PROBE], "udp-probe")
        time.sleep(2)

        # The outage.
        mark = len(q.log())
        vm.run(f"ip link set {cut_if} down")
        down_at = time.monotonic()
        fired_at = _wait_console(q, r"inactivity timeout|ping-restart", mark, OUTAGE - 1)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        up_mark = len(q.log())
        vm.run(f"ip link set {cut_if} up")
        up_at, up_wall = time.monotonic(), time.time()
        outage_s = up_at - down_at

        back_at = _wait_console(q, r"tunnel up", mark, RECOVERY_BOUND + 20)
        # The LAN host's own view: its first answer from the far host after the link came back.
        far_wall = None
        end = time.monotonic() + 20
        while far_wall is None and time.monotonic() < end:
            far_wall = _first_reply_after(far_ping.log(), up_wall)
            time.sleep(0.2)
        time.sleep(1)
        for p in (udp, *out_pings, far_ping):
            p.stop(3)
        time.sleep(0.5)
        cap.stop(5)
        cap_lan.stop(5)

        console = q.log()
        wan = classify(read_pcap(wan_pcap))
        sent = classify(read_pcap(lan_pcap))
        sent_probes = len(sent["marked"])
        recover_s = None if back_at is None else back_at - up_at
        far_s = None if far_wall is None else far_wall - up_wall
        lines = [
            f"WAN outage (cut {cut_if}, upstream of tapw): {outage_s:.1f} s; boot to tunnel up under "
            f"{accel(OUT)}: {boot_s:.1f} s",
            "keepalive fired (ping-restart {}) {}".format(
                PING_RESTART, "never" if fired_at is None else f"{fired_at - down_at:.1f} s after the cut"),
            "tunnel back {} after the link came up (bound {} s)".format(
                "NOT" if recover_s is None else f"{recover_s:.1f} s", RECOVERY_BOUND),
            "LAN host reaches the far host again {} after the link came up".format(
                "NOT" if far_s is None else f"{far_s:.1f} s"),
            f"WAN capture: {wan['total']} packets ({wan['from_vm']} from the VM), {wan['vpn']} OpenVPN UDP, "
            f"{wan['arp']} ARP, {len(wan['other'])} other from the VM, {len(wan['lab'])} other from the lab side "
            f"(IPv6 RS/MLD of the host's bridge), {len(wan['lan_addr'])} with LAN addresses, "
            f"{len(wan['marked'])} with the LAN probe marker in clear",
            f"LAN probes sent (LAN-side capture): {sent_probes} carrying the marker",
        ]
        for ln in lines:
            print(ln)
            figure(f"wan outage: {ln}")

        debug = (f"\n--- console since the cut:\n{console[mark:][-4000:]}\n--- server:\n{ovpn.log()[-2000:]}"
                 f"\n--- other WAN packets:\n" + "\n".join(map(str, wan["other"][:10])))
        assert q.alive(), "the VM powered off" + debug
        assert sent_probes > 100, f"the LAN host's probes were not sent ({sent_probes})" + debug
        assert len(sent["lan_addr"]) > 100, "the LAN-side capture shows no LAN addresses: analyser broken"
        # The leak checks first: they hold whatever the tunnel did.
        assert not wan["lan_addr"], "a packet with a LAN address on the WAN:\n" + \
            "\n".join(map(str, wan["lan_addr"][:10])) + debug
        assert not wan["marked"], "LAN probe payload in clear on the WAN:\n" + \
            "\n".join(map(str, wan["marked"][:10])) + debug
        assert not wan["other"], "the VM sent WAN traffic other than the OpenVPN UDP flow and ARP:" + debug
        assert all(d.startswith("ethertype 0x86dd") for _, d, _ in wan["lab"]), \
            "unexpected lab-side frames on the WAN:\n" + "\n".join(map(str, wan["lab"][:10]))
        assert wan["vpn"] > 0, "the capture holds no OpenVPN traffic at all" + debug
        # Recovery.
        assert fired_at is not None, "the VM's keepalive (ping-restart) did not fire during the outage" + debug
        assert recover_s is not None, f"the tunnel did not come back within {RECOVERY_BOUND + 20} s" + debug
        assert recover_s <= RECOVERY_BOUND, f"tunnel back after {recover_s:.1f} s > {RECOVERY_BOUND} s" + debug
        assert far_s is not None, "the LAN host did not reach the far host again" + debug
        assert wait_ping(lan, FAR, 10) and ping(lan, FAR, 3) >= 2, "LAN → far host after recovery" + debug
        assert console.count("tunnel up", up_mark) >= 1
