"""Debian's OpenVPN 2.6 client, bound to a fixed port (`lport`), against our server: after a
SIGHUP whose ccd edit is held off (a second edit within RELOAD_RESTART_HOLDOFF of the first
reload's restart), the client's own SIGUSR1 -- a restart in place from the same address and port --
brings it back with the file's newest address, not the one its connection was admitted with.
review44b: before, that restart went on with the old options and the held restart, its record
gone, never came: the client kept the previous `ifconfig-push` until some later reload."""
from __future__ import annotations

import re
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab, until

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("hupip")) as lab:
        yield lab


def _addr(ns) -> str | None:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else None


def test_a_restart_in_place_during_the_holdoff_gets_the_newest_file(lab, procs):
    ccd = lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"), "hupip-srv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1").replace("nobind\n", "lport 40002\n"),
                     "hupip-c1")
    procs.append(c1)
    assert until(lambda: _addr(lab.cli) == "198.19.0.50", within=20), c1.log()[-2000:]
    # First edit: told RESTART, back on .51.
    (ccd / "client1").write_text("ifconfig-push 198.19.0.51 255.255.255.0\n")
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"client1/\S+: its client-config-dir file changed: told RESTART", 20, after=mark)
    assert c1.wait_count("Initialization Sequence Completed", 2, 30), c1.log()[-2000:]
    assert until(lambda: _addr(lab.cli) == "198.19.0.51", within=20), (_addr(lab.cli), c1.log()[-2000:])
    # Second edit within the hold-off: its restart held ...
    (ccd / "client1").write_text("ifconfig-push 198.19.0.52 255.255.255.0\n")
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"client1/\S+: its client-config-dir file changed; restarted by a reload .* restarts in",
                        20, after=mark), srv.log()[mark:][-2000:]
    # ... and the client restarts in place from port 40002 meanwhile: a new connection on .52.
    mark = len(srv.log())
    c1.p.send_signal(signal.SIGUSR1)
    assert c1.wait_count("Initialization Sequence Completed", 3, 30), c1.log()[-2000:]
    assert until(lambda: _addr(lab.cli) == "198.19.0.52", within=20), (_addr(lab.cli), srv.log()[mark:][-2000:])
    assert re.search(r"client1/\S+:40002: connected, address 198\.19\.0\.52", srv.log()[mark:]), \
        srv.log()[mark:][-2000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), c1.log()[-2000:]
    assert srv.alive() and "Traceback" not in srv.log() and "internal error" not in srv.log()
