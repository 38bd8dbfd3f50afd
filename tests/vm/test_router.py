"""The appliance VM as a router, booted from the real image with the embedded default config.

    [lan ns] 198.18.50.2 ── br ── tap ─ eth1 [VM 198.18.50.1 | eth0 198.18.0.2] tap ── br ── 198.18.0.1 [srv ns]
                                                                                     OpenVPN 2.6 server, host 198.18.100.1

A LAN host reaches the host behind the VPN server through the tunnel (NAT: the server side sees the
tunnel address); with the VPN server gone, a capture on the WAN sees no LAN packet in clear.
"""
from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.testlab.lab import Netns, Pki, Proc, server_config

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "image" / "out"


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    from tests.vm.test_image import accel, build
    build(OUT)   # reuses the session build when current
    tmp = tmp_path_factory.mktemp("router")
    tag = secrets.token_hex(3)
    spaces, procs = [], []
    try:
        vm = Netns(f"vmh{tag}")
        srv = Netns(f"vms{tag}")
        lan = Netns(f"vml{tag}")
        spaces += [vm, srv, lan]
        for side, peer, addr in (("w", srv, "198.18.0.1/24"), ("l", lan, "198.18.50.2/24")):
            vm.run(f"ip link add br{side} type bridge && ip link set br{side} up && "
                   f"ip tuntap add tap{side} mode tap && ip link set tap{side} master br{side} up")
            subprocess.run(["ip", "link", "add", f"v{side}1{tag}", "netns", vm.name, "type", "veth", "peer", "name",
                            f"v{side}2{tag}", "netns", peer.name], check=True)
            vm.run(f"ip link set v{side}1{tag} master br{side} up")
            peer.run(f"ip addr add {addr} dev v{side}2{tag} && ip link set v{side}2{tag} up")
        lan.run("ip route add default via 198.18.50.1")
        srv.run("ip addr add 198.18.100.1/32 dev lo")
        lab_pki = OUT / "cache" / "default-lab" / "pki"
        pki = Pki(lab_pki, lab_pki / "ca.crt", lab_pki / "server.crt", lab_pki / "server.key")
        cfg = tmp / "server.conf"
        cfg.write_text(server_config(pki, "udp", None, "tls-crypt"))
        ovpn = Proc(srv, ["openvpn", "--config", str(cfg)], tmp / "server.log")
        procs.append(ovpn)
        assert ovpn.wait_for("Initialization Sequence Completed", 20), ovpn.log()
        a = accel(OUT)
        qemu = Proc(vm, ["qemu-system-x86_64", "-accel", a, "-cpu", "host" if a == "kvm" else "max", "-M", "q35",
                         "-m", "512", "-nographic", "-no-reboot", "-kernel", str(OUT / "vmlinuz"),
                         "-initrd", str(OUT / "initramfs.img"),
                         "-netdev", "tap,id=wan,ifname=tapw,script=no,downscript=no",
                         "-device", "virtio-net-pci,netdev=wan,mac=52:54:00:00:00:01",
                         "-netdev", "tap,id=lan,ifname=tapl,script=no,downscript=no",
                         "-device", "virtio-net-pci,netdev=lan,mac=52:54:00:00:00:02",
                         "-append", "console=ttyS0 panic=-1 quiet"], tmp / "console.log")
        procs.append(qemu)
        t0 = time.monotonic()
        up = qemu.wait_for("tunnel up", 150)
        boot_to_tunnel = time.monotonic() - t0
        assert up, "appliance did not bring the tunnel up:\n" + qemu.log()[-4000:]
        print(f"boot-to-tunnel under {a}: {boot_to_tunnel:.1f} s")
        yield {"vm": vm, "srv": srv, "lan": lan, "ovpn": ovpn, "qemu": qemu, "tmp": tmp, "tag": tag}
    finally:
        for p in reversed(procs):
            p.stop(10)
        for ns in reversed(spaces):
            ns.delete()


def _ping(ns, addr, count=3) -> int:
    r = ns.run(f"ping -n -q -c {count} -i 0.3 -W 2 {addr}", check=False, timeout=30)
    m = re.search(r"(\d+) received", r.stdout)
    return int(m.group(1)) if m else 0


def test_lan_host_reaches_the_far_side_through_the_tunnel_with_nat(topo):
    lan, srv = topo["lan"], topo["srv"]
    assert _ping(lan, "198.18.100.1", 3) >= 2, topo["qemu"].log()[-3000:]
    # A TCP connection from the LAN host: the server side sees the tunnel address (NAT).
    code = ("import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            "s.bind(('198.18.100.1',7000));s.listen(1);s.settimeout(30);c,a=s.accept();n=0\n"
            "while True:\n d=c.recv(65536)\n if not d: break\n n+=len(d)\n"
            "print('peer',a[0],'bytes',n,flush=True)")
    rx = Proc(srv, [sys.executable, "-c", code], topo["tmp"] / "rx.log")
    try:
        time.sleep(0.5)
        lan.run(f"{sys.executable} -c \"import socket;c=socket.create_connection(('198.18.100.1',7000),timeout=20);"
                f"c.sendall(b'x'*2000000);c.close()\"", timeout=90)
        assert rx.wait_for(r"bytes 2000000", 30), rx.log()
        assert re.search(r"peer 198\.19\.0\.\d+ ", rx.log()), rx.log()
    finally:
        rx.stop(3)


def test_kill_switch_no_lan_packet_leaves_in_clear(topo):
    lan, srv = topo["lan"], topo["srv"]
    topo["ovpn"].stop(10)          # the VPN server is gone: the tunnel is down
    cap = Proc(srv, ["tcpdump", "-n", "-l", "-i", f"vw2{topo['tag']}", "net 198.18.50.0/24 or icmp or port 7000"],
               topo["tmp"] / "cap.log")
    try:
        time.sleep(1.5)
        for addr in ("198.18.0.1", "198.18.100.1"):
            assert _ping(lan, addr, 3) == 0
        lan.run(f"{sys.executable} -c \"import socket\ntry: socket.create_connection(('198.18.0.1',22),timeout=2)\n"
                f"except OSError: pass\"", check=False, timeout=20)
        time.sleep(1)
    finally:
        cap.stop(3)
    # A LAN packet in clear would carry a LAN source (routed) or, masqueraded, be an echo request or
    # a connection attempt from the appliance's WAN address. (The server's own ICMP port-unreachable
    # answers to the appliance's VPN retries are not LAN traffic.)
    leaked = [ln for ln in cap.log().splitlines()
              if "198.18.50." in ln or "echo request" in ln or "> 198.18.0.1.22:" in ln]
    assert not leaked, "LAN traffic left the WAN in clear:\n" + "\n".join(leaked[:10])
