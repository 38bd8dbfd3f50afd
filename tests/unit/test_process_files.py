"""host/process_files.py: `log`/`log-append` put descriptors 1 and 2 on the file (mode 0600 when
made, truncated or appended), `writepid` writes and removes the PID file; a file that cannot be
opened is an error at the directive's line, a FIFO with no reader fails at once."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from appliance.host import process_files
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

PROFILE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"


def _child(path: str, append: bool) -> subprocess.CompletedProcess:
    code = ("import os, sys; from appliance.host.process_files import redirect_log; "
            f"redirect_log({path!r}, {append}); print('to stdout', flush=True); "
            "print('to stderr', file=sys.stderr, flush=True); os.system('echo from a child')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("append", [False, True])
def test_stdout_stderr_and_children_write_to_the_file(tmp_path, append):
    log = tmp_path / "run.log"
    log.write_text("before\n")
    r = _child(str(log), append)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)
    want = "to stdout\nto stderr\nfrom a child\n"
    assert log.read_text() == ("before\n" + want if append else want)


def test_a_new_log_file_is_the_owners_alone(tmp_path):
    log = tmp_path / "new.log"
    old = os.umask(0)
    try:
        assert _child(str(log), False).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_fifo_without_reader_fails_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        process_files.redirect_log(str(fifo), True)


def test_the_pid_file_is_written_and_removed_only_while_ours(tmp_path):
    opts = parse_config(PROFILE + f"writepid {tmp_path}/x.pid\n", "/p/c.ovpn", lambda p: b"")
    pf = process_files.start(opts)
    assert (tmp_path / "x.pid").read_text() == f"{os.getpid()}\n"
    pf.remove()
    assert not (tmp_path / "x.pid").exists()
    pf = process_files.start(opts)
    (tmp_path / "x.pid").write_text("4242\n")            # another process's by now
    pf.remove()
    assert (tmp_path / "x.pid").read_text() == "4242\n"


@pytest.mark.parametrize("line", ["log /nonexistent-dir/x.log", "writepid /nonexistent-dir/x.pid"])
def test_a_file_that_cannot_be_opened_names_its_line(line):
    opts = parse_config(PROFILE + line + "\n", "/p/c.ovpn", lambda p: b"")
    with pytest.raises(ConfigError) as ei:
        process_files.start(opts)
    assert str(ei.value).startswith(f"/p/c.ovpn:6: {line.split()[0]}: cannot open /nonexistent-dir/"), str(ei.value)



def _in_thread(fn, seconds: float = 10.0) -> list:
    """[fn's result or exception] once it ends within `seconds`; [] if it hangs (a blocked open)."""
    import threading
    out: list = []

    def body() -> None:
        try:
            out.append(fn())
        except Exception as e:              # noqa: BLE001 -- handed to the test
            out.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(seconds)
    return out


def test_writepid_onto_a_fifo_fails_at_once_and_a_fifo_planted_later_never_hangs_the_exit(tmp_path):
    """A FIFO where the PID file goes (a writable directory shared with another user): the start
    ends with the line's error instead of hanging, as a `log` FIFO does; one swapped in while we
    run is left alone at the end, where reading it to check for our PID hung the exit forever
    (2.6 only unlinks)."""
    fifo = tmp_path / "fifo.pid"
    os.mkfifo(fifo)
    opts = parse_config(PROFILE + f"writepid {fifo}\n", "/p/c.ovpn", lambda p: b"")
    got = _in_thread(lambda: process_files.start(opts))
    assert got, "writepid onto a FIFO with no reader hung the start"
    assert isinstance(got[0], ConfigError) and str(got[0]).startswith("/p/c.ovpn:6: writepid: cannot open")
    pid = tmp_path / "vpn.pid"
    pf = process_files.PidFile(str(pid))
    pid.unlink()
    os.mkfifo(pid)
    assert _in_thread(pf.remove), "a FIFO at the PID file's place hung the exit"
    assert stat.S_ISFIFO(os.lstat(pid).st_mode)
