"""A reload verifies its kept clients again a batch per wake-up of the loop (gateway/ops.py
_recheck, RELOAD_CHECK_BATCH): each chain's verification under the new config costs ~0.2 ms, and
all at once a reload held the loop ~0.2 s at 1,000 clients (every client's packets waiting; a
SIGHUP storm ran such stalls back to back). Every client is still checked: one the new CRL
revokes is disconnected within the pass, whatever its place; those it admits are kept, and the
reload's line counts them once the pass is over."""
from __future__ import annotations

import pytest

from appliance.gateway import ops as ops_mod
from appliance.openvpn import tls as tls_mod
from appliance.openvpn.crl import make_crl
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import _cns, opki  # noqa: F401 - the fixture
from tests.gateway.test_tunnel import _up


@pytest.mark.parametrize("revoked", ["client0", "client3"])
def test_a_reload_checks_a_batch_per_wake_up_and_still_drops_the_revoked_one(opki, tmp_path, monkeypatch,  # noqa: F811
                                                                               caplog, revoked):
    caplog.set_level("INFO")
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    for i in range(4):
        w.add_client(client_conf(opki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(4)), max_time=30)
    checked = []
    real = tls_mod.peer_rechecker

    def counting(s, **kw):
        check = real(s, **kw)
        return lambda cert, chain_of: checked.append(cert) or check(cert, chain_of)
    monkeypatch.setattr(ops_mod, "peer_rechecker", counting)
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 2, raising=False)
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"][revoked]]))
    assert gw.ops.reload()
    assert len(checked) == 2, "more than a batch verified in the reload's own wake-up"
    assert w.run(lambda: "revoked ones disconnected" in caplog.text, max_time=10)
    assert len(checked) == 4
    assert "3 clients kept, 1 revoked ones disconnected" in caplog.text
    w.run_for(2)
    assert _cns(gw) == sorted({"client0", "client1", "client2", "client3"} - {revoked})


def test_a_reload_during_another_s_pass_takes_over_and_checks_everyone_under_the_newest(opki, tmp_path,  # noqa: F811
                                                                                        monkeypatch, caplog):
    caplog.set_level("INFO")
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    for i in range(4):
        w.add_client(client_conf(opki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(4)), max_time=30)
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 1, raising=False)
    assert gw.ops.reload()                  # nothing revoked: its pass is left after one client
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client3"]]))
    assert gw.ops.reload()
    assert w.run(lambda: "revoked ones disconnected" in caplog.text, max_time=10)
    w.run_for(2)
    assert _cns(gw) == ["client0", "client1", "client2"]
    assert caplog.text.count("revoked ones disconnected") == 1, "the first reload's pass went on"
    assert "3 clients kept, 1 revoked ones disconnected" in caplog.text


def test_the_reload_line_counts_the_clients_it_kept_not_those_that_came_during_its_pass(opki, tmp_path,  # noqa: F811
                                                                                         monkeypatch, caplog):
    """A client that connects while the pass goes on (at 1,000 clients it spans ~16 wake-ups of
    the loop) started under the new config: it was not kept by the reload, and the line said so
    wrongly ("4 clients kept" for the 3 it found)."""
    caplog.set_level("INFO")
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    for i in range(3):
        w.add_client(client_conf(opki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(3)), max_time=30)
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 1, raising=False)
    timers = gw.pump.timers
    real_arm = timers.arm

    def slow_pass(key, when, fn):           # the pass's wake-ups spaced out (a loaded loop)
        real_arm(key, when + 2.0 if key == "reload-recheck" and when is not None else when, fn)
    monkeypatch.setattr(timers, "arm", slow_pass)
    assert gw.ops.reload()
    w.add_client(client_conf(opki, "client3"))
    assert w.run(lambda: _up(w, 3), max_time=30)
    assert "revoked ones disconnected" not in caplog.text, "the pass ended before the new client came"
    assert w.run(lambda: "revoked ones disconnected" in caplog.text, max_time=30)
    assert "3 clients kept, 0 revoked ones disconnected" in caplog.text
    assert len(_cns(gw)) == 4


def test_a_bug_ending_one_clients_turn_does_not_end_the_pass(opki, tmp_path, monkeypatch, caplog):  # noqa: F811
    """Our bug while one client is disconnected (here: the first kick raises) ends that client
    (fail closed) and is counted; the pass goes on and still disconnects the clients the new
    CRL revokes further on. Before, the exception left the pass there: the clients after it
    kept their tunnels under the old CRL, for good."""
    caplog.set_level("INFO")
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    for i in range(4):
        w.add_client(client_conf(opki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(4)), max_time=30)
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 1, raising=False)
    real_kick = gw.ops._kick
    raised = []

    def kick_once_broken(rec, why):
        if not raised:
            raised.append(rec.common_name)
            raise RuntimeError("our bug")
        return real_kick(rec, why)
    monkeypatch.setattr(gw.ops, "_kick", kick_once_broken)
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client0"], opki["serials"]["client1"],
                                            opki["serials"]["client2"], opki["serials"]["client3"]]))
    faults0 = gw.faults.counts.get("internal error", 0)
    assert gw.ops.reload()
    w.run_for(5)
    assert len(raised) == 1
    assert _cns(gw) == [], "revoked clients kept after the pass met a bug (the broken one included)"
    assert "revoked ones disconnected" in caplog.text
    assert gw.faults.counts.get("internal error", 0) == faults0 + 1


def test_a_client_the_new_crl_revokes_cannot_connect_while_the_pass_goes_on(opki, tmp_path, monkeypatch):  # noqa: F811
    """The pass is the kept clients' check only: a session that starts while it goes on (here
    a revoked client's new connection, the pass's wake-ups spaced out) is verified by the new
    config's CRL at its own handshake."""
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    for i in range(3):
        w.add_client(client_conf(opki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(3)), max_time=30)
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 1, raising=False)
    timers = gw.pump.timers
    real_arm = timers.arm
    monkeypatch.setattr(timers, "arm", lambda key, when, fn: real_arm(
        key, when + 5.0 if key == "reload-recheck" and when is not None else when, fn))
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client3"]]))
    assert gw.ops.reload()
    w.add_client(client_conf(opki, "client3"))
    w.run_for(4)
    assert gw.ops._recheck_gen == 1 and not _up(w, 3), "a revoked client got in during the pass"
    assert "client3" not in _cns(gw)
