"""The VM's ACPI power button (`virsh shutdown`, Proxmox's "Shutdown", QEMU's `system_powerdown`, a
host shutting its guests down): a press stops the appliance as SIGTERM stops `vpn-appliance run` on
a host, then PID 1 powers off as when the appliance ends.

Why: without it the press does nothing; the host waits out its timeout and kills the VM, so no peer
is told (a client's explicit-exit-notify, a server's RESTART to its clients) and the operator sees
a VM that ignores shutdown.

How: the kernel's ACPI button driver (image/kernel.config) reports the press as KEY_POWER on an
input device named "Power Button"; evdev gives it as /dev/input/eventN, a stream of struct
input_event. One daemon thread blocks in poll() on those devices (no busy loop, nothing on the
appliance's event loop) and calls `on_press` per press. No such device (a host run, a kernel
without the driver): no thread, nothing happens.
"""
from __future__ import annotations

import os
import select
import signal
import struct
import threading
from collections.abc import Callable

# struct input_event on x86_64 (linux/input.h): struct timeval (two longs), __u16 type, __u16 code,
# __s32 value -- 24 bytes. Native layout: the image's Python and kernel are both 64-bit.
INPUT_EVENT = struct.Struct("@llHHi")
EV_KEY = 0x01
KEY_POWER = 116
PRESS = 1                   # value 0 is the release, 2 an autorepeat: neither is a new press
DEVICE_NAME = "Power Button"   # drivers/acpi/button.c, for the fixed (LNXPWRBN) and the PNP0C0C button
SYS_INPUT = "/sys/class/input"
DEV_INPUT = "/dev/input"
# Bytes asked of one read: whole events, several at once (evdev returns only whole events, at most
# as many as fit; a buffer smaller than one event is EINVAL).
READ_SIZE = INPUT_EVENT.size * 16


class EventParser:
    """Counts power-button presses in the bytes read from an evdev device. Bytes that do not make a
    whole event yet wait for the next read (evdev itself returns whole events; the parser does not
    rely on it), and never more than one event's worth is kept."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> int:
        """-> the number of KEY_POWER presses (EV_KEY, value 1) in the whole events now complete."""
        buf = self._tail + data
        whole = len(buf) - len(buf) % INPUT_EVENT.size
        self._tail = buf[whole:]
        presses = 0
        for _sec, _usec, typ, code, value in INPUT_EVENT.iter_unpack(buf[:whole]):
            if typ == EV_KEY and code == KEY_POWER and value == PRESS:
                presses += 1
        return presses


def find(sys_input: str = SYS_INPUT, dev_input: str = DEV_INPUT) -> list[str]:
    """The evdev device files of every input device named "Power Button" (sorted; [] when none or
    no input class at all). The name comes from sysfs: no device needs opening to look."""
    try:
        entries = sorted(e for e in os.listdir(sys_input) if e.startswith("event") and e[5:].isdigit())
    except OSError:
        return []
    found = []
    for e in entries:
        try:
            with open(os.path.join(sys_input, e, "device", "name")) as f:
                name = f.read(256).strip()
        except OSError:
            continue
        if name == DEVICE_NAME:
            found.append(os.path.join(dev_input, e))
    return found


def watch(paths: list[str], on_press: Callable[[], None]) -> threading.Thread | None:
    """Open `paths` and call `on_press()` on a daemon thread for each press; None when none opens.
    The thread ends when every device is gone (read error or end of file)."""
    fds = []
    for p in paths:
        try:
            fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            continue
    if not fds:
        return None
    t = threading.Thread(target=_read_loop, args=(fds, on_press), name="power-button", daemon=True)
    t.start()
    return t


def _read_loop(fds: list[int], on_press: Callable[[], None]) -> None:
    parsers = {fd: EventParser() for fd in fds}
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while parsers:
        for fd, _ev in poller.poll():          # blocks: no timeout, nothing to do until the kernel reports
            try:
                data = os.read(fd, READ_SIZE)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:                        # the device went away (ENODEV) or ended
                poller.unregister(fd)
                os.close(fd)
                del parsers[fd]
                continue
            for _ in range(parsers[fd].feed(data)):
                on_press()


class PressHandler:
    """What a press does. The first: say so and send SIGTERM to our main thread, so the handler the
    running appliance installed (the gateway's graceful stop: explicit-exit-notify, RESTART to the
    clients; the DHCP wait's stop) runs as for a host's `kill`; PID 1 powers off when the appliance
    returns. With no handler installed (the appliance not started yet, or already cleaning up),
    PID 1 would ignore SIGTERM: then power off at once, there is nobody to tell. A second press
    while stopping: power off at once (the operator, or the host's second attempt, insists).
    To the main thread, not the process: Python runs handlers there, and a signal the kernel gave to
    this thread instead would not interrupt a wait the main thread is blocked in."""

    def __init__(self, say: Callable[[str], None], power_off: Callable[[], None],
                 kill: Callable[[int, int], None] = signal.pthread_kill,
                 getsignal: Callable = signal.getsignal) -> None:
        self.say = say
        self.power_off = power_off
        self.kill = kill
        self.getsignal = getsignal
        self.presses = 0

    def __call__(self) -> None:
        self.presses += 1
        if self.presses > 1:
            self.say("power button pressed again: powering off now")
            self.power_off()
            return
        if not callable(self.getsignal(signal.SIGTERM)):
            self.say("power button: nothing running to stop: powering off")
            self.power_off()
            return
        self.say("power button: stopping")
        self.kill(threading.main_thread().ident or 0, signal.SIGTERM)


def start(say: Callable[[str], None], power_off: Callable[[], None]) -> threading.Thread | None:
    """PID 1's one call (boot/init.py), once /dev and /sys are mounted: watch the power button(s)
    if the kernel has any, and say which."""
    paths = find()
    t = watch(paths, PressHandler(say, power_off)) if paths else None
    if t is not None:
        say(f"power button {' '.join(paths)}: a press stops the appliance and powers off")
    return t
