"""Running our server for real against Debian's OpenVPN 2.6 clients, in namespaces: a reload's
new `mssfix` reaches the MSS a client's TCP connection gets, and with `max-clients` reached a
client that restarts from the same address and port (a fixed `lport`) gets back in at once
instead of waiting for its old session to time out.
"""
from __future__ import annotations

import re
import signal
import sys

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

PORT = 5202          # the TCP listener behind the server's tunnel address (MSS probe)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("opslab")) as lab:
        yield lab


@pytest.fixture
def procs():
    started: list = []
    yield started
    for p in reversed(started):
        p.stop_promptly(8)   # Proc.stop_promptly: no UDP server exit delay


# Accepts connections on the server's tunnel address for at most 120 s, then exits by itself.
_LISTEN = f"""
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{TUN_SERVER_IP}", {PORT})); s.listen(8); s.settimeout(1.0)
print("listening", flush=True)
end = time.monotonic() + 120
while time.monotonic() < end:
    try:
        c, _ = s.accept()
        c.close()
    except OSError:
        pass
"""

# Connects from the client's side and prints the MSS its TCP got from the handshake (the peer's
# SYN-ACK, clamped by our server on its way into the tunnel).
_PROBE = f"""
import socket
c = socket.create_connection(("{TUN_SERVER_IP}", {PORT}), timeout=10)
print("mss", c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
c.close()
"""


def _client_mss(lab) -> int:
    r = lab.cli.run(f"{sys.executable} -c '{_PROBE}'", check=False, timeout=30)
    m = re.search(r"mss (\d+)", r.stdout)
    assert m, f"no TCP connection through the tunnel: {r.stdout} {r.stderr}"
    return int(m.group(1))


def test_mssfix_changed_by_a_reload_reaches_a_clients_tcp(lab, procs):
    conf = server_config(lab.pki)
    srv = lab.ours(lab.srv, conf, "mss-srv", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "mss-cli")
    procs.append(cli)
    listener = lab.start(lab.srv, [sys.executable, "-c", _LISTEN], "mss-listen")
    procs.append(listener)
    assert listener.wait_for("listening", 60), listener.log()
    before = _client_mss(lab)
    assert before > 1000, f"MSS {before} before the reload"
    lab.write("mss-srv.ovpn", conf + "mssfix 1000\n")        # the file the server runs from
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"reload: config .* re-read; 1 clients kept", 10, after=mark), srv.log()[-2000:]
    after = _client_mss(lab)
    # mssfix 1000: the tunnel's packets (their IP/UDP headers aside) at most 1000 bytes, so the
    # inner IP and TCP headers and the data channel's overhead fit with the MSS.
    assert after + 40 < 1000, f"after `mssfix 1000` and a reload the client's TCP still gets MSS {after}"
    assert cli.alive(), "the client lost its tunnel at the reload"


def test_full_server_lets_a_client_restarting_from_its_port_back_in(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki, extra="max-clients 1\n"), "full-srv", pattern=r"listening on UDP")
    procs.append(srv)
    prof = client_profile(lab.pki, "udp").replace("nobind\n", "lport 41194\n")
    first = lab.openvpn(lab.cli, prof, "full-cli-1")
    # It restarts without an exit notification (a crash, a reboot): the server still holds its
    # session, and the server is full.
    first.p.send_signal(signal.SIGKILL)
    first.stop(8)
    lab.cli.run("ip link del tun0", check=False)             # what the killed process left
    mark = len(srv.log())
    second = lab.openvpn(lab.cli, prof, "full-cli-2", wait=0)
    procs.append(second)
    # Before the fix it waited for the old session's ping-restart (60 s on the server).
    assert second.wait_for("Initialization Sequence Completed", 20), \
        f"the restarted client did not get in:\n{srv.log()[mark:][-2000:]}"
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, 10), "no traffic through the new session"
    assert "max-clients reached" not in srv.log()[mark:]
    # The old session ends as the new one takes over (by its address, or its name without duplicate-cn).
    assert srv.wait_for(r"disconnected: (replaced by a new session|another client connected)", 5, after=mark), \
        srv.log()[mark:][-2000:]
