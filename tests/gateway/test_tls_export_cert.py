"""tls-export-cert DIR (OpenVPN 2.6, ssl_verify.c verify_cert_cert_export_env): during each
tls-verify call the certificate of that depth is a PEM file in DIR named by `peer_cert`
(openvpn_pef_*.tmp), gone after the call; a directory we cannot write in refuses the peer, and
one that is not there (or not writable) fails the start at the line. Before, the line failed the
start as an unknown directive, so a command that reads the certificate could not be used."""
from __future__ import annotations

import os

import pytest
from cryptography import x509

from appliance.gateway import client as client_mod
from appliance.gateway import ops as ops_mod
from appliance.gateway.tlsverify import VerifyRunner
from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tls_verify import _script
from tests.gateway.test_tunnel import _up


@pytest.fixture
def inline(monkeypatch):
    def make(opts, inline=False):
        return VerifyRunner(tmp_dir=opts.tmp_dir, inline=True, export_dir=opts.tls_export_cert)
    monkeypatch.setattr(ops_mod, "make_verify_runner", make)
    monkeypatch.setattr(client_mod, "make_verify_runner", make)


def _copier(tmp_path) -> str:
    """A tls-verify command that keeps a copy of $peer_cert per depth, and its name and mode."""
    out = tmp_path / "seen"
    out.mkdir()
    return _script(tmp_path, "tv.sh", f'cp "$peer_cert" {out}/cert-$1.pem\n'
                                      f'echo "$peer_cert $(stat -c %a "$peer_cert")" > {out}/name-$1\nexit 0\n')


def test_each_depth_gets_its_certificate_in_a_file_removed_afterwards(pki, tmp_path, inline):
    export = tmp_path / "export"
    export.mkdir()
    tv = _copier(tmp_path)
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\ntls-export-cert {export}\n"))
    w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    seen = tmp_path / "seen"
    subjects = {d: x509.load_pem_x509_certificate((seen / f"cert-{d}.pem").read_bytes()).subject.rfc4514_string()
                for d in (0, 1)}
    assert subjects == {0: "CN=client0", 1: "CN=Gateway test CA"}
    for d in (0, 1):
        name, mode = (seen / f"name-{d}").read_text().split()
        assert os.path.dirname(name) == str(export) and os.path.basename(name).startswith("openvpn_pef_")
        assert mode == "600", "the exported certificate was readable by others"
    assert os.listdir(export) == [], "exported certificates were left behind"


def test_a_directory_that_went_away_refuses_the_peer(pki, tmp_path, inline, caplog):
    export = tmp_path / "export"
    export.mkdir()
    tv = _copier(tmp_path)
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\ntls-export-cert {export}\n"))
    export.rmdir()                                        # after the start's check
    w.add_client(client_conf(pki))
    assert not w.run(lambda: _up(w), max_time=8)
    assert "Failed to export certificate for --tls-export-cert" in caplog.text


def test_config_lines(pki, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"s\.conf:\d+: tls-export-cert: .* is not a directory"):
        parse_config(server_conf(pki, extra=f"tls-export-cert {missing}\n"), "/mem/s.conf")
    o = parse_config(client_conf(pki, extra=f"tls-export-cert {tmp_path}\n"), "/mem/c.ovpn")
    assert o.tls_export_cert == str(tmp_path)
    assert any("tls-export-cert: no effect without tls-verify" in n for n in o.notes)
