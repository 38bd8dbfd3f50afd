"""The shipped libvirt domain (qemu/vpn-appliance.xml) booted by a real libvirtd (Debian's 9.0), as
the README tells a user to: `virsh define` + `virsh start`.

One boot proves: libvirtd accepts the XML as shipped apart from what a test topology must change
(lab/libvirt.py adapt_domain: domain type qemu under TCG, the disk paths, the NICs' bridges, a log on
the serial console); its firmware="efi" selection picks an OVMF build without Secure Boot and SMM;
the appliance boots from the disk under UEFI on libvirt's default CPU model (qemu64, no RDRAND),
reads the config volume, brings the tunnel up to Debian's OpenVPN server, and a LAN host on the
LAN bridge reaches the far side through it. libvirtd runs privately (its own mount namespace and
paths) inside the test's network namespace, where it creates the domain's TAPs.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.libvirt import Libvirtd, adapt_domain, firmware_descriptor
from lab.netns import Proc
from lab.vm import OUT, accel, lab_pki, lan_transfer, vm_topology
from lab.vm import ping as _ping
from tests.vm.test_image import build

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "qemu/vpn-appliance.xml"
NAME = "vpn-appliance"     # the shipped domain's name (the daemon is private: no clash)


@pytest.fixture(scope="module")
def image():
    build(OUT)      # the default image, reused when current; it includes disk.qcow2
    return OUT


def _config_volume(tmp: Path) -> Path:
    pki = lab_pki()
    conf = tmp / "conf"
    conf.mkdir()
    (conf / "client.ovpn").write_text(client_profile(pki, "udp", None, "tls-crypt", inline=False))
    (conf / "appliance.toml").write_text(
        '[appliance]\nhostname = "under-libvirt"\n\n[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n'
        'gateway = "198.18.0.1"\n\n[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\nnat = true\n\n'
        '[vpn]\nrole = "client"\nconfig = "client.ovpn"\n')
    img = tmp / "config.img"
    r = subprocess.run([sys.executable, "-m", "appliance", "config-disk", str(conf / "appliance.toml"), "-o", str(img)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    return img


def _wait_console(path: Path, pattern: str, timeout: float) -> bool:
    """Poll the serial log for `pattern`; give up early on a panic or a fatal config error."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return True
        if "Kernel panic" in text or "FATAL:" in text:
            return False
        time.sleep(0.3)
    return False


def test_libvirtd_boots_shipped_domain_and_routes_lan(image, tmp_path, figure):
    cfg_img = _config_volume(tmp_path)
    disk = tmp_path / "vpn-appliance.qcow2"      # a throwaway overlay: the VM writes to its disk
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image / "disk.qcow2"),
                    str(disk)], check=True, timeout=30)
    console = tmp_path / "console.log"
    a = accel(image)
    with vm_topology(tmp_path) as t:
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(lab_pki(), "udp", None, "tls-crypt"))
        ovpn = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(ovpn)
        t0 = time.monotonic()
        with Libvirtd(t["vm"], tmp_path / "libvirtd.log") as lv:
            started = time.monotonic() - t0
            domain = tmp_path / "domain.xml"
            domain.write_text(adapt_domain(SHIPPED.read_text(), disk=disk, config_disk=cfg_img, bridges=("brw", "brl"),
                                           console_log=console, domain_type="kvm" if a == "kvm" else "qemu"))
            assert ovpn.wait_for("Initialization Sequence Completed", 20), ovpn.log()
            lv.virsh("define", str(domain))
            t1 = time.monotonic()
            lv.virsh("start", NAME)
            up = _wait_console(console, "tunnel up", 240)
            text = console.read_text(errors="replace") if console.exists() else ""
            assert up, f"no tunnel from the libvirt boot:\n{text[-4000:]}\nlibvirt's QEMU log:\n{lv.qemu_log(NAME)[-2000:]}"
            figure(f"libvirt: libvirtd up in {started:.1f} s; virsh start to tunnel up under {a}: "
                   f"{time.monotonic() - t1:.1f} s")
            assert "config volume /dev/vdb (label VPNCONFIG)" in text, text[-3000:]
            assert "hostname under-libvirt" in text, text[-3000:]

            # The firmware libvirt chose for firmware="efi" with secure-boot and enrolled-keys off.
            live = lv.virsh("dumpxml", NAME).stdout
            loader = re.search(r"<loader[^>]*>([^<]+)</loader>", live)
            assert loader, live
            desc = firmware_descriptor(loader.group(1))
            assert desc is not None, f"{loader.group(1)} is named by no descriptor in /usr/share/qemu/firmware"
            assert "secure-boot" not in desc["features"] and "requires-smm" not in desc["features"], desc
            assert "-cpu qemu64" in lv.qemu_log(NAME) or a == "kvm", "libvirt's default CPU model (no RDRAND)"
            figure(f"libvirt: firmware=\"efi\" picked {loader.group(1)} ({desc['file']}: {desc['description']})")

            # A LAN host on the LAN bridge reaches the far side through the tunnel, NATed.
            assert _ping(t["lan"], "198.18.100.1", 3) >= 2, console.read_text(errors="replace")[-3000:]
            peer = lan_transfer(t["lan"], t["wan"], tmp_path, nbytes=200_000)
            assert peer.startswith("198.19.0."), peer
            assert lv.virsh("domstate", NAME).stdout.strip() == "running"
