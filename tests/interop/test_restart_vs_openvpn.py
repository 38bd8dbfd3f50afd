"""RESTART / RESTART,[N] and explicit-exit-notify between our program and Debian's OpenVPN 2.6, in
namespaces: two servers in the server namespace (ports 1194 and 1195, tunnels 198.19.0.0/24 and
198.19.2.0/24), a client profile listing both.

OpenVPN 2.6 (push.c server_pushed_signal, multi.c multi_push_restart_schedule_exit): its client
goes to the next remote on RESTART,[N] and back to the same server on a plain RESTART once its
tunnel was up; its UDP server with `explicit-exit-notify 2` sends RESTART,[N] to every client at
SIGTERM (1: RESTART), and `client-kill CID MSG` sends MSG. Before, our client went to the next
remote on every RESTART, and our server sent only an OCC exit at SIGTERM, after which OpenVPN's
client tries the same (stopped) server again until server-poll-timeout.
"""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab
from tests.interop.test_ops_vs_openvpn import Mgmt

FIRST, SECOND = 1194, 1195
SECOND_TUN_IP = "198.19.2.1"
CLIENT_EXTRA = "connect-retry 1\nserver-poll-timeout 20\n"   # a poll timeout far above what we wait for


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _server(lab, port: int, n: int, extra: str = "") -> str:
    text = server_config(lab.pki, "udp", port=port, extra=f"explicit-exit-notify {n}\n{extra}")
    return text.replace("server 198.19.0.0", "server 198.19.2.0") if port == SECOND else text


def _profile(lab) -> str:
    return client_profile(lab.pki, "udp", remotes=[(SRV_IP, FIRST, "udp"), (SRV_IP, SECOND, "udp")],
                          extra=CLIENT_EXTRA)


def _client_id(sock: str) -> int:
    """The client's CID from OpenVPN's `status 2` (CLIENT_LIST's 11th field)."""
    m = Mgmt(sock)
    try:
        for _ in range(20):
            for line in m.cmd("status 2"):
                parts = line.split(",")
                if parts[0] == "CLIENT_LIST" and len(parts) > 10:
                    return int(parts[10])
        raise AssertionError("no client in OpenVPN's status")
    finally:
        m.close()


def _client_kill(sock: str, cid: int, message: str) -> None:
    m = Mgmt(sock)
    try:
        assert any("SUCCESS" in x for x in m.cmd(f"client-kill {cid} {message}", wait=1.0))
    finally:
        m.close()


# ---------------------------------------------------------------- our client, OpenVPN's servers
def _openvpn_servers(lab, procs, n: int = 2):
    sock = str(lab.tmp / f"mgmt-{len(lab.procs)}.sock")
    first = lab.openvpn(lab.srv, _server(lab, FIRST, n, f"management {sock} unix\n"), "ovpn-first")
    procs.append(first)
    second = lab.openvpn(lab.srv, _server(lab, SECOND, n), "ovpn-second")
    procs.append(second)
    cli = lab.ours(lab.cli, _profile(lab), "ours", wait=40)
    procs.append(cli)
    assert f"connecting to {SRV_IP}:{FIRST}" in cli.log()
    return first, second, cli, sock


def test_openvpn_server_stopping_sends_our_client_to_the_next_remote(lab, procs):
    first, second, cli, _ = _openvpn_servers(lab, procs, n=2)
    first.stop(10)                                     # SIGTERM: RESTART,[N] to its clients
    assert cli.wait_count("tunnel up", 2, timeout=30), cli.log()[-3000:]
    log = cli.log()
    assert "server sent RESTART ('[N]'): next remote" in log, log[-3000:]
    assert log.rindex(f"connecting to {SRV_IP}:{SECOND}") > log.index("server sent RESTART"), log[-3000:]
    assert lab.wait_ping(lab.cli, SECOND_TUN_IP, within=20), "no tunnel through the second server"


def test_plain_restart_brings_our_client_back_to_the_same_server(lab, procs):
    """OpenVPN's `client-kill CID` sends RESTART: our client reconnects to that server (it used to
    move to the next remote, as for RESTART,[N])."""
    first, second, cli, sock = _openvpn_servers(lab, procs)
    _client_kill(sock, _client_id(sock), "RESTART")
    assert cli.wait_count("tunnel up", 2, timeout=30), cli.log()[-3000:]
    log = cli.log()
    assert f"connecting to {SRV_IP}:{SECOND}" not in log, log[-3000:]
    assert first.log().count("Peer Connection Initiated") == 2, first.log()[-3000:]
    assert "Peer Connection Initiated" not in second.log()
    assert "server sent RESTART: this server again" in log, log[-3000:]


def test_halt_ends_our_client(lab, procs):
    first, second, cli, sock = _openvpn_servers(lab, procs)
    _client_kill(sock, _client_id(sock), "HALT,bye")
    for _ in range(100):
        if not cli.alive():
            break
        time.sleep(0.1)
    assert not cli.alive(), cli.log()[-3000:]
    assert "server sent HALT ('bye')" in cli.log(), cli.log()[-3000:]
    assert "Peer Connection Initiated" not in second.log()


# ---------------------------------------------------------------- OpenVPN's client, our servers
def test_our_server_stopping_sends_openvpn_client_to_the_next_remote(lab, procs):
    first = lab.ours(lab.srv, _server(lab, FIRST, 2), "ours-first", pattern="listening on UDP")
    procs.append(first)
    second = lab.ours(lab.srv, _server(lab, SECOND, 2), "ours-second", pattern="listening on UDP")
    procs.append(second)
    cli = lab.openvpn(lab.cli, _profile(lab), "ovpn-client", wait=40)
    procs.append(cli)
    assert f"{SRV_IP}:{FIRST}" in cli.log()
    t0 = time.monotonic()
    os.killpg(first.p.pid, signal.SIGTERM)             # not first.stop(): that waits for the exit
    assert cli.wait_count("Initialization Sequence Completed", 2, timeout=40), cli.log()[-3000:]
    took = time.monotonic() - t0
    first.stop(10)
    log = cli.log()
    said = "Connection reset command was pushed by server ('[N]')"
    assert said in log, log[-3000:]
    reset = log.index(said)
    assert re.search(rf"link remote: \[AF_INET\]{re.escape(SRV_IP)}:{SECOND}", log[reset:]), log[-3000:]
    assert "Inactivity timeout" not in log and "server-poll" not in log, log[-3000:]
    assert "told 1 clients to restart with the next remote" in first.log(), first.log()[-2000:]
    assert lab.wait_ping(lab.cli, SECOND_TUN_IP, within=20), "no tunnel through our second server"
    print(f"SIGTERM of our first server to OpenVPN's client up on the second: {took:.1f} s")


def test_our_server_restarting_brings_openvpn_client_back(lab, procs):
    """explicit-exit-notify 1: RESTART without [N], for a server that restarts: OpenVPN's client
    comes back to it (and not to the second remote)."""
    cfg = _server(lab, FIRST, 1)
    first = lab.ours(lab.srv, cfg, "ours-restarting", pattern="listening on UDP")
    procs.append(first)
    cli = lab.openvpn(lab.cli, _profile(lab), "ovpn-client-back", wait=40)
    procs.append(cli)
    first.stop(10)
    assert "Connection reset command was pushed by server ('')" in cli.log(), cli.log()[-3000:]
    again = lab.ours(lab.srv, cfg, "ours-restarted", pattern="listening on UDP")
    procs.append(again)
    assert cli.wait_count("Initialization Sequence Completed", 2, timeout=40), cli.log()[-3000:]
    log = cli.log()
    assert f"{SRV_IP}:{SECOND}" not in log, log[-3000:]


def test_our_client_kill_with_next_sends_openvpn_client_to_the_second_remote(lab, procs):
    sock = str(lab.tmp / "ours-mgmt.sock")
    first = lab.ours(lab.srv, _server(lab, FIRST, 1, f"management {sock} unix\n"), "ours-kill",
                     pattern="listening on UDP")
    procs.append(first)
    second = lab.ours(lab.srv, _server(lab, SECOND, 1), "ours-kill-second", pattern="listening on UDP")
    procs.append(second)
    cli = lab.openvpn(lab.cli, _profile(lab), "ovpn-client-kill", wait=40)
    procs.append(cli)
    _client_kill(sock, _client_id(sock), "RESTART,[N]")
    assert cli.wait_count("Initialization Sequence Completed", 2, timeout=40), cli.log()[-3000:]
    log = cli.log()
    said = "Connection reset command was pushed by server ('[N]')"
    assert said in log, log[-3000:]
    assert re.search(rf"link remote: \[AF_INET\]{re.escape(SRV_IP)}:{SECOND}", log[log.index(said):]), log[-3000:]
    assert first.alive(), "client-kill stopped the server"
