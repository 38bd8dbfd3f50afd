"""Boot the appliance image under QEMU with its WAN (and optionally LAN) NIC on bridged TAPs in
network namespaces; a server-side namespace on the WAN and a LAN host namespace.

    [lan ns] 198.18.50.2 ── br ── tap ─ eth1 [VM] eth0 ─ tap ── br ── 198.18.0.1 [wan ns]
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

from .netns import Netns, Proc
from .pki import Pki
from .tools import REPO

OUT = REPO / "image" / "out"
LAB_PKI = OUT / "cache" / "default-lab" / "pki"


def lab_pki() -> Pki:
    return Pki(LAB_PKI, LAB_PKI / "ca.crt", LAB_PKI / "server.crt", LAB_PKI / "server.key",
               clients={"client1": (LAB_PKI / "client1.crt", LAB_PKI / "client1.key")})


@contextlib.contextmanager
def vm_topology(tmp: Path, with_lan: bool = True):
    tag = secrets.token_hex(3)
    spaces: list[Netns] = []
    procs: list[Proc] = []
    try:
        vm = Netns(f"vmh{tag}")
        wan = Netns(f"vms{tag}")
        spaces += [vm, wan]
        sides = [("w", wan, "198.18.0.1/24")]
        lan = None
        if with_lan:
            lan = Netns(f"vml{tag}")
            spaces.append(lan)
            sides.append(("l", lan, "198.18.50.2/24"))
        for side, peer, addr in sides:
            vm.run(f"ip link add br{side} type bridge && ip link set br{side} up && "
                   f"ip tuntap add tap{side} mode tap && ip link set tap{side} master br{side} up")
            subprocess.run(["ip", "link", "add", f"v{side}1{tag}", "netns", vm.name, "type", "veth", "peer",
                            "name", f"v{side}2{tag}", "netns", peer.name], check=True)
            vm.run(f"ip link set v{side}1{tag} master br{side} up")
            peer.run(f"ip addr add {addr} dev v{side}2{tag} && ip link set v{side}2{tag} up")
        if lan is not None:
            lan.run("ip route add default via 198.18.50.1")
        wan.run("ip addr add 198.18.100.1/32 dev lo")
        yield {"vm": vm, "wan": wan, "lan": lan, "tag": tag, "procs": procs, "tmp": tmp,
               "wan_if": f"vw2{tag}"}
    finally:
        for p in reversed(procs):
            p.stop(10)
        for ns in reversed(spaces):
            ns.delete()


def accel(image: Path) -> str:
    """kvm when a short probe boot works, else tcg (nested KVM hangs on some build machines)."""
    r = subprocess.run([str(REPO / "qemu/probe-kvm.sh"), str(image)], capture_output=True, text=True, timeout=60)
    return r.stdout.strip() or "tcg"


# The VM's memory (MB): 128, what the image is made to run in (issue 10); VM_MEM_MB=256 (or any) runs
# the lab and tests/vm otherwise. VM_APPEND adds to the kernel command line (e.g. appliance.memstat=10
# appliance.importlog=1: a memory line, and the modules imported since, on the console every 10 s).
MEM_MB = int(os.environ.get("VM_MEM_MB", "128"))
# UEFI disk boots: OVMF faults in the firmware at -m 128 (an X64 exception before the kernel starts;
# seen in tests/vm), so they keep 256 MB; BIOS disk boots use MEM_MB.
UEFI_MEM_MB = max(MEM_MB, 256)
EXTRA_APPEND = os.environ.get("VM_APPEND", "")


def qemu_argv(image: Path, accel_name: str, nics: list[str], append: str = "", mem: int = MEM_MB) -> list[str]:
    """The one QEMU command line of the lab and the VM tests. Why these options: -nodefaults and
    -no-user-config keep QEMU from adding devices nobody uses (VGA, default NIC, floppy/CD) that
    the firmware and the kernel would then probe; the serial port is the console."""
    return ["qemu-system-x86_64", "-accel", accel_name, "-cpu", "host" if accel_name == "kvm" else "max",
            "-M", "q35", "-m", str(mem), "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-no-reboot", "-kernel", str(image / "vmlinuz"),
            "-initrd", str(image / "initramfs.img"), *nics, "-append", f"console=ttyS0 panic=-1 quiet no_timer_check {EXTRA_APPEND} {append}".strip()]


def nic_args(with_lan: bool) -> list[str]:
    """WAN (and LAN) virtio NICs on the taps; `romfile=` drops their iPXE option ROMs, which SeaBIOS
    would otherwise run (slowly, under TCG) before the kernel starts."""
    nics = ["-netdev", "tap,id=wan,ifname=tapw,script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=wan,mac=52:54:00:00:00:01,romfile="]
    if with_lan:
        nics += ["-netdev", "tap,id=lan,ifname=tapl,script=no,downscript=no",
                 "-device", "virtio-net-pci,netdev=lan,mac=52:54:00:00:00:02,romfile="]
    return nics


def boot(t: dict, image: Path, with_lan: bool = True, accel_name: str | None = None, mem: int = MEM_MB,
         config_disk: Path | None = None, monitor: Path | None = None) -> Proc:
    """Boot `image` (-kernel/-initrd) in the vm_topology; with `config_disk` (config_volume()) attached
    as a read-only virtio disk, whose TOML then wins over the baked one, as on a deployed disk; with
    `monitor` a QMP socket there (qmp())."""
    a = accel_name or accel(image)
    drives = [] if config_disk is None else ["-drive", f"file={config_disk},format=raw,if=virtio,readonly=on"]
    qmp_args = [] if monitor is None else ["-qmp", f"unix:{monitor},server=on,wait=off"]
    q = Proc(t["vm"], qemu_argv(image, a, [*drives, *qmp_args, *nic_args(with_lan)], mem=mem),
             t["tmp"] / f"console-{len(t['procs'])}.log")
    t["procs"].append(q)
    return q


def qmp(sock: Path, command: str, timeout: float = 10) -> dict:
    """One QMP command (e.g. "system_powerdown": the ACPI power button, what `virsh shutdown` and a
    host shutting its guests down press) on QEMU's monitor socket -> its reply ({"return": ...})."""
    import json
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        f = s.makefile("rwb")

        def reply() -> dict:
            while True:                       # events ({"event": ...}) may come before the reply
                line = f.readline()
                if not line:
                    raise ConnectionError(f"QMP: {sock} closed")
                msg = json.loads(line)
                if "return" in msg or "error" in msg or "QMP" in msg:
                    return msg

        reply()                               # the greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            r = reply()
            if "error" in r:
                raise RuntimeError(f"QMP {cmd}: {r['error']}")
        return r


def config_volume(toml: Path, dest: Path) -> Path:
    """A config volume (`vpn-appliance config-disk`) holding `toml` and the files it names: one image
    boots any test's config in seconds, where baking it means an image build per config."""
    r = subprocess.run([sys.executable, "-m", "appliance", "config-disk", str(toml), "-o", str(dest)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, f"config-disk refused {toml}:\n{r.stdout}{r.stderr}"
    return dest


def ping(ns: Netns, addr: str, count: int = 3) -> int:
    r = ns.run(f"ping -n -q -c {count} -i 0.3 -W 2 {addr}", check=False, timeout=30)
    m = re.search(r"(\d+) received", r.stdout)
    return int(m.group(1)) if m else 0


def wait_ping(ns: Netns, addr: str, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if ping(ns, addr, 1):
            return True
        time.sleep(0.5)
    return False


def inline_server_config(pki: Pki, proto: str, protection: str = "tls-crypt") -> str:
    """A server config with everything inline, to bake into an image (protection: tls-crypt or none)."""
    key = (pki.dir / "static.key").read_text()
    return (f"port 1194\nproto {'tcp-server' if proto == 'tcp' else 'udp'}\ndev tun\ntopology subnet\n"
            "server 198.19.0.0 255.255.255.0\ndh none\nkeepalive 5 30\nverb 3\nremote-cert-tls client\n"
            f"<ca>\n{pki.ca.read_text()}</ca>\n<cert>\n{pki.server_cert.read_text()}</cert>\n"
            f"<key>\n{pki.server_key.read_text()}</key>\n"
            + (f"<tls-crypt>\n{key}</tls-crypt>\n" if protection == "tls-crypt" else ""))


def appliance_toml(role: str, ovpn_text: str, lan: bool) -> str:
    """An appliance TOML for the VM topology: WAN eth0 198.18.0.2/24 (gateway 198.18.0.1), with `lan`
    a NATed LAN on eth1 198.18.50.1/24, and the OpenVPN config inline."""
    t = (f'[appliance]\nhostname = "vm-{role}"\n\n[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n'
         f'gateway = "198.18.0.1"\n\n')
    if lan:
        t += '[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\nnat = true\n\n'
    return t + f"[vpn]\nrole = \"{role}\"\ninline = '''\n{ovpn_text}'''\n"


def lan_transfer(lan: Netns, wan: Netns, tmp: Path, nbytes: int = 2_000_000, download: bool = False) -> str:
    """TCP transfer between the LAN host and the host behind the VPN server (198.18.100.1:7000),
    the LAN host connecting (NAT allows no other way). Upload by default; with `download` the far
    side sends. The receiver checks the count and SHA-256 of a deterministic pattern. Returns the
    peer address the far side saw (NAT shows there)."""
    pattern = "(bytes(range(256))*{k})[:{n}]".format(k=nbytes // 256 + 1, n=nbytes)
    recv_loop = ("import hashlib;h=hashlib.sha256();n=0\n"
                 "while True:\n d=c.recv(65536)\n if not d: break\n n+=len(d);h.update(d)\n"
                 f"ok=h.hexdigest()==hashlib.sha256({pattern}).hexdigest()\n")
    far = ("import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
           "s.bind(('198.18.100.1',7000));s.listen(1);s.settimeout(60);c,a=s.accept();c.settimeout(60)\n")
    if download:
        far += f"c.sendall({pattern});c.close();print('peer',a[0],'sent',flush=True)"
        near = ("import socket;c=socket.create_connection(('198.18.100.1',7000),timeout=20);c.settimeout(60)\n"
                + recv_loop + "print('bytes',n,'sha256',ok,flush=True)")
    else:
        far += recv_loop + "print('peer',a[0],'bytes',n,'sha256',ok,flush=True)"
        near = (f"import socket;c=socket.create_connection(('198.18.100.1',7000),timeout=20);"
                f"c.sendall({pattern});c.close()")
    rx = Proc(wan, [sys.executable, "-c", far], tmp / f"far-{secrets.token_hex(2)}.log")
    try:
        time.sleep(0.5)
        r = subprocess.run(["ip", "netns", "exec", lan.name, sys.executable, "-c", near], capture_output=True,
                           text=True, timeout=120)
        if download:
            assert f"bytes {nbytes} sha256 True" in r.stdout, f"download incomplete: {r.stdout} {r.stderr}"
            assert rx.wait_for("sent", 20), rx.log()
        else:
            assert r.returncode == 0, r.stderr
            assert rx.wait_for(rf"bytes {nbytes} sha256 True", 60), "transfer incomplete: " + rx.log()
        m = re.search(r"peer (\S+) ", rx.log())
        return m.group(1) if m else ""
    finally:
        rx.stop(3)


# -- the bootable disk image (image/disk.py): no -kernel, BIOS (SeaBIOS) or UEFI (OVMF)
# Debian's ovmf, the build without Secure Boot and SMM, in its 2 MB flash layout: under TCG it reaches
# its boot manager ~0.45 CPU s sooner than the 4 MB one (OVMF_CODE_4M.fd, what libvirt's
# firmware="efi" picks with secure-boot off), which carries more drivers. Both boot the disk.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS.fd")
# The same build as one image (variable template + code), which qemu/ovmf-rom.sh pads into a `-bios`
# ROM reaching down to the TPM's registers, so that OVMF's TPM probe reads 0xFF ("absent") instead
# of waiting out ~1.5 s of timeouts (the script says why).
OVMF_FD = Path("/usr/share/ovmf/OVMF.fd")
OVMF_ROM_SCRIPT = REPO / "qemu/ovmf-rom.sh"


def ovmf_rom(dest: Path) -> Path:
    """qemu/ovmf-rom.sh's ROM at `dest` (made if missing or stale); the one way the lab and
    qemu/run-disk.sh get it."""
    if not OVMF_FD.exists():
        raise RuntimeError(f"{OVMF_FD} is missing: run `make setup` (installs Debian's ovmf)")
    subprocess.run([str(OVMF_ROM_SCRIPT), str(dest)], check=True, timeout=60)
    return dest
# The disk boot's machine: q35 without the legacy devices nothing here uses. OVMF initialises the
# PS/2 controller (~2,000 status polls, ~0.35 s under TCG) when one is there; no SATA controller,
# SMM or VMware port either (the -kernel path's machine is the same otherwise).
DISK_MACHINE = "q35,i8042=off,sata=off,smm=off,vmport=off"
# The disk boot's CPU under TCG: QEMU's `max` without ERMS/FSRM ("fast rep movsb/stosb"). With them
# the kernel and glibc copy and clear memory with `rep movsb`/`rep stosb`, which TCG runs one byte
# per iteration; without them they use 8- or 16-byte moves. It matters most after UEFI: pages where
# OVMF's drivers ran still hold TCG translations, and every store into such a page takes QEMU's slow
# path (invalidating translated code) until the page's code bytes are overwritten -- 1.05 million
# slow stores during the initramfs unpack with `rep movsb`, against 0.17 million for -kernel
# (`-trace memory_notdirty_write_access`). The unpack took ~0.8 CPU s after OVMF, 0.4 with -kernel;
# without ERMS ~0.45 (README "Boot time of the disk image"). KVM keeps `-cpu host`.
DISK_TCG_CPU = "max,-erms,-fsrm"


def disk_qemu_args(image: Path, firmware: str, tmp: Path, config_disk: Path | None = None,
                   fresh_vars: bool = False, stock_firmware: bool = False) -> list[str]:
    """QEMU arguments booting image/disk.qcow2 (a throwaway overlay: snapshot=on) under `firmware`
    ("bios" or "uefi"), with `config_disk` (a config volume) as the second virtio disk.

    Why these options (measured with lab/boot_profile.py --disk uefi; README "Deploying the disk image"):
    - bootindex=0 on the system disk and `-boot strict=on`: QEMU hands the firmware a boot order
      naming only that disk, so OVMF connects just that device instead of every one (no virtio-net
      driver + network stack on the NICs) and tries nothing else first (no PXE, no CD-ROM);
    - UEFI: the firmware is qemu/ovmf-rom.sh's `-bios` ROM (Debian's OVMF padded with 0xFF down
      to 0xFED40000): its TPM probe reads "absent" at once instead of waiting ~1.5 s. As a ROM
      the variable store is read-only: OVMF keeps its variables in RAM. The appliance needs no
      persistent variable (the disk boots by the removable-media path \\EFI\\BOOT\\BOOTX64.EFI),
      and a writable store costs a first boot's ~13,000 byte-wise flash programs (each one an MMIO
      exit under TCG), ~1 s. `fresh_vars` boots the stock pflash layout instead with a writable
      copy of the store (what a new libvirt domain gets; the TPM wait included);
      `stock_firmware` the stock pflash layout with the store read-only (the TPM wait included)."""
    args = ["-drive", f"file={image / 'disk.qcow2'},format=qcow2,if=none,id=sys,snapshot=on",
            "-device", "virtio-blk-pci,drive=sys,bootindex=0", "-boot", "strict=on"]
    if config_disk is not None:
        args += ["-drive", f"file={config_disk},format=raw,if=virtio,readonly=on"]
    if firmware == "uefi":
        if not (fresh_vars or stock_firmware):
            return [*args, "-bios", str(ovmf_rom(tmp / "ovmf-rom.fd"))]
        if not OVMF_CODE.exists():
            raise RuntimeError(f"{OVMF_CODE} is missing: run `make setup` (installs Debian's ovmf)")
        vars_file, ro = OVMF_VARS, ",readonly=on"
        if fresh_vars:
            vars_file, ro = tmp / f"OVMF_VARS-{secrets.token_hex(3)}.fd", ""
            vars_file.write_bytes(OVMF_VARS.read_bytes())
        args += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1{ro},file={vars_file}"]
    elif firmware != "bios":
        raise ValueError(firmware)
    return args


def disk_argv(image: Path, firmware: str, accel_name: str, tmp: Path, nics: list[str],
              config_disk: Path | None = None, mem: int = MEM_MB, fresh_vars: bool = False,
              stock_firmware: bool = False) -> list[str]:
    """The QEMU command line of a disk boot: the -kernel path's (qemu_argv: -nodefaults, serial console)
    on DISK_MACHINE, with the disk instead of -kernel."""
    return ["qemu-system-x86_64", "-accel", accel_name, "-cpu", "host" if accel_name == "kvm" else DISK_TCG_CPU,
            "-M", DISK_MACHINE, "-m", str(mem), "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-no-reboot", *disk_qemu_args(image, firmware, tmp, config_disk, fresh_vars, stock_firmware), *nics]


def boot_disk(t: dict, image: Path, firmware: str, config_disk: Path | None = None, with_lan: bool = True,
              mem: int | None = None, accel_name: str | None = None, fresh_vars: bool = False,
              stock_firmware: bool = False) -> Proc:
    """Boot the disk image in the vm_topology (same NICs as boot()), without -kernel; `mem` by default
    MEM_MB, UEFI_MEM_MB under UEFI."""
    a = accel_name or accel(image)
    mem = mem or (UEFI_MEM_MB if firmware == "uefi" else MEM_MB)
    q = Proc(t["vm"], disk_argv(image, firmware, a, t["tmp"], nic_args(with_lan), config_disk, mem, fresh_vars,
                               stock_firmware),
             t["tmp"] / f"console-{len(t['procs'])}.log")
    t["procs"].append(q)
    return q
