"""A CRL file changed while a reload's pass checks its kept clients (the chains verified in the
reload's worker thread since reload41, tests/gateway/test_reload_recheck_offloop.py) is read and
installed on the loop, before the next batch, as a handshake's check would read it -- never by the
worker (CrlChecker.revoked refresh=False): a reading installed from the worker thread would race
the loop's handshakes on the same checker. The change counts for the batches after it: the client
it revokes is disconnected within the pass."""
from __future__ import annotations

import threading

from appliance.gateway import ops as ops_mod
from appliance.openvpn import tls as tls_mod
from appliance.openvpn.crl import CrlChecker, make_crl
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import _cns, opki  # noqa: F401 - the fixture
from tests.gateway.test_reload_offloop import _serve
from tests.gateway.test_tunnel import _up


def test_a_crl_changed_during_the_pass_is_installed_on_the_loop_and_counts_for_the_next_batch(  # noqa: F811
        opki, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO")
    ca = opki["ca_pair"]
    crl = tmp_path / "crl.pem"
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    gw, _holder = w.add_reloadable_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    gw.ops.reload_inline = False            # the worker thread, as a real server's
    for i in range(3):
        w.add_client(client_conf(opki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(3)), max_time=30)
    loop = threading.current_thread()
    checked_on: list[bool] = []             # per chain check: on the loop's thread?
    installed_on: list[bool] = []           # per CRL reading installed once the pass began: on the loop's?
    passing: list[bool] = []                # the pass began (the new checker is the loop's from then on)
    real_rechecker = tls_mod.peer_rechecker

    def recording(s, **kw):
        check = real_rechecker(s, **kw)

        def recorded(cert, chain_of):
            on_loop = threading.current_thread() is loop
            if not on_loop and not checked_on:
                # The file changes under the worker's first check: its reading is the loop's to
                # install, before the next batch (client2's), never the worker's.
                crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client1"], opki["serials"]["client2"]]))
            checked_on.append(on_loop)
            return check(cert, chain_of)
        return recorded
    monkeypatch.setattr(ops_mod, "peer_rechecker", recording)
    real_install = CrlChecker._install

    def install(self, state):
        if passing:                         # (the reload's own first reading is the worker's: not shared yet)
            installed_on.append(threading.current_thread() is loop)
        return real_install(self, state)
    monkeypatch.setattr(CrlChecker, "_install", install)
    real_recheck = gw.ops._recheck

    def recheck(run):
        passing.append(True)
        return real_recheck(run)
    monkeypatch.setattr(gw.ops, "_recheck", recheck)
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 1, raising=False)
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client1"]]))
    try:
        assert gw.ops.reload()
        _serve(w, gw, until=lambda: "revoked ones disconnected" in caplog.text, steps=100_000)
        assert "1 clients kept, 2 revoked ones disconnected" in caplog.text, caplog.text[-2000:]
        assert checked_on.count(False) == 3, f"the kept clients' chains checked on the loop: {checked_on}"
        assert all(installed_on), f"a CRL reading installed off the loop during the pass: {installed_on}"
        _serve(w, gw, steps=200)
        assert _cns(gw) == ["client0"]
    finally:
        gw._cleanup()
