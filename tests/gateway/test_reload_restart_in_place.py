"""A client a reload would give other options (given.py) cannot keep the old ones by restarting in
place (a hard reset from its own address and port, which otherwise continues its connection with
the options it was admitted with, as 2.6's instance): neither while the reload's pass has not
reached it yet, nor while its restart is held off (RELOAD_RESTART_HOLDOFF). review44b: before,
such a restart inherited the old ccd options (an edited ifconfig-push, a removed iroute) and the
pass -- which had the replaced record -- or the held restart, whose record was gone, never came
back to it: the old options stayed until some later reload."""
from __future__ import annotations

import time

from appliance.gateway import ops as ops_mod
from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 (fixture)
from tests.gateway.test_reload_changed_options import _rec, _reconnected, _reload_and_settle
from tests.gateway.test_tunnel import _up


def _one(opki, tmp_path, first: str):
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_text(f"ifconfig-push {first} 255.255.255.0\n")
    w = World()
    gw, _holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    c = w.add_client(client_conf(opki, "client0").replace("nobind\n", "lport 40100\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert w.client_addr(0) == first
    return w, gw, c, ccd


def _restart_in_place(w, gw, c, old) -> object:
    c.user_restart()
    assert w.run(lambda: _reconnected(w, gw, 0, old), max_time=30), "the restart did not complete"
    new = _rec(gw, "client0")
    assert new.addr == old.addr, "not a restart from the same address and port"
    return new


def test_a_restart_in_place_while_the_restart_is_held_off_gets_the_new_file(opki, tmp_path, caplog):
    w, gw, c, ccd = _one(opki, tmp_path, "198.19.0.50")
    old = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.51 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _reconnected(w, gw, 0, old) and w.client_addr(0) == "198.19.0.51", max_time=30)
    second = _rec(gw, "client0")
    # A second edit within the hold-off: its restart is held ...
    (ccd / "client0").write_text("ifconfig-push 198.19.0.52 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert "restarts in" in caplog.text
    # ... and the client restarts in place meanwhile: a new connection reading the file.
    third = _restart_in_place(w, gw, c, second)
    assert w.run(lambda: _up(w, 0) and w.client_addr(0) == "198.19.0.52",
                 max_time=ops_mod.RELOAD_RESTART_HOLDOFF + 30), (w.client_addr(0), caplog.text[-2000:])
    assert third.ccd.ifconfig_push[0] == "198.19.0.52" or _rec(gw, "client0").ccd.ifconfig_push[0] == "198.19.0.52"


def test_a_restart_in_place_before_the_pass_reaches_the_client_gets_the_new_file(opki, tmp_path, caplog,
                                                                                   monkeypatch):
    """The pass runs in batches after the reload (at 1,000 clients, ~1 s on a loaded machine):
    here it is held 5 s, and the client restarts in place before its turn."""
    recheck = ops_mod.Operations._recheck
    first = {"held": True}

    def later(self, run):
        if first.pop("held", False):
            self.gw.pump.timers.arm("test-later", self.gw.clock() + 5, lambda: recheck(self, run))
            return
        recheck(self, run)
    monkeypatch.setattr(ops_mod.Operations, "_recheck", later)
    w, gw, c, ccd = _one(opki, tmp_path, "198.19.0.50")
    old = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.70 255.255.255.0\n")
    assert gw.ops.reload()
    _restart_in_place(w, gw, c, old)
    assert w.run(lambda: "clients kept" in caplog.text, max_time=30)
    assert w.run(lambda: _up(w, 0) and w.client_addr(0) == "198.19.0.70", max_time=30), \
        (w.client_addr(0), caplog.text[-2000:])


def test_a_client_whose_large_ccd_file_was_being_read_at_the_reload_gets_the_new_file(opki, tmp_path, caplog,
                                                                                       monkeypatch):
    """A file over INLINE_MAX is read off the loop while its client waits (server_files.CcdReader).
    Read before the operator's edit, its answer came after the reload's pass had found the client
    with no options given yet ("not known": kept) -- and the client came in with the old file's
    address, kept until some later reload. Now the pass tells such a client RESTART: it comes back
    and reads the file as it is."""
    import threading

    from appliance.gateway.server_files import INLINE_MAX, CcdReader
    gate, read = threading.Event(), threading.Event()
    job = CcdReader._job

    def slow(path):
        got = job(path)
        read.set()                          # read as it was; its answer waits for the reload
        gate.wait(30)
        return got
    monkeypatch.setattr(CcdReader, "_job", staticmethod(slow))
    filler = b'push-remove "nothing-matches-this"\n' * (2 * INLINE_MAX // 35)
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_bytes(filler + b"ifconfig-push 198.19.0.77 255.255.255.0\n")
    w = World()
    gw, _holder = w.add_reloadable_server(server_conf(opki, extra=f"client-config-dir {ccd}\n"))
    gw.st.ccd = ccd_loader(str(ccd))
    gw.attach_ccd_reader()
    try:
        w.add_client(client_conf(opki, "client0"))
        assert w.run(lambda: gw.ccd_reader.waiting == 1, max_time=30), "the read did not start"
        assert read.wait(30)
        (ccd / "client0").write_bytes(filler + b"ifconfig-push 198.19.0.78 255.255.255.0\n")
        mark = len(caplog.text)
        assert gw.ops.reload()
        # The read answers now, after the reload: not held while the world's clock runs on (a
        # real thread against the fake clock: under load the reconnect's handshake outlived its
        # window waiting on the held read, "handshake failed", 1 run in 3).
        gate.set()

        def read_done() -> None:
            # The fake clock must not run on while the reader's real thread works (under load it
            # ran the reconnect's handshake past its window: "handshake failed", 1 run in 3).
            r, end = gw.ccd_reader, time.monotonic() + 20
            while r._pending and not r._finished and time.monotonic() < end:
                time.sleep(0.005)
        assert w.run(lambda: (read_done(), "clients kept" in caplog.text[mark:])[1], max_time=10), \
            caplog.text[-2000:]
    finally:
        gate.set()
    assert w.run(lambda: (read_done(), _up(w, 0) and w.client_addr(0) == "198.19.0.78")[1], max_time=60), \
        (w.client_addr(0), caplog.text[-2000:])
    assert "its client-config-dir file was being read at the reload: told RESTART" in caplog.text
    gw._cleanup()
