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
