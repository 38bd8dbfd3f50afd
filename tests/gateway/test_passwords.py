"""Password logins (auth-user-pass-verify FILE passdb) checked off the event loop: the verdict
arrives later, bounded per source and in total, and other clients never wait for it."""
from __future__ import annotations

import threading
import time

from appliance.gateway.auth import AuthChecker
from appliance.openvpn.passdb import hash_password
from tests.fakes import FakeClock
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_faults import served
from tests.gateway.test_tunnel import _up

PASSDB = f"alice:{hash_password('right')}\nbob:{hash_password('also-right')}\n"
SERVER_EXTRA = "auth-user-pass-verify /mem/passdb passdb\n"
CLIENT_EXTRA = "auth-user-pass\n"


def test_right_password_connects_wrong_one_is_refused(pki):
    w = World()
    w.add_server(server_conf(pki, extra=SERVER_EXTRA), PASSDB)
    w.add_client(client_conf(pki, "client0", extra=CLIENT_EXTRA), username="alice", password="right")
    w.add_client(client_conf(pki, "client1", extra=CLIENT_EXTRA), username="bob", password="wrong")
    served(w, 0)
    assert w.run(lambda: w.clients[1].result is not None, max_time=60), "a wrong password was not refused"
    assert w.clients[1].result == 1 and not _up(w, 1)
    assert w.server.auth.checked >= 2


def test_a_login_storm_from_one_address_is_cut_off_and_others_still_log_in(pki):
    w = World()
    w.add_server(server_conf(pki, extra=SERVER_EXTRA), PASSDB, per_source_rate=(3, 30.0))
    storm_ip = "198.18.0.40"
    for i in range(8):      # eight wrong-password clients from one address
        w.add_client(client_conf(pki, f"client{i % 3 + 1}", extra=CLIENT_EXTRA), ip=storm_ip,
                     username="alice", password=f"guess{i}")
    w.run_for(5)
    refused = sum(v for k, v in w.server.auth.refused.items())
    assert refused >= 1, w.server.auth.refused
    assert w.server.auth.checked <= 3 + 2, "the per-source rate did not hold"
    good = w.add_client(client_conf(pki, "client0", extra=CLIENT_EXTRA), ip="198.18.0.41",
                        username="alice", password="right")
    i = w.clients.index(good)
    assert w.run(lambda: _up(w, i), max_time=30)


def test_checks_run_in_a_worker_and_never_block_submit():
    started = threading.Event()

    def slow_verify(user, pw, cn):
        started.set()
        time.sleep(0.2)
        return pw == "ok"
    a = AuthChecker(slow_verify, FakeClock(), per_source_pending=10, per_source_rate=(10, 1.0))
    try:
        t0 = time.monotonic()
        for i in range(5):
            assert a.submit(i, "198.18.0.9", "u", "ok" if i % 2 == 0 else "no", None) is None
        assert time.monotonic() - t0 < 0.1, "submit waited for the check"
        deadline = time.monotonic() + 5
        got: dict = {}
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
            got.update(a.take_results())
        assert got == {0: True, 1: False, 2: True, 3: False, 4: True}
    finally:
        a.close()


def test_limits_per_source_and_in_total():
    clock = FakeClock()
    a = AuthChecker(lambda u, p, c: True, clock, inline=False, max_pending=3, per_source_pending=2,
                    per_source_rate=(100, 1.0))
    a._pool.shutdown()           # keep everything pending: we only test admission here
    a._pool = None
    a.inline = True
    a._finish = lambda key, source, ok: None
    assert a.submit(1, "198.18.0.1", "u", "p", None) is None
    assert a.submit(2, "198.18.0.1", "u", "p", None) is None
    assert "at once" in a.submit(3, "198.18.0.1", "u", "p", None)
    assert a.submit(4, "198.18.0.2", "u", "p", None) is None
    assert "queued" in a.submit(5, "198.18.0.3", "u", "p", None)
    a.close()


def test_a_broken_check_refuses():
    a = AuthChecker(lambda u, p, c: 1 / 0, FakeClock(), inline=True)
    a.submit("k", "198.18.0.1", "u", "p", None)
    assert a.take_results() == [("k", False)]
