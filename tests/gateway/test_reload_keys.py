"""A reload that changes the tls-crypt / tls-auth key (a key rotation, SIGHUP after editing the
config) applies it to the first packets of new clients as well as to their sessions: the
stateless reset/cookie check kept the key of the start, so after a rotation no client could
connect -- those with the new key failed the first check, those with the old key the session."""
from __future__ import annotations

import pytest

from appliance.openvpn.keyfiles import generate_static_key
from tests.gateway.conftest import STATIC_KEY, World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


@pytest.mark.parametrize("protection", ["tls-crypt", "tls-auth"])
def test_a_reloaded_key_lets_new_clients_in_and_keeps_the_connected_ones(pki, protection):
    def conf(key: str, role: str) -> str:
        if protection == "tls-crypt":
            base = server_conf(pki) if role == "s" else client_conf(pki, "client0" if key == STATIC_KEY else "client1")
            return base.replace(STATIC_KEY, key)
        base = (server_conf(pki, protection="none", extra="key-direction 0\n") if role == "s" else
                client_conf(pki, "client0" if key == STATIC_KEY else "client1", protection="none",
                            extra="key-direction 1\n"))
        return base + f"<tls-auth>\n{key}\n</tls-auth>\n"

    new_key = generate_static_key().strip()
    w = World()
    gw = w.add_server(conf(STATIC_KEY, "s"))
    holder = {"conf": conf(STATIC_KEY, "s")}
    gw.ops.reload_source = lambda: holder["conf"]
    w.add_client(conf(STATIC_KEY, "c"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    old = gw.d.clients[0]
    holder["conf"] = conf(new_key, "s")
    assert gw.ops.reload()
    w.add_client(conf(new_key, "c"))
    assert w.run(lambda: _up(w, 1), max_time=40), "a client with the new key could not connect after the reload"
    assert old.alive, "the connected client lost its session at the reload"
