"""Build the real appliance image and boot it under QEMU (KVM when the probe says it works,
TCG otherwise): size, reproducibility, self-test on the serial console, and a broken config
refused by the build with `file:line`."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "image" / "out"
CACHE = OUT / "cache"


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is missing: run `make setup` (installs qemu-system-x86, zstd)")


def build(out: Path, config: Path | None = None) -> str:
    _need("qemu-system-x86_64")
    _need("zstd")
    cmd = [sys.executable, str(REPO / "image/build.py"), "--out", str(out), "--cache", str(CACHE)]
    if config is not None:
        cmd += ["--config", str(config)]
    # The first build of a fresh clone compiles the kernel (image/kernel.py, make -j2) beside the
    # rest of the suite on 2 cores: ~6-9 min alone, past 10 min on a busy machine (a run with two
    # other test jobs timed out at 600 s; a CI with two CPU hogs and three other jobs beside it,
    # load 9, compiled it in 1656 s and timed out at 1500 s); later builds reuse it from the
    # cache in seconds. The limit only stops a build that hangs: the CI's own is 90 minutes.
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=2700)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[image] done" in r.stdout or "up to date" in r.stdout, "the build shows progress and a summary"
    return hashlib.sha256((out / "initramfs.img").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def image():
    sha = build(OUT)
    return OUT, sha


from lab.vm import accel, qemu_argv  # noqa: E402 - shared with make run


def boot(out: Path, append: str, timeout: float = 150) -> tuple[str, float, bool]:
    """Boot with no NICs; returns (console text, seconds, exited by itself)."""
    cmd = qemu_argv(out, accel(out), [], append)   # -nodefaults: no NIC
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out_text, _ = p.communicate(timeout=timeout)
        return out_text.decode(errors="replace"), time.monotonic() - t0, True
    except subprocess.TimeoutExpired:
        p.kill()
        out_text, _ = p.communicate()
        return out_text.decode(errors="replace"), time.monotonic() - t0, False


def test_image_size_and_manifest(image, figure):
    out, _ = image
    k, i = (out / "vmlinuz").stat().st_size, (out / "initramfs.img").stat().st_size
    total = k + i
    figure(f"image size: {total / 1e6:.1f} MB (vmlinuz {k / 1e6:.1f} + initramfs {i / 1e6:.1f}), limit 24 MB")
    assert total <= 24_000_000, "issue 10: kernel + initramfs at most 24 MB"
    m = (out / "MANIFEST").read_text()
    for needle in ("python3.11-minimal", "linux-source-6.1 ", "cryptography==50.0.2", "lz4==4.4.5",
                   "python-lzo==1.15 (built here from its sdist", "liblzo2-2 ", "CONFIG_VIRTIO_NET=y",
                   "CONFIG_TUN=y", "CONFIG_NF_TABLES=y", "kernel config image/kernel.config sha256 ", "total "):
        assert needle in m


def test_reproducible_build(image, tmp_path, figure):
    """Initramfs and disk from the same inputs are identical. The kernel comes from the build cache
    (image/kernel.py, keyed by source version, config, gcc and timestamp), so this does NOT recompile
    it: that two clean kernel builds give the same bzImage was checked by hand (README)."""
    out, sha = image
    sha2 = build(tmp_path / "again")
    assert sha2 == sha, "two builds from the same inputs must give identical bytes"
    assert (tmp_path / "again/vmlinuz").read_bytes() == (out / "vmlinuz").read_bytes()
    figure(f"reproducible: a second build gave identical bytes (sha256 {sha[:16]}...)")


def test_boot_selftest(image, figure):
    out, _ = image
    text, secs, exited = boot(out, "appliance.selftest=1")
    figure(f"boot to SELFTEST OK under {accel(out)}: {secs:.1f} s")
    assert "vpn-appliance PID 1" in text, text[-3000:]
    assert "SELFTEST OK" in text, text[-3000:]
    assert re.search(r"selftest compression: ok \(LZO 2\.\d+, LZ4 1\.\d+", text), text[-3000:]
    # the stage lines lab.boot_profile reads: kernel marks, then init's own, in boot order
    stages = re.findall(r"^boot: (\S+) [\d.]+", text, re.M)
    assert stages[:1] == ["init"] and {"kernel-run-init", "modules", "selftest"} <= set(stages), stages
    assert exited, "the VM must power off by itself"


def test_bad_config_is_refused_by_the_build_with_file_line(tmp_path):
    """`make image CONFIG=...` runs `check` first: a broken config never reaches an image. (A broken
    config volume at boot: tests/vm/test_disk_image.py.)"""
    bad = tmp_path / "bad.toml"
    bad.write_text('[appliance]\nhostname = "x"\n\n[wan]\nname = "eth0"\naddress = "not-an-address"\n\n'
                   '[vpn]\nrole = "client"\ninline = """\nclient\nremote 198.18.0.1\n"""\n')
    r = subprocess.run([sys.executable, str(REPO / "image/build.py"), "--out", str(tmp_path / "bad"), "--cache",
                        str(CACHE), "--config", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"{bad}:6: wan.address: " in r.stderr, r.stderr
    assert not (tmp_path / "bad/initramfs.img").exists()
