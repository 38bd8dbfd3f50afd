"""A client's TLS context is made once per process (tls.context_for): its reconnects do not parse
the key and certificates or verify our own chain again. What must not change with it: every
connection is a full handshake (nothing resumed through the shared context), a change of the
material makes a new context, and `capath` keeps a context per connection (its directory's CRLs
are looked up and kept by the store)."""
from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID

from OpenSSL._util import lib as _lib

from appliance.bench import _cert, _pems
from appliance.openvpn import keyfiles, tls, wrapping
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings, build_context, context_for
from tests.engine.test_memory_link import Link, pki, up  # noqa: F401 - pki: the fixture

_KEY = keyfiles.parse_static_key(keyfiles.generate_static_key())


def _server(pki) -> Session:
    tls = TlsSettings(pki["ca"], *pki["server"], True, remote_cert_tls="client")
    return Session(SessionConfig(Role.SERVER, tls, lambda: wrapping.TlsCryptWrapper(_KEY, True), proto="udp",
                                 auth="SHA256", data_ciphers=["AES-256-GCM"], peer_id=1,
                                 push_options=lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet"]),
                   0.0, tls_context=build_context(tls))      # its own: the clients' context_for is what is tested


def _client(pki, cert=None) -> Session:
    tls = TlsSettings(pki["ca"], *(cert or pki["client"]), False, remote_cert_tls="server")
    c = Session(SessionConfig(Role.CLIENT, tls, lambda: wrapping.TlsCryptWrapper(_KEY, False), proto="udp",
                              auth="SHA256", data_ciphers=["AES-256-GCM"]), 0.0)
    c.start(0.0)
    return c


def _connect(pki, cert=None) -> tuple[Session, Session]:
    c, s = _client(pki, cert), _server(pki)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s), (c.stats, s.stats)
    return c, s


def test_a_reconnect_takes_the_same_context_and_is_a_full_handshake(pki):
    c1, s1 = _connect(pki)
    c2, s2 = _connect(pki)                      # the same profile, a new session: a reconnect
    assert c2.tls_context is c1.tls_context
    for c, s in ((c1, s1), (c2, s2)):
        assert not _reused(c) and not _reused(s)
        assert s.peer_common_name == "client"


def _reused(s: Session) -> bool:
    return bool(_lib.SSL_session_reused(s.keys[0].tls.conn._ssl))  # noqa: SLF001 - not in pyOpenSSL's API


def test_other_material_makes_another_context(pki):
    c1, _ = _connect(pki)
    ca = _cert("mem CA")        # another client certificate, of another CA the server does not know
    other = _pems(_cert("someone else", ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    c2 = _client(pki, other)
    assert c2.tls_context is not c1.tls_context
    s = _server(pki)
    link = Link(c2, s)
    link.run(lambda: up(c2, s) or s.closed or c2.closed, max_steps=2000)
    assert not s.established                    # its own certificate went out, and was refused
    c3, _ = _connect(pki)                       # back to the first material: a context for it again
    assert c3.tls_context is not c2.tls_context


def test_capath_keeps_a_context_per_connection(pki, tmp_path):
    tls = TlsSettings(pki["ca"], *pki["client"], False, remote_cert_tls="server", capath=str(tmp_path))
    assert context_for(tls) is not context_for(tls)


def test_at_most_a_few_contexts_are_kept(pki):
    """Settings changing again and again (a server's reloads with new material) keep no more than
    _CONTEXTS_KEPT contexts alive through the table."""
    made = [context_for(TlsSettings(pki["ca"], *pki["client"], False, verify_x509_name=("name", str(i))))
            for i in range(tls._CONTEXTS_KEPT + 3)]                  # noqa: SLF001
    assert len(set(map(id, made))) == len(made)
    assert len(tls._contexts) <= tls._CONTEXTS_KEPT                  # noqa: SLF001
    assert context_for(TlsSettings(pki["ca"], *pki["client"], False, verify_x509_name=("name", "0"))) is not made[0]
