"""qemu/ovmf-rom.sh: OVMF as a `-bios` ROM padded with 0xFF down to the TPM's registers (0xFED40000),
so that OVMF's TPM probe reads "absent" instead of waiting out its timeouts. What must hold for QEMU
to map it and for OVMF to run from it: the firmware's own bytes at the top (ending at 4 GiB, where
the reset vector is), 0xFF below them, exactly 4 GiB - 0xFED40000 in all, and no rewrite when current.
(That OVMF then sees no TPM is tests/vm/test_disk_image.py's UEFI boot through qemu/run-disk.sh.)"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "qemu/ovmf-rom.sh"
SPAN = 0x1_0000_0000 - 0xFED4_0000


def _run(fd: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), str(out)], env={**os.environ, "OVMF_FD": str(fd)},
                          capture_output=True, text=True, timeout=60)


def test_rom_is_the_firmware_at_the_top_padded_with_ff_to_the_tpm(tmp_path):
    fw = os.urandom(2 * 1024 * 1024)
    fd = tmp_path / "OVMF.fd"
    fd.write_bytes(fw)
    out = tmp_path / "cache" / "rom.fd"
    r = _run(fd, out)
    assert r.returncode == 0, r.stderr
    rom = out.read_bytes()
    assert len(rom) == SPAN                      # mapped at 4 GiB - SPAN = 0xFED40000
    assert rom[-len(fw):] == fw                  # the reset vector and every volume where they were
    assert rom[:-len(fw)] == b"\xff" * (SPAN - len(fw))
    assert [p.name for p in out.parent.iterdir()] == ["rom.fd"]     # no temporary file left


def test_a_current_rom_is_kept_and_a_stale_one_rewritten(tmp_path):
    fd = tmp_path / "OVMF.fd"
    fd.write_bytes(b"\x01" * 65536)
    out = tmp_path / "rom.fd"
    assert _run(fd, out).returncode == 0
    first = out.stat()
    assert _run(fd, out).returncode == 0
    assert out.stat().st_ino == first.st_ino and out.stat().st_mtime_ns == first.st_mtime_ns
    # A newer firmware (a Debian update) makes a new ROM.
    fd.write_bytes(b"\x02" * 65536)
    os.utime(fd, ns=(first.st_mtime_ns + 10**9, first.st_mtime_ns + 10**9))
    assert _run(fd, out).returncode == 0
    assert out.read_bytes()[-65536:] == b"\x02" * 65536


def test_firmware_that_cannot_fit_or_is_missing_is_refused(tmp_path):
    big = tmp_path / "big.fd"
    big.write_bytes(b"\0" * (SPAN + 65536))
    r = _run(big, tmp_path / "rom.fd")
    assert r.returncode != 0 and "expected a multiple of 64 KiB" in r.stderr
    assert not (tmp_path / "rom.fd").exists()
    r = _run(tmp_path / "absent.fd", tmp_path / "rom.fd")
    assert r.returncode != 0 and "install Debian's ovmf" in r.stderr


# ------------------------------------------------------------------ run as root in a shared directory
# run-disk.sh runs as root and hands the ROM to QEMU: a ROM another user placed would be firmware
# of their choosing in the appliance's VM.
def _shared(tmp_path: Path) -> tuple[Path, Path]:
    fd = tmp_path / "OVMF.fd"
    fd.write_bytes(b"\x01" * 65536)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)                         # as /tmp
    return fd, shared


@pytest.mark.root
def test_a_current_looking_rom_another_user_put_there_is_replaced(tmp_path):
    fd, shared = _shared(tmp_path)
    out = shared / "rom.fd"
    out.write_bytes(b"\xcc" * SPAN)              # the right size, newer than the firmware
    os.chown(out, 65534, 65534)
    r = _run(fd, out)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_uid == os.geteuid() and out.read_bytes()[-65536:] == b"\x01" * 65536


@pytest.mark.root
def test_a_symlink_at_out_is_replaced_not_followed(tmp_path):
    fd, shared = _shared(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = tmp_path / "theirs.fd"
    theirs.write_bytes(b"\xcc" * SPAN)
    out = shared / "rom.fd"
    for target in (elsewhere, theirs):           # a directory (mv would write into it), a ROM
        out.symlink_to(target)
        r = _run(fd, out)
        assert r.returncode == 0, r.stderr
        assert not out.is_symlink() and out.read_bytes()[-65536:] == b"\x01" * 65536
        assert list(elsewhere.iterdir()) == [] and theirs.read_bytes()[:1] == b"\xcc"
        out.unlink()


def test_a_directory_others_can_write_without_the_sticky_bit_is_refused(tmp_path):
    fd, shared = _shared(tmp_path)
    shared.chmod(0o777)                          # anyone could swap the ROM after it is written
    r = _run(fd, shared / "rom.fd")
    assert r.returncode != 0 and "another user could swap the ROM" in r.stderr
    assert list(shared.iterdir()) == []


@pytest.mark.root
def test_a_directory_of_another_user_on_the_way_is_refused(tmp_path):
    fd, shared = _shared(tmp_path)
    theirs = shared / "theirs"                   # made in /tmp by another user, beat us to the name
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    link = shared / "link"                       # or a symlink of theirs to a directory of ours
    (tmp_path / "ours").mkdir()
    link.symlink_to(tmp_path / "ours")
    os.chown(link, 65534, 65534, follow_symlinks=False)
    for out in (theirs / "rom.fd", theirs / "sub" / "rom.fd", link / "rom.fd"):
        r = _run(fd, out)
        assert r.returncode != 0 and "another user could swap the ROM" in r.stderr, (out, r.stderr)
        assert not out.exists()
