"""The appliance VM under the attacks of tests/interop/test_attacks.py: it must not power off (its
PID 1 powers the machine off when the appliance ends), and it must keep serving or keep its tunnel.

- Server mode (UDP, no tls-auth, so hard resets are answered): datagrams from source port 0 and
  garbage, sent from a raw socket on the WAN; Debian's OpenVPN client keeps its tunnel.
- Router mode over TCP: the profile lists a hostile TCP server (a zero-length frame) before Debian's
  OpenVPN server; the appliance moves on to the second and the LAN reaches the far side.
Each boots the default image with its config on a config volume (lab.vm.config_volume).
"""
from __future__ import annotations

import sys

import pytest

from lab.attacks import HOSTILE_SERVER, PORT0_SENDER, run_py
from lab.configs import client_profile, server_config
from lab.netns import Proc
from lab.vm import (OUT, appliance_toml, boot, config_volume, inline_server_config, lab_pki, ping, vm_topology,
                    wait_ping)
from tests.vm.test_image import build

VM_WAN = "198.18.0.2"


@pytest.fixture(scope="module")
def pki():
    build(OUT)          # makes (or reuses) the default lab PKI in the build cache
    return lab_pki()


def _powered_off(q: Proc) -> str:
    return "" if q.alive() else f"the VM powered off (qemu status {q.p.returncode}):\n{q.log()[-4000:]}"


def test_server_mode_survives_datagrams_from_source_port_0(pki, tmp_path):
    toml = tmp_path / "server.toml"
    toml.write_text(appliance_toml("server", inline_server_config(pki, "udp", protection="none"), lan=False))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path, with_lan=False) as t:
        q = boot(t, OUT, with_lan=False, config_disk=vol)
        assert q.wait_for("listening on UDP", 150), q.log()[-4000:]
        prof = client_profile(pki, "udp", None, "none", remotes=[(VM_WAN, 1194, "udp")])
        cfg = tmp_path / "client.ovpn"
        cfg.write_text(prof)
        cli = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "client.log")
        t["procs"].append(cli)
        assert cli.wait_for("Initialization Sequence Completed", 60), cli.log()[-3000:] + q.log()[-3000:]
        assert wait_ping(t["wan"], "198.19.0.1", 20), q.log()[-3000:]
        out = run_py(t["wan"], PORT0_SENDER, VM_WAN, 1194, 20)
        assert "sent 120" in out, out
        assert not q.wait_for("powering off|FATAL", 5), _powered_off(q) or q.log()[-4000:]
        assert q.alive(), _powered_off(q)
        assert ping(t["wan"], "198.19.0.1", 10) >= 8, _powered_off(q) or q.log()[-3000:]
        assert q.alive(), _powered_off(q)


def test_router_over_tcp_survives_a_zero_length_frame_from_a_hostile_server(pki, tmp_path):
    prof = client_profile(pki, "tcp", None, "tls-crypt", inline=True,
                          remotes=[("198.18.0.1", 1195, "tcp"), ("198.18.0.1", 1194, "tcp")],
                          extra="server-poll-timeout 5\nconnect-retry 1\n")
    toml = tmp_path / "tcp.toml"
    toml.write_text(appliance_toml("client", prof, lan=True))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path) as t:
        hostile = Proc(t["wan"], [sys.executable, "-c", HOSTILE_SERVER, "198.18.0.1", "1195", "zero"],
                       tmp_path / "hostile.log")
        t["procs"].append(hostile)
        assert hostile.wait_for("listening", 60), hostile.log()
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(pki, "tcp", None, "tls-crypt"))
        srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(srv)
        assert srv.wait_for("Initialization Sequence Completed", 20)
        q = boot(t, OUT, config_disk=vol)
        assert hostile.wait_for(f"sent zero to {VM_WAN}", 150), hostile.log() + q.log()[-4000:]
        up = q.wait_for("tunnel up", 60)
        assert q.alive(), _powered_off(q)
        assert up, q.log()[-4000:]
        assert ping(t["lan"], "198.18.100.1", 3) >= 2, q.log()[-3000:]
        assert q.alive(), _powered_off(q)
