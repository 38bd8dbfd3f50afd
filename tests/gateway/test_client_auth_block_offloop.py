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

from appliance.gateway import ops as ops_mod
from tests.gateway.test_mgmt_client_auth import _login, _up

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
