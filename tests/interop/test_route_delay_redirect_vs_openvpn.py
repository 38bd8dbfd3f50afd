"""An explicit `route-delay N` with a pushed `redirect-gateway def1` (no route-gateway dhcp),
against Debian's OpenVPN 2.6.14 (helper redirect50). During the delay 2.6.14 has added no route:
the traffic the redirect asks into the tunnel leaves by the client's own default route, outside
the tunnel, until the delay ends (init.c: do_route only once route-delay is over). Ours did the
same; now the redirect's halves are held unreachable during the delay (RouteSet.hold_halves, as
route-gateway dhcp's wait since tapredir49), and the real halves replace them at its end. What a
user checks: where an outside address is routed during the delay and after it."""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab

OUTSIDE = "198.18.99.1"
DELAY = 6               # s: long enough to look during it on a loaded machine; only ours waits it out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        # The client's own default route (the host's way out, outside the tunnel): its veth.
        lab.cli.run(f"ip route add default via {SRV_IP} dev vb{lab.tag}")
        yield lab


def _way(lab) -> str:
    r = lab.cli.run(f"ip route get {OUTSIDE}", check=False)
    return r.stdout + r.stderr


def test_route_delay_holds_the_redirect_where_debians_client_lets_it_out(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra='push "redirect-gateway def1"\n'), "srv-2.6-rd")
    procs.append(srv)
    profile = client_profile(lab.pki, extra=f"route-delay {DELAY}\n")
    deb = lab.openvpn(lab.cli, profile, "cli-2.6-rd", wait=0)
    try:
        assert deb.wait_for("PUSH: Received control message", 20), deb.log()[-3000:]
        during = _way(lab)
        early = "Initialization Sequence Completed" not in deb.log()     # still within its delay
    finally:
        deb.stop_promptly(5)
    assert early, "Debian's delay was over before the look: the machine too slow for this test"
    assert f"dev vb{lab.tag}" in during, during          # 2.6.14: outside the tunnel during the delay

    ours = lab.ours(lab.cli, profile, "ours-client-rd")
    procs.append(ours)
    assert ours.wait_for(f"route-delay {DELAY}: the routes", 10), ours.log()[-3000:]
    during = _way(lab)
    log = ours.log()
    assert "routes in" not in log, "our delay was over before the look: the machine too slow for this test"
    assert "No route to host" in during, (during, log[-3000:])
    assert "the redirect's traffic refused as unreachable meanwhile" in log, log[-3000:]
    assert ours.wait_for(f"route-delay {DELAY} s over: routes in", DELAY + 20), ours.log()[-3000:]
    deadline = time.monotonic() + 10
    while "dev tun0" not in (after := _way(lab)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "dev tun0" in after, after
    ours.stop()
