"""The server's stop logs a session's bug under the step that raised it. _stop_now read every
bug that close_all collected as "a client's exit notification" -- a fault in releasing the
client (the same forgetting fault40 found) said the notification had failed, which it had not
(the client got its exit notification): the log pointed the operator, and us, at the wrong code.
(The other readers of take_internal_errors use InternalError.where since fault40.)"""
from __future__ import annotations

from appliance.openvpn.server import ServerDispatcher
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_release_bug_at_the_stop_is_logged_as_a_release(pki, monkeypatch, caplog):
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)

    def fails(self, rec):  # noqa: ANN001
        raise RuntimeError("fault on the first line of _forget_steps")
    monkeypatch.setattr(ServerDispatcher, "_forget_steps", fails)
    gw.request_stop()
    assert gw.result == 0
    said = [r.getMessage() for r in caplog.records if "internal error in" in r.getMessage()]
    assert said == ["internal error in releasing a client (before any step) (1 so far)"], said
