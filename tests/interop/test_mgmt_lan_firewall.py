"""The kill switch's `input` chain for a server's management port on its LAN address, in
namespaces: without it a WAN host that routes the LAN address to the gateway's WAN address reaches
the port (Linux answers for any of its addresses on any interface); with it only the LAN does, and
the drop is counted. Topology: lan (198.18.50.2) - gw (eth1 198.18.50.1, eth0 198.18.0.2) - wan
(198.18.0.1, a route to 198.18.50.1 via the gateway)."""
from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from lab.netns import Netns
from appliance.router import killswitch
from appliance.router.killswitch import render_router

_T = secrets.token_hex(3)

LISTEN = ("import socket\n"
          "l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "l.bind(('198.18.50.1', 7505)); l.listen(8); print('ready', flush=True)\n"
          "while True:\n    c, _ = l.accept(); c.sendall(b'ENTER PASSWORD:'); c.close()\n")


@pytest.fixture
def topo():
    made: list[Netns] = []
    listener = None
    try:
        for n in ("lan", "gw", "wan"):
            made.append(Netns(f"mf{n}{_T}"))        # one by one: a failure after the first deletes it
        lan, gw, wan = made
        gw.run(f"ip link add eth1 type veth peer name ml0 netns {lan.name}")
        gw.run(f"ip link add eth0 type veth peer name mw0 netns {wan.name}")
        gw.run("ip addr add 198.18.50.1/24 dev eth1 && ip link set eth1 up && "
               "ip addr add 198.18.0.2/24 dev eth0 && ip link set eth0 up")
        lan.run("ip addr add 198.18.50.2/24 dev ml0 && ip link set ml0 up")
        wan.run("ip addr add 198.18.0.1/24 dev mw0 && ip link set mw0 up && ip route add 198.18.50.1/32 via 198.18.0.2")
        listener = subprocess.Popen(["ip", "netns", "exec", gw.name, sys.executable, "-c", LISTEN],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        yield lan, gw, wan
    finally:
        if listener is not None:
            listener.kill()                  # by its PID (the ip netns exec'd python)
            listener.wait(5)
        for ns in reversed(made):
            ns.delete()


def reaches(ns: Netns) -> bool:
    probe = ("import socket\ntry:\n    s = socket.create_connection(('198.18.50.1', 7505), timeout=2)\n"
             "    print(s.recv(100).decode())\nexcept OSError as e:\n    print('failed', e)\n")
    return ns.run(f"{sys.executable} -c \"{probe}\"", timeout=20).stdout.startswith("ENTER PASSWORD:")


@pytest.mark.root
@pytest.mark.netns
def test_the_management_port_on_the_lan_address_is_reachable_from_the_lan_only(topo):
    lan, gw, wan = topo
    assert reaches(lan) and reaches(wan), "setup: without the rule the WAN reaches the LAN address's port"
    killswitch.apply_ruleset(render_router("eth0", "tun0", "eth1", True, "server", (), (1194, "udp"), False,
                                           ["198.18.50.0/24"], management=("eth1", 7505)), netns=gw.name)
    try:
        assert reaches(lan), "the LAN still reaches the management port"
        assert not reaches(wan), "the WAN must not reach the management port on the LAN address"
        counted = [ln for ln in gw.run("nft list table inet vpnappliance").stdout.splitlines()
                   if "the management port only on eth1" in ln]
        assert counted and "packets 0 " not in counted[0], counted
    finally:
        killswitch.flush(gw.name)
