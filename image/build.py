#!/usr/bin/env python3
"""Build the appliance VM image from Debian packages: `image/out/vmlinuz` + `image/out/initramfs.img`,
and from them the bootable disk `image/out/disk.raw` + `disk.qcow2` (image/disk.py: BIOS and UEFI).

Why this shape: Debian's archive (and PyPI for our wheels) is all we can reach, so the userland is
Debian .debs unpacked with dpkg-deb, trimmed hard, plus our package and the baked TOML config; PID 1
is `/init`, a Python script running appliance.boot.init. The cpio archive is written here (sorted
names, owner 0:0, fixed mtime = SOURCE_DATE_EPOCH derived from the inputs) and compressed with a
pinned zstd level, so two builds from the same inputs give identical bytes. A MANIFEST lists what
went in.

Packages are resolved at build time (resolve_packages): each name in packages.txt at apt's
candidate version, the kernel source from the metapackage linux-source (its versioned dependency,
linux-source-6.1; the kernel is compiled from it with image/kernel.config: image/kernel.py), so
the build keeps working when the archive moves on; the MANIFEST records every
exact version, and the same versions give the same bytes. The config is checked first (`check`,
file:line) and baked with every file it names (appliance/config/bundle.py).

Usage: python image/build.py [--config appliance.toml] [--out image/out]
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))      # the appliance package: config check and bundle, FAT writer
sys.path.insert(0, str(HERE))
import disk  # noqa: E402  (image/disk.py: the bootable disk image)
import kernel  # noqa: E402  (image/kernel.py: the kernel, compiled from Debian's source package)
# The kernel's source comes from this metapackage's dependency (linux-source-<major.minor>), resolved
# at build time: versioned packages leave the archive when the next series arrives (resolve_packages).
KERNEL_META = kernel.SOURCE_META
KERNEL_PKG = ""     # set by use_kernel() from the resolution, e.g. linux-source-6.1
# Kept compressed in RAM: these paths (globs) go into a squashfs image in the initramfs (/ro.sqfs),
# which the init loop-mounts at /ro right after its first mounts; a symlink stands at each original
# place. Why: the initramfs is unpacked into RAM that can never be given back (rootfs: Shmem); at
# -m 128 Debian's cloud kernel left ~94 MB (the compiled one ~112 MB), and with the whole 29 MB tree pinned, Python and the page cache
# had ~37 MB. Squashfs pages are decompressed on use into page cache the kernel can reclaim -- and
# a .pyc is read once, at import, so its decompressed copy is dropped again under pressure. So all
# of the stdlib, the wheels, our own package and the shared libraries Python loads go in; what stays
# outside (RO_KEEP) is only what runs before the mount (measured: python3.11 -I in a chroot of the
# unpacked tree with /ro missing, importing what appliance.boot.init does before mount_read_only;
# tests/vm boot every image, so a module missing there fails every VM test at once).
RO_GLOBS = ["usr/lib/python3.11/*", "usr/lib/python3.11/appliance-site/*", "usr/lib/python3.11/appliance-site/appliance/*",
            "usr/lib/python3.11/lib-dynload/*", "usr/lib/x86_64-linux-gnu/*", "lib/x86_64-linux-gnu/*"]
# Shared libraries the python3.11 binary itself links (ldd), by soname prefix (their versioned
# files and symlinks): needed to start the init; the rest of /lib (nft's, lzma, bz2...) goes in /ro.
RO_KEEP_LIBS = ("ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libz.so.1", "libexpat.so.1")
RO_KEEP = {
    # directories whose entries the globs above move one by one
    "usr/lib/python3.11/appliance-site", "usr/lib/python3.11/appliance-site/appliance", "usr/lib/python3.11/lib-dynload",
    # the init before the mount: appliance/__init__, appliance.boot (init, memstat, and the rest: small)
    "usr/lib/python3.11/appliance-site/appliance/__init__.py", "usr/lib/python3.11/appliance-site/appliance/__pycache__",
    "usr/lib/python3.11/appliance-site/appliance/boot",
    # Python's start-up (most of it is frozen into the binary in 3.11: os, site, io, abc, codecs...)
    # and what the init imports before the mount: ctypes (mount, finit_module), threading (memstat)
    # os.pyc: frozen, but getpath's landmark for sys.prefix (a dangling symlink makes Python warn)
    *(f"usr/lib/python3.11/{m}" for m in ("os.pyc", "encodings", "ctypes", "struct.pyc", "threading.pyc", "_weakrefset.pyc",
                                          "__future__.pyc", "functools.pyc", "collections", "keyword.pyc",
                                          "operator.pyc", "reprlib.pyc", "types.pyc")),
    "usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so",
    "usr/lib/x86_64-linux-gnu/libffi.so.8", "usr/lib/x86_64-linux-gnu/libffi.so.8.1.2"}
WHEELS = ["cryptography==50.0.2", "pyOpenSSL==26.4.0", "pyroute2==0.9.7", "lz4==4.4.5"]
# Built here from the source distribution (SOURCE_WHEELS: requirement -> the sdist's sha256, as PyPI
# lists it), once per cache, against Debian's liblzo2-dev; the image carries Debian's liblzo2-2 for
# it (packages.txt). Why: PyPI has python-lzo 1.15 wheels for Windows and macOS only, and it is
# what `comp-lzo` / `compress lzo` decompress with (appliance/openvpn/compression.py, pinned in
# pyproject.toml as the host's); Debian's python3-lzo is 1.14, a different version from the host's.
SOURCE_WHEELS = {"python-lzo==1.15": "a57aaa00c5c3a0515dd9f7426ba2cf601767dc19dc023d8b99d4a13b0a327b49"}
# Directories of the Python standard library the appliance never imports.
STDLIB_TRIM = ["test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "distutils",
               "config-3.11-x86_64-linux-gnu", "venv", "curses", "dbm", "xmlrpc", "wsgiref", "site-packages",
               "pydoc.py", "turtle.py", "lib-dynload/_tkinter*.so", "lib-dynload/_test*.so",
               "lib-dynload/_ctypes_test*.so", "lib-dynload/xx*.so", "lib-dynload/_curses*.so",
               "lib-dynload/_dbm*.so", "lib-dynload/_gdbm*.so", "lib-dynload/audioop*.so",
               "lib-dynload/_codecs_*.so", "lib-dynload/_multibytecodec*.so", "lib-dynload/_lsprof*.so",
               # issue 10 part 6: what no boot path imports (-X importtime in the image), to stay small in RAM
               "lib-dynload/_xx*.so", "lib-dynload/nis*.so", "lib-dynload/ossaudiodev*.so",
               "lib-dynload/readline*.so", "lib-dynload/_crypt*.so", "lib-dynload/_decimal*.so",
               "lib-dynload/_sqlite3*.so", "sqlite3",
               "pydoc*", "idlelib", "lib2to3", "msilib", "ensurepip", "__phello__", "doctest.py",
               "mailbox.py", "imaplib.py", "nntplib.py", "smtplib.py", "ftplib.py", "poplib.py", "telnetlib.py",
               "turtle.py", "tkinter", "_pydecimal.py", "pdb.py", "pickletools.py", "_osx_support.py",
               "sqlite3/test", "ctypes/test", "ctypes/macholib",
               # issue 10 part 7 (-m 128): unittest, which only pyroute2's placeholder imported
               # (drop_unittest_mock). (stdlib ssl stays, 0.8 MB of heap: pyroute2's probe_msg imports it.)
               "unittest",
               # Never imported in a whole tests/vm run (appliance.importlog=1, lib/vm.py VM_APPEND) and
               # named by no import in appliance/ or the wheels: web, mail, archives, profilers, XML.
               # (Kept though unseen, as stdlib code loads them lazily: sysconfig, _strptime, csv, gzip,
               # statistics, fractions, mimetypes, uuid, mmap, resource.)
               "xml", "http", "html", "zipfile.py", "tarfile.py", "_pyio.py", "optparse.py",
               "configparser.py", "zoneinfo", "lib-dynload/_zoneinfo*.so", "smtpd.py", "plistlib.py", "pstats.py",
               "profile.py", "cProfile.py", "aifc.py", "wave.py", "sunau.py", "trace.py", "tracemalloc.py", "cgi.py",
               "cgitb.py", "webbrowser.py", "modulefinder.py", "bdb.py", "socketserver.py", "asyncore.py",
               "asynchat.py", "symtable.py", "compileall.py"]
# Codecs: Python itself needs only these (UTF-8 mode; the console and files are UTF-8/ASCII).
ENCODINGS_KEEP = {"__init__", "aliases", "utf_8", "utf_8_sig", "ascii", "latin_1", "idna", "punycode",
                  "raw_unicode_escape", "unicode_escape", "utf_16", "utf_32", "charmap", "cp437"}
# Shared libraries nothing in the image loads (glibc's extras, readline's stack, OpenSSL's plug-ins).
LIB_TRIM = ["lib/x86_64-linux-gnu/libmvec.so*", "lib/x86_64-linux-gnu/libc_malloc_debug.so*",
            "lib/x86_64-linux-gnu/libmemusage.so", "lib/x86_64-linux-gnu/libpcprofile.so",
            "lib/x86_64-linux-gnu/libthread_db.so*", "lib/x86_64-linux-gnu/libBrokenLocale.so*",
            "lib/x86_64-linux-gnu/libnss_hesiod.so*", "lib/x86_64-linux-gnu/libnss_compat.so*",
            "lib/x86_64-linux-gnu/libnsl.so*", "lib/x86_64-linux-gnu/libreadline.so*",
            "lib/x86_64-linux-gnu/libhistory.so*", "lib/x86_64-linux-gnu/libncursesw.so*",
            "usr/lib/x86_64-linux-gnu/libformw.so*", "usr/lib/x86_64-linux-gnu/libmenuw.so*",
            "usr/lib/x86_64-linux-gnu/libpanelw.so*", "usr/lib/x86_64-linux-gnu/libtic.so*",
            "usr/lib/x86_64-linux-gnu/libexpatw.so*", "usr/lib/x86_64-linux-gnu/engines-3",
            "usr/lib/x86_64-linux-gnu/ossl-modules", "usr/lib/x86_64-linux-gnu/libsqlite3.so*",
            "lib/x86_64-linux-gnu/libcrypt.so*"]
# Wheel contents no import reaches: cryptography's Rust bindings need only cffi's _cffi_backend, not
# the cffi package and its C parser; type stubs are for editors.
# lz4: only lz4.block decompresses (compression.py); lz4.frame (its own module, 2.4 MB unstripped) and
# lz4.stream (in some releases) are never imported.
WHEEL_TRIM = ["cffi", "pycparser", "**/*.pyi", "**/py.typed", "pyroute2/ndb", "pyroute2/fixtures", "pyroute2/bsd",
              "lz4/frame", "lz4/stream"]


# Level 19 for size; the window capped at 2 MB (level 19 would use 8 MB): the kernel allocates the
# window while it unpacks the initramfs, when memory is scarcest (-m 128), for ~1 % more bytes.
ZSTD_ARGS = ["-19", "--zstd=wlog=21"]


def log(msg: str) -> None:
    print(f"[image] {msg}", flush=True)


def read_packages() -> list[str]:
    return [ln.split("#")[0].strip() for ln in (HERE / "packages.txt").read_text().splitlines()
            if ln.split("#")[0].strip()]


class ArchiveError(SystemExit):
    """The Debian archive (as apt knows it) cannot provide a package the image needs."""


def _candidates(pkgs: list[str]) -> dict[str, tuple[str, str]]:
    """Package -> (version, Depends) of the version apt would install, for those apt knows
    (one apt-cache call for all: each call costs a second)."""
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", *pkgs], capture_output=True, text=True)
    out: dict[str, tuple[str, str]] = {}
    for stanza in r.stdout.split("\n\n"):
        fields = dict(ln.split(": ", 1) for ln in stanza.splitlines() if ": " in ln and not ln.startswith(" "))
        if "Package" in fields and "Version" in fields:
            out.setdefault(fields["Package"], (fields["Version"], fields.get("Depends", "")))
    return out


def resolve_packages(pkgs: list[str]) -> dict[str, str]:
    """Package -> the exact version apt's candidate has today; KERNEL_META is replaced by the
    versioned kernel source package it depends on. The MANIFEST records the result; the build is
    reproducible for the same result. Runs `apt-get update` once if a package is unknown."""
    import re
    for attempt in (0, 1):
        out: dict[str, str] = {}
        unknown = []
        cands = _candidates(pkgs)
        for p in pkgs:
            c = cands.get(p)
            if c is None:
                unknown.append(p)
                continue
            if p == KERNEL_META:
                m = re.search(kernel.SOURCE_PKG_RE, c[1])
                if m is None:
                    raise ArchiveError(f"image build: {KERNEL_META} {c[0]} depends on no versioned kernel "
                                       f"source package (Depends: {c[1]!r}); cannot choose a kernel")
                k = _candidates([m.group(1)]).get(m.group(1))
                if k is None or k[0] != m.group(2):
                    unknown.append(f"{m.group(1)} (= {m.group(2)}, from {KERNEL_META} {c[0]})")
                    continue
                out[m.group(1)] = m.group(2)
            else:
                out[p] = c[0]
        if not unknown:
            return out
        if attempt == 0:
            log(f"apt knows no candidate for {', '.join(unknown)}: running apt-get update once")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    raise ArchiveError("image build: the Debian archive cannot provide: " + ", ".join(unknown)
                       + ". Check /etc/apt/sources.list has bookworm, bookworm-updates and bookworm-security "
                       "(main), then `apt-get update`.")


def use_kernel(versions: dict[str, str]) -> None:
    """Record which kernel source the resolution chose (KERNEL_PKG)."""
    global KERNEL_PKG
    KERNEL_PKG = next(p for p in versions if p.startswith("linux-source-"))


def _deb_name(pkg: str, version: str) -> str:
    return f"{pkg}_{version.replace(':', '%3a')}_"


def download(versions: dict[str, str], cache: Path) -> dict[str, Path]:
    """apt-get download each package at its resolved version into the cache (reused on rebuild);
    -> package name -> .deb path."""
    cache.mkdir(parents=True, exist_ok=True)

    def have() -> dict[str, Path]:
        debs = sorted(cache.glob("*.deb"))
        return {p: d for p, v in versions.items() for d in debs if d.name.startswith(_deb_name(p, v))}
    missing = [f"{p}={v}" for p, v in sorted(versions.items()) if p not in have()]
    if missing:
        log(f"downloading {len(missing)} Debian packages: {' '.join(missing)}")
        r = subprocess.run(["apt-get", "download", *missing], cwd=cache, capture_output=True, text=True)
        if r.returncode != 0:
            log("apt-get download failed; running apt-get update once and retrying")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            r = subprocess.run(["apt-get", "download", *missing], cwd=cache, capture_output=True, text=True)
            if r.returncode != 0:
                raise ArchiveError(f"image build: the Debian archive cannot provide {' '.join(missing)}: "
                                   f"{r.stderr.strip()[-1000:]}")
    found = have()
    lost = [p for p in versions if p not in found]
    if lost:
        raise ArchiveError(f"image build: packages not downloaded: {lost}")
    return {p: found[p] for p in versions}


def _wheel_stamp() -> str:
    return "\n".join(WHEELS + [f"{r} sha256 {h}" for r, h in SOURCE_WHEELS.items()])


def wheels(target: Path, cache: Path) -> None:
    stamp = cache / "wheels.stamp"
    wdir = cache / "wheels"
    if not stamp.exists() or stamp.read_text() != _wheel_stamp():
        log("fetching wheels for Python 3.11 manylinux: " + ", ".join(WHEELS))
        shutil.rmtree(wdir, ignore_errors=True)
        plats = []
        for p in ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"):
            plats += ["--platform", p]
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(wdir), *plats,
                        "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                        "--only-binary=:all:", "--no-compile", *WHEELS], check=True)
        for req, sha in SOURCE_WHEELS.items():
            source_wheel(req, sha, wdir, cache)
        stamp.write_text(_wheel_stamp())
    shutil.copytree(wdir, target, dirs_exist_ok=True)
    for junk in list(target.glob("*.dist-info")) + list(target.rglob("__pycache__")) + [target / "bin"]:
        shutil.rmtree(junk, ignore_errors=True)
    for sub in ("pyroute2/cli",):   # IPRoute imports ndb and friends; only the CLI is unused
        shutil.rmtree(target / sub, ignore_errors=True)
    for pat in WHEEL_TRIM:
        for p in list(target.glob(pat)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    lazy_package_init(target / "pyroute2/__init__.py")
    drop_unittest_mock(target / "pyroute2/netlink/rtnl/iprsocket.py")


def source_wheel(req: str, sha256: str, wdir: Path, cache: Path) -> None:
    """Build `req` from its source distribution (checked against `sha256`) for the image's Python
    3.11 and install it into `wdir` (the wheel cache: built once). Built at a fixed path under the
    cache with that path mapped away, as native_modules does, so the module's bytes depend only on
    the source, the compiler and the headers (Debian's liblzo2-dev for python-lzo)."""
    work = cache / "sdist-build"
    shutil.rmtree(work, ignore_errors=True)
    (work / "dl").mkdir(parents=True)
    log(f"building {req} from its source distribution (PyPI has no Linux wheel of it)")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
                        "-d", str(work / "dl"), req], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"image build: cannot download the source of {req}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    (sdist,) = (work / "dl").iterdir()
    got = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if got != sha256:
        raise SystemExit(f"image build: {sdist.name} has sha256 {got}, not {sha256} (image/build.py SOURCE_WHEELS)")
    import tarfile
    with tarfile.open(sdist) as tf:
        # the "data" filter (no links out, no absolute names) where this Python has it (3.11.4+)
        tf.extractall(work / "src", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (src,) = (work / "src").iterdir()
    env = dict(os.environ, CFLAGS=f"-ffile-prefix-map={src}=.")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "wheel"), str(src)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"image build: {req} did not build (python-lzo needs liblzo2-dev: `make setup`):\n"
                         f"{r.stdout[-2000:]}{r.stderr[-3000:]}")
    (whl,) = (work / "wheel").glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(wdir),
                    str(whl)], check=True)
    shutil.rmtree(work, ignore_errors=True)


# What pyroute2's IPRoute imports only to build one placeholder at import time: `from unittest import
# mock` for `NotLocal.msg_queue = mock.Mock()` (an object that accepts any attribute or call). It
# pulls unittest, inspect, ast, dis, difflib, pprint, argparse...: 1.8 MB of heap in the VM (measured
# on Python 3.11, with asyncio already loaded), the heap being what runs out at -m 128. The stand-in
# does what the placeholder does: any attribute or call gives itself.
MOCK_LINE = "from unittest import mock\n"
MOCK_STANDIN = (
    "class mock:  # vpn-appliance image build (image/build.py drop_unittest_mock): no unittest in the VM\n"
    "    class Mock:\n"
    "        def __getattr__(self, name):\n"
    "            return self\n\n"
    "        def __call__(self, *args, **kwargs):\n"
    "            return self\n")


def drop_unittest_mock(src: Path) -> None:
    text = src.read_text()
    if text.count(MOCK_LINE) != 1 or text.count("mock.") != 1 or "mock.Mock()" not in text:
        raise SystemExit(f"image build: {src} changed its use of unittest.mock: review drop_unittest_mock")
    src.write_text(text.replace(MOCK_LINE, MOCK_STANDIN))


def lazy_package_init(init: Path) -> None:
    """Rewrite a package __init__ that imports every submodule eagerly (pyroute2's: NDB, sqlite3,
    wireguard, nl80211... 3 s of imports under TCG, none of which the appliance uses) into one that
    imports a name on first use (PEP 562 __getattr__), from the same `from X import a, b` lines.
    `from pyroute2 import IPRoute` keeps working; NDB's sqlite3 then never loads, so it is dropped."""
    import ast
    tree = ast.parse(init.read_text())
    where: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(init.parent.name + "."):
            for a in node.names:
                where[a.asname or a.name] = node.module
    if "IPRoute" not in where:
        raise SystemExit(f"image build: {init} changed shape (no IPRoute import): review lazy_package_init")
    rows = "".join(f"    {k!r}: {v!r},\n" for k, v in sorted(where.items()) if k != "log")
    init.write_text(
        '"""Made lazy by the vpn-appliance image build (image/build.py lazy_package_init)."""\n'
        "import importlib\n\n"
        "from pyroute2.config import log  # noqa: F401 - the package's logging setup\n\n"
        "try:\n    from pyroute2.config.version import __version__\nexcept ImportError:\n"
        "    __version__ = 'unknown'\n\n"
        f"_WHERE = {{\n{rows}}}\n__all__ = sorted(_WHERE) + ['log']\n\n\n"
        "def __getattr__(name):\n"
        "    if name not in _WHERE:\n"
        "        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')\n"
        "    value = getattr(importlib.import_module(_WHERE[name]), name)\n"
        "    globals()[name] = value\n"
        "    return value\n")


def trim_python(root: Path) -> None:
    lib = root / "usr/lib/python3.11"
    for pat in STDLIB_TRIM:
        for p in lib.glob(pat):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in list(root.rglob("__pycache__")):
        shutil.rmtree(p, ignore_errors=True)
    for d in ("usr/share", "usr/lib/python3/dist-packages", "usr/bin/pydoc3.11", "usr/lib/x86_64-linux-gnu/gconv",
              "usr/lib/x86_64-linux-gnu/perl-base", "usr/lib/x86_64-linux-gnu/audit", "var", "usr/sbin/ldconfig",
              "sbin/ldconfig", "usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", "etc/init.d", "usr/libexec"):
        p = root / d
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for p in list((root / "usr/bin").iterdir()) if (root / "usr/bin").exists() else []:
        if p.name not in ("python3.11",):
            p.unlink()
    for pat in LIB_TRIM:
        for p in list(root.glob(pat)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in list((lib / "encodings").glob("*.py")):
        if p.stem not in ENCODINGS_KEEP:
            p.unlink()


# Runs under the image's Python version: compile every module once, at build time. Why: under TCG,
# compiling the sources at each boot took most of the time to tunnel up. Unchecked-hash pycs are
# never compared with a source (no stat, no hash at import) and hold no mtime, so they are
# reproducible. The stdlib and the wheels ship as sourceless .pyc (optimize=2: no docstrings,
# smaller in RAM); the appliance's own code keeps its .py next to __pycache__ so tracebacks show
# source lines, and keeps its asserts (optimize=0).
_COMPILE = r"""
import importlib.util, marshal, sys
from pathlib import Path
root = Path(sys.argv[1])
lib = root / "usr/lib/python3.11"
own = lib / "appliance-site/appliance"
for src in sorted(lib.rglob("*.py")):
    inimage = "/" + src.relative_to(root).as_posix()
    mine = own in src.parents
    code = compile(src.read_bytes(), inimage, "exec", dont_inherit=True, optimize=0 if mine else 2)
    data = bytearray(importlib.util.MAGIC_NUMBER)
    data += (0b01).to_bytes(4, "little")             # hash-based, unchecked
    data += importlib.util.source_hash(src.read_bytes())
    data += marshal.dumps(code)
    if mine:
        dst = src.parent / "__pycache__" / (src.stem + "." + sys.implementation.cache_tag + ".pyc")
        dst.parent.mkdir(exist_ok=True)
    else:
        dst = src.with_suffix(".pyc")
        src.unlink()
    dst.write_bytes(bytes(data))
"""


def compile_python(root: Path) -> str:
    """Byte-compile the image's Python (see _COMPILE) with a Python 3.11 (the image's version: the
    bytecode format is per minor version); -> the compiling interpreter's version, for the MANIFEST."""
    py = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
    r = subprocess.run([py, "-I", "-c", "import sys; assert sys.version_info[:2] == (3, 11); print(sys.version.split()[0])"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("image build: needs a Python 3.11 to byte-compile the image (apt-get install python3.11)")
    subprocess.run([py, "-I", "-c", _COMPILE, str(root)], check=True)
    return r.stdout.strip()


def native_modules(dest: Path, cache: Path) -> None:
    """The data path's C modules (appliance/native, setup.py), built from source by pip for the
    image's Python 3.11, not copied from the checkout (whose in-place build may be stale, or for
    another Python). Built from a copy of just what setup.py needs, at a fixed path under the
    cache with the path mapped away, so two builds give the same bytes (tests/vm test_reproducible_build)."""
    src = cache / "native-src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "appliance").mkdir(parents=True)
    for f in ("setup.py", "pyproject.toml"):
        shutil.copy2(REPO / f, src / f)
    shutil.copy2(REPO / "appliance/__init__.py", src / "appliance/__init__.py")
    shutil.copytree(REPO / "appliance/native", src / "appliance/native",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    wheel_dir = src / "wheel"
    env = dict(os.environ, CFLAGS=f"-ffile-prefix-map={src}=.")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(src)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"image build: the C modules (setup.py) did not build:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    (whl,) = wheel_dir.glob("*.whl")
    with zipfile.ZipFile(whl) as z:
        built = [n for n in z.namelist() if n.startswith("appliance/native/") and n.endswith(".so")]
        for n in built:
            (dest / Path(n).name).write_bytes(z.read(n))
    log(f"C modules built: {', '.join(sorted(Path(n).name for n in built)) or 'none'}")
    shutil.rmtree(src, ignore_errors=True)


def strip_binaries(root: Path) -> None:
    """Drop the symbol tables the wheels' native modules ship with (cryptography's Rust module: 14 MB
    -> 11 MB, all of it unpacked in RAM at boot). `strip` is deterministic."""
    for so in sorted((root / "usr/lib/python3.11/appliance-site").rglob("*.so")):
        subprocess.run(["strip", "--strip-unneeded", str(so)], check=True)


def assemble(bundle, stage: Path, debs: dict[str, Path], cache: Path) -> Path:
    """The initramfs tree from the userland packages (the kernel is built in: no modules)."""
    root = stage / "root"
    shutil.rmtree(stage, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"unpacking {len(debs)} packages")
    for name, deb in sorted(debs.items()):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    trim_python(root)
    # usrmerge-style links so the interpreter's loader path resolves.
    for link, target in (("lib64", "usr/lib64"), ("bin", "usr/bin"), ("sbin", "usr/sbin")):
        if not (root / link).exists():
            (root / link).symlink_to(target)
    (root / "usr/lib64").mkdir(parents=True, exist_ok=True)
    if not (root / "usr/lib64/ld-linux-x86-64.so.2").exists():
        (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    if not (root / "lib").exists():
        (root / "lib").symlink_to("usr/lib")
    site = root / "usr/lib/python3.11/appliance-site"
    wheels(site, cache)
    shutil.copytree(REPO / "appliance", site / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    native_modules(site / "appliance/native", cache)
    strip_binaries(root)
    compiled_by = compile_python(root)
    etc = root / "etc/vpn-appliance"
    etc.mkdir(parents=True, exist_ok=True)
    from appliance.config.bundle import write_dir   # here: --kernel-only runs before the venv exists
    write_dir(bundle, etc)       # the TOML and every file it names (appliance/config/bundle.py)
    for d in ("proc", "sys", "dev", "tmp", "run", "etc"):
        (root / d).mkdir(exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/:/nonexistent\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/protocols").write_text("ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\n")
    (root / "etc/services").write_text("openvpn 1194/udp\nopenvpn 1194/tcp\n")
    init = root / "init"
    init.write_text("#!/usr/bin/python3.11 -I\n"
                    "import sys\n"
                    "sys.path.insert(0, '/usr/lib/python3.11/appliance-site')\n"
                    "from appliance.boot.init import main\n"
                    "main()\n")
    init.chmod(0o755)
    (stage / "compiled-by").write_text(compiled_by)
    return root


def pack_read_only(root: Path, stage: Path, epoch: int) -> None:
    """Move RO_GLOBS (but RO_KEEP) into root/ro.sqfs (zstd, reproducible: fixed times, owner 0:0, one thread) and
    leave symlinks into /ro, where appliance.boot.init mounts it."""
    ro = stage / "ro"
    shutil.rmtree(ro, ignore_errors=True)
    for pat in RO_GLOBS:
        for src in sorted(root.glob(pat)):
            rel = src.relative_to(root).as_posix()
            if rel in RO_KEEP or (rel.startswith("lib/x86_64-linux-gnu/") and src.name.startswith(RO_KEEP_LIBS)):
                continue
            dst = ro / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)                      # a symlink moves as itself (relative targets stay valid)
            src.symlink_to("/ro/" + rel)
    (root / "ro").mkdir(exist_ok=True)
    subprocess.run(["mksquashfs", str(ro), str(root / "ro.sqfs"), "-noappend", "-quiet", "-no-progress",
                    "-comp", "zstd", "-Xcompression-level", "19", "-all-root", "-no-xattrs", "-processors", "1",
                    "-mkfs-time", str(epoch), "-all-time", str(epoch)], check=True, stdout=subprocess.DEVNULL)


def _cpio_entry(name: bytes, mode: int, data: bytes, mtime: int, ino: int, nlink: int = 1,
                rdev: tuple[int, int] = (0, 0)) -> bytes:
    namesize = len(name) + 1
    hdr = (b"070701" + b"".join(f"{v:08X}".encode() for v in (
        ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], namesize, 0)))
    out = hdr + name + b"\0"
    out += b"\0" * ((4 - len(out) % 4) % 4)
    out += data
    out += b"\0" * ((4 - len(data) % 4) % 4)
    return out


def write_cpio(root: Path, mtime: int) -> bytes:
    """newc archive, names sorted, owner 0:0, fixed mtime: the same tree gives the same bytes."""
    entries = []
    paths = sorted(p for p in root.rglob("*"))
    parts = []
    ino = 1
    for p in paths:
        rel = p.relative_to(root).as_posix().encode()
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(p).encode()
            mode = stat.S_IFLNK | 0o777
        elif stat.S_ISDIR(st.st_mode):
            data, mode = b"", stat.S_IFDIR | 0o755
        else:
            data = p.read_bytes()
            mode = stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644)
        parts.append(_cpio_entry(rel, mode, data, mtime, ino))
        entries.append((rel.decode(), len(data)))
        ino += 1
    parts.append(_cpio_entry(b"dev/console", stat.S_IFCHR | 0o600, b"", mtime, ino, rdev=(5, 1)))
    # Python's start-up reads 16 random bytes for its hash seed before PID 1 mounts devtmpfs: with the
    # kernel's CRNG not yet ready -- a CPU model without RDRAND, such as the qemu64 libvirt and QEMU
    # give a domain without <cpu> -- getrandom(GRND_NONBLOCK) fails and Python falls back to
    # /dev/urandom (never blocks; PEP 524); without this node it finds none and PID 1 dies.
    parts.append(_cpio_entry(b"dev/urandom", stat.S_IFCHR | 0o666, b"", mtime, ino + 1, rdev=(1, 9)))
    parts.append(_cpio_entry(b"TRAILER!!!", 0, b"", 0, 0))
    blob = b"".join(parts)
    return blob + b"\0" * ((512 - len(blob) % 512) % 512)


def build(bundle, out: Path, cache: Path | None = None) -> dict:
    """`bundle`: the config and the files it names (appliance.config.bundle.collect)."""
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    cache = cache or out / "cache"
    versions = resolve_packages(read_packages() + [KERNEL_META] + disk.BOOT_PKGS)
    use_kernel(versions)
    all_debs = download(versions, cache / "debs")
    debs = {p: d for p, d in all_debs.items() if p not in disk.BOOT_PKGS and p != KERNEL_PKG}
    # SOURCE_DATE_EPOCH from the inputs: same debs, wheels, code and config → same timestamp.
    h = hashlib.sha256()
    for name in sorted(all_debs):
        h.update(all_debs[name].name.encode())
    h.update(_wheel_stamp().encode())
    code = [p for p in sorted((REPO / "appliance").rglob("*")) if p.suffix in (".py", ".c", ".h")]
    for p in code + [REPO / "setup.py"] + sorted(HERE.glob("*.py")) + [kernel.CONFIG]:
        h.update(p.relative_to(REPO).as_posix().encode() + p.read_bytes())
    for name, data in sorted(bundle.files.items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", 1_700_000_000 + int(h.hexdigest()[:6], 16)))
    manifest_path = out / "MANIFEST"
    if (manifest_path.exists() and all((out / f).exists() for f in ("initramfs.img", "vmlinuz", "disk.raw", "disk.qcow2"))
            and manifest_path.read_text().startswith(f"# vpn-appliance image manifest (SOURCE_DATE_EPOCH={epoch})")):
        log("image is up to date (same inputs): nothing to do")
        return {"total": (out / "vmlinuz").stat().st_size + (out / "initramfs.img").stat().st_size,
                "sha_initramfs": _sha(out / "initramfs.img"), "epoch": epoch}
    stage = out / "stage"
    root = assemble(bundle, stage, debs, cache)
    pack_read_only(root, stage, epoch)
    log(f"writing initramfs (cpio newc, sorted, owner 0:0, zstd {' '.join(ZSTD_ARGS)})")
    blob = write_cpio(root, epoch)
    z = subprocess.run(["zstd", *ZSTD_ARGS, "-q", "-T1", "--no-check", "-c"], input=blob, capture_output=True,
                       check=True)
    (out / "initramfs.img").write_bytes(z.stdout)
    # The kernel after the initramfs, which does not depend on it (no modules): when `make test` has
    # started its compile early (Makefile kernel-early), the initramfs is made while it runs.
    k = kernel.build(all_debs[KERNEL_PKG], KERNEL_PKG, versions[KERNEL_PKG], cache, log=log)
    shutil.copyfile(k.bzimage, out / "vmlinuz")
    sizes = {"vmlinuz": (out / "vmlinuz").stat().st_size, "initramfs.img": len(z.stdout)}
    total = sum(sizes.values())
    disk_lines = build_disk_image(out, stage, all_debs, epoch)
    manifest = [f"# vpn-appliance image manifest (SOURCE_DATE_EPOCH={epoch})",
                f"vmlinuz {sizes['vmlinuz']} bytes sha256 {_sha(out / 'vmlinuz')}", *k.manifest,
                f"initramfs {sizes['initramfs.img']} bytes (cpio {len(blob)} bytes) sha256 {_sha(out / 'initramfs.img')}",
                f"total {total} bytes ({total / 1e6:.1f} MB)", "", "# disk image"] + disk_lines
    manifest += ["", "# Debian packages (name version file)"]
    manifest += [f"{name} {versions[name]} {all_debs[name].name}" for name in sorted(all_debs)]
    manifest += ["", f"# bytecode: unchecked-hash pycs by Python {(stage / 'compiled-by').read_text()}",
                 f"# in /ro.sqfs ({(root / 'ro.sqfs').stat().st_size} bytes, mounted at /ro): {' '.join(RO_GLOBS)}"]
    manifest += ["", "# wheels"] + WHEELS
    manifest += [f"{r} (built here from its sdist, sha256 {h})" for r, h in SOURCE_WHEELS.items()]
    manifest += ["", "# kernel config (image/kernel.config; all built in, no modules)"] + [
        f"{name}={'n' if v is None else v}" for name, (v, _) in kernel.read_fragment().items()]
    manifest += ["", f"# files: {sum(1 for _ in root.rglob('*'))}", "# config (/etc/vpn-appliance)"]
    manifest += [f"{name} {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}"
                 for name, data in sorted(bundle.files.items())]
    (out / "MANIFEST").write_text("\n".join(manifest) + "\n")
    shutil.rmtree(stage, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s: vmlinuz {sizes['vmlinuz'] / 1e6:.1f} MB + initramfs "
        f"{sizes['initramfs.img'] / 1e6:.1f} MB = {total / 1e6:.1f} MB (limit 24 MB); disk.raw + disk.qcow2")
    return {"total": total, "sha_initramfs": _sha(out / "initramfs.img"), "epoch": epoch}


def build_disk_image(out: Path, stage: Path, debs: dict[str, Path], epoch: int) -> list[str]:
    """disk.raw + disk.qcow2 (image/disk.py) from the boot loaders' packages; -> MANIFEST lines."""
    boot_root = stage / "boot"
    for name in disk.BOOT_PKGS:
        subprocess.run(["dpkg-deb", "-x", str(debs[name]), str(boot_root)], check=True)
    log("writing disk.raw + disk.qcow2 (MBR, FAT32 ESP: syslinux for BIOS, systemd-boot for UEFI)")
    return disk.build_disk(out, boot_root, epoch)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=HERE / "default-appliance.toml")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--cache", type=Path, default=None, help="download cache (default OUT/cache)")
    ap.add_argument("--kernel-only", action="store_true",
                    help="only download the kernel source and compile the kernel into the cache")
    a = ap.parse_args(argv)
    # One build at a time per cache: builds share its downloads, wheels, kernel and lab PKI, and two
    # test runs may ask for the same out directory at once (the second then finds it up to date).
    cache = (a.cache or a.out / "cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build using {cache}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not a.kernel_only:
            return _main(a)
        deb, pkg, version = kernel_source(cache)
    # The compile outside the build lock (image/kernel.py has its own): the image build started
    # meanwhile downloads the rest, then waits for this compile and takes the kernel from the cache.
    kernel.build(deb, pkg, version, cache, log=log)
    return 0


def kernel_source(cache: Path) -> tuple[Path, str, str]:
    """The kernel source package, resolved and downloaded as build() does: (.deb, name, version)."""
    versions = resolve_packages([KERNEL_META])
    use_kernel(versions)
    return download(versions, cache / "debs")[KERNEL_PKG], KERNEL_PKG, versions[KERNEL_PKG]


def _main(a: argparse.Namespace) -> int:
    config = a.config.resolve()
    if config == (HERE / "default-appliance.toml").resolve():
        # The embedded default names the lab's client profile, made in the build cache.
        lab = (a.cache or a.out / "cache").resolve() / "default-lab"
        default_lab_profile(lab)
        (lab / "appliance.toml").write_bytes(config.read_bytes())
        config = lab / "appliance.toml"
    # `check` first: a broken config is refused with file:line, and the bundle holds every file it names.
    from appliance.config.bundle import collect
    from appliance.openvpn.errors import ConfigError
    try:
        bundle = collect(config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        print(f"[image] refusing to build: {a.config} does not pass `vpn-appliance check`", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{e.filename or config}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 2
    for name in sorted(bundle.files):
        log(f"config: /etc/vpn-appliance/{name} <- {bundle.origin[name]}")
    for line in bundle.output_lines():
        log(f"output: {line}")
    build(bundle, a.out.resolve(), a.cache.resolve() if a.cache else None)
    return 0


def default_lab_profile(d: Path) -> Path:
    """The embedded default's client profile, for the `make run` lab: a test PKI made once and kept
    in the build cache (so rebuilds are reproducible and the lab's server can use the same PKI)."""
    prof = d / "client.ovpn"
    if not prof.exists():
        sys.path.insert(0, str(REPO))
        from lab.configs import client_profile
        from lab.pki import make_pki
        log(f"generating the default lab PKI in {d}")
        pki = make_pki(d / "pki", ["client1"])
        prof.write_text(client_profile(pki, "udp", None, "tls-crypt", inline=True))
    return prof


if __name__ == "__main__":
    raise SystemExit(main())
