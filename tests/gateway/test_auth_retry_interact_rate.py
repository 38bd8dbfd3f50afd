"""`auth-retry interact` against a server that answers AUTH_FAILED every time (review44d, after
trim42 gave interact connect-retry's pause instead of nointeract's 10 s). Interact asks the
management client again (management-query-passwords; without it the profile is refused). A tool
that answers each ask with the same wrong password at once: the attempts stay at one per
connect-retry pause, as Debian's 2.6.14 client's ("Restart pause, 1 second(s)" before each of 30
attempts in 30 s, no backoff: measured against 2.6.14's server in a namespace, review44d), never a
busy loop, with a bounded number of log lines each. A tool that does not answer: no attempt."""
from __future__ import annotations

import logging

from tests.gateway.test_client_mgmt import ask
from tests.gateway.test_client_mgmt_passwords import NEED, _world

SECONDS = 60


def _answering(c, tap):
    """Each new ask answered with alice's wrong password, as a tool with a stored answer would."""
    seen = [0]

    def answer() -> bool:
        n = tap.got.count(NEED)
        if n > seen[0]:
            seen[0] = n
            ask(c, tap, "username Auth alice")
            ask(c, tap, "password Auth wrong")
        return False
    return answer


def test_an_always_wrong_answer_retries_once_per_connect_retry_pause(pki, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    w, c, tap = _world(pki, tmp_path, extra="auth-retry interact\n")
    ask(c, tap, "username Auth alice")          # the first ask (in the welcome), then each one after
    ask(c, tap, "password Auth wrong")
    answer = _answering(c, tap)
    end = w.clock.t + SECONDS
    w.run(lambda: answer() or w.clock.t >= end, max_time=SECONDS + 1)
    failed = tap.got.count(">PASSWORD:Verification Failed: 'Auth'")
    # connect-retry 1 (client_conf): one attempt per second plus the handshake's time; never more.
    assert SECONDS / 4 <= failed <= SECONDS + 1, (failed, tap.got[-10:])
    assert c.result is None and c.connections == 0
    lines = sum(1 for r in caplog.records if r.name == "vpn-appliance")
    assert lines <= 12 * (failed + 2), f"{lines} log lines for {failed} attempts"


def test_no_answer_no_attempt(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path, extra="auth-retry interact\n")
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth wrong")
    assert w.run(lambda: tap.got.count(NEED) == 1, max_time=30), tap.got
    w.run_for(SECONDS)
    assert tap.got.count(NEED) == 1 and c.conn is None and c.result is None
    assert not w.server.d.clients
