"""What our client's peer info carries from its profile (settings.peer_info_extra), as OpenVPN 2.6's
client (ssl.c push_peer_info): `setenv IV_GUI_VER` / `IV_SSO` always -- a web-login server reads
IV_SSO to know the client shows its URL --, and with push-peer-info the setenv UV_* variables,
IV_PLAT_VER and IV_SSL. Before, push-peer-info was accepted with no effect and setenv reached
nobody. Checked where a server sees it: our server's view of the client's peer info."""
from __future__ import annotations

import os

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

PROFILE = ('setenv IV_GUI_VER "myapp 2.1"\nsetenv IV_SSO openurl,webauth\nsetenv UV_TEAM red\n'
           "setenv IV_PLAT_VER custom\nsetenv OTHER x\n")


def _peer_info(pki, extra: str) -> dict[str, str]:
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0", extra=extra))
    assert w.run(lambda: _up(w, 0), max_time=30)
    return gw.d.clients[0].session.peer_info


def test_setenv_gui_version_and_sso_always_reach_the_server(pki):
    pi = _peer_info(pki, PROFILE)
    assert pi["IV_GUI_VER"] == "myapp 2.1" and pi["IV_SSO"] == "openurl,webauth"
    assert "UV_TEAM" not in pi and "IV_SSL" not in pi and "OTHER" not in pi
    assert _peer_info(pki, "")["IV_GUI_VER"].startswith("vpn-appliance")


def test_push_peer_info_adds_the_user_variables_platform_and_library(pki):
    pi = _peer_info(pki, PROFILE + "push-peer-info\n")
    assert pi["UV_TEAM"] == "red" and pi["IV_SSL"].startswith("OpenSSL ")
    assert pi["IV_PLAT_VER"] in (os.uname().release, "custom") and "OTHER" not in pi


def test_a_huge_setenv_value_does_not_grow_the_key_method_message_without_bound(pki):
    pi = _peer_info(pki, "push-peer-info\n" + "".join(f"setenv UV_{i} {'v' * 200}\n" for i in range(50)))
    sent = sum(len(k) + len(v) + 2 for k, v in pi.items() if k.startswith("UV_"))
    assert 0 < sent <= 768
