"""The disk boot's QEMU command line (lab/vm.py disk_argv) and qemu/run-disk.sh agree on the
choices README "Boot time of the disk image" measured: under TCG the CPU is `max` without ERMS/FSRM
(TCG runs `rep movsb` a byte at a time), under KVM the host's; the system disk alone in the boot order."""
from __future__ import annotations

import re
from pathlib import Path

from lab.vm import DISK_MACHINE, DISK_TCG_CPU, disk_argv

REPO = Path(__file__).resolve().parents[2]


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_tcg_disk_boot_cpu_has_no_fast_string_moves(tmp_path):
    argv = disk_argv(Path("/img"), "bios", "tcg", tmp_path, [])
    cpu = _opt(argv, "-cpu")
    assert cpu == DISK_TCG_CPU
    flags = cpu.split(",")
    assert flags[0] == "max" and "-erms" in flags and "-fsrm" in flags
    assert _opt(argv, "-M") == DISK_MACHINE
    assert "-kernel" not in argv and "bootindex=0" in _opt(argv, "-device")


def test_kvm_disk_boot_keeps_the_host_cpu(tmp_path):
    assert _opt(disk_argv(Path("/img"), "bios", "kvm", tmp_path, []), "-cpu") == "host"


def test_run_disk_script_uses_the_same_cpu_and_machine():
    script = (REPO / "qemu/run-disk.sh").read_text()
    m = re.search(r"^cpu=(\S+); \[ \"\$accel\" = kvm \] && cpu=host$", script, re.M)
    assert m, "run-disk.sh: the cpu= line changed shape"
    assert m.group(1) == DISK_TCG_CPU
    assert f"-M {DISK_MACHINE} " in script
