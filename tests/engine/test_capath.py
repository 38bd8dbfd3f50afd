"""`capath DIR` (tls.py _add_capath), as OpenVPN 2.6 with OpenSSL's hashed-directory lookup: the
peer's chain is built from the directory's HASH.N files, each certificate of it checked against
its issuer's HASH.rN CRL -- a missing CRL passes (2.6's "VERIFY WARNING"), a revoking, expired
or foreign-signed one refuses; files c_rehash adds later count from the next handshake; a reload
(peer_rechecker) judges a connected peer the same way."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from appliance.bench import _cert, _pems
from appliance.openvpn.config import parse_config
from appliance.openvpn.crl import capath_warning, make_crl
from appliance.openvpn.errors import ConfigError, RemoteProtocolError
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context, peer_rechecker
from tests.engine.test_own_chain import _sub_ca

PEM = serialization.Encoding.PEM


def _hash_name(cert) -> str:
    return f"{crypto.X509.from_cryptography(cert).subject_name_hash():08x}"


class Ca:
    """root -> sub CA -> clients; the server's certificate from root."""

    def __init__(self) -> None:
        self.root = _cert("capath root")
        self.sub = _sub_ca("capath sub", self.root)
        self.good = _cert("good client", self.sub, ExtendedKeyUsageOID.CLIENT_AUTH)
        self.bad = _cert("revoked client", self.sub, ExtendedKeyUsageOID.CLIENT_AUTH)
        self.server = _cert("server", self.root, ExtendedKeyUsageOID.SERVER_AUTH)

    def directory(self, d: Path, crl_days: int | None = 30, crl_by=None) -> Path:
        """c_rehash's layout: HASH.0 per CA, HASH.r0 per CRL (named by its issuer's hash)."""
        d.mkdir(exist_ok=True)
        for c in (self.root, self.sub):
            (d / f"{_hash_name(c[0])}.0").write_bytes(c[0].public_bytes(PEM))
        if crl_days is not None:
            self.add_crl(d, crl_days, crl_by)
        return d

    def add_crl(self, d: Path, days: int = 30, signer=None) -> None:
        signer = signer or self.sub
        (d / f"{_hash_name(self.sub[0])}.r0").write_bytes(
            make_crl(self.sub[0], signer[1], [self.bad[0].serial_number], days=days, issuer=self.sub[0].subject))


def _handshake(ca: Ca, capath: Path, who, ctx=None) -> str:
    """"" when the server (capath) accepted `who`; else why not."""
    server = TlsSettings(None, *_pems(ca.server), True, capath=str(capath), capath_warn=capath_warning)
    client = TlsSettings(ca.root[0].public_bytes(PEM), _pems(who)[0] + ca.sub[0].public_bytes(PEM), _pems(who)[1],
                         False)
    c, s = TlsEndpoint(build_context(client), client), TlsEndpoint(ctx or build_context(server), server)
    try:
        out_c, _ = c.pump()
        for _ in range(10):
            s.feed(out_c)
            out_s, _ = s.pump()
            c.feed(out_s)
            out_c, _ = c.pump()
            if c.handshake_done and s.handshake_done and not out_c:
                break
    except Exception as e:  # noqa: BLE001 - the refusal is what we look at
        return str(e) or type(e).__name__
    return "" if s.handshake_done else "no handshake"


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca()


def test_chain_from_the_directory_revoked_refused_missing_crl_passes(ca, tmp_path):
    with_crl = ca.directory(tmp_path / "a")
    assert _handshake(ca, with_crl, ca.good) == ""
    assert "revoked" in _handshake(ca, with_crl, ca.bad)
    no_crl = ca.directory(tmp_path / "b", crl_days=None)
    assert _handshake(ca, no_crl, ca.bad) == ""           # no CRL: only 2.6's warning


def test_an_expired_or_foreign_signed_crl_refuses(ca, tmp_path):
    assert _handshake(ca, ca.directory(tmp_path / "a", crl_days=-1), ca.good) != ""
    assert _handshake(ca, ca.directory(tmp_path / "b", crl_by=ca.root), ca.good) != ""


def test_a_crl_added_later_counts_from_the_next_handshake(ca, tmp_path):
    d = ca.directory(tmp_path / "a", crl_days=None)
    ctx = build_context(TlsSettings(None, *_pems(ca.server), True, capath=str(d)))
    assert _handshake(ca, d, ca.bad, ctx) == ""
    ca.add_crl(d)
    assert "revoked" in _handshake(ca, d, ca.bad, ctx)


def test_a_reload_judges_connected_peers_the_same_way(ca, tmp_path):
    def recheck(capath: Path, who) -> str:
        s = TlsSettings(None, *_pems(ca.server), True, capath=str(capath))
        try:
            peer_rechecker(s)(who[0], lambda: [ca.sub[0]])
        except RemoteProtocolError as e:
            return str(e)
        return ""
    with_crl, no_crl = ca.directory(tmp_path / "a"), ca.directory(tmp_path / "b", crl_days=None)
    assert recheck(with_crl, ca.good) == "" and recheck(no_crl, ca.bad) == ""
    assert "revoked" in recheck(with_crl, ca.bad)
    assert recheck(ca.directory(tmp_path / "c", crl_days=-1), ca.good) != ""
    other = _cert("someone else's CA")
    assert "VERIFY ERROR" in recheck(no_crl, _cert("stranger", other, ExtendedKeyUsageOID.CLIENT_AUTH))


def test_config(tmp_path):
    base = "client\ndev tun\nremote 198.18.0.1\n"
    o = parse_config(base + f"capath {tmp_path}\n", "c.conf")        # capath alone verifies the peer
    assert o.capath == str(tmp_path) and o.ca is None
    with pytest.raises(ConfigError, match="c.conf:4: capath: .* is not a readable directory"):
        parse_config(base + f"capath {tmp_path / 'none'}\n", "c.conf")


def test_a_missing_crl_is_warned_of_once_per_subject(ca, tmp_path, caplog):
    d = ca.directory(tmp_path / "a", crl_days=None)
    ctx = build_context(TlsSettings(None, *_pems(ca.server), True, capath=str(d), capath_warn=capath_warning))
    with caplog.at_level("WARNING", logger="vpn-appliance"):
        for _ in range(3):
            assert _handshake(ca, d, ca.good, ctx) == ""
    lines = [r.getMessage() for r in caplog.records if "unable to get certificate CRL" in r.getMessage()]
    assert len(lines) == len(set(lines)) and any("good client" in m for m in lines), lines


@pytest.mark.parametrize("entry", ["fifo", "device", "huge"])
def test_an_entry_openssl_would_block_on_or_read_whole_is_refused_at_its_line(ca, tmp_path, entry):
    """OpenSSL opens capath's HASH.N / HASH.rN files itself, in the middle of a handshake on the
    event loop, with a blocking open() and no size limit: a FIFO named as the sub CA's CRL held
    the first handshake (and with it every client's packets and SIGTERM) for good, as a device
    or a multi-gigabyte file would. Every other file a config names is a regular file within
    its kind's limit (regular_file.py) or refused before start with file:line; capath's entries
    the same, at start and at each reload (which parses the config again)."""
    import os

    from appliance.openvpn.regular_file import CRL
    d = ca.directory(tmp_path / "a", crl_days=None)
    bad = d / f"{_hash_name(ca.sub[0])}.r0"
    if entry == "fifo":
        os.mkfifo(bad)
    elif entry == "device":
        bad.symlink_to("/dev/zero")
    else:
        with open(bad, "wb") as f:
            f.truncate(CRL.limit + 1)                  # sparse: no disk used
    base = "client\ndev tun\nremote 198.18.0.1\n"
    with pytest.raises(ConfigError, match=rf"c.conf:4: capath: .*{bad.name}: "
                       + ("not a regular file" if entry != "huge" else "too large")):
        parse_config(base + f"capath {d}\n", "c.conf")
    bad.unlink()
    (d / "notes.txt").symlink_to("/dev/zero")          # a name OpenSSL never opens there
    (d / f"{_hash_name(ca.root[0])}.r0").symlink_to(d / "gone")   # dangling: OpenSSL finds none
    assert parse_config(base + f"capath {d}\n", "c.conf").capath == str(d)


def test_forged_certificates_neither_log_nor_use_up_the_warnings(ca, tmp_path, caplog):
    """OpenSSL checks revocation before signatures, so a peer without any key of ours, sending a
    made-up leaf that names our sub CA as its issuer, reached the missing-CRL warning: its own
    text logged as a certificate's subject, and 64 such names used up the warnings, so the
    missing CRL of the real clients' CA was never reported. Warned of only once the chain's
    signatures verified."""
    from cryptography.hazmat.primitives.asymmetric import ec
    d = ca.directory(tmp_path / "a", crl_days=None)
    ctx = build_context(TlsSettings(None, *_pems(ca.server), True, capath=str(d), capath_warn=capath_warning))
    forger = (ca.sub[0], ec.generate_private_key(ec.SECP256R1()))   # the sub CA's name, not its key
    with caplog.at_level("WARNING", logger="vpn-appliance"):
        for i in range(70):
            assert _handshake(ca, d, _cert(f"forged {i}", forger, ExtendedKeyUsageOID.CLIENT_AUTH), ctx) != ""
        assert _handshake(ca, d, ca.good, ctx) == ""
    lines = [r.getMessage() for r in caplog.records if "unable to get certificate CRL" in r.getMessage()]
    assert not [m for m in lines if "forged" in m], lines
    assert any("good client" in m for m in lines), lines
