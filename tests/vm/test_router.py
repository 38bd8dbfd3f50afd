"""The appliance VM as a router, booted from the real image with the embedded default config.

    [lan ns] 198.18.50.2 ── br ── tap ─ eth1 [VM 198.18.50.1 | eth0 198.18.0.2] tap ── br ── 198.18.0.1 [srv ns]
                                                                                     OpenVPN 2.6 server, host 198.18.100.1

A LAN host reaches the host behind the VPN server through the tunnel (NAT: the server side sees the
tunnel address); with the VPN server gone, a capture on the WAN sees no LAN packet in clear.
"""
from __future__ import annotations

import re
import sys
import time

import pytest

from lab.configs import server_config
from lab.netns import Proc
from lab.vm import OUT, accel, boot, lab_pki, lan_transfer, vm_topology
from tests.vm.conftest import FIGURES
from tests.vm.test_image import build
from lab.vm import ping as _ping


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    build(OUT)   # the default image (embedded default config), reused when current
    tmp = tmp_path_factory.mktemp("router")
    with vm_topology(tmp) as t:
        cfg = tmp / "server.conf"
        cfg.write_text(server_config(lab_pki(), "udp", None, "tls-crypt"))
        ovpn = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp / "server.log")
        t["procs"].append(ovpn)
        assert ovpn.wait_for("Initialization Sequence Completed", 20), ovpn.log()
        t0 = time.monotonic()
        qemu = boot(t, OUT)
        assert qemu.wait_for("tunnel up", 150), "appliance did not bring the tunnel up:\n" + qemu.log()[-4000:]
        FIGURES.append(f"boot to tunnel up (router, UDP) under {accel(OUT)}: {time.monotonic() - t0:.1f} s")
        yield {**t, "srv": t["wan"], "ovpn": ovpn, "qemu": qemu}


def test_lan_host_reaches_the_far_side_through_the_tunnel_with_nat(topo):
    lan, srv = topo["lan"], topo["srv"]
    assert _ping(lan, "198.18.100.1", 3) >= 2, topo["qemu"].log()[-3000:]
    # A TCP transfer from the LAN host: the server side sees the tunnel address (NAT).
    peer = lan_transfer(lan, srv, topo["tmp"])
    assert re.match(r"198\.19\.0\.\d+$", peer), peer
    # And a download: the appliance writes merged (GSO) segments into its TUN, which the kernel
    # de-NATs and forwards out of the LAN NIC.
    peer = lan_transfer(lan, srv, topo["tmp"], download=True)
    assert re.match(r"198\.19\.0\.\d+$", peer), peer


def test_kill_switch_no_lan_packet_leaves_in_clear(topo):
    lan, srv = topo["lan"], topo["srv"]
    topo["ovpn"].stop(10)          # the VPN server is gone: the tunnel is down
    cap = Proc(srv, ["tcpdump", "-n", "-l", "-i", topo["wan_if"], "net 198.18.50.0/24 or icmp or port 7000"],
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
