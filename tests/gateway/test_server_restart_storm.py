"""A hostile server telling our client RESTART over and over (atk44): what the client does.

Why: since the thirty-eighth session a reload tells kept clients RESTART, and a server can say it
at any time (client-kill's text). A server that says it after every push, or instead of every
push, must not make our client knock faster than OpenVPN 2.6's client would (its restart pause:
connect-retry's seconds after a tunnel was up, doubling after five rounds in vain when no tunnel
comes), must not end the run, and must leave nothing growing behind per round. In memory: the
real client and server pumps on the World's fake clock.
"""
from __future__ import annotations

import gc
import logging
import tracemalloc

from appliance.openvpn import clientpush
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

ROUNDS = 40


# Allocations made by the product only: not the in-memory network's (lab/), nor the log records
# pytest keeps for caplog.
_OURS = [tracemalloc.Filter(False, "*/lab/*"), tracemalloc.Filter(False, "*/logging/*"),
         tracemalloc.Filter(False, "*/_pytest/*"), tracemalloc.Filter(False, "<frozen *>")]


def _traced_kib() -> float:
    gc.collect()
    snap = tracemalloc.take_snapshot().filter_traces(_OURS)
    return sum(t.size for t in snap.statistics("filename")) / 1024


def test_restart_after_every_push_keeps_the_pause_and_grows_nothing(pki):
    """After a tunnel was up 2.6 keeps the server (no_advance) and waits connect-retry's second
    (no backoff: unsuccessful_attempts is 0 again). Ours: the same pause every round, the run
    goes on, and the product's memory flat over the last 20 rounds (the first
    rounds warm caches up: ~110 KiB, then ~1 KiB per 30 rounds)."""
    w = World()
    gw = w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    told_at: list[float] = []
    up_at: list[float] = []
    kib = []
    tracemalloc.start()
    logging.disable(logging.CRITICAL)       # pytest keeps every record: that is not ours
    try:
        for n in range(ROUNDS):
            conn = c.conn
            rec = next(r for r in gw.d.clients if r.alive and r.session.established)
            assert gw.ops.client_kill(gw.ops.info[id(rec)].cid, "RESTART")
            told_at.append(w.clock())
            assert w.run(lambda: c.conn is not None and c.conn is not conn and c.conn.was_up, max_time=30), n
            up_at.append(w.clock())
            assert c.result is None, "the client ended its run"
            if n in (ROUNDS // 2 - 1, ROUNDS - 1):
                kib.append(_traced_kib())
    finally:
        logging.disable(logging.NOTSET)
        tracemalloc.stop()
    gaps = [u - t for t, u in zip(told_at, up_at)]
    assert min(gaps) >= 1.0, gaps                       # connect-retry's 1 s, never less
    assert max(gaps) < 5.0, gaps                        # and no backoff: each round had a tunnel
    assert c.connections == ROUNDS + 1
    grown = kib[1] - kib[0]
    print(f"RESTART after each push: {ROUNDS} rounds, pause {min(gaps):.2f}-{max(gaps):.2f} s, "
          f"traced memory {kib[0]:.0f} -> {kib[1]:.0f} KiB over rounds {ROUNDS // 2}..{ROUNDS}")
    assert grown < 64, f"{grown:.0f} KiB more over {ROUNDS // 2} rounds"


def test_restart_instead_of_every_push_backs_off_as_openvpn(pki, monkeypatch):
    """A server that answers every PUSH_REQUEST with RESTART: no tunnel ever comes, so each
    attempt is one in vain -- 2.6 advances (no_advance is set only once a tunnel was up) and
    doubles its pause after five rounds (1, 1, 1, 1, 1, 2, 4, 8, ... up to connect-retry-max).
    Ours must not knock once a second for ever."""
    w = World()
    gw = w.add_server(server_conf(pki))
    told = []

    def restart_instead(self, s):
        s.tell_restart(w.clock(), "RESTART")
        told.append(w.clock())
        raise clientpush.PushDeferred()

    monkeypatch.setattr(clientpush.ClientPush, "_push_options", restart_instead)
    c = w.add_client(client_conf(pki, extra="connect-retry 1 60\n"))
    t0 = w.clock()
    w.run(lambda: w.clock() >= t0 + 120 or c.result is not None, max_time=125)
    assert c.result is None, "the client ended its run"
    assert c.connections == 0
    # 1 s pauses for five rounds, then 2, 4, 8, ...: about 10 attempts in 120 s (the told
    # sessions, never ended here, also meet the server's handshakes-per-address limit, which
    # costs the client a hand-window); once a second would be ~100.
    assert 6 <= len(told) <= 12, told
    gaps = [b - a for a, b in zip(told, told[1:])]
    assert min(gaps) >= 1.0 and max(gaps) >= 8, gaps         # doubling, never under 1 s
    print(f"RESTART instead of each push: {len(told)} attempts in 120 s, gaps {[round(g, 1) for g in gaps]}")
    del gw
