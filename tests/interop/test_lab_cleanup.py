"""No namespace outlives a test run, however it ends (lab/netns.py, tests/conftest.py).

A tiny pytest run in a subprocess makes a Lab in a fixture and a Netns with a process in it in the
test body, says so, and waits; we end it as a CI job timeout would (SIGTERM to pytest) or as
nothing can be cleaned up (SIGKILL). After SIGTERM nothing is left: the fixture's teardown ran
(Lab.close) and the test's own namespace went at exit. After SIGKILL the namespaces stay -- the
next run's remove_leftovers() removes them, since their creator is gone, and keeps those of a
creator still running."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.netns import Netns
from lab.tools import REPO

TINY = '''
import json, os, subprocess, time, pytest
from pathlib import Path
from lab.netns import Lab, Netns, Proc

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("tiny")) as lab:
        yield lab

def test_waits_to_be_killed(lab):
    extra = Netns("labx" + lab.tag)                 # no fixture, no teardown: the test's own
    p = Proc(extra, ["sleep", "300"], Path(os.environ["READY"] + ".log"))   # not the lab's: only the ns knows
    with open(os.environ["READY"] + ".tmp", "w") as f:
        json.dump({"ns": [n.name for n in lab.ns] + [extra.name], "pid": p.p.pid}, f)
    os.rename(os.environ["READY"] + ".tmp", os.environ["READY"])
    time.sleep(300)
'''
# The tiny run gets the suite's conftest (what is tested) the way every test under tests/ does.
TINY_CONFTEST = "try:\n    from tests.conftest import *  # noqa: F403\nexcept ImportError:\n    pass\n"


def _netns() -> set[str]:
    return {line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                       text=True).stdout.splitlines() if line.strip()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _until(pred, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _run_tiny(tmp_path: Path, sig: int, xdist: bool = False) -> tuple[dict, subprocess.Popen, str]:
    """`xdist`: as `make test` runs it, the test in a worker; the signal goes to the controller alone."""
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "test_tiny.py").write_text(TINY)
    (d / "conftest.py").write_text(TINY_CONFTEST)
    ready = tmp_path / "ready.json"
    out = tmp_path / "out.log"
    with open(out, "wb") as f:
        workers = ["-n", "2", "--dist", "loadfile"] if xdist else ["-p", "no:xdist"]
        # Started as a script's background job is (make test's VM run): SIGINT ignored, which
        # also stops xdist's own way of interrupting a worker (execnet's interrupt_main).
        p = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$@"', "sh", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers,
                              "--rootdir", str(d), "-c", os.devnull, str(d / "test_tiny.py")], cwd=d, stdout=f,
                             stderr=subprocess.STDOUT, env={**os.environ, "READY": str(ready), "PYTHONPATH": str(REPO)})
    try:
        assert _until(lambda: ready.exists() or p.poll() is not None, 60), out.read_text()
        assert ready.exists(), out.read_text()
        made = json.loads(ready.read_text())
        assert set(made["ns"]) <= _netns() and _alive(made["pid"])
        p.send_signal(sig)
        p.wait(60)
        return made, p, out.read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _scrub(made: dict) -> None:
    """What a failed test would have left: removed here, so a failure leaks nothing."""
    for name in made["ns"]:
        if name in _netns():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        with contextlib.suppress(OSError):
            (Path("/run/vpn-appliance-lab") / name).unlink()       # lab.netns.OWNERS' record
    try:
        os.kill(made["pid"], signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_sigterm_mid_test_leaves_no_namespace_and_no_process(tmp_path, xdist):
    made, p, out = _run_tiny(tmp_path, signal.SIGTERM, xdist)
    try:
        left = set(made["ns"]) & _netns()
        assert not left, f"left behind: {left}\n{out[-3000:]}"
        assert _until(lambda: not _alive(made["pid"]), 10), "the process in the namespace is gone"
        assert p.returncode != 0 and "KeyboardInterrupt" in out, out[-2000:]   # an interrupted run, said so
    finally:
        _scrub(made)


def test_sigkilled_run_leftovers_are_removed_by_the_next_run_only_when_their_creator_is_gone(tmp_path):
    from lab.netns import remove_leftovers
    mine = Netns(f"labk{os.getpid() % 100000:05d}{time.monotonic_ns() % 1000:03d}")   # a creator alive: us
    made = {"ns": [], "pid": 0}
    try:
        made, p, out = _run_tiny(tmp_path, signal.SIGKILL)
        assert p.returncode == -signal.SIGKILL
        assert set(made["ns"]) <= _netns(), "SIGKILL: nothing could run; they are still there"
        removed = remove_leftovers()
        assert set(made["ns"]) <= set(removed) and not set(made["ns"]) & _netns(), (removed, out[-2000:])
        assert mine.name not in removed and mine.name in _netns(), "a live creator's namespace is kept"
        assert _until(lambda: not _alive(made["pid"]), 10), "what ran inside is killed"
    finally:
        mine.delete()
        if made["ns"]:
            _scrub(made)
    assert mine.name not in _netns()
