"""review41: the held count of a storm is said when `next_summary` says it can be (logpace.py).

Why: the route keeper arms its summary timer at `next_summary()` and, when the timer fires, says
what `summary()` gives -- once; nothing arms it again. `next_summary` was computed as
at + (1 - tokens) x every and `summary` refilled (now - at) / every tokens and compared with 1.0:
in floating point the refill came out at 0.9999999999999998 for many times and token levels (a
third of random storms on a monotonic clock of days), so the timer found nothing to say and the
storm's count was never written -- the summary line the README promises once a storm is over.
(The live pump fires its timers a little after their time, so the keeper itself rarely hit it:
the contract is what is tested.)"""
from __future__ import annotations

import random

from appliance.logpace import NoteLimit


def test_summary_at_next_summary_says_the_held_count_whatever_the_clock():
    rnd = random.Random(41)
    tried = 0
    for _ in range(3000):
        n = NoteLimit()
        t = rnd.uniform(1e3, 1e7)                       # a monotonic clock: seconds since boot
        for _k in range(rnd.randint(1, 8)):
            t += rnd.choice([0.0, rnd.uniform(0, 40), rnd.uniform(0, 1e-3)])
            n.due(t)
        at = n.next_summary()
        if at is None:
            continue
        tried += 1
        held = n.held
        assert n.summary(at) == held > 0, (t, at)
        assert n.next_summary() is None
    assert tried > 500
