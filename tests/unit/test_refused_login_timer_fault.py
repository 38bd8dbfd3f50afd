"""A bug of ours while one refused login's remnant resends does not lose the others due with it.

RefusedLogins.handle_timer takes every due remnant off its heap first; one that raised (our bug,
or a MemoryError now contained by the pump) left the rest unarmed: never resent, never dropped
when their hold ended, held until a flood evicted them. Now the faulty one is dropped, the
others get their turn, and the error still reaches the caller's guard (counted)."""
from __future__ import annotations

import pytest

from appliance.openvpn.refusals import RefusedLogin, RefusedLogins


class _Rel:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def all_acked(self) -> bool:
        return False

    def due(self, _now: float) -> list:
        if self.fail:
            raise RuntimeError("our bug in one remnant's resend")
        return []

    def next_deadline(self) -> float:
        return 3.0


def _keep(books: RefusedLogins, addr, fail: bool) -> RefusedLogin:
    r = RefusedLogin(addr, b"o" * 8, b"p" * 8, None, {0: _Rel(fail)}, until=5.0)
    books.by_addr[addr] = r
    books._timers.arm(r, 1.0)                               # noqa: SLF001
    return r


def test_a_remnant_whose_resend_raises_goes_and_the_others_keep_their_timers():
    books = RefusedLogins()
    _keep(books, ("198.18.0.1", 1), fail=True)
    ok = _keep(books, ("198.18.0.2", 2), fail=False)
    with pytest.raises(RuntimeError):
        books.handle_timer(1.0, [])
    assert list(books.by_addr) == [ok.addr]
    assert books.next_deadline() == 3.0, "the other remnant's timer was lost"
    books.handle_timer(5.0, [])                             # its hold is over: it goes
    assert not books.by_addr
