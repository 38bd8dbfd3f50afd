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


# ------------------------------------------------------------------ cr-response
CR_RESPONSES = 8            # the engine's promise per key (openvpn/roles.py), written out here
CR_SEP = b"\xff\xfe"


def make_cr_response():
    """`cr-response`: CR_RESPONSE texts an authenticated client sends while its login waits for
    the management client (management-client-auth), as raw control-channel plaintext (any bytes,
    cut, without their NUL, several in one record), and time. An authenticated management
    connection listens. Checks: no internal error in the server; every line the management
    client reads is one line of printable text (no control byte, CR or LF inside: the client's
    bytes cannot forge a notification or a command answer); each >CLIENT:CR_RESPONSE names a
    login that waited during the input (a long pause may end one at its deadline and the
    client's next login wait in its place); at most CR_RESPONSES of them per key over the world's life
    (each carries the client's whole environment). The world is kept while its login waits."""
    import logging

    from appliance.gateway.management import Management, MgmtConn

    from .control_targets import _queue
    from .mgmt_world import _auth_world, _FakeSock
    from .scratch import scratch_dir

    logging.getLogger("vpn-appliance").setLevel(logging.ERROR)
    d = scratch_dir("cr-response-fuzz-")
    state: dict = {}

    class _Out(_FakeSock):
        def __init__(self) -> None:
            super().__init__(b"")
            self.out = bytearray()

        def recv(self, n: int) -> bytes:
            raise BlockingIOError

        def send(self, b) -> int:  # noqa: ANN001
            self.out += b
            return len(b)

    def world():
        w = state.get("w")
        if w is None or not w[1].ops.client_auth.by_ckid or state["n"] >= 300 or w[1].result is not None:
            import os
            import time

            from appliance.gateway.loop import Pump, SelectorWaiter
            m = Management((os.path.join(d, f"m{len(state)}.sock"), "unix", None),
                           Pump(time.monotonic, SelectorWaiter()), None)
            w = state["w"] = _auth_world(m, d)
            m.ops = w[1].ops
            sock = _Out()
            conn = MgmtConn(sock, m, need_password=False)
            m.conns.append(conn)
            state.update(n=0, sock=sock, told={})
        state["n"] += 1
        return w

    def one(data: bytes) -> None:
        w, gw = world()
        sock, told = state["sock"], state["told"]
        # The logins waiting at any time of the input (a long pause may end one at its deadline and
        # the client's next login wait in its place: the notification then names that one).
        waiting = set(gw.ops.client_auth.by_ckid)
        c = w.clients[0]
        for step in data.split(CR_SEP)[:8]:
            if c.conn is None:
                break
            if step[:1] == b"\x00":
                w.run_for(step[1] / 8 if len(step) > 1 else 0.5)
            else:
                _queue(c.conn.session, step)
                c.conn.session._flush(w.clock())   # (private: what send_control_text does after its text)
                c._after_engine(c.conn)            # sent now, as the gateway sends what its session queued
            w.run_for(0.1)
            errs = gw.d.take_internal_errors()
            assert not errs, f"the server's internal errors: {errs!r}"
            n = gw.faults.counts.get("internal error", 0)
            assert not n, f"{n} internal errors counted by the server's pump"
            waiting |= set(gw.ops.client_auth.by_ckid)
        out = bytes(sock.out)
        sock.out.clear()
        assert out == b"" or out.endswith(b"\r\n"), out[-200:]
        for line in out.split(b"\r\n")[:-1]:
            assert all(0x20 <= b < 0x7F or b >= 0x80 for b in line), f"a control byte in {line[:200]!r}"
            if line.startswith(b">CLIENT:CR_RESPONSE,"):
                head = line.split(b",", 3)
                assert len(head) == 4 and head[1].isdigit() and head[2].isdigit(), line[:200]
                ck = (int(head[1]), int(head[2]))
                assert ck in waiting, f"a CR_RESPONSE notification for {ck}, no login waiting ({sorted(waiting)})"
                told[ck] = told.get(ck, 0) + 1
                assert told[ck] <= CR_RESPONSES, f"{told[ck]} CR_RESPONSE notifications for one key"
                assert all(0x20 <= b < 0x7F for b in head[3]), f"not printable ASCII: {head[3][:200]!r}"
    return one


def seeds_cr_response() -> list[bytes]:
    return [CR_SEP.join(s) for s in (
        [b"CR_RESPONSE,123456\x00"],
        [b"CR_RESPONSE,\x00", b"CR_RESPONSE\x00"],
        [b"CR_RESPONSE,a\r\n>CLIENT:CONNECT,0,0\x00"],
        [b"CR_RESPONSE,\xff\xfe\x80\xc3\xa9 caf\xc3\xa9\x00"],
        [b"CR_RESPONSE,one\x00CR_RESPONSE,two\x00CR_RESPONSE,three\x00"],
        [b"CR_RESPONSE,cut"],
        [b"CR_RESPONSE,x\x00"] * 6 + [b"\x00\x10"],
        [b"CR_RESPONSE," + b"A" * 2000 + b"\x00"],
        [b"PUSH_REQUEST\x00", b"CR_RESPONSE,after push request\x00"],
    )]
