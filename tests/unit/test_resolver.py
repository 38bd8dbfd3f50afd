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
