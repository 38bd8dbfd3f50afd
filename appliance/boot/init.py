"""PID 1 of the appliance VM: mount, read the baked TOML, run the appliance.

The kernel (image/kernel.config) has every driver and protocol built in: there are no modules to load.

Config: a volume labelled VPNCONFIG (boot/config_volume.py), when attached, wins over the TOML
baked into /etc/vpn-appliance; its errors stop the boot like the baked one's.

Contract: this process never exits without powering the machine off (PID 1 exiting panics the
kernel). Any fatal error is printed on the console as `FATAL: ...` (config errors as
`file:line: key: why`) and the VM powers off by itself. No shell, no other long-running process.
The ACPI power button (`virsh shutdown`) stops the appliance as SIGTERM does on a host, then the VM
powers off (boot/power_button.py).
Kernel command line: `appliance.selftest=1` runs the self-test and powers off;
`appliance.memstat=N` prints a `mem:` line (boot/memory.py) every N seconds, to watch memory at -m 128.
"""
from __future__ import annotations

import ctypes
import os
import sys
import time

CONFIG = "/etc/vpn-appliance/appliance.toml"
_libc = ctypes.CDLL(None, use_errno=True)
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.3f}] {msg}", flush=True)


# Kernel log records that mark the kernel's own boot stages (read once from /dev/kmsg). The unpack's
# wording depends on CONFIG_BLK_DEV_RAM (Debian's kernel: the first; image/kernel.config: the second).
KERNEL_MARKS = (("Trying to unpack rootfs", "kernel-initramfs"), ("Unpacking initramfs", "kernel-initramfs"),
                ("Freeing initrd memory", "kernel-initramfs-done"),
                ("Run /init as init process", "kernel-run-init"))
# Kernel log records on memory, echoed as `kernel: ...`: what the kernel keeps of -m N for itself
# (its image, reservations such as swiotlb or crashkernel) -- the other side of `mem:` lines.
KERNEL_MEMORY = ("Memory:", "software IO TLB", "crashkernel", "Freeing initrd memory", "Freeing unused kernel")


def stage(name: str) -> None:
    """`boot: <stage> <CLOCK_MONOTONIC s> <wall s>`: one cheap line per boot stage. Why: the monotonic
    clock counts from the kernel's start, so lab.boot_profile can split the time to tunnel up into
    firmware, kernel, Python start, imports... from the console alone; the wall clock maps the
    appliance's own log times (HH:MM:SS.mmm) onto the same scale."""
    print(f"boot: {name} {time.monotonic():.3f} {time.time():.3f}", flush=True)


def kernel_stages() -> None:
    """Print the kernel's stage marks (printk times, kept in the ring buffer even with `quiet`)."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        for _ in range(5000):
            try:
                rec = os.read(fd, 8192).decode(errors="replace")
            except OSError as e:   # EAGAIN: the end of the buffer (EPIPE: a record overwritten; skip on)
                if e.errno == 32:
                    continue
                break
            head, _, msg = rec.partition(";")
            for needle, name in KERNEL_MARKS:
                if msg.startswith(needle):
                    print(f"boot: {name} {int(head.split(',')[2]) / 1e6:.3f}", flush=True)
            if msg.startswith(KERNEL_MEMORY):
                print(f"kernel: {msg.strip()}", flush=True)
    finally:
        os.close(fd)


def mount(src: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    os.makedirs(target, exist_ok=True)
    if _libc.mount(src.encode(), target.encode(), fstype.encode(), flags,
                   data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        if e != 16:  # EBUSY: already mounted
            raise OSError(e, f"mount {target}: {os.strerror(e)}")


RO_IMAGE, RO_DIR = "/ro.sqfs", "/ro"
LOOP_CTL_GET_FREE, LOOP_SET_FD, MS_RDONLY = 0x4C82, 0x4C00, 1


def mount_read_only() -> None:
    """Loop-mount the image's squashfs (image/build.py RO_PATHS: the biggest files, kept compressed
    in RAM) at /ro, where symlinks point; before anything imports from it."""
    if not os.path.exists(RO_IMAGE):
        return
    import fcntl
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
    finally:
        os.close(ctl)
    dev = f"/dev/loop{n}"
    loop = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    try:
        img = os.open(RO_IMAGE, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(loop, LOOP_SET_FD, img)
        finally:
            os.close(img)
        mount(dev, RO_DIR, "squashfs", MS_RDONLY)
    finally:
        os.close(loop)


def power_off(code: int = 0) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    _libc.sync()
    _libc.reboot(0x4321FEDC)   # RB_POWER_OFF
    os._exit(code)             # only reached if reboot() failed (not PID 1)


def start_appliance(path: str) -> int:
    """The integration point: the same code a host runs for `vpn-appliance run appliance.toml`."""
    from appliance.run_toml import run_toml
    stage("imports")
    return run_toml(path, 0)


def choose_config() -> str:
    """The config volume's TOML when a volume labelled VPNCONFIG is attached, else the baked one."""
    from appliance.boot import config_volume
    dev = config_volume.find()
    if dev is None:
        say(f"no config volume (label {config_volume.LABEL}): using the baked {CONFIG}")
        return CONFIG
    path = config_volume.mount(dev)
    say(f"config volume {dev} (label {config_volume.LABEL}): using {path}")
    return path


def prepare_outputs(cfg, out_dir: str | None = None) -> list[str]:
    """Make the directory where the VM writes what its config writes (`status`, a pool file, a
    management socket: appliance/config/bundle.py OUTPUT_DIR, on the tmpfs mounted on /run) and
    -> the lines to say about them at start. A written file the bundle did not point there (a
    config volume made by hand) is a ConfigError at its line: its directory is the read-only
    volume or one the VM lacks, and every write would fail with a warning (the socket: no start)."""
    from appliance.config.bundle import OUTPUT_DIR, output_paths
    from appliance.openvpn.config.model import ConfigErrors
    from appliance.openvpn.errors import ConfigError
    d = os.path.normpath(out_dir or OUTPUT_DIR)
    os.makedirs(d, mode=0o700, exist_ok=True)
    o = cfg.vpn_options
    errors, lines = [], []
    for fld, directive, p in output_paths(o):
        conf, line = o.source.get(fld, (o.path, None))
        if os.path.dirname(os.path.normpath(p)) != d:
            errors.append(ConfigError(f"{p}: the VM writes files only in {d} (in memory: it has no writable disk "
                                      "and its config volume is read-only); `vpn-appliance config-disk` writes "
                                      "the volume with this line pointed there", conf, line, directive))
        elif fld == "ifconfig_pool_persist":
            lines.append(f"ifconfig-pool-persist {p}: addresses kept for this boot only (in memory, no "
                         "writable disk); `ifconfig-pool-persist FILE 0` or a ccd `ifconfig-push` fixes them "
                         "across boots")
        else:
            lines.append(f"{directive} {p}: in the VM's memory")
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return lines


def main() -> None:
    try:
        stage("init")
        mount("proc", "/proc", "proc")
        mount("sysfs", "/sys", "sysfs")
        mount("devtmpfs", "/dev", "devtmpfs")
        mount("tmpfs", "/tmp", "tmpfs")
        mount("tmpfs", "/run", "tmpfs")
        os.environ.setdefault("PATH", "/usr/sbin:/usr/bin")
        say(f"vpn-appliance PID 1 on Linux {os.uname().release}, Python {sys.version.split()[0]}")
        kernel_stages()
        mount_read_only()
        stage("modules")     # the name lab.boot_profile knows (images before issue 10 part 6 loaded modules here)
        cmdline = open("/proc/cmdline").read().split()
        from appliance.boot import memory
        memory.tune()
        say(memory.line())
        memory.start_reporter(cmdline, say)
        from appliance.boot import power_button
        power_button.start(say, power_off)
        if "appliance.selftest=1" in cmdline:
            from appliance.boot.selftest import run
            ok = run(say)
            stage("selftest")
            say("SELFTEST OK" if ok else "SELFTEST FAIL")
            power_off(0 if ok else 1)
        from appliance.config.schema import load_appliance_config
        from appliance.openvpn.errors import ConfigError
        config = choose_config()
        try:
            cfg = load_appliance_config(config)
            outputs = prepare_outputs(cfg)
        except ConfigError as e:
            for line in str(e).splitlines():
                print(f"FATAL: {line}", flush=True)
            say("configuration error: powering off")
            power_off(2)
        say(f"config {config}: hostname {cfg.appliance.hostname}, role {cfg.vpn.role}")
        for line in outputs:
            say(line)
        stage("config")
        rc = start_appliance(config)
        say(f"appliance stopped (status {rc}): powering off")
        power_off(rc)
    except SystemExit as e:
        power_off(int(e.code or 0) if isinstance(e.code, int) else 1)
    except BaseException as e:  # noqa: BLE001 - PID 1 must never die silently
        try:
            import traceback   # in /ro (image/build.py RO_GLOBS): missing if the mount failed
            traceback.print_exc()
        except ImportError:
            pass
        print(f"FATAL: {type(e).__name__}: {e}", flush=True)
        power_off(1)
