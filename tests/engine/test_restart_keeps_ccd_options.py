"""A restart in place (the same client from its own address and port) and its client-config-dir
file, changed or removed since the client was admitted.

OpenVPN 2.6.14 hands the restart to the address's instance, which keeps the options of its first
connect: its reconnect (CAS_CONNECT_DONE back to CAS_RECONNECT_PENDING) runs no connect step, so
the ccd file is not read again (multi.c reads it only in multi_connection_established's
CAS_PENDING path). Ours read the file again and gave the restart whatever it said now. Now the
restart keeps the connection's options; who may connect is still decided by the file as it is
(ccd-exclusive without a file, a `disable`: the restart is refused), stricter than 2.6.14, whose
server never lets such a restart in at all (its PUSH_REQUESTs wait in CAS_RECONNECT_PENDING;
tests/interop/test_restart_in_place_vs_openvpn.py).
"""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.config import parse_ccd
from tests.engine.test_server_dispatcher import _client, _pump, _server, _up, pki  # noqa: F401

HOME = ("198.18.0.47", 1194)


def _with_files(pki, files: dict, exclusive: bool = False):  # noqa: F811
    return _server(pki, "none", ccd=lambda cn: parse_ccd(files[cn]) if cn in files else None,
                   ccd_exclusive=exclusive)


def _connect(d, pki, now):  # noqa: F811
    s = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(s, HOME)], now=now)
    return s


def _routes(s) -> list[str]:
    return [r[0] for r in s.pushed.routes]


def test_a_restart_keeps_the_options_its_connection_was_admitted_with(pki):  # noqa: F811
    cn = "client6"
    files = {cn: "ifconfig-push 198.19.0.77 255.255.255.0\npush \"route 198.18.77.0 255.255.255.0\"\n"
                 "iroute 198.18.78.0 255.255.255.0\n"}
    d = _with_files(pki, files)
    first = _connect(d, pki, 0.5)
    assert _up(first) and first.pushed.ifconfig[0] == "198.19.0.77" and "198.18.77.0" in _routes(first)
    files[cn] = "ifconfig-push 198.19.0.88 255.255.255.0\npush \"route 198.18.88.0 255.255.255.0\"\n"
    again = _connect(d, pki, 2.0)
    assert _up(again), d.drop_counters()
    # The connection's address, pushes and iroutes, not the file's new ones (as 2.6's instance).
    assert again.pushed.ifconfig[0] == "198.19.0.77", again.pushed.ifconfig
    assert "198.18.77.0" in _routes(again) and "198.18.88.0" not in _routes(again), _routes(again)
    rec = d.by_addr[HOME]
    assert [str(n) for n in rec.iroutes] == ["198.18.78.0/24"], rec.iroutes
    # The same client from elsewhere is a new connection (2.6: a new instance): the file as now.
    elsewhere = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(elsewhere, ("198.18.0.48", 1194))], now=3.0)
    assert _up(elsewhere) and elsewhere.pushed.ifconfig[0] == "198.19.0.88", elsewhere.pushed.ifconfig
    assert "198.18.88.0" in _routes(elsewhere)


def test_a_restart_with_the_file_now_removed_under_ccd_exclusive_is_refused(pki):  # noqa: F811
    cn = "client6"
    files = {cn: "push \"route 198.18.77.0 255.255.255.0\"\n"}
    d = _with_files(pki, files, exclusive=True)
    first = _connect(d, pki, 0.5)
    assert _up(first)
    del files[cn]
    again = _connect(d, pki, 2.0)
    assert not _up(again)
    assert any("ccd-exclusive" in str(e) for _r, e in d.events), d.events


def test_a_restart_with_disable_written_since_is_refused(pki):  # noqa: F811
    cn = "client6"
    files = {cn: "push \"route 198.18.77.0 255.255.255.0\"\n"}
    d = _with_files(pki, files)
    assert _up(_connect(d, pki, 0.5))
    files[cn] = "disable\n"
    again = _connect(d, pki, 2.0)
    assert not _up(again)
    assert any("says disable" in str(e) for _r, e in d.events), d.events
