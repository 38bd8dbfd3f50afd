"""The VM's power button reader (appliance/boot/power_button.py): the struct input_event stream as
evdev gives it, finding the device by its sysfs name, the reading thread, and what a press does
(SIGTERM to the main thread, where the appliance's handler runs; a second press powers off).
The VM end to end (QEMU's system_powerdown): tests/vm/test_power_button.py."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from appliance.boot import power_button as pb
from appliance.boot.power_button import EV_KEY, INPUT_EVENT, KEY_POWER, EventParser, PressHandler

EV_SYN, KEY_ENTER, KEY_SLEEP = 0x00, 28, 142


def ev(typ: int, code: int, value: int, sec: int = 1700000000, usec: int = 123456) -> bytes:
    return INPUT_EVENT.pack(sec, usec, typ, code, value)


def press() -> bytes:
    """What the ACPI button driver sends per press: KEY_POWER 1, SYN, KEY_POWER 0, SYN."""
    return ev(EV_KEY, KEY_POWER, 1) + ev(EV_SYN, 0, 0) + ev(EV_KEY, KEY_POWER, 0) + ev(EV_SYN, 0, 0)


def test_event_layout_is_the_64_bit_kernel_struct():
    assert INPUT_EVENT.size == 24          # timeval 16, type 2, code 2, value 4 (linux/input.h, x86_64)
    assert ev(EV_KEY, KEY_POWER, 1)[16:] == bytes([1, 0, 116, 0, 1, 0, 0, 0])


def test_a_press_counts_once_release_autorepeat_and_other_keys_do_not():
    p = EventParser()
    assert p.feed(press()) == 1
    assert p.feed(ev(EV_KEY, KEY_POWER, 0)) == 0          # release
    assert p.feed(ev(EV_KEY, KEY_POWER, 2)) == 0          # autorepeat
    assert p.feed(ev(EV_KEY, KEY_SLEEP, 1) + ev(EV_KEY, KEY_ENTER, 1)) == 0
    assert p.feed(ev(EV_SYN, KEY_POWER, 1)) == 0          # KEY_POWER's code under another type
    assert p.feed(ev(0x04, KEY_POWER, 1)) == 0            # EV_MSC
    assert p.feed(ev(EV_KEY, KEY_POWER, -1)) == 0
    assert p.feed(press() * 3) == 3


@pytest.mark.parametrize("chunk", [1, 5, 23, 24, 25, 47, 1000])
def test_short_reads_give_the_same_presses(chunk):
    stream = press() + ev(EV_KEY, KEY_SLEEP, 1) + press() + ev(EV_KEY, KEY_POWER, 2) + press()
    p = EventParser()
    got = sum(p.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk))
    assert got == 3


def test_a_partial_event_waits_and_never_grows():
    p = EventParser()
    assert p.feed(ev(EV_KEY, KEY_POWER, 1)[:23]) == 0
    assert len(p._tail) == 23
    assert p.feed(ev(EV_KEY, KEY_POWER, 1)[23:]) == 1
    assert p._tail == b""
    for _ in range(1000):                                   # garbage: whole "events" consumed, tail bounded
        p.feed(os.urandom(37))
        assert len(p._tail) < INPUT_EVENT.size


def _sysfs(root, names: dict[str, str]):
    for entry, name in names.items():
        d = root / "class" / entry / "device"
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
    return str(root / "class")


def test_find_picks_the_power_buttons_by_name(tmp_path):
    sys_input = _sysfs(tmp_path, {"event0": "Sleep Button", "event1": "Power Button", "event10": "Power Button",
                                  "event2": "AT Translated Set 2 keyboard", "input1": "Power Button",
                                  "eventx": "Power Button"})
    (tmp_path / "class" / "mice").mkdir()
    assert pb.find(sys_input, "/dev/input") == ["/dev/input/event1", "/dev/input/event10"]


def test_find_without_input_class_or_buttons(tmp_path):
    assert pb.find(str(tmp_path / "absent"), "/dev/input") == []
    assert pb.find(_sysfs(tmp_path, {"event0": "Sleep Button"}), "/dev/input") == []


def test_watch_calls_back_per_press_and_ends_when_the_device_goes(tmp_path):
    """A pipe stands in for /dev/input/eventN: the same bytes, read the same way (poll, read)."""
    r, w = os.pipe()
    path = f"/proc/self/fd/{r}"
    presses: list[float] = []
    t = pb.watch([path, str(tmp_path / "no-such-device")], lambda: presses.append(time.monotonic()))
    assert t is not None and t.daemon
    os.write(w, ev(EV_KEY, KEY_POWER, 2) + press()[:20])
    time.sleep(0.2)
    assert presses == []            # an autorepeat, then part of the press event: nothing yet
    os.write(w, press()[20:] + press())
    deadline = time.monotonic() + 5
    while len(presses) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(presses) == 2
    os.close(w)                     # end of file: the device went away
    t.join(5)
    assert not t.is_alive()
    os.close(r)


def test_watch_with_nothing_to_open_starts_no_thread(tmp_path):
    before = threading.active_count()
    assert pb.watch([str(tmp_path / "event0")], lambda: None) is None
    assert threading.active_count() == before


def test_first_press_runs_the_sigterm_handler_in_the_main_thread_second_powers_off():
    said, offs, handled = [], [], []

    def on_term(signum, frame):
        handled.append(threading.current_thread() is threading.main_thread())

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        h = PressHandler(said.append, lambda: offs.append(1))
        t = threading.Thread(target=h)     # as the reading thread calls it
        t.start()
        t.join()
        deadline = time.monotonic() + 5
        while not handled and time.monotonic() < deadline:
            time.sleep(0.01)               # the main thread runs Python handlers between bytecodes
        assert handled == [True]
        assert said == ["power button: stopping"] and offs == []
        h()
        assert said[-1] == "power button pressed again: powering off now" and offs == [1]
        assert handled == [True]           # no second SIGTERM
    finally:
        signal.signal(signal.SIGTERM, old)


@pytest.mark.parametrize("disposition", [signal.SIG_DFL, signal.SIG_IGN])
def test_a_press_with_no_sigterm_handler_powers_off_at_once(disposition):
    """PID 1 ignores a SIGTERM it has no handler for: before the appliance installs its own (or after
    it removed it) a press must still end the VM."""
    said, offs = [], []
    old = signal.signal(signal.SIGTERM, disposition)
    try:
        PressHandler(said.append, lambda: offs.append(1))()
    finally:
        signal.signal(signal.SIGTERM, old)
    assert offs == [1] and said == ["power button: nothing running to stop: powering off"]
