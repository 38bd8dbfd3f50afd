"""The files a config writes, in the VM (README "The config volume"): a server profile with Debian's
sample paths (`status /var/log/openvpn/openvpn-status.log`, `ifconfig-pool-persist
/var/log/openvpn/ipp.txt`) and an eduVPN-style management socket, on a config volume written by
`config-disk`. Before, every status write failed with a warning (the volume is read-only, the VM has
no /var/log/openvpn) and the socket's bind stopped the start; now the VM starts, says where the files
are, serves Debian's client and warns about none of them. (The files' content, written where the
bundle says, against a real client: tests/interop/test_vm_outputs.py, in host mode.)"""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile
from lab.netns import Proc
from lab.vm import OUT, appliance_toml, boot, config_volume, inline_server_config, lab_pki, vm_topology, wait_ping
from tests.vm.test_image import build


@pytest.fixture(scope="module")
def pki():
    build(OUT)          # makes (or reuses) the default lab PKI in the build cache
    return lab_pki()


def test_server_vm_with_debians_output_paths_starts_and_writes_them_in_memory(pki, tmp_path):
    ovpn = inline_server_config(pki, "udp") + (
        "status /var/log/openvpn/openvpn-status.log 1\nifconfig-pool-persist /var/log/openvpn/ipp.txt 1\n"
        "management /run/openvpn-server/default-0.sock unix\n")
    toml = tmp_path / "server.toml"
    toml.write_text(appliance_toml("server", ovpn, lan=False))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path, with_lan=False) as t:
        q = boot(t, OUT, with_lan=False, config_disk=vol)
        assert q.wait_for("listening on UDP", 150), q.log()[-4000:]
        log = q.log()
        assert "status /run/vpn-appliance/openvpn/openvpn-status.log: in the VM's memory" in log
        assert "ifconfig-pool-persist /run/vpn-appliance/openvpn/ipp.txt: addresses kept for this boot only" in log
        # said when the interface opens, which may come after the UDP socket's line
        assert q.wait_for("management interface on /run/vpn-appliance/openvpn/default-0.sock", 30), q.log()[-4000:]
        cfg = tmp_path / "client.ovpn"
        cfg.write_text(client_profile(pki, "udp", None, "tls-crypt", remotes=[("198.18.0.2", 1194, "udp")]))
        cli = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "client.log")
        t["procs"].append(cli)
        assert cli.wait_for("Initialization Sequence Completed", 60), cli.log()[-3000:] + q.log()[-3000:]
        assert wait_ping(t["wan"], "198.19.0.1", 20), q.log()[-3000:]
        time.sleep(3)                   # three status and pool writes (every second) with the client in
        assert q.alive(), q.log()[-4000:]
        warned = [x for x in q.log().splitlines() if re.search(r" (WARNING|ERROR) |FATAL", x)
                  and re.search(r"status|pool|management|/var/log|/run/", x)]
        assert warned == [], q.log()[-4000:]
