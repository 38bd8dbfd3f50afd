"""Each <connection> block's own keys, MTU and exit notification on in-memory ports: a first block
whose tls-crypt key the server does not have is dropped unanswered (server-poll-timeout, its own
3 s), the second block's key brings the tunnel up at its own tun-mtu, and nothing of the first
block's settings reaches that connection. Against Debian's OpenVPN 2.6:
tests/interop/test_connection_blocks_vs_openvpn.py."""
from __future__ import annotations

from appliance.openvpn.config.d_profile import MTU_DISC
from tests.gateway.conftest import SERVER_IP, STATIC_KEY, World, client_conf, server_conf

WRONG_KEY = STATIC_KEY.replace("00", "5a")


def _profile(pki) -> str:
    base = client_conf(pki, protection="none").replace(f"remote {SERVER_IP} 1194\n", "")
    return base + (
        f"<connection>\nremote {SERVER_IP} 1194\n<tls-crypt>\n{WRONG_KEY}\n</tls-crypt>\ntun-mtu 1300\n"
        "connect-timeout 3\nexplicit-exit-notify 2\n</connection>\n"
        f"<connection>\nremote {SERVER_IP} 1194\n<tls-crypt>\n{STATIC_KEY}\n</tls-crypt>\ntun-mtu 1400\n"
        "mtu-disc yes\n</connection>\n")


def test_the_second_block_comes_up_with_its_own_key_and_mtu(pki):
    assert WRONG_KEY != STATIC_KEY
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(_profile(pki))
    ports = w.client_ports[0]
    ports.mtu_disc = None                 # as the host's ports (system.py): set on each socket made
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=60)
    assert c.attempt == 2, "the first block's wrong key got through"
    assert w.client_nets[0].pushed.tun_mtu == 1400          # the second block's, onto the device
    assert c.conn.session.exit_notify == 0                  # the first block's explicit-exit-notify stays there
    assert c.entry.tls_crypt.strip() == STATIC_KEY and c.entry.server_poll_timeout == 10   # the global one, not the first block's 3 s
    assert ports.mtu_disc == MTU_DISC["yes"] and c.opts.mtu_disc is None     # the second block's socket
    assert c.opts.tls_crypt is None                         # the profile itself has no key
