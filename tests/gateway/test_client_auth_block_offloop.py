"""A large management `client-auth` block is parsed off the event loop (compat47). Its lines
go through parse_ccd (~40 us a line here): a 1 MiB block of 100k `iroute` lines took 4-9 s on the
loop when the verdict came, every other client's packets waiting. OpenVPN 2.6 keeps the block in
an unbounded buffer_list and imports it on its one thread (multi.c multi_client_connect_mda), so
it stalls there too; ours now hands a block over 16 KiB to a worker while its client waits for
the verdict, as for a client-connect script. Measured in memory, not by the clock: which thread
parsed how many lines."""
from __future__ import annotations

import threading
import time

from appliance.gateway import auth_blocks, ops as ops_mod
from tests.gateway.conftest import World
from tests.gateway.test_mgmt_client_auth import _asked, _client, _login, _server, _up

LINES = 3000                                     # ~110 KiB: well past the 16 KiB parsed on the loop


def _counting(monkeypatch) -> "list[tuple[bool, int]]":
    """ops' parse_ccd, recording (on the loop's thread?, lines) for each call."""
    calls: list[tuple[bool, int]] = []
    real = ops_mod.parse_ccd
    loop = threading.current_thread()

    def parse(text: str, path: str = "<ccd>"):
        calls.append((threading.current_thread() is loop, text.count("\n")))
        return real(text, path)
    monkeypatch.setattr(ops_mod, "parse_ccd", parse)
    return calls


def _wait(w, until, seconds: float = 30.0, steps: int = 200_000) -> bool:
    """Step the pumps, the fake clock following the real one while they idle (the worker runs
    in real time), until `until()`; bounded in steps and time."""
    n, end = 0, time.monotonic() + seconds
    while not until() and n < steps and time.monotonic() < end:
        n += 1
        busy = w.server.pump.step(block=False)
        for c in w.clients:
            busy = c.pump.step(block=False) or busy
        if not busy:
            time.sleep(0.001)
            w.clock.t += 0.001
    return until()


def _block() -> list[str]:
    return [f"iroute 10.{i >> 8}.{i & 255}.0 255.255.255.0" for i in range(LINES)] + [
        "ifconfig-push 198.19.0.77 255.255.255.0"]


def test_a_large_client_auth_block_is_parsed_off_the_loop_and_applied(pki, tmp_path, monkeypatch):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    w.server.ops.reload_inline = False              # the worker thread, as a real server's
    calls = _counting(monkeypatch)
    assert w.server.ops.management_verdict(cid, kid, True, config=_block())
    assert _wait(w, lambda: _up(c))
    assert w.client_nets[0].pushed.ifconfig[0] == "198.19.0.77"     # the block's last line applied
    assert calls == [(False, LINES + 1)], calls                   # all of it by the worker, none on the loop


def test_a_small_client_auth_block_is_still_parsed_at_once(pki, tmp_path, monkeypatch):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    w.server.ops.reload_inline = False
    calls = _counting(monkeypatch)
    assert w.server.ops.management_verdict(cid, kid, True, config=["ifconfig-push 198.19.0.78 255.255.255.0"])
    assert w.run(lambda: _up(c), max_time=30)
    assert calls == [(True, 1)] and w.client_nets[0].pushed.ifconfig[0] == "198.19.0.78"


def test_a_large_block_refusing_its_client_refuses_it_from_the_worker(pki, tmp_path, monkeypatch):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    w.server.ops.reload_inline = False
    calls = _counting(monkeypatch)
    assert w.server.ops.management_verdict(cid, kid, True, config=_block() + ["disable"])
    rec = w.server.d.clients[0]
    assert _wait(w, lambda: not rec.alive), "a block saying disable let its client in"
    assert not _up(c) and calls == [(False, LINES + 2)]


# ---- bounded, and nothing parsed for a session that is gone (helper authq48; auth_blocks.py)

def _two_logins(pki, tmp_path):
    """A server with management-client-auth and two clients (client0, client1) whose logins are
    announced: (world, [(client, CID, KID, its session's record)] in announcement order)."""
    w = World()
    m = _server(w, pki, tmp_path)
    cs = [_client(w, pki, name=f"client{i}") for i in range(2)]
    assert _asked(w, m, 2)
    asks = m.asks()[:2]
    recs = {inf.cid: inf.rec for inf in w.server.ops.info.values()}
    out = []
    for _mode, cid, kid, env in asks:
        c = cs[0] if env["common_name"] == "client0" else cs[1]
        out.append((c, cid, kid, recs[cid]))
    return w, out


def _held_parse(monkeypatch):
    """ops' block parser held at its first call until the returned Event is set; the calls
    recorded (the block's line count each)."""
    gate, calls = threading.Event(), []
    real = ops_mod.parse_ccd

    def parse(text: str, path: str = "<ccd>"):
        calls.append(text.count("\n"))
        if len(calls) == 1:
            gate.wait(20)
        return real(text, path)
    monkeypatch.setattr(ops_mod, "parse_ccd", parse)
    return gate, calls


def test_a_block_whose_session_left_before_its_turn_is_never_parsed(pki, tmp_path, monkeypatch):
    w, logins = _two_logins(pki, tmp_path)
    w.server.ops.reload_inline = False
    gate, calls = _held_parse(monkeypatch)
    (c0, cid0, kid0, rec0), (c1, cid1, kid1, rec1) = logins
    try:
        assert w.server.ops.management_verdict(cid0, kid0, True, config=_block())
        assert _wait(w, lambda: len(calls) == 1)                   # the first block in the worker
        assert w.server.ops.management_verdict(cid1, kid1, True, config=_block())
        parser = w.server.ops.auth_block_reader
        assert _wait(w, lambda: parser.waiting == 1), "the second block never reached the queue"
        queued = parser.queued
        w.server._end_peer(rec1.addr, "the test ends it")       # the second client's session goes
        assert _wait(w, lambda: not rec1.alive and parser.waiting == 0), "the gone session's block stayed queued"
        assert parser.queued < queued
    finally:
        gate.set()
    assert _wait(w, lambda: _up(c0))
    w.run_for(1)
    assert calls == [LINES + 1], calls                  # the gone session's block was not parsed
    assert parser.queued == 0 and parser.parsed == 1


def test_past_the_bound_a_login_is_refused_for_now_and_others_go_on(pki, tmp_path, monkeypatch):
    """Two large blocks where only one fits the bound: the second login is refused for now
    (AUTH_FAILED,TEMP, counted), the first let in with its block; nothing is parsed on the loop."""
    size = len("\n".join(_block()) + "\n")
    monkeypatch.setattr(auth_blocks, "QUEUED_MAX", size + size // 2)
    w, logins = _two_logins(pki, tmp_path)
    w.server.ops.reload_inline = False
    gate, calls = _held_parse(monkeypatch)
    (c0, cid0, kid0, _r0), (c1, cid1, kid1, rec1) = logins
    told, said = [], rec1.session._send_text
    rec1.session._send_text = lambda text, *a: (told.append(text), said(text, *a))[1]
    try:
        assert w.server.ops.management_verdict(cid0, kid0, True, config=_block())
        assert _wait(w, lambda: len(calls) == 1)
        assert w.server.ops.management_verdict(cid1, kid1, True, config=_block())
        assert _wait(w, lambda: not rec1.alive), "the login past the bound was not refused"
        assert w.server.faults.counts.get(auth_blocks.REFUSED) == 1, w.server.faults.counts
        assert told == ["AUTH_FAILED,TEMP"] and not _up(c1), told
    finally:
        gate.set()
    assert _wait(w, lambda: _up(c0))
    assert calls == [LINES + 1] and w.server.ops.auth_block_reader.queued == 0


def test_a_block_dropped_while_parsed_is_thrown_away_and_the_bound_freed():
    """auth_blocks.AuthBlockParser alone: the session of the block in the worker goes -- its
    result is not handed on, and its bytes leave the bound once the worker is done."""
    gate, started = threading.Event(), threading.Event()

    def parse(text: str):
        started.set()
        gate.wait(20)
        return len(text)
    p = auth_blocks.AuthBlockParser(parse, limit=100)
    gone, kept, got = object(), object(), []
    try:
        assert p.submit((0, 1), gone, "x" * 60, got.append)
        assert started.wait(20)
        assert not p.submit((1, 1), kept, "y" * 60, got.append)     # 120 bytes: past the bound
        assert p.submit((1, 1), kept, "y" * 40, got.append)
        assert p.drop(gone) == 0 and p.waiting == 1                 # (in the worker, not waiting)
        gate.set()
        end = time.monotonic() + 20
        while p.parsed < 2 and time.monotonic() < end:
            for then, result in p.take():
                then(result)
            time.sleep(0.01)
        assert got == [40] and p.queued == 0, (got, p.queued)
    finally:
        gate.set()
        p.close()


def test_a_parse_that_raises_gives_its_bytes_back_and_the_next_block_goes_on():
    """review48c (fault injected): the parse function raising (our bug, or a MemoryError) hands
    the exception on as that block's result -- its login is refused (ops._auth_block_parsed) --
    and its bytes leave the bound; the worker goes on with the next block. Were they kept, every
    later large block would be refused once 4 MiB of such failures had added up."""
    def parse(text: str):
        if text.startswith("boom"):
            raise MemoryError("injected")
        return len(text)
    p = auth_blocks.AuthBlockParser(parse, limit=100)
    got: list = []
    try:
        assert p.submit((0, 1), object(), "boom" + "x" * 56, got.append)
        assert p.submit((1, 1), object(), "y" * 40, got.append)
        end = time.monotonic() + 20
        while p.parsed < 2 and time.monotonic() < end:
            for then, result in p.take():
                then(result)
            time.sleep(0.01)
        assert len(got) == 2 and isinstance(got[0], MemoryError) and got[1] == 40, got
        assert p.queued == 0, p.queued
        assert p.submit((2, 1), object(), "z" * 100, got.append), "the bound not given back"
    finally:
        p.close()
