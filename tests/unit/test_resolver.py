"""gateway/resolver.py: a remote's name resolved in a worker thread, its answer taken on the loop;
a newer request (or cancel) makes an older answer stale; the resolver's exception is the answer
when it fails; a resolution that never returns holds a thread, not the caller."""
from __future__ import annotations

import select
import threading
import time

from appliance.gateway.resolver import BackgroundResolver


def _wait(r: BackgroundResolver, got: list, n: int, within: float = 5.0) -> None:
    end = time.monotonic() + within
    while len(got) < n and time.monotonic() < end:
        select.select([r.fileno()], [], [], 0.1)
        r.drain()


def test_the_answer_comes_through_drain_and_a_stale_one_is_dropped():
    gate = threading.Event()

    def resolve(host, port, proto, family):
        if host == "slow.example":
            gate.wait(5)
        if host == "bad.example":
            raise OSError("no such name")
        return [("198.18.0.1", port), ("198.18.0.2", port)]

    r = BackgroundResolver(resolve)
    got: list = []
    try:
        t0 = time.monotonic()
        r.submit(("slow.example", 1194, "udp", None), got.append)
        assert time.monotonic() - t0 < 0.5                      # the caller never waits for it
        r.submit(("fast.example", 1195, "udp", None), got.append)      # newer: the slow one is stale
        _wait(r, got, 1)
        assert got == [[("198.18.0.1", 1195), ("198.18.0.2", 1195)]]
        gate.set()
        time.sleep(0.3)
        r.drain()
        assert len(got) == 1, "a stale answer was taken"
        r.submit(("bad.example", 1194, "udp", None), got.append)
        _wait(r, got, 2)
        assert isinstance(got[1], OSError)
        r.submit(("fast.example", 1194, "udp", None), got.append)
        r.cancel()
        time.sleep(0.3)
        r.drain()
        assert len(got) == 2
    finally:
        gate.set()
        r.close()


def test_only_the_newest_request_waits_while_every_worker_is_busy():
    gate = threading.Event()
    calls: list = []

    def resolve(host, port, proto, family):
        calls.append(host)
        if host.startswith("stuck"):
            gate.wait(5)
        return [("198.18.0.1", port)]

    r = BackgroundResolver(resolve)
    got: list = []
    try:
        r.submit(("stuck1.example", 1, "udp", None), got.append)
        r.submit(("stuck2.example", 2, "udp", None), got.append)
        r.submit(("older.example", 3, "udp", None), got.append)     # waits, then replaced
        r.submit(("newest.example", 4, "udp", None), got.append)
        end = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.1)
        assert sorted(calls) == ["stuck1.example", "stuck2.example"]
        gate.set()
        _wait(r, got, 1)
        assert got == [[("198.18.0.1", 4)]]
        assert "older.example" not in calls
    finally:
        gate.set()
        r.close()


def test_a_lookup_that_never_returns_does_not_hold_the_process_exit(tmp_path):
    """SIGTERM during a lookup in a silent resolver: the loop ends at once, and so must the
    process (an executor's worker is joined at exit: it waited out the resolver's timeouts)."""
    import subprocess
    import sys
    script = tmp_path / "exit.py"
    script.write_text(
        "import sys, time\n"
        "from appliance.gateway.resolver import BackgroundResolver\n"
        "r = BackgroundResolver(lambda *a: time.sleep(30) or [])\n"
        "r.submit(('silent.example', 1194, 'udp', None), print)\n"
        "time.sleep(0.2)\n"
        "r.close()\n"
        "sys.exit(0)\n")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, str(script)], timeout=25, capture_output=True,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 5.0, "the exit waited for the lookup"
