"""The client scripts' runner (gateway/client_scripts.py ClientScripts) off the event loop: a
submit returns at once however long the script takes, results come through its wake-up
descriptor in the order submitted, and close() kills a hanging script with its process group
without waiting for it."""
from __future__ import annotations

import select
import time

from appliance.gateway.client_scripts import ClientScripts


def _script(tmp_path, name: str, body: str):
    s = tmp_path / name
    s.write_text("#!/bin/sh\n" + body)
    s.chmod(0o755)
    return str(s)


def _wait_results(r: ClientScripts, n: int, within: float) -> list:
    out: list = []
    end = time.monotonic() + within
    while len(out) < n and time.monotonic() < end:
        if select.select([r.fileno()], [], [], 0.2)[0]:
            r.drain()
            out += r.take_results()
    return out


def test_a_slow_script_holds_no_caller_and_order_is_kept(tmp_path):
    r = ClientScripts(time_limit=5)
    try:
        t0 = time.monotonic()
        r.submit("up", [_script(tmp_path, "slow", "sleep 0.5\n")], {})
        r.submit("route-up", [_script(tmp_path, "fail", "exit 4\n")], {})
        assert time.monotonic() - t0 < 0.2 and r.busy
        assert _wait_results(r, 2, 10) == [("up", True), ("route-up", False)]
        assert not r.busy
    finally:
        r.close()


def test_a_hanging_script_is_killed_at_its_limit(tmp_path):
    r = ClientScripts(time_limit=0.5)
    try:
        r.submit("up", [_script(tmp_path, "hang", "sleep 30\n")], {})
        assert _wait_results(r, 1, 10) == [("up", False)]
    finally:
        r.close()


def test_close_does_not_wait_for_a_hanging_script(tmp_path):
    r = ClientScripts(time_limit=30)
    r.submit("ipchange", [_script(tmp_path, "hang", "sleep 30\n")], {})
    time.sleep(0.3)
    t0 = time.monotonic()
    r.close()
    assert time.monotonic() - t0 < 1.0
