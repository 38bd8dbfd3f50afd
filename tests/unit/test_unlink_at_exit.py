"""host/unlink_at_exit.py: the helper forked before a `user` drop removes the management socket at
exit -- when released, and when the process dies without a word (SIGKILL) -- and never removes
anything else put at that path. No root needed: the permission it keeps is whatever we had."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from appliance.host.unlink_at_exit import UnlinkAtExit


def _bound(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


def _until(pred, within: float = 10) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_release_removes_the_socket_and_reaps_the_helper(tmp_path):
    path = tmp_path / "mgmt.sock"
    with _bound(path):
        u = UnlinkAtExit(str(path))
        assert path.exists(), "nothing happens before release"
        assert u.release()
    assert not path.exists()
    assert not Path(f"/proc/{u.pid}").exists(), "reaped, no zombie"


def test_what_someone_else_put_at_the_path_stays(tmp_path):
    path = tmp_path / "mgmt.sock"
    with _bound(path):
        u = UnlinkAtExit(str(path))
    path.rename(tmp_path / "ours.sock")                # kept: its inode number cannot be reused
    with _bound(path):                                 # another socket now, then a symlink
        assert u.release()
        assert path.exists(), "not ours (another inode): left alone"
    path.unlink()
    path.write_text("x")
    with _bound(tmp_path / "b.sock"):
        u = UnlinkAtExit(str(tmp_path / "b.sock"))
    (tmp_path / "b.sock").rename(tmp_path / "ours-b.sock")
    os.symlink(path, tmp_path / "b.sock")
    assert u.release()
    assert path.read_text() == "x" and (tmp_path / "b.sock").is_symlink()


def test_a_killed_process_still_gets_its_socket_removed(tmp_path):
    """SIGKILL: no cleanup code runs in the process; the helper sees its pipe end. The helper
    holds none of the process's descriptors: its output ends with the process."""
    path = tmp_path / "mgmt.sock"
    code = ("import os, signal, socket, sys\n"
            "from appliance.host.unlink_at_exit import UnlinkAtExit\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])\n"
            "u = UnlinkAtExit(sys.argv[1]); print(u.pid, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == -9 and r.stdout.strip().isdigit(), (r.returncode, r.stdout, r.stderr)
    assert _until(lambda: not path.exists()), f"{path} left behind"



def test_a_directory_swapped_between_the_check_and_the_unlink_protects_what_it_points_to(tmp_path, monkeypatch):
    """Whoever can rename a directory on the way to the socket swaps it for a symlink to another
    directory holding a file of the same name, right after the helper checked the inode (the
    race made certain here): the helper removes the name in the directory it checked, never in
    the one swapped in."""
    run, victim = tmp_path / "run", tmp_path / "victim"
    run.mkdir()
    victim.mkdir()
    (victim / "mgmt.sock").write_text("keep")
    me, real_lstat = os.getpid(), os.lstat

    def lstat_then_swap(path, *a, **kw):
        st = real_lstat(path, *a, **kw)
        if os.getpid() != me and not (tmp_path / "run.old").exists():     # in the helper only
            os.rename(run, tmp_path / "run.old")
            os.symlink(victim, run)
        return st

    monkeypatch.setattr(os, "lstat", lstat_then_swap)
    with _bound(run / "mgmt.sock"):
        u = UnlinkAtExit(str(run / "mgmt.sock"))
    monkeypatch.undo()
    assert u.release()
    assert run.is_symlink(), "the swap happened"
    assert (victim / "mgmt.sock").read_text() == "keep", "the helper removed a file it never checked"
    assert not (tmp_path / "run.old" / "mgmt.sock").exists(), "ours was not removed"


def test_another_instances_socket_on_the_freed_inode_stays(tmp_path):
    """A second server started with the same management path removes ours and binds its own; on
    ext4 the new socket usually gets the freed inode number: it is not ours for all that."""
    path = tmp_path / "mgmt.sock"
    with _bound(path):
        u = UnlinkAtExit(str(path))
    # The helper was forked holding our socket too; once it closed it, the inode is free on unlink.
    assert _until(lambda: len(os.listdir(f"/proc/{u.pid}/fd")) <= 5)
    ino = os.lstat(path).st_ino
    path.unlink()                                      # what the second server does first
    with _bound(path):
        reused = os.lstat(path).st_ino == ino          # True on ext4 (tmpfs numbers never repeat)
        assert u.release()
        assert path.exists(), f"the other server's socket was removed (inode reused: {reused})"
