"""socks-proxy against Debian's microsocks (a SOCKS5 server) and OpenVPN 2.6, our client beside
OpenVPN's own with the same profile. Users in networks that block VPNs point OpenVPN at a local
SOCKS5 listener (ssh -D, shadowsocks, obfs4proxy); before, ours refused the line.

Topology (as the http-proxy test's): the remote, 198.18.8.1, is the server's address on the
proxy's side, which the client's namespace has no route to: only a connection through the proxy
reaches it.

    [cli] 198.18.9.2 --- 198.18.9.1 [proxy: microsocks] 198.18.8.2 --- 198.18.8.1 [srv]

With the right password both clients come up and ping through the tunnel; with a wrong one ours
ends each attempt with the proxy's refusal and tries again, as OpenVPN's does (SIGUSR1 socks-error).
"""
from __future__ import annotations

import shutil
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
SRV_PROXY_SIDE = "198.18.8.1"
PROXY_IP = "198.18.9.1"
PASSWORD = "S0cks-Interop-pw"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    socks = shutil.which("microsocks")
    assert socks, "microsocks is missing (make setup installs it: APT_PKGS)"
    with Lab(tmp=tmp_path_factory.mktemp("socks")) as lab:
        lab.proxy = lab.add_proxy_ns()          # PROXY_IP; the server SRV_PROXY_SIDE beyond it
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "tcp"), "srv-socks")
        proxy = lab.start(lab.proxy, [socks, "-i", PROXY_IP, "-p", "1080", "-u", "alice", "-P", PASSWORD], "socks")
        end = time.monotonic() + 20
        while lab.proxy.run("ss -ltn 'sport = :1080' | grep -q LISTEN", check=False).returncode:
            assert time.monotonic() < end, f"microsocks did not listen:\n{proxy.log()}"
            time.sleep(0.1)
        yield lab
        proxy.stop()
        srv.stop()


def _profile(lab: Lab, password: str) -> str:
    upfile = lab.write(f"socks-up-{len(password)}.txt", f"alice\n{password}\n")
    return client_profile(lab.pki, "tcp-client", remotes=[(SRV_PROXY_SIDE, 1194, "tcp-client")],
                          extra=f"connect-retry 1 2\nserver-poll-timeout 8\nsocks-proxy {PROXY_IP} 1080 {upfile}\n")


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_both_come_up_through_microsocks_with_a_password(lab, procs, kind):
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, _profile(lab, PASSWORD), f"socks-up-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=40), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, BEHIND_IP), f"{kind}: no traffic through the tunnel"
    log = cli.log()
    assert PASSWORD not in log
    if kind == "ours":
        assert f"through SOCKS proxy {PROXY_IP}:1080" in log and f"CONNECT {SRV_PROXY_SIDE}:1194 accepted" in log
    cli.stop()


def test_a_wrong_password_ends_each_attempt_and_ours_keeps_trying(lab, procs):
    cli = lab.ours(lab.cli, _profile(lab, "wrong"), "socks-bad", wait=0)
    procs.append(cli)
    assert cli.wait_count("refused the username and password", 2, timeout=20), cli.log()[-3000:]
    assert cli.alive() and "tunnel up" not in cli.log()
    cli.stop()
