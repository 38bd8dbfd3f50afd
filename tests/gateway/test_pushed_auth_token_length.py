"""A server pushing an `auth-token` longer than OpenVPN 2.6's client reads of a pushed option (255
bytes with its name: options.c apply_push_options, keymethod.PUSHED_LINE_READ).

Before: ours took the whole token (up to the ~2,000 bytes a control message holds) and sent it
back at the next renegotiation, where the key-method message passed the 2,048 bytes a server
reads; the client then exited ("the username and password are too long"), for good, at its
first renegotiation. 2.6 would send back the token's first 244 bytes. Now such a token is left
out (logged with the ignored options) and the password stays in use; one that fits is taken."""
from __future__ import annotations

import logging

import pytest

from appliance.openvpn.clientpush import ClientPush
from tests.gateway.test_auth_gen_token import _world
from tests.gateway.test_auth_nocache import _up


@pytest.mark.parametrize("length, used", [(1900, False), (244, True)])
def test_a_token_longer_than_2_6_reads_is_left_out_and_the_client_renegotiates(pki, tmp_path, monkeypatch,
                                                                              caplog, length, used):
    caplog.set_level(logging.INFO)
    token = "T" * length
    real = ClientPush._push_for
    monkeypatch.setattr(ClientPush, "_push_for", lambda self, s: [*real(self, s), f"auth-token {token}"])
    w, c, _creds = _world(pki, tmp_path, "reneg-sec 20\n", "")
    assert (c.auth_token.token == token) is used
    assert c.auth_token.in_use is used
    w.run_for(50)
    assert c.result is None, "the client exited"
    assert _up(c) and c.connections == 1 and c.counters.renegotiations >= 2
    assert "too long" not in caplog.text
    assert ("OpenVPN 2.6 reads" in caplog.text) is not used
