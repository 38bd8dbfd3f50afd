"""Two Debian OpenVPN 2.6 clients (one certificate, `duplicate-cn`) against our server, filling its
two-address pool: a SIGHUP that changes the push lines tells both RESTART; 2.6's client restarts
without acknowledging, from a new port, so its told session still holds its address
(CLIENT_KILL_WAIT) when it is back. review44d: they came back with no address and stayed so (a
2.6 client sits connected without one); now each takes its told session's address over, as at
2.6's own SIGHUP, which frees every address first."""
from __future__ import annotations

import re
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab, until

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

POOL = "duplicate-cn\nifconfig-pool 198.19.0.2 198.19.0.3 255.255.255.0\n"
DEVS = ("hupfa", "hupfb")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("hupfull")) as lab:
        yield lab


def _addr(ns, dev: str) -> str | None:
    m = re.search(r"inet (\S+)/", ns.run(f"ip -4 -o addr show dev {dev}", check=False).stdout)
    return m.group(1) if m else None


def test_a_reload_restart_at_a_full_pool_comes_back_with_its_address(lab, procs):
    conf = server_config(lab.pki, extra=POOL, nopool=True)
    srv = lab.ours(lab.srv, conf, "hupfull-srv", pattern=r"listening on UDP")
    procs.append(srv)
    cs = []
    for dev in DEVS:
        prof = client_profile(lab.pki, client="client1").replace("dev tun\n", f"dev {dev}\ndev-type tun\n")
        c = lab.openvpn(lab.cli, prof, f"hupfull-{dev}")
        procs.append(c)
        cs.append(c)
        assert c.wait_count("Initialization Sequence Completed", 1, 30), c.log()[-2000:]

    def addrs() -> set:
        return {_addr(lab.cli, d) for d in DEVS}
    assert until(lambda: addrs() == {"198.19.0.2", "198.19.0.3"}, within=20), addrs()
    lab.write("hupfull-srv.ovpn", conf + 'push "route 198.18.81.0 255.255.255.0"\n')
    mark, cmarks = len(srv.log()), [len(c.log()) for c in cs]
    srv.p.send_signal(signal.SIGHUP)
    assert until(lambda: srv.log()[mark:].count("the push lines changed: told RESTART") >= 2, within=20), \
        srv.log()[mark:]
    for c in cs:
        assert c.wait_count("Initialization Sequence Completed", 2, 30), c.log()[-2000:]
    assert until(lambda: len(re.findall(r"client1/\S+: connected, address 198\.19\.0\.[23]\b",
                                        srv.log()[mark:])) >= 2, within=20), srv.log()[mark:][-2000:]
    assert "connected with no address" not in srv.log()[mark:], srv.log()[mark:][-3000:]
    assert until(lambda: addrs() == {"198.19.0.2", "198.19.0.3"}, within=20), addrs()
    assert all("route 198.18.81.0" in c.log()[m:] for c, m in zip(cs, cmarks)), "not the new options"
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), srv.log()[-2000:]
    assert srv.alive() and "Traceback" not in srv.log() and "internal error" not in srv.log()
