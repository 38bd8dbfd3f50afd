"""settings.py: one Options → SessionConfig mapping for both roles, and the server's settings carry
every directive that changes who may connect (or the config is refused, never silently ignored)."""
from __future__ import annotations

from dataclasses import fields

import pytest

from appliance.openvpn import ciphers
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.config import parse_config
from appliance.openvpn.server import ServerSettings
from appliance.openvpn.session import Role
from appliance.openvpn.settings import client_session_config, data_overhead, server_settings, session_config

SERVER = ("dev tun\nserver 198.19.0.0 255.255.255.0\ntopology subnet\n<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n"
          "keepalive 10 60\nreplay-window 128 20\nreneg-sec 0\ndata-ciphers AES-128-GCM:AES-256-CBC\ndh none\n")
CLIENT = "client\ndev tun\nremote 198.18.0.1\n<ca>\n</ca>\nreplay-window 128 20\nreneg-sec 0\nping-exit 99\n"
SERVER_FIELDS = {f.name for f in fields(ServerSettings)}


def _server(extra: str = ""):
    return parse_config(SERVER + extra, "/etc/s.conf", lambda p: b"x")


def test_both_roles_get_the_same_engine_settings_from_the_same_directives():
    s_cfg = server_settings(_server()).session_config(5)
    c_cfg = client_session_config(parse_config(CLIENT, "/p/c.ovpn", lambda p: b""), "udp")
    for cfg in (s_cfg, c_cfg):
        assert (cfg.replay_window, cfg.replay_time, cfg.reneg_sec) == (128, 20.0, 0)
    assert s_cfg.role == Role.SERVER and s_cfg.peer_id == 5
    assert (s_cfg.ping, s_cfg.ping_restart) == (10, 120)          # keepalive doubled on a server
    assert s_cfg.data_ciphers == ["AES-128-GCM", "AES-256-CBC"]
    assert c_cfg.ping_exit == 99 and s_cfg.ping_exit == 0
    assert c_cfg.role == Role.CLIENT


def test_session_config_is_the_only_mapping():
    """client_session_config is session_config with the client's arguments."""
    o = parse_config(CLIENT, "/p/c.ovpn", lambda p: b"")
    a = client_session_config(o, "tcp", "u", "p", False)
    b = session_config(o, Role.CLIENT, proto="tcp", username="u", password="p", advertise_ekm=False)
    skip = {"tls", "make_wrapper", "random_bytes"}
    assert {f.name: getattr(a, f.name) for f in fields(a) if f.name not in skip} == \
           {f.name: getattr(b, f.name) for f in fields(b) if f.name not in skip}


def test_ccd_exclusive_is_passed_to_the_server():
    assert server_settings(_server("client-config-dir ccd\nccd-exclusive\n")).ccd_exclusive is True
    assert server_settings(_server()).ccd_exclusive is False


@pytest.mark.parametrize("extra, field, directive", [
    # (with a user check: without one it is refused at its line, as OpenVPN 2.6)
    ("management 127.0.0.1 7505\nmanagement-client-auth\nusername-as-common-name\n", "username_as_cn",
     "username-as-common-name"),
    ("<tls-crypt-v2>\nK\n</tls-crypt-v2>\ntls-crypt-v2 [inline] force-cookie\n", "force_cookie", "tls-crypt-v2"),
])
def test_access_directives_reach_the_server_or_the_config_is_refused(extra, field, directive, monkeypatch):
    """Passed through when the dispatcher has the field; otherwise refused at the directive's line."""
    import appliance.openvpn.keyfiles as kf
    monkeypatch.setattr(kf, "parse_tls_crypt_v2_server_key", lambda text: b"k" * 128)
    o = _server(extra)
    if field in SERVER_FIELDS:
        assert getattr(server_settings(o), field) is True
        assert getattr(server_settings(_server()), field) is False
    else:
        with pytest.raises(ConfigError) as ei:
            server_settings(o)
        line = (SERVER + extra).splitlines().index(extra.splitlines()[-1]) + 1
        assert str(ei.value).startswith(f"/etc/s.conf:{line}: {directive}: ")


def test_server_overhead_covers_every_cipher_it_may_negotiate():
    o = _server()
    assert data_overhead(o) == max(ciphers.overhead(c, o.auth, True) for c in ("AES-128-GCM", "AES-256-CBC"))
    assert data_overhead(o, "AES-128-GCM", data_v2=False) == 21
