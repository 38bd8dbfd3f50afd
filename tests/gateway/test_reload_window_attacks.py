"""A reload waiting for its large CRL's reading (gateway/ops.py: prepare, the worker's reading,
commit), attacked during the wait: a client the new CRL revokes connecting then; a reload to a
crl-verify that is a pipe (an operator's slip)."""
from __future__ import annotations

import os

from appliance.gateway import ops as ops_mod
from appliance.gateway import server as server_mod
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_reload_large_crl import HeldReader, _write, pki  # noqa: F401 (fixture)
from tests.gateway.test_tunnel import _up


def _start(pki, tmp_path, monkeypatch, revoked=()):
    ca = pki["ca_pair"]
    crl = tmp_path / "crl.pem"
    _write(crl, ca, list(revoked))
    reload_reader, old_reader = HeldReader(), HeldReader()
    monkeypatch.setattr(ops_mod, "background_reader", reload_reader)
    monkeypatch.setattr(server_mod, "background_reader", old_reader)
    w = World()
    conf = server_conf(pki, extra=f"crl-verify {crl}\n")
    gw = w.add_server(conf)
    gw.ops.reload_source = lambda: conf
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    return w, gw, crl, reload_reader, old_reader


def test_a_client_the_new_crl_revokes_connecting_during_the_wait_is_out_at_commit(pki, tmp_path, monkeypatch):
    w, gw, crl, reload_reader, old_reader = _start(pki, tmp_path, monkeypatch)
    _write(crl, pki["ca_pair"], [pki["serials"]["client0"]])
    assert gw.ops.reload() and len(reload_reader.jobs) == 1
    w.add_client(client_conf(pki, "client0"))         # revoked by the file the reload reads
    # The old CRL holds during the wait (its own re-reading of the changed file held too).
    assert w.run(lambda: _up(w, 1), max_time=30), "the test's premise: client0 got in during the wait"
    reload_reader.finish()
    w.run_for(2)
    names = [r.common_name for r in gw.d.clients]
    assert "client0" not in names, "a client the reload's CRL revokes kept its tunnel after the reload applied"
    assert "client1" in names


def _unblock(path) -> None:
    """Open the FIFO for writing and close it: a reader stuck in open() or read() gets EOF."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.close(fd)


def test_a_reload_to_a_crl_that_is_a_fifo_is_refused_and_does_not_stop_the_loop(pki, tmp_path, monkeypatch):
    """An operator's slip: crl-verify names a pipe (or a device: /dev/zero never ends). Reading
    it on the event loop blocked the loop for good (open() of a FIFO waits for a writer): every
    client's packets stopped, and SIGTERM was never handled."""
    import threading
    w, gw, crl, reload_reader, old_reader = _start(pki, tmp_path, monkeypatch)
    fifo = tmp_path / "crl.fifo"
    os.mkfifo(fifo)
    conf = server_conf(pki, extra=f"crl-verify {fifo}\n")
    gw.ops.reload_source = lambda: conf
    out: list = []
    t = threading.Thread(target=lambda: out.append(gw.ops.reload()), daemon=True)
    t.start()
    t.join(3)
    blocked = t.is_alive()
    for _ in range(50):                             # let a stuck reader go, whatever it waits in
        if not t.is_alive():
            break
        try:
            _unblock(fifo)
        except OSError:
            pass
        t.join(0.1)
    assert not blocked, "the reload blocked on the CRL pipe (the event loop's thread)"
    assert out == [False], "a crl-verify that is no regular file was not refused"


def test_a_handshake_during_the_wait_starts_no_second_reading_of_the_file(pki, tmp_path, monkeypatch):
    """The checker in force saw the changed file at a handshake during the wait and queued its
    own reading behind the reload's in the one worker: ~0.35 s of work at 100,000 entries (and the
    loop's GIL share with it) thrown away at the commit, and a later change read after it."""
    w, gw, crl, reload_reader, old_reader = _start(pki, tmp_path, monkeypatch)
    _write(crl, pki["ca_pair"], [999])
    assert gw.ops.reload() and len(reload_reader.jobs) == 1
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 1), max_time=30)        # a handshake checked by the old checker
    assert old_reader.jobs == [], "the CRL file was read twice for one change (the old checker's reading)"
    reload_reader.finish()
    assert w.run(lambda: gw.ops.reloads == 1, max_time=2)
    assert sorted(r.common_name for r in gw.d.clients) == ["client0", "client1"]


def test_a_reload_refused_for_its_crl_leaves_the_old_checker_reading_changes_again(pki, tmp_path, monkeypatch):
    from appliance.certs import issue
    w, gw, crl, reload_reader, old_reader = _start(pki, tmp_path, monkeypatch)
    _write(crl, issue("Another CA", None, None), [])     # another CA's CRL: the reload is refused
    assert gw.ops.reload() and len(reload_reader.jobs) == 1
    reload_reader.finish()
    w.run_for(0.5)
    assert gw.ops.reloads == 0
    _write(crl, pki["ca_pair"], [pki["serials"]["client0"]])
    w.add_client(client_conf(pki, "client0"))           # its handshake: the old checker sees the change
    w.run_for(1)
    assert len(old_reader.jobs) == 1, "the checker still in force no longer reads its changed file"
