"""A large ccd file's read begun before a reload is not the answer for a client asking after it
(server_files.CcdReader.reloaded): the file is read again, and everyone waiting gets the new
content. Found merging review44b and soak42: review44b's gateway test
(test_a_client_whose_large_ccd_file_was_being_read_at_the_reload_gets_the_new_file) failed 1 run
in 3 under load -- the client told RESTART reconnected while the old read was still under way,
joined it, and came back with the old file's address."""
from __future__ import annotations

import threading
import time

from appliance.gateway.server_files import CcdPending, CcdReader


def _wait_finished(r: CcdReader, deadline: float = 10.0) -> set[str]:
    """take_finished() once a read has finished (as the gateway's after-wake, woken by it)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with r._lock:
            done = bool(r._finished)
        if done:
            return r.take_finished()
        time.sleep(0.01)
    raise AssertionError("no read finished")


def _reader(monkeypatch, gate: threading.Event, started: threading.Event) -> CcdReader:
    contents = {"n": 0}

    def job(path):
        contents["n"] += 1
        n = contents["n"]
        started.set()
        if n == 1:
            gate.wait(10)                      # the first read: as the file was before the edit
        return f"read {n}"
    monkeypatch.setattr(CcdReader, "_job", staticmethod(job))
    return CcdReader()


def test_a_client_asking_after_a_reload_gets_a_new_read(monkeypatch):
    gate, started = threading.Event(), threading.Event()
    r = _reader(monkeypatch, gate, started)
    try:
        for _ in range(2):                      # a client before the reload starts it; another joins
            try:
                r.read("/ccd/client0")
            except CcdPending:
                pass
        assert started.wait(10)
        r.reloaded()
        try:
            r.read("/ccd/client0")              # the reconnect after the reload's RESTART
        except CcdPending:
            pass
        gate.set()
        first = _wait_finished(r)
        assert first == set() and "/ccd/client0" not in r.ready, "the old read was handed out"
        assert _wait_finished(r) == {"/ccd/client0"}
        assert r.ready["/ccd/client0"] == "read 2"
    finally:
        gate.set()
        r._shutdown()


def test_without_a_reload_the_clients_share_one_read(monkeypatch):
    gate, started = threading.Event(), threading.Event()
    r = _reader(monkeypatch, gate, started)
    try:
        for _ in range(2):
            try:
                r.read("/ccd/client0")
            except CcdPending:
                pass
        assert started.wait(10)
        gate.set()
        assert _wait_finished(r) == {"/ccd/client0"} and r.ready["/ccd/client0"] == "read 1"
    finally:
        r._shutdown()
