"""The status's Username column (and the client scripts' `username`), as OpenVPN 2.6 fills it:
from the username a user check locked (ssl_verify.c verify_user_pass -> tls_lock_username), which
only a server with a check has (auth-user-pass-verify, an auth plugin, management-client-auth:
tls_session_user_pass_enabled). Without one, 2.6 never reads the username the client sends:
the column says UNDEF (seen with Debian's 2.6 in the lab), and nothing locks it, so a client may
send another at a renegotiation. Ours showed (and locked) whatever the client sent."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import World, client_conf, server_conf

PASSDB = f"alice:{hash_password('first')}\n"


def _rows(gw) -> list[list[str]]:
    return [x.split(",") for x in gw.ops.status_lines(2) if x.startswith("CLIENT_LIST,")]


def _connect(server_extra: str, passdb: str | None, pki, client_extra: str = ""):
    w = World()
    gw = w.add_server(server_conf(pki, extra=server_extra), passdb)
    c = w.add_client(client_conf(pki, extra="auth-user-pass\n" + client_extra),
                     username="alice", password="first")
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    return w, gw, c


def test_without_a_user_check_the_username_is_undef(pki):
    _w, gw, _c = _connect("", None, pki)
    rows = _rows(gw)
    assert len(rows) == 1 and rows[0][1] == "client0" and rows[0][9] == "UNDEF", rows
    rec = gw.d.clients[0]
    assert "username" not in gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")


def test_with_a_user_check_the_username_is_the_one_checked(pki):
    _w, gw, _c = _connect("auth-user-pass-verify /mem/passdb passdb\n", PASSDB, pki)
    rows = _rows(gw)
    assert len(rows) == 1 and rows[0][9] == "alice", rows


def test_without_a_user_check_a_renegotiation_with_another_username_goes_on(pki):
    """Nothing was locked: 2.6 neither reads nor compares the username at a renegotiation."""
    w, gw, c = _connect("", None, pki, client_extra="reneg-sec 0\n")
    s = gw.d.clients[0].session
    cs = c.conn.session
    cs.cfg.username = "mallory"
    cs.renegotiate(w.clock())
    assert w.run(lambda: s.send_key is not None and s.send_key.key_id == 1 and cs.send_key.key_id == 1, max_time=30)
    assert not s.closed and _rows(gw)[0][9] == "UNDEF"
    assert cs.send_key.key_id == 1 and not cs.closed


def test_username_as_common_name_without_a_user_check_is_refused_at_its_line(pki):
    """2.6 makes the username the common name only in its user check (verify_user_pass ->
    set_common_name) and refuses the directive without one (options.c). Ours took it and made
    whatever username the client sent its identity -- the name its ccd file, iroutes, `kill`
    and duplicate-cn go by -- unchecked; with the username now read only by a check, the line
    would do nothing, so it is refused at its line, as 2.6 does."""
    conf = server_conf(pki, extra="username-as-common-name\n")
    with pytest.raises(ConfigError) as e:
        parse_config(conf, "/mem/server.conf")
    assert "username-as-common-name" in str(e.value) and "/mem/server.conf:" in str(e.value)
    # with a check (management-client-auth too) it is taken
    parse_config(server_conf(pki, extra="username-as-common-name\nmanagement 127.0.0.1 7505\n"
                             "management-client-auth\n"), "/mem/server.conf")


def test_with_a_user_check_username_as_common_name_takes_the_checked_name(pki):
    _w, gw, _c = _connect("auth-user-pass-verify /mem/passdb passdb\nusername-as-common-name\n", PASSDB, pki)
    rows = _rows(gw)
    assert len(rows) == 1 and rows[0][1] == "alice" and rows[0][9] == "alice", rows
