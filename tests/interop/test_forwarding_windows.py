"""No LAN packet leaves the WAN in clear while the appliance starts or stops (lab/router_lab.py).

run_toml switched the kernel's forwarding on before the kill switch went in, and off only after
the kill switch and NAT were gone again. Two windows, each showing up here as LAN-sourced
packets on the WAN capture: at the start, for as long as the remotes took to resolve (seconds
with a slow DNS server); at the end, between the `nft` call that removed the tables and the write
to ip_forward, whenever the run ended: a hostile server's HALT decides when. A LAN host sending
steadily (a backup, a video call falling back) had its packets forwarded out of the WAN with its
own source address. tests/unit/test_forwarding_order.py is the same on fakes.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from lab.router_lab import LAN_APP, WAN_SRV, RouterLab, client_profile, server_config
from tests.interop.test_ops_vs_openvpn import Mgmt
from tests.interop.test_restart_vs_openvpn import _client_id

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

LAN_HOST = "198.18.50.10"
# The LAN host's UDP to a WAN address for `seconds` at most: bursts of `burst` datagrams 1 ms
# apart (a burst is as fast as one Python loop sends).
FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[1])
burst = int(sys.argv[3])
n = 0
while time.monotonic() < end:
    for _ in range(burst):
        try:
            s.sendto(b"lan secret %d" % n, (sys.argv[2], 9))
        except OSError:
            pass
        n += 1
    time.sleep(0.001)
print("sent", n, flush=True)
"""


@pytest.fixture
def lab():
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add {LAN_HOST}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP}")
        yield lab


def _flood(lab: RouterLab, seconds: float, burst: int):
    return lab.start(lab.lan, [sys.executable, "-c", FLOOD, str(seconds), WAN_SRV, str(burst)], "flood")


def _lan_leaks(pcap: Path) -> list[str]:
    return [x for x in RouterLab.wan_leaks(pcap) if "LAN address" in x]


def test_a_server_halt_lets_no_lan_packet_out_in_clear(lab):
    sock = str(lab.tmp / "mgmt.sock")
    srv = lab.openvpn_server(server_config(lab.pki, ipv6=False, push_dns=False, extra=f"management {sock} unix\n"))
    app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)))
    cap = lab.capture()
    flood = _flood(lab, 8, 200)     # the end's window is short: many per ms
    try:
        time.sleep(1)                              # the flood runs (dropped by the kill switch)
        cid = _client_id(sock)                     # (one management client at a time)
        m = Mgmt(sock)
        try:
            assert any("SUCCESS" in x for x in m.cmd(f"client-kill {cid} HALT,going away", wait=1.0))
        finally:
            m.close()
        assert app.wait_for("HALT", 15), app.log()[-3000:]
        assert app.p.wait(10) == 1, app.log()[-3000:]     # the run ends: its undo list ran
    finally:
        flood.stop(10)
        pcap = lab.stop_capture(cap)
        app.stop(10)
        srv.stop(5)
    assert "kill switch drops" in app.log(), app.log()[-3000:]     # the flood was on meanwhile
    assert _lan_leaks(pcap) == []


def test_a_slowly_resolving_remote_lets_no_lan_packet_out_in_clear(lab):
    # The appliance's namespace asks a DNS server that never answers (no host at that address):
    # its remote's name takes seconds to fail, as a slow resolver at boot would.
    etc = Path("/etc/netns") / lab.app.name
    etc.mkdir(parents=True)
    try:
        (etc / "resolv.conf").write_text("nameserver 198.18.0.77\noptions timeout:3 attempts:1\n")
        profile = client_profile(lab.pki).replace(f"remote {WAN_SRV} 1194", "remote vpn.example.test 1194")
        cap = lab.capture()
        flood = _flood(lab, 12, 1)      # seconds long: 1 per ms shows it
        try:
            app = lab.appliance(lab.appliance_toml(profile), wait=20, pattern="none of the remotes resolves")
            assert app.p.wait(10) == 1, app.log()[-3000:]
            assert "cannot resolve remote vpn.example.test" in app.log(), app.log()[-3000:]
        finally:
            flood.stop(10)
            pcap = lab.stop_capture(cap)
    finally:
        shutil.rmtree(etc, ignore_errors=True)
    assert _lan_leaks(pcap) == []
