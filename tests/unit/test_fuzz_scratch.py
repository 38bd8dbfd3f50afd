"""Fuzz targets' scratch directories do not outlive their process, however it ends.

libFuzzer leaves through `_exit`, so `atexit` never removes a target's directory; the next process
to make one must (tests/fuzz/scratch.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fuzz import scratch

ROOT = Path(__file__).resolve().parents[2]

MAKE = ("import os, sys; from tests.fuzz.scratch import scratch_dir; d = scratch_dir('t-');"
        " print(d, flush=True); {end}")


def _child(end: str) -> Path:
    out = subprocess.run([sys.executable, "-c", MAKE.format(end=end)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return Path(out.strip())


def test_a_normal_exit_removes_its_directory():
    d = _child("sys.exit(0)")
    assert d.parent == Path(scratch.PARENT)
    assert not d.exists()


def test_a_directory_left_by_an_exit_without_atexit_goes_with_the_next_one_made():
    d = _child("os._exit(0)")                    # as libFuzzer ends a run
    assert d.is_dir(), "the child should have left its directory (no atexit under _exit)"
    mine = scratch.scratch_dir("t-")
    assert Path(mine).is_dir()
    assert not d.exists()


def test_a_running_process_keeps_its_directory():
    p = subprocess.Popen([sys.executable, "-c", MAKE.format(end="sys.stdin.read()")], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        d = Path(p.stdout.readline().strip())
        scratch.scratch_dir("t-")
        assert d.is_dir()
    finally:
        p.communicate("", timeout=60)
    assert not d.exists()
