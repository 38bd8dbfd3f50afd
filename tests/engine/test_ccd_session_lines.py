"""A per-client file's lines for the client's own session (compat45), as OpenVPN 2.6.14 applies
them to the client's instance (multi.c imports them with CLIENT_CONNECT_OPT_MASK, init.c
do_deferred_options): `ping` / `ping-restart` / `ping-exit` set that client's server-side
keepalive timers, `comp-lzo` / `compress` its compression framing, and its `data-ciphers` /
`data-ciphers-fallback` / `cipher` lines the lists its data cipher is chosen from -- at the push,
after every source of per-client lines, as 2.6 (multi.c multi_client_connect_late_setup; compat48:
ours chose before the file was read and refused a client whose file chose another cipher).
Before compat45 each of these lines refused the client ("not supported in a client-config-dir
file").
"""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from appliance.openvpn.config import parse_ccd
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.engine.test_server_dispatcher import _client, _kpem, _pem, _pump, _server, _up, pki  # noqa: F401

HOME = ("198.18.0.47", 1194)
CN = "client6"


def _connect(pki, text: str, **kw):  # noqa: F811
    d = _server(pki, "none", ccd=lambda cn: parse_ccd(text, "ccd/client6") if cn == CN else None, **kw)
    s = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(s, HOME)], now=0.5)
    return d, s


def _server_session(d):
    return d.by_addr[HOME].session


def test_ping_lines_set_that_clients_server_side_timers(pki):  # noqa: F811
    d, s = _connect(pki, "ping 7\nping-restart 25\n")
    assert _up(s), d.events
    ss = _server_session(d)
    assert (ss.ping_interval, ss.ping_restart) == (7, 25)      # the server's own: 10 and 60


def test_ping_exit_and_ping_restart_set_one_timer_the_later_line_winning(pki):  # noqa: F811
    """2.6's ping-exit and ping-restart both set the instance's ping_rec_timeout (options.c):
    the later line replaces the server's (review46c: ours kept the earlier of the two)."""
    d, s = _connect(pki, "ping-exit 15\n")
    assert _up(s), d.events
    assert _server_session(d).ping_restart == 15
    d, s = _connect(pki, "ping-exit 90\n")
    assert _server_session(d).ping_restart == 90               # over the server's 60, as 2.6
    d, s = _connect(pki, "ping-exit 30\nping-restart 300\n")
    assert _server_session(d).ping_restart == 300


def test_comp_lzo_no_frames_that_client_with_the_lzo_stub(pki):  # noqa: F811
    d, s = _connect(pki, "comp-lzo no\npush \"comp-lzo no\"\n")
    assert _up(s), d.events
    assert _server_session(d).comp == "lzo-stub"
    assert s.comp == "lzo-stub", "the pushed line frames the client the same way"


def test_compress_stub_v2_and_a_client_without_the_line_keeps_the_servers(pki):  # noqa: F811
    d, s = _connect(pki, "compress stub-v2\n")
    assert _server_session(d).comp == "stub-v2"
    d, s = _connect(pki, "push \"route 198.18.7.0 255.255.255.0\"\n")
    assert _server_session(d).comp is None


def test_a_cipher_line_changes_nothing_for_a_client_that_negotiates(pki):  # noqa: F811
    d, s = _connect(pki, "cipher AES-128-CBC\n")
    assert _up(s), d.events
    assert _server_session(d).cipher == "AES-256-GCM"


def test_data_ciphers_choosing_another_cipher_gives_the_client_that_cipher(pki):  # noqa: F811
    """The file's list in place of the server's (AES-256-GCM first): the client is given the
    file's cipher, both ends on it. compat48: refused before ("would give this client ...")."""
    d, s = _connect(pki, "push \"route 198.18.7.0 255.255.255.0\"\ndata-ciphers CHACHA20-POLY1305\n")
    assert _up(s), d.events
    assert _server_session(d).cipher == s.cipher == "CHACHA20-POLY1305"


def test_data_ciphers_the_client_does_not_take_refuse_it_as_2_6(pki):  # noqa: F811
    """No cipher in common with the file's list: AUTH_FAILED 'no shared cipher', the log naming
    the file's list as the server's data-ciphers, as 2.6.14 logs its client's copy."""
    d = _server(pki, "none", ccd=lambda cn: parse_ccd("data-ciphers AES-128-CBC\n", "ccd/client6"))
    s = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    s.cfg.data_ciphers = ("AES-256-GCM", "CHACHA20-POLY1305")
    _pump(d, [(s, HOME)], now=0.5)
    assert not _up(s)
    assert any(isinstance(e, ev.AuthFailed) and "no shared cipher" in e.message for e in s.events), s.events
    why = " ".join(getattr(e, "reason", "") for _r, e in d.events)
    assert "Server data-ciphers: 'AES-128-CBC', client supported ciphers 'AES-256-GCM:CHACHA20-POLY1305'" in why, why


def test_a_per_client_name_that_cannot_run_here_refuses_naming_the_line(pki):  # noqa: F811
    """2.6 takes a file's names as written; one its client announces too but this appliance cannot
    run (BF-CBC) is chosen there and fails the data channel: refused, naming the line."""
    d = _server(pki, "none", ccd=lambda cn: parse_ccd("ping 9\ndata-ciphers BF-CBC:AES-256-GCM\n", "ccd/client6"))
    s = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    s.cfg.data_ciphers = ("BF-CBC", "AES-256-GCM")
    _pump(d, [(s, HOME)], now=0.5)
    assert not _up(s)
    why = " ".join(getattr(e, "reason", "") for _r, e in d.events)
    assert "ccd/client6:2: data cipher 'BF-CBC' chosen by the client's per-client lines cannot be run" in why, why


def test_the_later_source_of_lines_wins_file_then_client_connect(pki):  # noqa: F811
    """ccd file `data-ciphers AES-128-GCM`, then the client-connect script's output
    `data-ciphers CHACHA20-POLY1305`: 2.6 imports the script's over the file's; the cipher is
    chosen after both."""
    d = _server(pki, "none", defer_connect=True,
                ccd=lambda cn: parse_ccd("data-ciphers AES-128-GCM\n", "ccd/client6"))
    s = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(s, HOME)], now=0.5)
    (rec,) = [r for r, e in d.events if isinstance(e, ev.ConnectRequested)]
    assert rec.session.cipher is None                     # not chosen before the verdict
    d.connect_result(rec, True, 0.6, ccd=parse_ccd("data-ciphers CHACHA20-POLY1305\n", "<client-connect>"))
    _pump(d, [(s, HOME)], now=0.7)
    assert _up(s), s.events
    assert rec.session.cipher == s.cipher == "CHACHA20-POLY1305"


def test_data_ciphers_choosing_the_same_cipher_connects(pki):  # noqa: F811
    d, s = _connect(pki, "data-ciphers AES-256-GCM:CHACHA20-POLY1305\n")
    assert _up(s), d.events


def test_real_compression_under_allow_compression_no_refuses_as_26(pki):  # noqa: F811
    """2.6 (multi.c): "client has been rejected due to invalid compression options"."""
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 comp_stub_only=True),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"),
        ccd=lambda cn: parse_ccd("comp-lzo yes\n", "ccd/client6"))
    d = ServerDispatcher(st, 0.0)
    s = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(s, HOME)], now=0.5)
    assert not _up(s)
    why = " ".join(str(e) for _r, e in d.events)
    assert "ccd/client6:1:" in why and "allow-compression" in why, why


def test_a_line_we_apply_only_server_wide_refuses_the_client_naming_it(pki):  # noqa: F811
    """2.6 applies a ccd `inactive` to that client; ours applies it server-wide only, so the
    client is refused with the file's line named, never let in without it (review46c: moved
    here from tests/interop/test_ccd_lines_vs_openvpn.py, where it ran against ours alone)."""
    d, s = _connect(pki, "comp-lzo no\ninactive 30\n")
    assert not _up(s)
    why = " ".join(str(e) for _r, e in d.events)
    assert "ccd/client6:2: inactive: a per-client inactivity limit is not supported" in why, why
