"""force-tls-key-material-export (OpenVPN 2.6, server): a client that does not derive its
data-channel keys with TLS-EKM (RFC 5705) -- anything before 2.6, or ours with VPN_APPLIANCE_KEY_DERIVATION=prf -- is
refused with OpenVPN's AUTH_FAILED reason, and one that does gets in. It changes who may connect,
so it is enforced, and a reload that adds it disconnects kept clients it would refuse. Before, the
line failed the start as an unknown directive."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.roles import EKM_REQUIRED
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def _cns(gw) -> list[str]:
    return sorted(r.common_name for r in gw.d.clients if r.session.established)


def test_a_client_without_tls_ekm_is_refused_with_openvpns_reason(pki, caplog):
    caplog.set_level("INFO")
    w = World()
    gw = w.add_server(server_conf(pki, extra="force-tls-key-material-export\n"))
    w.add_client(client_conf(pki, "client0"))
    old = w.add_client(client_conf(pki, "client1"), advertise_ekm=False)
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.run_for(10)
    assert _cns(gw) == ["client0"] and not _up(w, 1)
    assert EKM_REQUIRED in caplog.text, "the refused client was not told why"
    assert old.conn is None or not old.conn.was_up


def test_a_reload_that_adds_it_disconnects_kept_clients_without_tls_ekm(pki):
    conf = server_conf(pki)
    w = World()
    gw = w.add_server(conf)
    gw.ops.reload_source = lambda: conf + "force-tls-key-material-export\n"
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"), advertise_ekm=False)
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert gw.ops.reload()
    assert _cns(gw) == ["client0"]


def test_it_is_a_server_directive(pki):
    with pytest.raises(ConfigError, match=r"client\.ovpn:\d+: force-tls-key-material-export: is a server directive"):
        parse_config(client_conf(pki, "client0", extra="force-tls-key-material-export\n"), "/mem/client.ovpn")
