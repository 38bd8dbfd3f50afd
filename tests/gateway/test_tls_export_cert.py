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


def test_a_directory_others_could_swap_the_certificate_in_is_refused(pki, tmp_path):
    """A local user who may write the directory (no sticky bit), or owns it or one above it,
    can unlink our 0600 file while the command runs and put a certificate of theirs under its
    name: the command then approves a chain it never saw. Refused at the line; a sticky
    world-writable directory (as /tmp) is fine (others cannot remove our file there). Before,
    any directory we could write was taken."""
    export = tmp_path / "export"
    export.mkdir()
    conf = server_conf(pki, extra=f"script-security 2\ntls-verify /bin/true\ntls-export-cert {export}\n")
    export.chmod(0o777)
    with pytest.raises(ConfigError, match=r"tls-export-cert: .*writable by others without the sticky bit"):
        parse_config(conf, "/mem/s.conf")
    export.chmod(0o1777)
    assert parse_config(conf, "/mem/s.conf").tls_export_cert == str(export)
    if os.geteuid() != 0:
        pytest.skip("giving the directory to another user needs root")
    export.chmod(0o755)
    os.chown(export, 65534, 65534)                              # nobody's
    with pytest.raises(ConfigError, match=r"tls-export-cert: .*belongs to uid 65534"):
        parse_config(conf, "/mem/s.conf")
    assert parse_config(conf + "user nobody\n", "/mem/s.conf").tls_export_cert == str(export), \
        "the user we run as must write there"
    os.chown(export, 0, 0)
    link = tmp_path / "link"
    owned = tmp_path / "owned"
    owned.mkdir()
    (owned / "real").mkdir()
    os.chown(owned, 65534, 65534)                               # a parent someone else may rename
    link.symlink_to(owned / "real")
    with pytest.raises(ConfigError, match=r"belongs to uid 65534"):
        parse_config(conf.replace(str(export), str(link)), "/mem/s.conf")
