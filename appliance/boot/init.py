"""PID 1 of the appliance VM: mount, load modules, read the baked TOML, run the appliance.

Config: a volume labelled VPNCONFIG (boot/config_volume.py), when attached, wins over the TOML
baked into /etc/vpn-appliance; its errors stop the boot like the baked one's.

Contract: this process never exits without powering the machine off (PID 1 exiting panics the
kernel). Any fatal error is printed on the console as `FATAL: ...` (config errors as
`file:line: key: why`) and the VM powers off by itself. No shell, no other long-running process.
Kernel command line: `appliance.selftest=1` runs the self-test and powers off.
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


def mount(src: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    os.makedirs(target, exist_ok=True)
    if _libc.mount(src.encode(), target.encode(), fstype.encode(), flags,
                   data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        if e != 16:  # EBUSY: already mounted
            raise OSError(e, f"mount {target}: {os.strerror(e)}")


def load_modules() -> list[str]:
    """finit_module each module in the order build.py wrote (dependencies first)."""
    base = f"/lib/modules/{os.uname().release}"
    loaded = []
    try:
        order = open(f"{base}/load-order").read().split()
    except FileNotFoundError:
        return loaded
    for rel in order:
        fd = os.open(f"{base}/{rel}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.syscall(313, fd, b"", 0) != 0:   # finit_module
                e = ctypes.get_errno()
                if e != 17:  # EEXIST: built in or already loaded
                    say(f"module {os.path.basename(rel)}: {os.strerror(e)}")
                    continue
            loaded.append(os.path.basename(rel).split(".ko")[0])
        finally:
            os.close(fd)
    return loaded


def power_off(code: int = 0) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    _libc.sync()
    _libc.reboot(0x4321FEDC)   # RB_POWER_OFF
    os._exit(code)             # only reached if reboot() failed (not PID 1)


def start_appliance(path: str) -> int:
    """The integration point: the same code a host runs for `vpn-appliance run appliance.toml`."""
    from appliance.run_toml import run_toml
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


def main() -> None:
    try:
        mount("proc", "/proc", "proc")
        mount("sysfs", "/sys", "sysfs")
        mount("devtmpfs", "/dev", "devtmpfs")
        mount("tmpfs", "/tmp", "tmpfs")
        mount("tmpfs", "/run", "tmpfs")
        os.environ.setdefault("PATH", "/usr/sbin:/usr/bin")
        say(f"vpn-appliance PID 1 on Linux {os.uname().release}, Python {sys.version.split()[0]}")
        mods = load_modules()
        say(f"loaded {len(mods)} modules: {' '.join(mods)}")
        cmdline = open("/proc/cmdline").read().split()
        if "appliance.selftest=1" in cmdline:
            from appliance.boot.selftest import run
            ok = run(say)
            say("SELFTEST OK" if ok else "SELFTEST FAIL")
            power_off(0 if ok else 1)
        from appliance.config.schema import load_appliance_config
        from appliance.openvpn.errors import ConfigError
        config = choose_config()
        try:
            cfg = load_appliance_config(config)
        except ConfigError as e:
            for line in str(e).splitlines():
                print(f"FATAL: {line}", flush=True)
            say("configuration error: powering off")
            power_off(2)
        say(f"config {config}: hostname {cfg.appliance.hostname}, role {cfg.vpn.role}")
        rc = start_appliance(config)
        say(f"appliance stopped (status {rc}): powering off")
        power_off(rc)
    except SystemExit as e:
        power_off(int(e.code or 0) if isinstance(e.code, int) else 1)
    except BaseException as e:  # noqa: BLE001 - PID 1 must never die silently
        import traceback
        traceback.print_exc()
        print(f"FATAL: {type(e).__name__}: {e}", flush=True)
        power_off(1)
