"""RESTART and HALT from the server, in memory (against OpenVPN 2.6 itself: tests/interop/
test_restart_vs_openvpn.py).

OpenVPN 2.6's client (push.c server_pushed_signal): RESTART reconnects, to the next `remote` only
with the `[N]` flag (`RESTART,[N]`); without it, a client whose tunnel was up tries the same
server again (no_advance). HALT ends the run. Its server, stopping with explicit-exit-notify,
sends RESTART (1) or RESTART,[N] (2) on the control channel, retransmitted until acknowledged.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn.pushedsignal import parse_pushed_signal, restart_message
from tests.engine.test_memory_link import Link, make_pair, up
from tests.engine.test_session_security import pki  # noqa: F401 - the fixture


@pytest.mark.parametrize("text, halt, next_remote, shown", [
    ("RESTART", False, False, ""),
    ("RESTART,[N]", False, True, "[N]"),
    ("RESTART,[PN] maintenance", False, True, "[PN] maintenance"),
    ("RESTART,[P]", False, False, "[P]"),
    ("RESTART,N", False, False, "N"),              # flags only inside [...]
    ("RESTART,[]N", False, False, "[]N"),          # ... and only up to the ]
    ("RESTART[N]", False, False, ""),              # a text counts only after a comma
    ("RESTART,[N", False, True, "[N"),             # an unclosed [ runs to the end (as OpenVPN)
    ("HALT", True, False, ""),
    ("HALT,bye", True, False, "bye"),
])
def test_flags_read_as_openvpn_reads_them(text, halt, next_remote, shown):
    sig = parse_pushed_signal(text)
    assert sig is not None and (sig.halt, sig.next_remote, sig.text) == (halt, next_remote, shown)


def test_other_messages_are_no_signal():
    assert parse_pushed_signal("PUSH_REPLY,ping 10") is None and parse_pushed_signal("INFO,RESTART") is None


def _up_pair(pki):
    c, s, _ = make_pair(pki)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    return c, s, link


def _closed(sess) -> ev.SessionClosed:
    closed = [e for e in sess.events if isinstance(e, ev.SessionClosed)]
    assert len(closed) == 1, sess.events
    return closed[0]


@pytest.mark.parametrize("message, same_remote", [
    (restart_message(next_remote=True), False),
    (restart_message(next_remote=False), True),
    ("RESTART,[P]", True),
    ("RESTART,[N] going down for maintenance", False),
])
def test_restart_reconnects_to_the_next_remote_only_with_the_N_flag(pki, message, same_remote):
    c, s, link = _up_pair(pki)
    assert s.tell_restart(link.now, message)
    link.run(lambda: c.closed, max_steps=50)
    e = _closed(c)
    assert e.restart and e.same_remote is same_remote, e
    assert message.split(",", 1)[-1] in e.reason or message == "RESTART"


def test_halt_ends_the_run(pki):
    c, s, link = _up_pair(pki)
    assert s.tell_restart(link.now, "HALT,bye")
    link.run(lambda: c.closed, max_steps=50)
    e = _closed(c)
    assert not e.restart and "HALT" in e.reason and "bye" in e.reason


def test_the_restart_is_retransmitted_until_acknowledged(pki):
    """The stopping server keeps the session open: a lost RESTART goes again, and once the client
    acknowledged it the server knows (its wait can end) and sends no exit notification after it."""
    c, s, link = _up_pair(pki)
    assert s.tell_restart(link.now, restart_message(True))
    lost = s.take_outgoing()
    assert lost and not s.control_acked
    link.run(lambda: c.closed, max_steps=200, max_time=link.now + 30)   # the retransmission
    assert c.closed and _closed(c).same_remote is False
    link.step()                                   # the client's ACK
    assert s.control_acked
    s.close(link.now, "server shutting down")
    assert s.take_outgoing() == [], "an OCC exit after an acknowledged RESTART"


def test_an_unacknowledged_restart_is_followed_by_the_exit_notification(pki):
    c, s, link = _up_pair(pki)
    assert s.tell_restart(link.now, restart_message(True))
    s.take_outgoing()                             # lost, and the server stops before resending
    s.close(link.now, "server shutting down")
    out = s.take_outgoing()
    assert out
    for p in out:
        c.receive(bytes(p), link.now)
    assert c.closed and _closed(c).restart, "the OCC exit did not reach the client"


def test_a_client_never_sends_restart_and_a_closed_session_sends_nothing(pki):
    c, s, link = _up_pair(pki)
    assert not c.tell_restart(link.now, "RESTART")
    s.close(link.now)
    s.take_outgoing()
    assert not s.tell_restart(link.now, "RESTART") and s.take_outgoing() == []


@pytest.mark.parametrize("message, same_remote", [
    ("AUTH_FAILED,TEMP", True),
    ("AUTH_FAILED,TEMP: server busy", True),
    ("AUTH_FAILED,TEMP[backoff 30,advance no]: busy", True),
    ("AUTH_FAILED,TEMP[advance remote]: go elsewhere", False),
    ("AUTH_FAILED,TEMP[backoff 5,advance addr]:", False),
    ("AUTH_FAILED,TEMP advance remote", True),          # flags only inside [...]
])
def test_auth_failed_temp_keeps_the_server_unless_its_flags_advance(pki, message, same_remote):
    """OpenVPN 2.6 (push.c receive_auth_failed sets no_advance; options_util.c
    parse_auth_failed_temp): the same server again, unless `advance remote` / `advance addr`."""
    c, s, link = _up_pair(pki)
    assert s.tell_restart(link.now, message)
    link.run(lambda: c.closed, max_steps=50)
    e = _closed(c)
    assert e.restart and e.same_remote is same_remote and e.next_remote is not same_remote, e



@pytest.mark.parametrize("message, restart", [
    ("AUTH_FAILED,TEMP: busy", True),
    ("AUTH_FAILEDTEMP: busy", False),
    ("AUTH_FAILED,,TEMP: busy", False),
    ("AUTH_FAILED TEMP: busy", False),
])
def test_only_auth_failed_comma_temp_is_a_temporary_refusal(pki, message, restart):
    """OpenVPN 2.6's receive_auth_failed reads a reason only after `AUTH_FAILED,` and TEMP only
    at its start: any other spelling is a plain refusal, which ends a run without auth-retry.
    Ours stripped every comma after AUTH_FAILED (and took `AUTH_FAILEDTEMP`) as TEMP (fuzz50)."""
    c, s, link = _up_pair(pki)
    assert s.tell_restart(link.now, message)
    link.run(lambda: c.closed, max_steps=50)
    e = _closed(c)
    assert e.restart is restart and e.reason.startswith("AUTH_FAILED TEMP") is restart, e