"""The client's management interface against Debian's OpenVPN 2.6 client: the same profile with
`management SOCK unix` and `management-hold`, against one OpenVPN server, run first with OpenVPN's
client and then with ours. The same commands go to each -- on hold, after `hold release` and the
tunnel up, after a SIGUSR1 -- and the replies are compared line by line (times, pid, byte counts
and the version text masked), as are the >STATE sequences up to CONNECTED, the >HOLD lines, and
what `signal SIGTERM` answers and tells before the process exits."""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

from tests.interop.test_ops_vs_openvpn import Mgmt

ON_HOLD = ["state", "status", "hold", "echo all", "bytecount", "signal SIGFOO", "signal SIGUSR1", "signal SIGHUP",
           "load-stats", "kill x", "verb", "foo", "version 3", "pid", "state on"]
UP = ["state", "status", "hold", "hold off", "bytecount 0", "log 0", "client-kill 1"]


def mask(line: str) -> str:
    line = re.sub(r"^(OpenVPN Version: |Management Interface for )OpenVPN 2\.6\.\d+ .*", r"\1<V>", line)
    line = re.sub(r"pid=\d+", "pid=<PID>", line)
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<T>", line)
    line = re.sub(r"^(>STATE:)?\d{9,10},", r"\1<T>,", line)
    return re.sub(r"^((?:TUN/TAP|TCP/UDP|Auth) (?:read|write) bytes),\d+$", r"\1,<N>", line)


def _notes(m: Mgmt) -> list[str]:
    """The notifications read so far, the byte counts and log lines left out (their timing and
    text are each program's own), masked; then forgotten."""
    out = [mask(n) for n in m.notes if not n.startswith((">BYTECOUNT:", ">LOG:"))]
    m.notes.clear()
    return out


def _until_state(m: Mgmt, name: str, within: float = 20) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end and not any(f",{name}," in n for n in m.notes):
        m.lines(0.2)


def _until_note(m: Mgmt, prefix: str, within: float = 3) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end and not any(n.startswith(prefix) for n in m.notes):
        m.lines(0.05)


def _session(lab: Lab, ours: bool) -> dict[str, list[str]]:
    sock = str(lab.tmp / f"cm-{'ours' if ours else 'theirs'}.sock")
    prof = client_profile(lab.pki, extra=f"management {sock} unix\nmanagement-hold\n")
    start = lab.ours if ours else lab.openvpn
    p = start(lab.cli, prof, "ours-cli" if ours else "ovpn-cli", wait=0)
    m = Mgmt(sock, p)
    out: dict[str, list[str]] = {}
    m.lines(0.5)
    out["welcome"] = _notes(m)
    for c in ON_HOLD:
        reply = [mask(x) for x in m.cmd(c)]
        if c in ("signal SIGUSR1", "signal SIGHUP"):
            # OpenVPN writes the >HOLD line that follows this reply on its own: wait for it, so
            # it is not taken for the next command's.
            _until_note(m, ">HOLD:")
        out[f"hold: {c}"] = reply + _notes(m)
    out["hold release"] = m.cmd("hold release")
    _until_state(m, "CONNECTED")
    out["up"] = _notes(m)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    for c in UP:
        out[f"up: {c}"] = [mask(x) for x in m.cmd(c)] + _notes(m)
    out["signal SIGUSR1"] = m.cmd("signal SIGUSR1")
    _until_state(m, "CONNECTED")
    out["again"] = _notes(m)
    out["signal SIGTERM"] = m.cmd("signal SIGTERM")
    assert p.exit_within(15) is not None, p.log()[-2000:]
    m.lines(0.3)
    out["exit"] = _notes(m)
    m.close()
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("climgmt")) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "srv")
        yield lab


def test_client_management_answers_as_openvpns(lab):
    theirs = _session(lab, ours=False)
    ours = _session(lab, ours=True)
    # Our answer to SIGHUP differs on purpose (client_mgmt.py): OpenVPN's client re-reads its
    # config on it, ours cannot and refuses it -- in OpenVPN's own words for an ignored signal.
    assert theirs["hold: signal SIGHUP"] == ["ERROR: signal 'SIGHUP' is currently ignored",
                                             ">HOLD:Waiting for hold release:0"]
    for k in theirs:
        assert ours[k] == theirs[k], (k, ours[k], theirs[k])
    assert theirs["up"][-1] == ">STATE:<T>,CONNECTED,SUCCESS,198.19.0.2,198.18.0.1,1194,,"
    assert theirs["exit"] == [">STATE:<T>,EXITING,SIGTERM,,,,,"]
