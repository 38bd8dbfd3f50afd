"""A server VM's management interface on its LAN address (README "Reading a server VM's status
from the LAN"): the profile says `management 198.18.50.1 7505 FILE` with the password file beside
the TOML; `config-disk` carries it, the VM listens there, and a host on the LAN reads `status 2`
with the Debian client connected through the WAN. From the WAN, the same address routed to the
VM gets nothing: the firewall opens the port on the LAN interface only (router/killswitch.py)."""
from __future__ import annotations

import sys
import textwrap

import pytest

from lab.configs import client_profile
from lab.netns import Proc
from lab.vm import OUT, appliance_toml, boot, config_volume, inline_server_config, lab_pki, vm_topology, wait_ping
from tests.vm.test_image import build

PASSWORD = "vm mgmt pw"

CLIENT = textwrap.dedent('''
    import socket, sys, time
    try:
        s = socket.create_connection((sys.argv[1], 7505), timeout=5)
    except OSError as e:
        print("CONNECT-FAILED", e); sys.exit(0)
    s.settimeout(5)
    buf = b""
    def until(pred):
        global buf
        end = time.monotonic() + 10
        while not pred(buf) and time.monotonic() < end:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    until(lambda b: b.endswith(b"ENTER PASSWORD:"))
    s.sendall(sys.argv[2].encode() + b"\\n")
    until(lambda b: b"SUCCESS: password is correct" in b)
    s.sendall(b"status 2\\n")
    until(lambda b: b.endswith(b"END\\r\\n"))
    print(buf.decode("utf-8", "replace"))
''')


@pytest.fixture(scope="module")
def pki():
    build(OUT)          # makes (or reuses) the default lab PKI in the build cache
    return lab_pki()


def test_server_vm_status_read_from_the_lan_with_the_password(pki, tmp_path):
    (tmp_path / "mgmt-pw").write_text(PASSWORD + "\n")
    ovpn = inline_server_config(pki, "udp") + f"management 198.18.50.1 7505 {tmp_path / 'mgmt-pw'}\n"
    toml = tmp_path / "server.toml"
    toml.write_text(appliance_toml("server", ovpn, lan=True))
    vol = config_volume(toml, tmp_path / "config.img")
    (tmp_path / "mgmt.py").write_text(CLIENT)
    with vm_topology(tmp_path, with_lan=True) as t:
        q = boot(t, OUT, with_lan=True, config_disk=vol)
        assert q.wait_for("listening on UDP", 150), q.log()[-4000:]
        assert q.wait_for("management interface on 198.18.50.1:7505", 30), q.log()[-4000:]
        cfg = tmp_path / "client.ovpn"
        cfg.write_text(client_profile(pki, "udp", None, "tls-crypt", remotes=[("198.18.0.2", 1194, "udp")]))
        cli = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "client.log")
        t["procs"].append(cli)
        assert cli.wait_for("Initialization Sequence Completed", 60), cli.log()[-3000:] + q.log()[-3000:]
        assert wait_ping(t["wan"], "198.19.0.1", 20), q.log()[-3000:]
        r = t["lan"].run(f"{sys.executable} {tmp_path / 'mgmt.py'} 198.18.50.1 '{PASSWORD}'", timeout=60)
        assert "SUCCESS: password is correct" in r.stdout, r.stdout + r.stderr + q.log()[-3000:]
        rows = [x for x in r.stdout.splitlines() if x.startswith("CLIENT_LIST,")]
        assert len(rows) == 1 and rows[0].split(",")[1] == "client1" and ",198.19.0." in rows[0], r.stdout
        # From the WAN, the LAN address routed to the VM: the port is closed there.
        t["wan"].run("ip route add 198.18.50.1/32 via 198.18.0.2")
        r = t["wan"].run(f"{sys.executable} {tmp_path / 'mgmt.py'} 198.18.50.1 '{PASSWORD}'", timeout=60)
        assert r.stdout.startswith("CONNECT-FAILED"), r.stdout
        assert q.alive(), q.log()[-4000:]
