"""The namespace records of lab/netns.py (who made each namespace, so that a killed run's are
removed by the next run and nobody else's are): a record is never seen half-written, and
remove_leftovers() keeps what a live process makes. A record opened and then written was empty
for a moment; another xdist worker's session start reading it then deleted the namespace being
made, and what ran in it, mid-test. These use a private record directory and never delete a
namespace (the deletion is replaced by a note of it): no root needed."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab.netns as netns

REPO = Path(__file__).resolve().parents[2]
DEAD = "999999999 0"                 # no such pid (above pid_max)


@pytest.fixture
def owners(tmp_path, monkeypatch):
    """A private OWNERS; deletions noted in the returned list instead of made."""
    d = tmp_path / "owners"
    d.mkdir()
    monkeypatch.setattr(netns, "OWNERS", d)
    deleted: list[str] = []

    def note(name: str) -> None:
        deleted.append(name)
        (d / name).unlink(missing_ok=True)
    monkeypatch.setattr(netns, "_delete_ns", note)
    return d, deleted


def test_a_record_appears_whole_under_its_name(owners, monkeypatch):
    d, _ = owners
    seen = []
    link = os.link

    def watching_link(src, dst):
        seen.append((Path(dst).exists(), Path(src).read_text()))
        link(src, dst)
    monkeypatch.setattr(netns.os, "link", watching_link)
    netns._record("utrec1")
    assert seen == [(False, netns._me())], "the name appears only by the link, with the stamp in it"
    assert (d / "utrec1").read_text() == netns._me()
    assert list((d / ".writing").iterdir()) == []
    with pytest.raises(FileExistsError):            # a name taken, as open(..., "x") refused it
        netns._record("utrec1")
    assert list((d / ".writing").iterdir()) == []


def test_what_remove_leftovers_removes_and_keeps(owners):
    d, deleted = owners
    parent = f"{os.getppid()} {netns._start_time(os.getppid())}"      # alive: it runs us
    (d / "live").write_text(parent)
    (d / "dead").write_text(DEAD)
    (d / "unnamed-fresh").write_text("")                                # an older checkout's, mid-write
    (d / "unnamed-old").write_text("")
    old = time.time() - 2 * netns._UNNAMED_GRACE
    os.utime(d / "unnamed-old", (old, old))
    (d / ".writing").mkdir()
    (d / ".writing" / "x.999999999").write_text(DEAD)                  # its writer was killed
    (d / ".writing" / f"y.{os.getpid()}").write_text("")               # ours, being written
    assert sorted(netns.remove_leftovers()) == ["dead", "unnamed-old"]
    assert sorted(deleted) == ["dead", "unnamed-old"]
    assert sorted(p.name for p in d.iterdir()) == [".writing", "live", "unnamed-fresh"]
    assert [p.name for p in (d / ".writing").iterdir()] == [f"y.{os.getpid()}"]


_REMOVER = """
import sys, time
from pathlib import Path
import lab.netns as n
n.OWNERS = Path(sys.argv[1])
out = open(sys.argv[2], "w")
n._delete_ns = lambda name: (out.write(name + "\\n"), out.flush())
stop, end = Path(sys.argv[3]), time.monotonic() + 60
print("ready", flush=True)
while not stop.exists() and time.monotonic() < end:
    n.remove_leftovers()
"""


def test_another_process_cleaning_up_never_takes_a_record_being_made(owners, tmp_path):
    """Another process (an xdist worker's session start) calls remove_leftovers() over and over
    while this one makes and removes records: nothing of ours is taken for a dead run's."""
    d, _ = owners
    removed, stop = tmp_path / "removed", tmp_path / "stop"
    p = subprocess.Popen([sys.executable, "-c", _REMOVER, str(d), str(removed), str(stop)], cwd=REPO,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert p.stdout.readline().strip() == "ready"
        for i in range(3000):
            netns._record(f"utr{i}")
            (d / f"utr{i}").unlink()
    finally:
        stop.touch()
        p.wait(30)
    assert p.returncode == 0
    assert removed.read_text() == "", "a live process's record was taken for a dead one's"
