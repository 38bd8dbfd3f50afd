"""Issue 8's server promises, with Debian's OpenVPN 2.6 client as the honest peer: who may
connect (ccd-exclusive, username-as-common-name), and logins checked off the event loop so a
storm of wrong passwords never stalls the tunnels of clients already in.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.tools import OUR_BIN

CLIENTS = ["client1", "client2", "client3"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("seclab")) as lab:
        yield lab


@pytest.fixture
def procs(lab):
    started: list = []
    yield started
    for p in reversed(started):
        p.stop_promptly(8)   # Proc.stop_promptly: no UDP server exit delay


def start_our_server(lab, procs, extra):
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=extra), f"secsrv-{len(lab.procs)}",
                   pattern=r"listening on UDP")
    procs.append(srv)
    return srv


def passdb(lab, users: dict[str, str]) -> str:
    lines = [subprocess.run([OUR_BIN, "passwd", u], input=pw + "\n", capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip() for u, pw in users.items()]
    path = lab.tmp / f"users-{len(lab.procs)}.db"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_ccd_exclusive_refuses_a_client_without_a_ccd_file(lab, procs):
    ccd = lab.tmp / "ccd-excl"
    ccd.mkdir(exist_ok=True)
    (ccd / "client1").write_text("ifconfig-push 198.19.0.61 255.255.255.0\n")
    srv = start_our_server(lab, procs, f"client-config-dir {ccd}\nccd-exclusive\n")
    good = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"ccdx-good-{len(lab.procs)}")
    procs.append(good)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
    lab.openvpn  # the second client comes from its own namespace
    ns = lab.add_client_ns(4)
    bad = lab.openvpn(ns, client_profile(lab.pki, "udp", client="client2", remotes=[("198.18.5.1", 1194, "udp")]),
                      f"ccdx-bad-{len(lab.procs)}", wait=0)
    procs.append(bad)
    assert bad.wait_for("AUTH_FAILED|TLS Error|connection-reset|Restart pause", 30), bad.log()[-2000:]
    assert not bad.wait_for("Initialization Sequence Completed", 3), "a client without a ccd file got in"
    assert "client2" in srv.log() and "ccd" in srv.log(), srv.log()[-2000:]


def test_username_as_common_name_picks_the_users_ccd_file(lab, procs):
    ccd = lab.tmp / "ccd-user"
    ccd.mkdir(exist_ok=True)
    (ccd / "alice").write_text("ifconfig-push 198.19.0.62 255.255.255.0\n")
    db = passdb(lab, {"alice": "wonderland"})
    start_our_server(lab, procs, f"client-config-dir {ccd}\nauth-user-pass-verify {db} passdb\n"
                                 "username-as-common-name\n")
    (lab.tmp / "alice.pass").write_text("alice\nwonderland\n")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1",
                                              extra=f"auth-user-pass {lab.tmp / 'alice.pass'}\n"),
                      f"uacn-{len(lab.procs)}")
    procs.append(cli)
    out = lab.cli.run("ip -4 -o addr show dev tun0", check=False).stdout
    assert "198.19.0.62/" in out, out


def test_a_storm_of_wrong_passwords_does_not_stall_a_connected_client(lab, procs):
    db = passdb(lab, {"alice": "wonderland"})
    srv = start_our_server(lab, procs, f"auth-user-pass-verify {db} passdb\n")
    (lab.tmp / "alice.pass").write_text("alice\nwonderland\n")
    good = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1",
                                               extra=f"auth-user-pass {lab.tmp / 'alice.pass'}\n"),
                       f"storm-good-{len(lab.procs)}")
    procs.append(good)
    # The storm: 150 wrong-password handshakes at 30 a second from one process in another
    # namespace (our engine's client sessions, lab/loadgen.py), while the good client pings.
    ns = lab.add_client_ns(5)
    prof = lab.write("storm.ovpn", client_profile(lab.pki, "udp", client="client2",
                                                  remotes=[("198.18.6.1", 1194, "udp")], extra="auth-user-pass\n"))
    storm = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-m", "lab.loadgen", str(prof),
                              "--clients", "150", "--rate", "30", "--duration", "25", "--username", "alice",
                              "--password", "guess"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        received = lab.ping(lab.cli, TUN_SERVER_IP, count=40, interval=0.2, timeout=40)
        out, _ = storm.communicate(timeout=60)
    finally:
        if storm.poll() is None:
            storm.kill()
            storm.wait(10)
    print("storm:", out.strip(), "| pings received", received)
    assert received >= 38, f"the connected client lost {40 - received} of 40 pings during the storm"
    assert "auth failed" in out and "connected 0" in out, out
    log = srv.log()
    assert "password check refused" in log or "failed username/password" in log, log[-2000:]
