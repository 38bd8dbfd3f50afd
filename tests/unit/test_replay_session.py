"""replay-window N T end to end in the engine: the session passes its `now` to the data channel,
so a held-back packet older than T seconds behind the newest is dropped as OpenVPN drops it."""
from __future__ import annotations

import pytest

from tests.engine.test_memory_link import Link, make_pair, payloads, pki, up  # noqa: F401 - pytest fixture
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")


def _pair(pki, **kw):  # noqa: F811
    c, s, _ = make_pair(pki, **kw)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    return c, s, link.now


def test_late_packet_inside_window_refused_after_time_limit(pki):  # noqa: F811
    c, s, t0 = _pair(pki, replay_time=15.0)
    held, newer = [bytes(c.encrypt(p)) for p in payloads(2, 1)]
    assert len(s.receive(newer, t0)) == 1
    assert s.receive(held, t0 + 16.0) == []                  # 16 s behind the newest: expired
    assert s.stats["replayed data packet"] == 1


def test_late_packet_within_time_limit_accepted(pki):  # noqa: F811
    c, s, t0 = _pair(pki, replay_time=15.0)
    held, newer = [bytes(c.encrypt(p)) for p in payloads(2, 2)]
    assert len(s.receive(newer, t0)) == 1
    assert len(s.receive(held, t0 + 10.0)) == 1


def test_no_time_limit_when_disabled(pki):  # noqa: F811
    c, s, t0 = _pair(pki, replay_time=None)
    held, newer = [bytes(c.encrypt(p)) for p in payloads(2, 3)]
    assert len(s.receive(newer, t0)) == 1
    assert len(s.receive(held, t0 + 500.0)) == 1


def test_window_zero_drops_every_packet_after_a_gap_as_openvpn(pki):  # noqa: F811
    """replay-window 0 on the data channel, both AEAD paths: packets in order get in; after one
    lost on the way, the next and all after it are dropped, as OpenVPN 2.6's strict mode (only
    newest + 1) drops them; the lost one, should it come late, still gets in and so do the next."""
    c, s, t0 = _pair(pki, replay_window=0)
    pk = [bytes(c.encrypt(p)) for p in payloads(5, 4)]
    assert len(s.receive(pk[0], t0)) == 1
    assert len(s.receive(pk[1], t0)) == 1
    assert s.receive(pk[3], t0) == []                 # pk[2] lost: a gap
    assert s.receive(pk[4], t0) == []
    assert s.stats["replayed data packet"] == 2
    assert len(s.receive(pk[2], t0)) == 1             # newest + 1
    assert len(s.receive(pk[3], t0)) == 1
    assert s.receive(pk[3], t0) == []                 # a replay


def test_window_one_takes_a_gap_but_no_reordering(pki):  # noqa: F811
    """replay-window 1: 2.6 keeps one entry, so ids above the newest get in gaps and all, and an
    older one never does."""
    c, s, t0 = _pair(pki, replay_window=1)
    pk = [bytes(c.encrypt(p)) for p in payloads(4, 5)]
    assert len(s.receive(pk[0], t0)) == 1
    assert len(s.receive(pk[2], t0)) == 1
    assert s.receive(pk[1], t0) == []
    assert len(s.receive(pk[3], t0)) == 1
