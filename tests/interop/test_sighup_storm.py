"""A SIGHUP storm against our server, in namespaces, with Debian's OpenVPN 2.6 client connected:
100 SIGHUPs in about a second (a supervisor or a logrotate hook gone wrong). Each reload keeps
the client; the kernel merges the signals pending at once, and each reload's re-verification of
the kept clients runs a batch per wake-up of the loop (gateway/ops.py RELOAD_CHECK_BATCH), so
the tunnel keeps passing packets, the client never restarts and the management interface still
answers. (OpenVPN 2.6 restarts, every client with it, at each SIGHUP: nothing to compare.)"""
from __future__ import annotations

import signal
import socket
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

SIGNALS = 100


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("hupstorm")) as lab:
        yield lab


def _mgmt(lab, path: str, command: str) -> str:
    """One command over the unix socket (reachable from the host: the file system is shared)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(path)
        s.sendall(command.encode() + b"\r\nquit\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode(errors="replace")


def test_a_sighup_storm_keeps_the_client_and_its_tunnel(lab, procs):
    sock = str(lab.tmp / "hup-mgmt.sock")
    status = lab.tmp / "hup-status.log"
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=f"management {sock} unix\nstatus {status} 1\n"),
                   "hup-srv", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "hup-cli")
    procs.append(cli)
    assert lab.cli.run("ping -c 3 -W 5 198.19.0.1", check=False).returncode == 0, srv.log()[-2000:]
    mark = len(srv.log())
    for _ in range(SIGNALS):
        srv.p.send_signal(signal.SIGHUP)
        time.sleep(0.01)
    assert srv.wait_for(r"reload: config .* re-read; 1 clients kept", 30, after=mark), srv.log()[-2000:]
    # Pings through the storm's tail and after it: the tunnel passes packets.
    r = lab.cli.run("ping -c 5 -i 0.5 -W 5 198.19.0.1", check=False, timeout=60)
    assert r.returncode == 0, (r.stdout, srv.log()[-2000:])
    assert srv.alive() and cli.alive()
    assert cli.log().count("Initialization Sequence Completed") == 1, cli.log()[-2000:]
    tail = srv.log()[mark:]
    assert "Traceback" not in tail and "internal error" not in tail, tail[-3000:]
    assert "client1" in _mgmt(lab, sock, "status 2")
    print(f"{SIGNALS} SIGHUPs: {tail.count(' re-read; ')} reloads")
