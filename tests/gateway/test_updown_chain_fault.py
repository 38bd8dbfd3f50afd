"""The client's up/down environment (management-up-down, the down-root command, the scripts'
connection set) reads the server's certificate chain; when that read raised, it fell back to
depth 0 with nothing counted or said -- a chain certificate cryptography cannot read and our own
bug alike. Now the first is counted as the other readers count it ("peer certificate chain
unreadable (depth 0 only)", WARNING the first five times, then every 1000th), the second as an
internal error with its traceback at the same limited rate; the tunnel's UP still happens with
the depth-0 variables."""
from __future__ import annotations

import logging

from cryptography import x509

from appliance.gateway.loop import Faults
from appliance.gateway.updown import UpDown
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from appliance.openvpn.tls import CHAIN_UNREADABLE
from tests.gateway.conftest import World, client_conf


class _Session:
    """A session whose chain above the peer's certificate cannot be read (`exc` raised)."""

    def __init__(self, cert, exc: type[BaseException]) -> None:
        self.peer_certificate, self.exc = cert, exc
        self.peer_common_name = "server"

    @property
    def peer_chain(self) -> list:
        raise self.exc("the chain cannot be read")


def _updown(pki) -> tuple[UpDown, object]:
    o = parse_config(client_conf(pki, extra="management-up-down\nmanagement 127.0.0.1 7505\n"), "/mem/c.ovpn")
    u = UpDown(o, net_gateway=lambda _dev: "0.0.0.0")
    u.faults = Faults()
    return u, x509.load_pem_x509_certificate(pki["server"][0].encode())


PUSH = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 198.19.0.6 198.19.0.5")


def test_an_unreadable_chain_certificate_gives_depth_0_counted_and_said(pki, caplog):
    u, cert = _updown(pki)
    with caplog.at_level(logging.WARNING, logger="vpn-appliance"):
        u.up(_Session(cert, ValueError), ("198.18.0.1", 1194), PUSH, "tun0", None)
    assert u.mgmt_env["tls_id_0"].endswith("CN=server") and "tls_id_1" not in u.mgmt_env
    assert u.faults.counts == {CHAIN_UNREADABLE: 1}
    assert sum("could not be read" in r.getMessage() for r in caplog.records) == 1
    env = u.connection_env(_Session(cert, ValueError), ("198.18.0.1", 1194))   # a reconnect's set
    assert env["tls_id_0"].endswith("CN=server")
    assert u.faults.counts == {CHAIN_UNREADABLE: 2}


def test_our_bug_reading_the_chain_is_an_internal_error_logged_at_a_limited_rate(pki, caplog):
    u, cert = _updown(pki)
    with caplog.at_level(logging.WARNING, logger="vpn-appliance"):
        for _ in range(8):
            env = u.connection_env(_Session(cert, RuntimeError), ("198.18.0.1", 1194))
            assert env["tls_id_0"].endswith("CN=server")
    assert u.faults.counts == {"internal error": 8}
    tracebacks = [r for r in caplog.records if r.exc_info and "certificate chain" in r.getMessage()]
    assert len(tracebacks) == 5                  # the first five, then every 1000th


def test_the_client_counts_in_its_own_counters(pki):
    """The gateway's UpDown counts where the client's counters line reads (its Faults)."""
    w = World()
    c = w.add_client(client_conf(pki, "client0"))
    assert c.updown.faults is c.faults
