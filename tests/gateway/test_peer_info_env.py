"""A client's peer-info reaches client-connect/-disconnect scripts' environment and the management
interface's >CLIENT:ENV lines (gateway/ops.py). The client chooses those bytes; they are checked
as OpenVPN 2.6 checks them, so a client cannot forge management lines (a CR, a line separator) or
hand scripts shell characters, and an odd name is left out."""
from __future__ import annotations

from appliance.gateway import ops
from appliance.openvpn import roles
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

HOSTILE = ("UV_EVIL=a\r>CLIENT:ESTABLISHED,99\u2028x\x1b[2J $(reboot)`id`\n"
           "UV_BAD NAME=x\nIV_\u0130=dotted\nUV_LONG=" + "y" * 1000 + "\nUV_OK=plain-value_1.2\n")


def test_peer_info_in_the_environment_and_management_lines_is_checked(pki, monkeypatch):
    real = roles.ClientRole._peer_info
    monkeypatch.setattr(roles.ClientRole, "_peer_info", lambda self: real(self) + HOSTILE)
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = gw.d.clients[0]
    assert rec.session.peer_info["UV_EVIL"].startswith("a\r")     # the engine got the raw text
    inf = gw.ops.info[id(rec)]
    env = gw.ops.env(rec, inf, "client-connect")
    assert env["UV_EVIL"] == "a_>CLIENT:ESTABLISHED,99_x_[2J___reboot)_id_"
    assert env["UV_OK"] == "plain-value_1.2"
    assert "UV_BAD NAME" not in env and "IV_\u0130" not in env
    assert len("UV_LONG=" + env["UV_LONG"]) == 255
    assert env["IV_VER"] == "2.6.0"
    for line in gw.ops._env_lines(rec, inf):
        assert line.isprintable() and line.isascii(), repr(line)
        assert len(line.splitlines()) == 1


def test_a_logins_peer_info_lines_include_names_other_than_iv_and_uv_as_2_6_prints_them(pki, monkeypatch):
    """host44: 2.6's man_output_peer_info_env (a login's >CLIENT block, env-filter 1 and above)
    prints every valid peer-info line, `FOO=x` too; its environment (scripts, level 0) keeps
    IV_/UV_ only. Ours left the others out of both. Still checked: an odd name is left out, a
    value cleaned and cut at 255 characters."""
    real = roles.ClientRole._peer_info
    monkeypatch.setattr(roles.ClientRole, "_peer_info", lambda self: real(self) + HOSTILE
                        + "FOO_1=bar baz\n2ND=two\n-x=y\n=nameless\nLONGER=" + "z" * 400 + "\n")
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = gw.d.clients[0]
    lines = ops.peer_info_lines(rec.session.peer_info)
    assert lines["FOO_1"] == "bar_baz" and lines["2ND"] == "two" and lines["IV_VER"] == "2.6.0"
    assert "-x" not in lines and "" not in lines and "UV_BAD NAME" not in lines
    assert len("LONGER=" + lines["LONGER"]) == 255
    assert list(lines).index("IV_VER") < list(lines).index("FOO_1")      # the client's order
    env = gw.ops.env(rec, gw.ops.info[id(rec)], "client-connect")
    assert "FOO_1" not in env and "2ND" not in env and env["IV_VER"] == "2.6.0"


FORGED = ("common_name=admin\nX509_0_CN=admin\nuntrusted_ip=198.18.0.1\nusername=root\npassword=x\n"
          "tls_serial_0=1\nifconfig_pool_remote_ip=198.18.0.9\n")


def test_a_peer_info_line_named_as_a_server_variable_never_reaches_a_login_block():
    """review45c: 2.6 prints a client's peer-info line `common_name=admin` ahead of a login's real
    variables (at env-filter 1 and 2 as the only common_name: the real one is filtered out there).
    Ours leaves out every peer-info name the server's own variables take (mgmt_env
    forges_a_variable); the client's other lines, IV_/UV_ among them, stay as 2.6 prints them."""
    from appliance.gateway.mgmt_env import EnvBlock
    info = {}
    for line in ("IV_VER=2.6.14\nUV_X=1\nFOO_2=kept\n" + FORGED).splitlines():
        k, _, v = line.partition("=")
        info[k] = v
    env = {"common_name": "client0", "untrusted_ip": "198.18.5.5", "X509_0_CN": "client0",
           "username": "u", "time_unix": "1"}
    block = EnvBlock((">CLIENT:CONNECT,0,1",), env, peer_info=ops.peer_info_lines(info))
    for level in (1, 2, 3):
        told = [ln.removeprefix(">CLIENT:ENV,") for ln in block.lines(level)[1:-1]]
        names = [t.partition("=")[0] for t in told]
        assert "IV_VER=2.6.14" in told and "UV_X=1" in told and "FOO_2=kept" in told
        for forged in FORGED.splitlines():
            assert forged not in told, (level, forged)
        for k in ("common_name", "untrusted_ip", "X509_0_CN", "username"):
            assert names.count(k) <= 1 and (k not in names or f"{k}={env[k]}" in told), (level, k)
