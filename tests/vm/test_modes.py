"""The appliance VM over TCP (router mode) and in server mode, each booting the default image with its
own config volume (`vpn-appliance config-disk`; the OpenVPN config inline in the TOML), whose TOML
wins over the baked one. A baked config is what tests/vm/test_router.py boots."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Proc
from lab.vm import (OUT, appliance_toml, boot, config_volume, inline_server_config, lab_pki, lan_transfer, ping,
                    vm_topology, wait_ping)
from tests.vm.test_image import build


@pytest.fixture(scope="module")
def pki():
    build(OUT)          # makes (or reuses) the default lab PKI in the build cache
    return lab_pki()


def test_router_over_tcp(pki, tmp_path):
    prof = client_profile(pki, "tcp", None, "tls-crypt", inline=True)
    toml = tmp_path / "tcp.toml"
    toml.write_text(appliance_toml("client", prof, lan=True))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path) as t:
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(pki, "tcp", None, "tls-crypt"))
        srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(srv)
        assert srv.wait_for("Initialization Sequence Completed", 20)
        q = boot(t, OUT, config_disk=vol)
        assert q.wait_for("tunnel up", 150), q.log()[-4000:]
        assert "over TCP" in q.log()
        assert ping(t["lan"], "198.18.100.1", 3) >= 2, q.log()[-3000:]
        assert lan_transfer(t["lan"], t["wan"], tmp_path).startswith("198.19.0.")
        assert lan_transfer(t["lan"], t["wan"], tmp_path, download=True).startswith("198.19.0.")


def test_server_mode_openvpn_client_connects(pki, tmp_path):
    toml = tmp_path / "server.toml"
    toml.write_text(appliance_toml("server", inline_server_config(pki, "udp"), lan=False))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path, with_lan=False) as t:
        q = boot(t, OUT, with_lan=False, config_disk=vol)
        assert q.wait_for("listening on UDP", 150), q.log()[-4000:]
        prof = client_profile(pki, "udp", None, "tls-crypt", remotes=[("198.18.0.2", 1194, "udp")])
        cfg = tmp_path / "client.ovpn"
        cfg.write_text(prof)
        cli = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "client.log")
        t["procs"].append(cli)
        assert cli.wait_for("Initialization Sequence Completed", 60), cli.log()[-3000:] + q.log()[-3000:]
        assert wait_ping(t["wan"], "198.19.0.1", 20), q.log()[-3000:]
        assert "connected, address 198.19.0." in q.log()


def test_router_with_dhcp_on_wan_nics_by_mac_and_routed_lan(pki, tmp_path):
    """WAN by DHCP (dnsmasq), both NICs picked by MAC, and the LAN routed without NAT: the server
    reaches the LAN by its own addresses through an iroute (client-config-dir)."""
    import shutil
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq is missing: run `make setup` (installs dnsmasq-base)")
    prof = client_profile(pki, "udp", None, "tls-crypt", inline=True)
    toml = tmp_path / "dhcp.toml"
    toml.write_text(appliance_toml("client", prof, lan=True)
                    .replace('address = "198.18.0.2/24"\ngateway = "198.18.0.1"\n', "dhcp = true\n", 1)
                    .replace('name = "eth0"', 'mac = "52:54:00:00:00:01"')
                    .replace('name = "eth1"', 'mac = "52:54:00:00:00:02"')
                    .replace("nat = true", "nat = false"))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path) as t:
        dns = Proc(t["wan"], ["dnsmasq", "--no-daemon", "--port=0", f"--interface={t['wan_if']}", "--bind-interfaces",
                              "--dhcp-range=198.18.0.50,198.18.0.60,255.255.255.0,1h", "--dhcp-option=3,198.18.0.1",
                              "--dhcp-option=6,198.18.0.1", f"--dhcp-leasefile={tmp_path / 'leases'}",
                              "--log-dhcp"], tmp_path / "dnsmasq.log")
        t["procs"].append(dns)
        ccd = tmp_path / "ccd"
        ccd.mkdir()
        (ccd / "client1").write_text("iroute 198.18.50.0 255.255.255.0\n")
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(pki, "udp", None, "tls-crypt",
                                     extra=f"client-config-dir {ccd}\nroute 198.18.50.0 255.255.255.0\n"))
        srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(srv)
        assert srv.wait_for("Initialization Sequence Completed", 20)
        q = boot(t, OUT, config_disk=vol)
        assert q.wait_for("tunnel up", 150), q.log()[-4000:] + dns.log()[-2000:]
        assert "eth0: the NIC with MAC 52:54:00:00:00:01 (wan)" in q.log(), q.log()[-3000:]
        assert "eth1: the NIC with MAC 52:54:00:00:00:02 (lan)" in q.log()
        assert "DHCP lease 198.18.0.5" in q.log() or "DHCP lease 198.18.0.6" in q.log(), q.log()[-3000:]
        assert "DHCPACK" in dns.log()
        assert ping(t["lan"], "198.18.100.1", 3) >= 2, q.log()[-3000:]
        # No NAT: the far side sees the LAN host's own address, and can reach it by that address.
        assert lan_transfer(t["lan"], t["wan"], tmp_path) == "198.18.50.2"
        assert ping(t["wan"], "198.18.50.2", 3) >= 2, q.log()[-3000:]
