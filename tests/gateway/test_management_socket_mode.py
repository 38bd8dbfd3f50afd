"""The management unix socket gets its mode (0660) as it is made, not by a chmod of its path
afterwards: a chmod as root follows a symlink someone who can write the socket's directory put
there after the bind, and would make the file it points to group-writable."""
from __future__ import annotations

import os
import socket
import stat
import time

from appliance.gateway import management as mgmt_mod
from appliance.gateway.loop import Pump, SelectorWaiter


class _SwappedAfterBind(socket.socket):
    """bind(), then the path is replaced by a symlink to another file (the race made certain)."""
    victim = ""

    def bind(self, path):
        super().bind(path)
        os.rename(path, path + ".ours")
        os.symlink(self.victim, path)


def test_a_symlink_put_in_place_of_the_socket_does_not_get_its_target_chmodded(tmp_path, monkeypatch):
    victim = tmp_path / "secret"
    victim.write_text("x")
    victim.chmod(0o600)
    _SwappedAfterBind.victim = str(victim)
    monkeypatch.setattr(mgmt_mod.socket, "socket", _SwappedAfterBind)
    path = str(tmp_path / "m.sock")
    m = mgmt_mod.Management((path, "unix", None), Pump(time.monotonic, SelectorWaiter()), object())
    try:
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600, "the symlink's target was chmodded"
        st = os.lstat(path + ".ours")
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    finally:
        m.close()


def test_closing_leaves_the_socket_a_second_server_bound_at_the_same_path(tmp_path):
    """A second server started with the same path replaced our socket with its own: when we stop,
    its socket stays (OpenVPN 2.6 removes whatever is at the path)."""
    path = str(tmp_path / "m.sock")
    m = mgmt_mod.Management((path, "unix", None), Pump(time.monotonic, SelectorWaiter()), object())
    os.unlink(path)                                   # what the second server does before its bind
    with socket.socket(socket.AF_UNIX) as theirs:
        theirs.bind(path)
        m.close()
        assert os.path.exists(path), "the other server's socket was removed"
    m2 = mgmt_mod.Management((path + "2", "unix", None), Pump(time.monotonic, SelectorWaiter()), object())
    m2.close()
    assert not os.path.exists(path + "2"), "our own socket is removed at close"
