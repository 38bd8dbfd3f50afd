"""The bootable disk image (image/disk.py) under QEMU without -kernel, and the config volume.

Three boots in all, each proving several things (TCG makes boots the costly part):
- UEFI (Debian's OVMF) from disk.qcow2 with a config volume written by `vpn-appliance config-disk`
  from a profile that names its files (`ca`, `cert`, `key`, `tls-crypt` in another directory): the
  volume's config wins over the baked one, the tunnel comes up to Debian's OpenVPN server, and a
  LAN host reaches the far side through it.
- BIOS (SeaBIOS) from the same disk with a config volume whose TOML is broken: the boot stops with
  `file:line` on the console, as `check` prints it, and the VM powers off by itself. The same under
  UEFI through qemu/run-disk.sh, whose firmware ROM answers OVMF's TPM probe at once.
Plus the cheap one: the disk written twice from the same kernel + initramfs is byte-identical.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Proc
from lab.vm import OUT, accel, boot_disk, lab_pki, lan_transfer, vm_topology
from lab.vm import ping as _ping
from tests.vm.conftest import FIGURES
from tests.vm.test_image import build

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "image"))
import disk  # noqa: E402  (image/disk.py)
from appliance.fatimage import make_fat  # noqa: E402

BAD_TOML = ('[appliance]\nhostname = "bad"\n\n[wan]\nname = "eth0"\naddress = "not-an-address"\n\n'
            '[vpn]\nrole = "client"\ninline = """\nclient\nremote 198.18.0.1\n"""\n')


@pytest.fixture(scope="module")
def image():
    build(OUT)      # the default image, reused when current; it includes disk.raw and disk.qcow2
    return OUT


def test_disk_is_byte_reproducible(image, tmp_path, figure):
    """Two disks written from the same kernel, initramfs and boot packages are identical, raw and qcow2."""
    boot_root = tmp_path / "boot"
    for deb in sorted((OUT / "cache/debs").glob("*.deb")):
        if deb.name.split("_")[0] in disk.BOOT_PKGS:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(boot_root)], check=True)
    shas = []
    for n in ("a", "b"):
        d = tmp_path / n
        d.mkdir()
        for f in ("vmlinuz", "initramfs.img"):
            shutil.copyfile(OUT / f, d / f)
        disk.build_disk(d, boot_root, 1_700_000_000)
        shas.append({f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("disk.raw", "disk.qcow2")})
        time.sleep(1.1)     # a clock leaking into the FAT would show
    assert shas[0] == shas[1]
    m = (OUT / "MANIFEST").read_text()
    for needle in ("disk.raw ", "disk.qcow2 ", "EFI/BOOT/BOOTX64.EFI", "syslinux.cfg", "systemd-boot-efi ",
                   "syslinux-common ", "(from linux-source)", "tool mtools "):
        assert needle in m, needle
    figure(f"disk image: raw {(OUT / 'disk.raw').stat().st_size / 1e6:.1f} MB, qcow2 "
           f"{(OUT / 'disk.qcow2').stat().st_size / 1e6:.1f} MB; reproducible (sha256 {shas[0]['disk.raw'][:16]}...)")


def test_uefi_disk_reads_config_volume_and_routes_lan(image, tmp_path):
    pki = lab_pki()
    conf = tmp_path / "conf"
    conf.mkdir()
    # A profile naming its files by absolute path (in the lab PKI directory), as many deployments do.
    (conf / "client.ovpn").write_text(client_profile(pki, "udp", None, "tls-crypt", inline=False))
    (conf / "appliance.toml").write_text(
        '[appliance]\nhostname = "from-volume"\n\n[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n'
        'gateway = "198.18.0.1"\n\n[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\nnat = true\n\n'
        '[vpn]\nrole = "client"\nconfig = "client.ovpn"\n')
    cfg_img = tmp_path / "config.img"
    r = subprocess.run([sys.executable, "-m", "appliance", "config-disk", str(conf / "appliance.toml"), "-o",
                        str(cfg_img)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in ("ca.crt", "client1.crt", "client1.key", "static.key", "client.ovpn"):
        assert f"{name} " in r.stdout, r.stdout
    with vm_topology(tmp_path) as t:
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(pki, "udp", None, "tls-crypt"))
        ovpn = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(ovpn)
        assert ovpn.wait_for("Initialization Sequence Completed", 20), ovpn.log()
        t0 = time.monotonic()
        q = boot_disk(t, image, "uefi", cfg_img)
        assert q.wait_for("tunnel up", 240), "no tunnel from the UEFI disk boot:\n" + q.log()[-4000:]
        FIGURES.append(f"UEFI disk boot to tunnel up (config volume) under {accel(image)}: "
                       f"{time.monotonic() - t0:.1f} s")
        log = q.log()
        assert "config volume /dev/vdb (label VPNCONFIG)" in log, log[-3000:]
        assert "hostname from-volume" in log, log[-3000:]
        assert _ping(t["lan"], "198.18.100.1", 3) >= 2, q.log()[-3000:]
        peer = lan_transfer(t["lan"], t["wan"], tmp_path, nbytes=200_000)
        assert peer.startswith("198.19.0."), peer


def _run_disk_with_bad_config(image: Path, tmp_path: Path, firmware: str, **env_extra: str) -> tuple[str, bool]:
    """Boot the disk through qemu/run-disk.sh (the README's plain-QEMU command) with a config volume
    whose TOML is broken; -> (console text, whether the VM powered off by itself)."""
    # Written by hand, as an operator editing the volume would: config-disk itself refuses it.
    cfg_img = tmp_path / "bad.img"
    make_fat(cfg_img, {"appliance.toml": BAD_TOML.encode()}, "VPNCONFIG", "0badc0de", 1_700_000_000)
    env = {**os.environ, "FIRMWARE": firmware, "CONFIG_DISK": str(cfg_img), "SNAPSHOT": "1",
           "ACCEL": accel(image), **env_extra}
    p = subprocess.Popen([str(REPO / "qemu/run-disk.sh"), str(image / "disk.qcow2")], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=240)
        exited = True
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)     # the script's own process group: bash and its QEMU
        text, _ = p.communicate()
        exited = False
    return text.decode(errors="replace"), exited


def test_bios_disk_with_bad_config_volume_stops_with_file_line(image, tmp_path):
    text, exited = _run_disk_with_bad_config(image, tmp_path, "bios")
    assert "SYSLINUX" in text, "booted through SeaBIOS + syslinux: " + text[-2000:]
    assert "FATAL: /run/vpnconfig/appliance.toml:6: wan.address: " in text, text[-3000:]
    assert "reboot: Power down" in text and exited, "the VM powers off by itself after a config error"


def test_uefi_disk_through_run_disk_sees_no_tpm_and_stops_on_bad_config(image, tmp_path):
    """run-disk.sh's UEFI firmware is qemu/ovmf-rom.sh's ROM: OVMF's TPM probe reads 0xFF ("absent")
    instead of QEMU's 0 for unmapped MMIO, which it polls through two 750 ms timeouts. QEMU logs
    each guest access to unmapped MMIO (`-d guest_errors`): with Debian's stock pflash layout that
    is ~50,000 reads of 0xFED4xxxx per boot; with the ROM, none."""
    errors = tmp_path / "guest-errors.log"
    text, exited = _run_disk_with_bad_config(image, tmp_path, "uefi", OVMF_ROM=str(tmp_path / "ovmf-rom.fd"),
                                             QEMU_EXTRA=f"-d guest_errors -D {errors}")
    assert "FATAL: /run/vpnconfig/appliance.toml:6: wan.address: " in text, text[-3000:]
    assert "reboot: Power down" in text and exited, "the VM powers off by itself after a config error"
    assert "SYSLINUX" not in text, "booted through OVMF, not SeaBIOS"
    assert errors.exists(), "QEMU_EXTRA reached QEMU (its log file exists)"
    tpm_reads = [ln for ln in errors.read_text(errors="replace").splitlines() if "read at addr 0xFED4" in ln]
    assert not tpm_reads, f"OVMF polled the absent TPM {len(tpm_reads)} times: {tpm_reads[:3]}"
