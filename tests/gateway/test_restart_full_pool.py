"""Clients told RESTART (a reload's restart, `client-kill`) at a full pool reconnect from new
ports while their told sessions still hold their addresses (waiting up to CLIENT_KILL_WAIT for the
acknowledgement): none may come back with no address (review44d). At 2.6's SIGHUP every instance
is freed before anyone reconnects, so every client finds its address free."""
from __future__ import annotations

import pytest

from appliance.gateway import ops as ops_mod
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 (fixture)
from tests.gateway.test_tunnel import _up

N = 4
POOL = "ifconfig-pool 198.19.0.10 198.19.0.13 255.255.255.0\n"
NO_ADDRESS = "is connected with no address"


def _rec(gw, cn: str):
    recs = [r for r in gw.d.clients if r.common_name == cn and r.session.established]
    return recs[-1] if recs else None


def _full(opki, extra: str = "", client_extra: str = ""):  # noqa: F811
    """A server whose four-address pool its four clients fill; (world, gw, holder, conf)."""
    conf = server_conf(opki, extra=POOL + extra, nopool=True)
    w = World()
    gw, holder = w.add_reloadable_server(conf)
    for i in range(N):
        w.add_client(client_conf(opki, f"client{i}", extra=client_extra))
        assert w.run(lambda i=i: _up(w, i), max_time=30)
    assert len(gw.st.pool.leased) == N
    return w, gw, holder, conf


def _all_back(w, gw, old) -> bool:
    return all(_rec(gw, f"client{i}") not in (None, old[i]) and _up(w, i) and w.client_addr(i)
               for i in range(N))


def _settled(w, gw, old) -> None:
    """Once the told sessions are gone: each address is its new session's alone (routed to it),
    nothing left shared, and nothing of the told sessions left in the server's maps."""
    assert w.run(lambda: not any(r.alive for r in old), max_time=ops_mod.CLIENT_KILL_WAIT + 5)
    w.run_for(1)
    pool = gw.st.pool
    assert not pool.shared and len(pool.leased) == N, (pool.leased, pool.shared)
    for i in range(N):
        new = _rec(gw, f"client{i}")
        assert gw.d.by_vaddr.get(w.client_addr(i)) is new and new.vaddr == w.client_addr(i)
    assert not gw.ops.killing and not gw.ops._restart_held


def _no_ack(monkeypatch) -> None:
    """The acknowledgements not taken: each told session waits CLIENT_KILL_WAIT (a 2.6 client
    restarting before its ACK goes out, or the ACK lost)."""
    end_kill = ops_mod.Operations._end_kill
    monkeypatch.setattr(ops_mod.Operations, "_end_kill",
                        lambda self, rec, wait_over=False:
                        end_kill(self, rec, wait_over) if wait_over or not rec.alive else None)


@pytest.mark.parametrize("extra", ["", "duplicate-cn\n", "ifconfig-pool-persist /mem/ipp.txt 0\n",
                                   "duplicate-cn\nifconfig-pool-persist /mem/ipp.txt 0\n"])
@pytest.mark.parametrize("acked", [True, False])
def test_a_reload_restarting_everyone_at_a_full_pool_leaves_nobody_without_an_address(
        opki, caplog, monkeypatch, extra, acked):  # noqa: F811
    if not acked:
        _no_ack(monkeypatch)
    w, gw, holder, conf = _full(opki, extra)
    before = {i: w.client_addr(i) for i in range(N)}
    old = [_rec(gw, f"client{i}") for i in range(N)]
    holder["conf"] = conf + 'push "route 198.18.80.0 255.255.255.0"\n'
    mark = len(caplog.text)
    assert gw.ops.reload()
    assert w.run(lambda: _all_back(w, gw, old), max_time=40), (
        [w.client_addr(i) for i in range(N)], caplog.text[mark:][-3000:])
    assert NO_ADDRESS not in caplog.text[mark:], caplog.text[mark:][-3000:]
    _settled(w, gw, old)
    if "ifconfig-pool-persist" in extra:
        assert {i: w.client_addr(i) for i in range(N)} == before
    _settled(w, gw, old)


@pytest.mark.parametrize("extra", ["", "duplicate-cn\n"])
def test_client_kill_then_an_immediate_reconnect_at_a_full_pool_gets_an_address(
        opki, caplog, monkeypatch, extra):  # noqa: F811
    _no_ack(monkeypatch)
    w, gw, holder, conf = _full(opki, extra)
    old = [_rec(gw, f"client{i}") for i in range(N)]
    mark = len(caplog.text)
    for i in range(N):
        cid = gw.ops.info[id(old[i])].cid
        assert gw.ops.client_kill(cid, "")
    assert w.run(lambda: _all_back(w, gw, old), max_time=40), (
        [w.client_addr(i) for i in range(N)], caplog.text[mark:][-3000:])
    assert NO_ADDRESS not in caplog.text[mark:], caplog.text[mark:][-3000:]
    _settled(w, gw, old)


@pytest.mark.parametrize("extra", ["", "duplicate-cn\n"])
def test_nothing_is_left_behind_once_everyone_left(opki, caplog, monkeypatch, extra):  # noqa: F811
    """A reload's restarts at a full pool, client-kill, EXIT holds (explicit-exit-notify), then
    everyone leaves: after RELOAD_RESTART_HOLDOFF and DEPARTED_QUIET, nothing of them is kept --
    not the reload restarts' hold-off map, the told sessions, the held restarts, the leavers'
    memory, the pending restarts, the pool's leases or shares."""
    from appliance.openvpn import server as srv_mod
    _no_ack(monkeypatch)
    w, gw, holder, conf = _full(opki, extra, client_extra="explicit-exit-notify 1\n")
    old = [_rec(gw, f"client{i}") for i in range(N)]
    holder["conf"] = conf + 'push "route 198.18.80.0 255.255.255.0"\n'
    assert gw.ops.reload()
    assert w.run(lambda: _all_back(w, gw, old), max_time=40)
    gw.ops.client_kill(gw.ops.info[id(_rec(gw, "client0"))].cid, "HALT")
    for c in w.clients:
        c.request_stop()
    assert w.run(lambda: not gw.d.clients, max_time=30), [r.common_name for r in gw.d.clients]
    w.clients.clear()                   # gone for good: nothing more from them
    assert gw.d.departed and gw.ops._reload_restarted      # (what the wait below must clear)
    w.run_for(max(ops_mod.RELOAD_RESTART_HOLDOFF, srv_mod.DEPARTED_QUIET) + 10)
    d, ops = gw.d, gw.ops
    left = {"reload_restarted": ops._reload_restarted, "restart_held": ops._restart_held,
            "killing": ops.killing, "departed": d.departed, "pending": d.pending, "heirs": d.heirs,
            "by_addr": d.by_addr, "by_vaddr": d.by_vaddr, "leased": gw.st.pool.leased,
            "shared": gw.st.pool.shared}
    assert not any(left.values()), {k: v for k, v in left.items() if v}
