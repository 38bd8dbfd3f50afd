"""client-kill of a client whose login still waits, on in-memory ports (against Debian's client:
tests/interop/test_mgmt_client_auth_vs_openvpn.py)."""
from __future__ import annotations

import logging

from tests.gateway.test_mgmt_client_auth import _login


def test_client_kill_of_a_login_waiting_for_its_verdict_restarts_the_client_at_once(pki, tmp_path, caplog):
    """`client-kill CID` while the management client has not answered that login yet: OpenVPN
    2.6 sends RESTART on the control channel whatever the key's state (send_restart ->
    tls_send_payload, queued until TLS is up) and ends the instance 5 s later, so its client
    reconnects at once. Ours used to drop such a session without a word ("cannot be told": not
    established), and the client -- TLS up, its PUSH_REQUESTs unanswered -- waited out its
    hand-window (60 s) before trying again (soak35: Debian's client, killed in the second its
    login was announced, not back within 45 s)."""
    caplog.set_level(logging.INFO)
    w, _m, c, cid, _kid = _login(pki, tmp_path)
    first = c.conn
    t0 = w.clock.t
    assert w.server.ops.client_kill(cid, "RESTART")
    assert w.run(lambda: c.conn is not None and c.conn is not first, max_time=40), "the client was not told"
    assert w.clock.t - t0 < 10, f"the client reconnected only after {w.clock.t - t0:.0f} s"
    assert "client-kill" in caplog.text
