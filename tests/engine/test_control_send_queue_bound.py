"""A peer that never acknowledges cannot make us hold its replies without end.

Every reply a peer's input makes waits in the key state's reliable send queue until the peer
acknowledges what is in flight. An authenticated client that asks for a TLS 1.3 KeyUpdate in
every control packet (within the control budget, ~60 a second) and acknowledges nothing had the
server queue one answer per request for as long as the key lived: measured 60 messages and
~7.4 KB of server memory a second per session (tracemalloc), without end under `reneg-sec 0`.
Past reliable.SEND_QUEUE_MAX waiting messages the session now ends.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import reliable
from tests.engine.test_control_budget import _closed_reason
from tests.engine.test_memory_link import Link, make_pair, payloads, pki, up  # noqa: F401 - pki: the fixture
from tests.engine import test_keyupdate_flood_budget as keyupdate

KEY_UPDATE_REQUESTED = bytes((24, 0, 0, 1, 1))     # handshake type key_update, update_requested


def _ask_for_keyupdates(c, s, link, ku, seconds: int) -> int:
    """The hostile client: 60 requested KeyUpdates a second, one a control packet, its own
    messages taken as acknowledged and the server's never looked at (so never acknowledged).
    Returns the most messages the server's key state held waiting."""
    ks = c.keys[0]
    most = 0
    for _ in range(seconds):
        link.now += 1.0
        for _ in range(60):
            c._queue_tls(ks, ku.record())
            c._flush(link.now)
            for p in c.take_outgoing():
                s.receive(p, link.now)
            s.take_outgoing()
            ks.reliable.inflight.clear()
            if s.closed:
                return most
            most = max(most, len(s.keys[0].reliable.queue))
    return most


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_client_that_never_acknowledges_its_keyupdate_answers_ends_its_session(pki, monkeypatch, proto):  # noqa: F811
    c, s, link, ku = keyupdate._hostile_pair(pki, monkeypatch, proto)
    monkeypatch.setattr(keyupdate, "KEY_UPDATE", KEY_UPDATE_REQUESTED)
    most = _ask_for_keyupdates(c, s, link, ku, seconds=60)
    assert s.closed and "acknowledge" in _closed_reason(s), (most, _closed_reason(s))
    assert most <= reliable.SEND_QUEUE_MAX
    assert s.stats.get("control messages unacknowledged") == 1


def test_keyupdates_answered_and_acknowledged_go_on(pki, monkeypatch):  # noqa: F811
    """The same requests from a client that reads and acknowledges the answers: no limit is hit
    (so the test above fails for the queue, not for the requests), the tunnel goes on."""
    c, s, link, ku = keyupdate._hostile_pair(pki, monkeypatch, "udp")
    monkeypatch.setattr(keyupdate, "KEY_UPDATE", KEY_UPDATE_REQUESTED)
    ks = c.keys[0]
    for _ in range(30):
        link.now += 1.0
        for _ in range(20):
            c._queue_tls(ks, ku.record())
            c._flush(link.now)
            for p in c.take_outgoing():
                s.receive(p, link.now)
            for p in s.take_outgoing():                  # the answers, read and acknowledged
                c.receive(p, link.now)
            c._flush(link.now)
            for p in c.take_outgoing():
                s.receive(p, link.now)
            s.take_outgoing()
            ks.reliable.inflight.clear()
    assert not s.closed, _closed_reason(s)
    assert len(s.keys[0].reliable.queue) == 0 and not c.closed
    assert s.keys[0].reliable.next_send_id > 300      # the answers went out


def test_the_largest_honest_push_fits_the_send_queue(pki, monkeypatch):  # noqa: F811
    """A push of MAX_PUSHED_OPTIONS options of ~250 characters (OpenVPN's line limit is 256):
    ~260 KB queued at once, behind a window of 6. Measured 334 messages at most; the session
    comes up over TCP (no loss, so nothing but the window holds them)."""
    from appliance.openvpn.keymethod import MAX_PUSHED_OPTIONS
    most = [0]
    real = reliable.ReliableChannel.due

    def due(self, now):
        most[0] = max(most[0], len(self.queue))
        return real(self, now)

    monkeypatch.setattr(reliable.ReliableChannel, "due", due)
    opts = ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet"] + [
        f"setenv-safe V{i} " + "x" * 235 for i in range(MAX_PUSHED_OPTIONS - 10)]
    c, s, _ = make_pair(pki, proto="tcp")
    s.cfg.push_options = lambda _s: opts
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and not s.closed
    assert 250 < most[0] <= reliable.SEND_QUEUE_MAX
