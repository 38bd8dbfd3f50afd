"""Every way we boot the appliance's kernel passes the same options that keep it from stopping by
itself: panic=-1 (a panic reboots, and QEMU's -no-reboot turns that into an exit) and
no_timer_check (image/disk.py says why: under TCG on a busy host the kernel's IO-APIC timer check
failed falsely and panicked the boot -- tests/vm/test_modes.py in the forty-third session's CI)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The four command lines: the lab's and the VM tests' QEMU, the shipped run script, the KVM probe,
# the disk image's boot entry.
PLACES = {
    "lab/vm.py": r'"-append", f"([^"]*)"',
    "qemu/run-appliance.sh": r'-append "([^"]*)"',
    "qemu/probe-kvm.sh": r'-append "([^"]*)"',
    "image/disk.py": r'CMDLINE = "([^"]*)"',
}


@pytest.mark.parametrize("path", sorted(PLACES))
def test_each_kernel_command_line_keeps_the_boot_from_a_false_timer_panic(path):
    found = re.findall(PLACES[path], (ROOT / path).read_text())
    assert len(found) == 1, f"{path}: expected one kernel command line, found {found}"
    words = found[0].split()
    assert "no_timer_check" in words, f"{path}: {found[0]!r}"
    assert "panic=-1" in words, f"{path}: {found[0]!r}"
    assert "console=ttyS0" in words, f"{path}: {found[0]!r}"
