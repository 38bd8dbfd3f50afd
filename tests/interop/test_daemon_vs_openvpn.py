"""`daemon [NAME]` and `syslog` on a host run, as Debian's OpenVPN 2.6 does them (appliance/host/daemon.py):
the started process returns 0 at once, the tunnel comes up in a child in a session of its own
whose PID `writepid` holds, its standard output on /dev/null -- or on the `log-append` file when one
is named -- and its log in syslog under NAME[PID] (a syslog socket of the test's own: the lab has no
syslog daemon; Debian's lines go to the host's /dev/log, not read here). Each program runs the same
profile in turn; SIGTERM to the PID in the file ends the tunnel."""
from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import OPENVPN, OUR_BIN, TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("daemon")) as lab:
        yield lab


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def _session(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[3])


def _run_daemon(lab, prog: str, extra: str, env: dict) -> tuple[int, dict]:
    """Start PROG with the profile plus `extra`; wait for its tunnel; -> (child PID, what was seen)."""
    pidfile = lab.tmp / f"{prog}.pid"
    conf = lab.write(f"d-{prog}.conf", client_profile(lab.pki, extra=f"writepid {pidfile}\n{extra}"))
    argv = [OPENVPN, "--config", str(conf)] if prog == "openvpn" else [OUR_BIN, "run", str(conf)]
    started = lab.start(lab.cli, argv, f"d-{prog}", env=env)
    seen: dict = {"rc": started.p.wait(30)}          # the started process returns at once
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (pidfile.exists() and pidfile.read_text().strip()):
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    seen["other_pid"] = pid != started.p.pid
    seen["own_session"] = _session(pid) == pid
    seen["stdout"] = os.readlink(f"/proc/{pid}/fd/1")
    seen["stdin"] = os.readlink(f"/proc/{pid}/fd/0")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and lab.ping(lab.cli, TUN_SERVER_IP, 1, timeout=5) != 1:
        time.sleep(0.3)
    seen["pings"] = lab.ping(lab.cli, TUN_SERVER_IP, 2)
    seen["cwd"] = os.readlink(f"/proc/{pid}/cwd")       # 2.6: / once started, unless `cd` (init.c)
    return pid, seen


def _stop(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    end = time.monotonic() + 15
    while time.monotonic() < end and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        return False
    return True


def test_daemon_runs_in_the_background_as_openvpn(lab):
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    syslog_path = str(lab.tmp / "syslog.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(syslog_path)
    sink.settimeout(0.2)
    srv = lab.openvpn(lab.srv, server_config(lab.pki), "d-srv")
    pids: list[int] = []
    try:
        results = {}
        for prog in ("openvpn", "ours"):
            pid, seen = _run_daemon(lab, prog, "daemon myvpn\n", {**env, "VPN_APPLIANCE_SYSLOG_SOCKET": syslog_path})
            pids.append(pid)
            seen["stopped"] = _stop(pid)
            results[prog] = seen
            log_file = lab.tmp / f"{prog}-append.log"
            pid, seen = _run_daemon(lab, prog, f"daemon\nlog-append {log_file}\ncd {lab.tmp}\n", env)
            pids.append(pid)
            seen["log_has_tunnel"] = ("Initialization Sequence Completed" if prog == "openvpn" else "tunnel up") \
                in log_file.read_text()
            seen["stdout"] = seen["stdout"] == str(log_file)
            seen["stopped"] = _stop(pid)
            results[prog + "+log"] = seen
        assert results["ours"] == results["openvpn"], results
        assert results["ours+log"] == results["openvpn+log"], results
        assert results["ours"] == {"rc": 0, "other_pid": True, "own_session": True, "stdout": "/dev/null",
                                   "stdin": "/dev/null", "pings": 2, "stopped": True, "cwd": "/"}, results
        assert results["ours+log"]["stdout"] is True and results["ours+log"]["log_has_tunnel"], results
        assert results["ours+log"]["cwd"] == str(lab.tmp), results
        lines = []
        end = time.monotonic() + 5
        while time.monotonic() < end and not any("tunnel up" in m for m in lines):
            try:
                lines.append(sink.recv(65536).decode(errors="replace"))
            except socket.timeout:
                pass
        ours_pid = pids[2]
        assert any(f"myvpn[{ours_pid}]: " in m and "tunnel up" in m for m in lines), lines[-10:]
        assert all(m.startswith("<") for m in lines), lines[:3]        # syslog's <PRI> first
    finally:
        for pid in pids:
            _stop(pid)
        srv.stop(5)
        sink.close()
