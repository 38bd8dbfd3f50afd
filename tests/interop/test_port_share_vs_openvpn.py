"""port-share against Debian's OpenVPN 2.6: one TCP port for the VPN and a web site.

Our server, then Debian's OpenVPN server with the same config (`proto tcp-server`,
`port-share 127.0.0.1 8080 DIR`), each with Debian's OpenVPN as the client: the tunnel comes up
and pings, and a plain HTTP request to the same address and port gets the backend's answer (a
python http.server in the server's namespace). The backend answers with the journal file it finds
in DIR under its peer's address, so the answer also shows that DIR names the real client, in
OpenVPN's format, and the file is gone once the connection is.
"""
from __future__ import annotations

import sys

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, CLI_IP, SRV_IP, Lab, until

BACKEND_PORT = 8080

BACKEND = r'''
import http.server, os, sys
JDIR = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name = "[AF_INET]%s:%d" % self.client_address[:2]
        try:
            who = open(os.path.join(JDIR, name)).read()
        except OSError:
            who = "no journal file " + name
        body = ("backend here; client " + who).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("listening", flush=True)
srv.serve_forever()
'''

# A web client: its own address and port, then the answer (bounded: 10 s).
CLIENT = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("local %s:%d" % s.getsockname()[:2])
s.sendall(b"GET / HTTP/1.0\r\nHost: vpn.example\r\n\r\n")
out = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
print(out.decode(errors="replace"))
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.jdir = lab.tmp / "journal"
        lab.jdir.mkdir()
        backend = lab.write("backend.py", BACKEND)
        lab.client_py = lab.write("webclient.py", CLIENT)
        p = lab.start(lab.srv, [sys.executable, str(backend), str(BACKEND_PORT), str(lab.jdir)], "ps-backend")
        assert p.wait_for("listening", 20), p.log()
        yield lab
        p.stop()


@pytest.mark.parametrize("kind", ["ours", "openvpn"])
def test_vpn_and_web_site_share_the_port(lab, procs, kind):
    conf = server_config(lab.pki, "tcp", extra=f"port-share 127.0.0.1 {BACKEND_PORT} {lab.jdir}\n")
    if kind == "ours":
        srv = lab.ours(lab.srv, conf, "ps-srv-ours", pattern=r"listening on TCP")
    else:
        srv = lab.openvpn(lab.srv, conf, "ps-srv-openvpn")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "tcp-client"), f"ps-cli-{kind}", wait=40)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, BEHIND_IP), f"{kind} server: no traffic through the tunnel"

    r = lab.cli.run(f"{sys.executable} {lab.client_py} {SRV_IP} 1194", check=False, timeout=20)
    assert r.returncode == 0, f"{kind} server: the web request failed: {r.stderr}\n{srv.log()[-2000:]}"
    local = r.stdout.splitlines()[0].split()[1]
    assert "HTTP/1.0 200 OK" in r.stdout, r.stdout
    # The backend found the journal file under its peer's address, naming the real client.
    assert f"backend here; client [AF_INET]{local}" in r.stdout and local.startswith(CLI_IP + ":"), r.stdout
    assert until(lambda: not any(lab.jdir.iterdir()), 10), f"{kind}: journal files left: {list(lab.jdir.iterdir())}"
    assert lab.wait_ping(lab.cli, BEHIND_IP), f"{kind} server: the tunnel went down after the web request"
    print(f"\n{kind} server: tunnel up; web answer: {r.stdout.splitlines()[-1]}")
    cli.stop()
    srv.stop()
