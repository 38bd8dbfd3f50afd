"""A reload (SIGHUP after editing the config) applies what it changes, or says it takes a
restart: nothing accepted and silently ignored. A new tls-crypt / tls-auth key (a key rotation)
applies to the first packets of new clients as well as to their sessions (the stateless
reset/cookie check kept the key of the start, so after a rotation no client could connect);
`client-to-client` taken away stops the forwarding between clients."""
from __future__ import annotations

import pytest

from appliance.openvpn.keyfiles import generate_static_key
from tests.gateway.conftest import STATIC_KEY, World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def _reloadable(w: World, conf: str) -> tuple:
    """A server started with `conf` whose reload reads holder["conf"] (the edited file)."""
    gw = w.add_server(conf)
    holder = {"conf": conf}
    gw.ops.reload_source = lambda: holder["conf"]
    return gw, holder


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
    gw, holder = _reloadable(w, conf(STATIC_KEY, "s"))
    w.add_client(conf(STATIC_KEY, "c"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    old = gw.d.clients[0]
    holder["conf"] = conf(new_key, "s")
    assert gw.ops.reload()
    w.add_client(conf(new_key, "c"))
    assert w.run(lambda: _up(w, 1), max_time=40), "a client with the new key could not connect after the reload"
    assert old.alive, "the connected client lost its session at the reload"


def test_client_to_client_taken_away_by_a_reload_stops_client_to_client(pki):
    """A reload without `client-to-client` (clients to be kept apart) must stop the server
    forwarding between them: the data path kept the value of the start."""
    from tests.gateway.conftest import ipv4_udp
    w = World()
    conf = server_conf(pki)
    gw, holder = _reloadable(w, conf)
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    a, b = w.client_addr(0), w.client_addr(1)
    before = ipv4_udp(a, b, b"c2c-before")
    w.client_nets[0].tun.inject(before)
    assert w.run(lambda: before in w.client_nets[1].tun.written, max_time=5)
    holder["conf"] = conf.replace("client-to-client\n", "")
    assert gw.ops.reload()
    after = ipv4_udp(a, b, b"c2c-after")
    w.client_nets[0].tun.inject(after)
    w.run_for(5)
    assert after not in w.client_nets[1].tun.written, "client-to-client went on after a reload took it away"
    assert gw.d.clients[0].alive and gw.d.clients[1].alive


def test_auth_user_pass_verify_added_by_a_reload_checks_passwords(pki, tmp_path):
    """A reload that adds password logins: the server had no password checker (none was
    needed at start), so every login was refused as 'no password checker' (AUTH_FAILED,TEMP)
    and clients retried for ever. Now the right password gets in, a wrong one does not."""
    from appliance.openvpn.passdb import hash_password
    passdb = tmp_path / "passdb"
    passdb.write_text(f"alice:{hash_password('right', n=2 ** 4)}\n")
    w = World()
    conf = server_conf(pki)
    gw, holder = _reloadable(w, conf)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    holder["conf"] = conf + f"auth-user-pass-verify {passdb} passdb\n"
    assert gw.ops.reload()
    w.add_client(client_conf(pki, "client1", extra="auth-user-pass\n"), username="alice", password="right")
    w.add_client(client_conf(pki, "client2", extra="auth-user-pass\n"), username="alice", password="wrong")
    assert w.run(lambda: _up(w, 1), max_time=40), "the right password did not get in after the reload"
    w.run_for(10)
    assert not _up(w, 2), "a wrong password got in"
    assert "no password checker" not in gw.faults.counts
