"""A private libvirtd for the VM tests, and the shipped domain XML adapted to a test topology.

Why a private daemon and how: the test must boot qemu/vpn-appliance.xml the way a user does (libvirtd
choosing the firmware, creating the TAPs, starting QEMU), without touching a libvirtd the machine may
run and without leaving anything behind. libvirtd run as root has fixed paths (/etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt) and no option to move them, so
it runs in its own mount namespace (`unshare -m`, private propagation) inside the test's network
namespace, with those directories bind-mounted from one temporary directory: its sockets, state,
per-domain nvram, logs and capability cache all live there, visible to the test from the host side
(the socket for `virsh -c`, QEMU's pid file to kill it by PID). The TAPs it creates live in the test's
network namespace, so no traffic leaves it.

What the container-friendly qemu.conf turns off (the test's config only, never the shipped XML):
QEMU runs as root, no security driver (no AppArmor/SELinux labelling), no cgroups, no private /dev
namespace per domain, QEMU's stdio to a file instead of virtlogd (not started here). Debian's
libvirt-daemon alone (without libvirt-daemon-system) creates no `libvirt-qemu` user, and libvirtd
resolves that compiled-in default before it reads qemu.conf: the namespace gets a copy of
/etc/passwd and /etc/group with that user added (the host's files are not changed).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .netns import Netns, Proc

LIBVIRTD = "/usr/sbin/libvirtd"
FIRMWARE_DESCRIPTORS = Path("/usr/share/qemu/firmware")

QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
LIBVIRTD_CONF = 'unix_sock_dir = "/run/libvirt"\nlog_outputs = "2:stderr"\n'
# Bind-mounted over the host's paths inside the daemon's mount namespace: (directory under the
# private root, mount point).
MOUNTS = (("passwd", "/etc/passwd"), ("group", "/etc/group"), ("etc", "/etc/libvirt"), ("var", "/var"),
          ("run", "/run"))


class Libvirtd:
    """libvirtd in network namespace `ns`, its own paths under a fresh directory; `virsh(...)` talks
    to it. close() destroys every domain it runs, stops it, then kills any QEMU left (by PID)."""

    def __init__(self, ns: Netns, log: Path, start_timeout: float = 90) -> None:
        if not Path(LIBVIRTD).exists():
            raise RuntimeError(f"{LIBVIRTD} is missing: run `make setup` (Debian's libvirt-daemon, "
                               "libvirt-daemon-driver-qemu)")
        # Short (unix socket paths are limited to 107 bytes) and private to this run.
        self.root = Path(tempfile.mkdtemp(prefix="virt-", dir="/tmp"))
        for d in ("etc", "var/lib/libvirt", "var/log/libvirt", "var/cache/libvirt", "var/tmp", "run/libvirt",
                  "run/lock"):
            (self.root / d).mkdir(parents=True)
        (self.root / "var/run").symlink_to("/run")      # as on Debian, where /var/run is a link to /run
        (self.root / "var/lock").symlink_to("/run/lock")
        (self.root / "etc/libvirtd.conf").write_text(LIBVIRTD_CONF)
        (self.root / "etc/qemu.conf").write_text(QEMU_CONF)
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        if not any(line.startswith("libvirt-qemu:") for line in passwd.splitlines()):
            passwd += "libvirt-qemu:x:64055:64055:libvirt test user:/nonexistent:/usr/sbin/nologin\n"
        for g in ("libvirt-qemu:x:64055:", "kvm:x:64056:"):
            if not any(line.startswith(g.split(":")[0] + ":") for line in group.splitlines()):
                group += g + "\n"
        (self.root / "passwd").write_text(passwd)
        (self.root / "group").write_text(group)
        mounts = " && ".join(f"mount --bind {self.root / src} {dst}" for src, dst in MOUNTS)
        self.uri = f"qemu:///system?socket={self.root}/run/libvirt/libvirt-sock"
        self.proc = Proc(ns, ["unshare", "-m", "--propagation", "private", "sh", "-c",
                              f"{mounts} && exec {LIBVIRTD} -f /etc/libvirt/libvirtd.conf"], log)
        end = time.monotonic() + start_timeout
        while True:
            # The first answer comes after libvirtd has probed QEMU's capabilities (~8 s under load).
            r = self.virsh("version", check=False, timeout=max(5.0, end - time.monotonic()))
            if r.returncode == 0:
                break
            if not self.proc.alive() or time.monotonic() > end:
                self.close()
                raise RuntimeError(f"libvirtd did not answer on {self.uri}:\n{r.stderr}\n{self.proc.log()[-3000:]}")
            time.sleep(0.5)

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)}: {r.stderr.strip()}\nlibvirtd: {self.proc.log()[-2000:]}")
        return r

    def qemu_log(self, name: str) -> str:
        """libvirt's per-domain log: the QEMU command line it ran, and QEMU's stderr."""
        try:
            return (self.root / f"var/log/libvirt/qemu/{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        pids = {}          # QEMU's PID per domain, from libvirt's pid files (driver.pid is libvirtd's own)
        for f in (self.root / "run/libvirt/qemu").glob("*.pid"):
            if f.name != "driver.pid" and f.read_text().strip().isdigit():
                pids[int(f.read_text())] = f.stem
        if self.proc.alive():
            try:
                r = self.virsh("list", "--name", check=False, timeout=20)
                for name in r.stdout.split():
                    self.virsh("destroy", name, check=False, timeout=30)
            except subprocess.TimeoutExpired:
                pass        # a hung daemon: its QEMU is killed by PID below
        self.proc.stop(10)
        for pid, name in pids.items():   # QEMU outlives libvirtd by design: one still running is killed by PID
            try:    # ... if that PID is still this domain's QEMU (not a PID reused since)
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if cmd[0].endswith(b"qemu-system-x86_64") and f"guest={name},".encode() in b" ".join(cmd):
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Libvirtd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def adapt_domain(xml_text: str, *, disk: Path, config_disk: Path, bridges: tuple[str, str], console_log: Path,
                 domain_type: str) -> str:
    """The shipped domain XML with only what a test topology must change: the domain type (`qemu`,
    TCG, where KVM is not usable), the two disks' paths, the two NICs' sources (WAN: the `default`
    network becomes a bridge of the test; LAN: the bridge's name), `<cpu mode="host-passthrough">`
    dropped when not on KVM (TCG cannot pass a host CPU through), and a log file on the serial console
    (the pty stays, the log is what the test reads). Everything else -- firmware selection, machine,
    features, boot order, NIC and disk models, memory -- stays as shipped."""
    dom = ET.fromstring(xml_text)
    dom.set("type", domain_type)
    cpu = dom.find("cpu")
    if domain_type != "kvm" and cpu is not None and cpu.get("mode") == "host-passthrough":
        dom.remove(cpu)        # KVM only; under TCG libvirt's default model (qemu64, no RDRAND) runs instead
    disks = dom.findall("devices/disk")
    assert len(disks) == 2, "the shipped XML has a system disk and a config volume"
    for d, path in zip(disks, (disk, config_disk)):
        d.find("source").set("file", str(path))
    nics = dom.findall("devices/interface")
    assert len(nics) == 2, "the shipped XML has a WAN and a LAN NIC"
    for nic, bridge in zip(nics, bridges):
        nic.set("type", "bridge")
        src = nic.find("source")
        src.attrib.clear()
        src.set("bridge", bridge)
    serial = dom.find("devices/serial")
    ET.SubElement(serial, "log", {"file": str(console_log), "append": "off"})
    return ET.tostring(dom, encoding="unicode")


def firmware_descriptor(loader: str) -> dict | None:
    """The QEMU firmware descriptor (/usr/share/qemu/firmware/*.json) whose executable is `loader`."""
    for f in sorted(FIRMWARE_DESCRIPTORS.glob("*.json")):
        d = json.loads(f.read_text())
        if d.get("mapping", {}).get("executable", {}).get("filename") == loader:
            return {"file": f.name, **d}
    return None
