"""The appliance VM's kernel: compiled from Debian's `linux-source` package with image/kernel.config.

Why compile: Debian's cloud kernel is 14.2 MB (LZ4 payload, and the decompressor is fixed when the
bzImage is built, so it cannot be recompressed) and needs modules; the appliance needs a few dozen
options. `make allnoconfig` with image/kernel.config as KCONFIG_ALLCONFIG gives a kernel with
exactly those, all built in (no modules to copy or load), zstd-compressed.

Reproducible: a fixed build directory (BUILD_DIR), KBUILD_BUILD_TIMESTAMP from SOURCE_DATE_EPOCH
(by default the date Debian built the source package: the kernel's bytes then depend only on the
source version, the config and the compiler), fixed user/host/version, no module signing, no
in-kernel headers. The built bzImage is cached under CACHE/kernel/<key>, the key being
(source version, config sha256, gcc version, timestamp, RECIPE), so image rebuilds that do not
change those reuse it instead of compiling for minutes.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "kernel.config"
# The source metapackage, resolved at build time to its versioned package (linux-source-6.1).
SOURCE_META = "linux-source"
SOURCE_PKG_RE = r"(linux-source-[0-9][0-9.]*) \(= ([^)]+)\)"
# One fixed place to build in, whatever the checkout: paths must not leak into the kernel's bytes
# (the kernel maps $(srctree) out of __FILE__, but a fixed path leaves nothing to chance).
BUILD_DIR = Path("/var/tmp/vpn-appliance-kernel")
# How the kernel is made; part of the cache key, so changing it rebuilds.
MAKE_ENV = {"ARCH": "x86_64", "KBUILD_BUILD_USER": "vpn-appliance", "KBUILD_BUILD_HOST": "debian",
            "KBUILD_BUILD_VERSION": "1", "LC_ALL": "C", "TZ": "UTC"}
# Where the Makefile's kernel-early target (`make test`, `make run`) logs the compile it starts in
# the background while the venv is set up (`image/build.py --kernel-only`).
EARLY_LOG = HERE / "out" / "kernel-early.log"
RECIPE = "allnoconfig+KCONFIG_ALLCONFIG; bzImage; " + " ".join(f"{k}={v}" for k, v in sorted(MAKE_ENV.items()))


class KernelBuildError(SystemExit):
    """The kernel could not be configured or compiled as image/kernel.config asks."""


@dataclass
class Kernel:
    bzimage: Path
    manifest: list[str]     # MANIFEST lines: source, compiler, config, key, size, sha256


def read_fragment(path: Path = CONFIG) -> dict[str, tuple[str | None, int]]:
    """CONFIG_X -> (value, or None for `# CONFIG_X is not set`; line number)."""
    out: dict[str, tuple[str | None, int]] = {}
    for n, ln in enumerate(path.read_text().splitlines(), 1):
        ln = ln.strip()
        m = re.fullmatch(r"# (CONFIG_\w+) is not set", ln)
        if m:
            out[m.group(1)] = (None, n)
        elif ln and not ln.startswith("#"):
            m = re.fullmatch(r"(CONFIG_\w+)=(\S.*)", ln)
            if m is None:
                raise KernelBuildError(f"{path}:{n}: not a Kconfig line: {ln!r}")
            out[m.group(1)] = (m.group(2), n)
    return out


def unmet(fragment: dict[str, tuple[str | None, int]], dotconfig: str, path: Path = CONFIG) -> list[str]:
    """Every fragment line the resolved .config does not honour, as `file:line: ...` (Kconfig drops
    an option silently when a dependency is missing or the name is wrong)."""
    have: dict[str, str | None] = {}
    for ln in dotconfig.splitlines():
        m = re.fullmatch(r"# (CONFIG_\w+) is not set", ln)
        if m:
            have[m.group(1)] = None
        elif ln.startswith("CONFIG_") and "=" in ln:
            k, v = ln.split("=", 1)
            have[k] = v
    return [f"{path}:{n}: {k}={'n' if v is None else v} asked, the kernel's config has "
            f"{'n' if have.get(k) is None else have[k]}"
            for k, (v, n) in fragment.items() if have.get(k) != v]


def gcc_version() -> str:
    r = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
    if r.returncode != 0:
        raise KernelBuildError("kernel build: no gcc (make setup installs the build dependencies)")
    return r.stdout.splitlines()[0].strip()


def _source_tarball(deb: Path) -> tuple[str, int]:
    """The kernel source tarball's name inside the .deb and its mtime (when Debian built it)."""
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=p.stdout, mode="r|") as t:
            for m in t:
                if re.fullmatch(r"\./usr/src/linux-source-[0-9.]+\.tar\.xz", m.name):
                    return m.name, int(m.mtime)
    finally:
        p.kill()
        p.wait()
    raise KernelBuildError(f"kernel build: {deb.name} holds no usr/src/linux-source-*.tar.xz")


def cache_key(version: str, config: bytes, gcc: str, epoch: int) -> str:
    h = hashlib.sha256(f"{version}\n{hashlib.sha256(config).hexdigest()}\n{gcc}\n{epoch}\n{RECIPE}\n".encode())
    return h.hexdigest()[:20]


def build(deb: Path, pkg: str, version: str, cache: Path, log=print) -> Kernel:
    """The bzImage for (source package, image/kernel.config, gcc), from the cache or compiled now."""
    config = CONFIG.read_bytes()
    fragment = read_fragment()
    gcc = gcc_version()
    member, src_epoch = _source_tarball(deb)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", src_epoch))
    key = cache_key(version, config, gcc, epoch)
    slot = cache / "kernel" / key
    bz = slot / "bzImage"
    if not bz.exists():
        _compile(deb, member, fragment, epoch, slot, log)
    else:
        log(f"kernel: cached {bz} (key {key})")
    info = (slot / "build-info").read_text().strip() if (slot / "build-info").exists() else ""
    lines = [f"kernel {pkg} {version} (from {SOURCE_META}) compiled with {gcc}",
             f"kernel config image/kernel.config sha256 {hashlib.sha256(config).hexdigest()} "
             f"(resolved .config sha256 {hashlib.sha256((slot / 'config').read_bytes()).hexdigest()})",
             f"kernel KBUILD_BUILD_TIMESTAMP from SOURCE_DATE_EPOCH={epoch}; cache key {key}; {info}"]
    return Kernel(bz, lines)


def _compile(deb: Path, member: str, fragment: dict, epoch: int, slot: Path, log) -> None:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".lock", "w") as lock:
        try:                                  # one build at a time in the one fixed directory
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"kernel: waiting for the compile under way in {BUILD_DIR} (`make test` and `make run` "
                f"start it early: {EARLY_LOG})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (slot / "bzImage").exists():       # that compile was this one: its result is in the cache
            log(f"kernel: compiled meanwhile: {slot / 'bzImage'}")
            return
        t0 = time.monotonic()
        phases = _Phases()
        tree = BUILD_DIR / Path(member).name.removesuffix(".tar.xz")
        shutil.rmtree(tree, ignore_errors=True)
        log(f"kernel: unpacking {Path(member).name} from {deb.name} into {BUILD_DIR}")
        _run(["bash", "-o", "pipefail", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO "$2" | tar -xJ -C "$3"', "-",
              str(deb), member, str(BUILD_DIR)])
        phases.done("unpack")
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        env.update(MAKE_ENV, SOURCE_DATE_EPOCH=str(epoch),
                   KBUILD_BUILD_TIMESTAMP=time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(epoch)))
        _run(["make", "-s", "allnoconfig", f"KCONFIG_ALLCONFIG={CONFIG}"], cwd=tree, env=env)
        phases.done("allnoconfig")
        bad = unmet(fragment, (tree / ".config").read_text())
        if bad:
            raise KernelBuildError("kernel build: the config does not hold what image/kernel.config asks:\n"
                                   + "\n".join(bad))
        jobs = len(os.sched_getaffinity(0))
        log(f"kernel: compiling bzImage (make -j{jobs}; minutes)")
        _run(["make", "-s", f"-j{jobs}", "bzImage"], cwd=tree, env=env)
        phases.done("make")
        objects = sum(1 for _ in tree.rglob("*.o"))
        secs = time.monotonic() - t0
        tmp = slot.with_name(slot.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(tree / "arch/x86/boot/bzImage", tmp / "bzImage")
        shutil.copyfile(tree / ".config", tmp / "config")
        (tmp / "build-info").write_text(f"compiled in {secs:.0f} s with make -j{jobs} ({phases}; {objects} objects)\n")
        shutil.rmtree(slot, ignore_errors=True)
        os.rename(tmp, slot)
        shutil.rmtree(tree, ignore_errors=True)    # ~1.5 GB of objects; the cache keeps the result
        log(f"kernel: compiled in {secs:.0f} s ({phases}; {objects} objects): bzImage {(slot / 'bzImage').stat().st_size / 1e6:.2f} MB")


class _Phases:
    """Wall and CPU seconds (of the child processes: tar, make, gcc) per phase of a compile, for the
    log and build-info: what to shorten when the compile is the long pole of `make test`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._mark = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()
        return time.monotonic(), t.children_user + t.children_system

    def done(self, name: str) -> None:
        now = self._now()
        self.parts.append(f"{name} {now[0] - self._mark[0]:.0f} s wall / {now[1] - self._mark[1]:.0f} s CPU")
        self._mark = now

    def __str__(self) -> str:
        return ", ".join(self.parts)


def _run(cmd, **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise KernelBuildError(f"kernel build: {cmd if isinstance(cmd, str) else ' '.join(cmd)} failed "
                               f"(status {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
