"""`cr-runs`: which client-crresponse commands start and which wait (gateway/crresponse.py), under
the CR_RESPONSE answers authenticated clients send while their logins wait.

Why: each answer from the network becomes a command on the server's shared script runner; the
bookkeeping that keeps a few clients from filling it (and so refusing every other client's
client-connect) had no target (fuzz48's measure: 0 %). The ops.py side that offers and ends runs
needs a deferred auth-user-pass-verify and a real command per answer; here its sequence of offers
and ends is the input, from 6 logins at RUNNING 1..4.

Input: first byte the limit (1..4), then steps of two bytes: an answer from login K (offer), or
the end of K's run with a verdict mask saying which waiting answers are still wanted (a login
decided meanwhile, its client gone). Checks after every step, from a record of the calls only:
- at most `limit` running, a login at most once; an answer starts only for a login not running
  then, and only once;
- at most one answer waiting per login: a newer one replaces it (the replaced one never starts);
- an answer no longer wanted when its turn comes is dropped, never started later;
- no starvation: after an end, either `limit` run or every waiting answer's login is running;
- an end starts the waiting answers oldest first (by when each was offered);
- every answer offered is exactly one of: started, replaced, dropped, waiting.
"""
from __future__ import annotations

from appliance.gateway.crresponse import CrResponseRuns

LOGINS = 6


def make_cr_runs():
    def one(data: bytes) -> None:
        if not data:
            return
        limit = 1 + data[0] % 4
        runs = CrResponseRuns(limit)
        running: set[int] = set()
        waiting: dict[int, int] = {}           # login -> the answer (its number) waiting
        offered_at: dict[int, int] = {}        # answer -> step it was offered at
        fate: dict[int, str] = {}
        seq = 0
        for step, pos in enumerate(range(1, len(data) - 1, 2)):
            what, arg = data[pos], data[pos + 1]
            k = what % LOGINS
            if what & 0x80 == 0:
                seq += 1
                item = (k, seq)
                offered_at[seq] = step
                got = runs.offer(k, item)
                if got is None:
                    assert k in running or len(running) >= limit, f"answer {seq} of login {k} held with room"
                    if k in waiting:
                        fate[waiting[k]] = "replaced"
                    waiting[k] = seq
                    fate[seq] = "waiting"
                else:
                    assert got is item, "offer started another answer than the one offered"
                    assert k not in running and len(running) < limit, f"answer {seq} started beside a run"
                    running.add(k)
                    fate[seq] = "started"
            else:
                asked: list[tuple[int, int]] = []

                def wanted(it, _arg=arg, _asked=asked) -> bool:  # noqa: ANN001
                    kk, n = it
                    assert fate.get(n) == "waiting" and waiting.get(kk) == n, \
                        f"asked about answer {n}, which is not waiting ({fate.get(n)})"
                    _asked.append(it)
                    return not (_arg >> (len(_asked) - 1 if len(_asked) <= 8 else 7)) & 1
                started = runs.done(k, wanted)
                running.discard(k)
                for kk, n in asked:
                    if (kk, n) in started:
                        continue
                    fate[n] = "dropped"
                    del waiting[kk]
                order = []
                for it in started:
                    kk, n = it
                    assert fate.get(n) == "waiting" and waiting.get(kk) == n, f"started answer {n} ({fate.get(n)})"
                    assert kk not in running, f"login {kk} started twice"
                    running.add(kk)
                    fate[n] = "started"
                    del waiting[kk]
                    order.append(offered_at[n])
                assert order == sorted(order), "waiting answers not started oldest first"
                assert len(running) <= limit
                assert len(running) == limit or all(kk in running for kk in waiting), \
                    f"answers wait with room to run: running {sorted(running)}, waiting {waiting}"
            assert len(running) <= limit and running == set(runs.running), (running, runs.running)
            assert {kk: it[1] for kk, it in runs.waiting.items()} == waiting, (runs.waiting, waiting)
            assert set(fate) == set(range(1, seq + 1))
    return one


def seeds() -> list[bytes]:
    """Logins answering while others run, a run ending with its own answer waiting, answers no
    longer wanted, replaced answers, each limit."""
    off = lambda k: bytes((k, 0))  # noqa: E731
    end = lambda k, mask=0: bytes((0x80 | k, mask))  # noqa: E731
    return [
        bytes((3,)) + off(0) + off(1) + off(2) + off(3) + off(4) + off(5) + end(0) + end(1) + end(4),
        bytes((0,)) + off(0) + off(0) + off(0) + end(0) + end(0),
        bytes((1,)) + off(0) + off(1) + off(2) + off(3) + end(0, 0b1) + end(1, 0b11) + end(2),
        bytes((3,)) + off(0) + off(1) + off(2) + off(3) + off(4) + off(4) + off(5) + end(3) + end(2, 0xFF),
        bytes((2,)) + end(5) + off(5) + end(5) + off(5) + off(5) + end(5),
    ]
