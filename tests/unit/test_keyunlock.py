"""openvpn/keyunlock.py: an encrypted private key opened with askpass FILE's first line (or a typed
password), both PEM forms; no password or a wrong one is an error at the right line, before start."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.openvpn import keyunlock
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

KEY = ec.generate_private_key(ec.SECP256R1())
PLAIN = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())


def _encrypted(form: serialization.PrivateFormat, password: bytes = b"pw 1") -> bytes:
    return KEY.private_bytes(serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(password))


def _opts(key: bytes, extra: str = "", askpass: bytes = b"pw 1\nsecond line\n"):
    files = {"/p/k.pem": key, "/p/pw.txt": askpass}
    text = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\ncert c.pem\nkey k.pem\n" + extra
    return parse_config(text, "/p/c.ovpn", lambda p: files.get(p, b"C"))


@pytest.mark.parametrize("form", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_the_askpass_files_first_line_opens_either_form(form):
    enc = _encrypted(form)
    assert keyunlock.is_encrypted(enc) and not keyunlock.is_encrypted(PLAIN)
    o = _opts(enc, "askpass pw.txt\n")
    assert not keyunlock.needs_prompt(o)
    keyunlock.unlock(o)
    assert o.key == PLAIN and o.askpass_password is None


def test_a_typed_password_opens_it_and_a_plain_key_is_left_alone():
    o = _opts(_encrypted(serialization.PrivateFormat.PKCS8), "askpass\n")
    assert keyunlock.needs_prompt(o)
    keyunlock.unlock(o, "pw 1")
    assert o.key == PLAIN
    o = _opts(PLAIN)
    keyunlock.unlock(o)
    assert o.key == PLAIN and not keyunlock.needs_prompt(o)


def test_no_password_is_an_error_at_the_key_line():
    o = _opts(_encrypted(serialization.PrivateFormat.PKCS8))
    with pytest.raises(ConfigError) as ei:
        keyunlock.unlock(o)
    assert str(ei.value).startswith("/p/c.ovpn:7: key: the private key is encrypted"), str(ei.value)


def test_a_wrong_password_is_an_error_at_the_askpass_line():
    o = _opts(_encrypted(serialization.PrivateFormat.PKCS8), "askpass pw.txt\n", askpass=b"wrong\n")
    with pytest.raises(ConfigError) as ei:
        keyunlock.unlock(o)
    assert str(ei.value).startswith("/p/c.ovpn:8: askpass: cannot decrypt the private key"), str(ei.value)
    with pytest.raises(ConfigError) as ei:
        keyunlock.unlock(o, "also wrong")
    assert "/p/c.ovpn:7: key: cannot decrypt the private key with the password typed" in str(ei.value)


def test_an_askpass_file_without_a_first_line_is_refused_at_parse():
    with pytest.raises(ConfigError) as ei:
        _opts(PLAIN, "askpass pw.txt\n", askpass=b"\nlater\n")
    assert "/p/c.ovpn:8: askpass: pw.txt: no password on its first line" in str(ei.value)


# ------------------------------------------------------------------ pkcs12
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

from appliance.certs import issue  # noqa: E402
from appliance.openvpn.settings import check_key_material  # noqa: E402

CA = issue("p12 CA", None, None)
LEAF = issue("client1", CA, ExtendedKeyUsageOID.CLIENT_AUTH)
PEM = serialization.Encoding.PEM


def _p12(password: bytes | None = b"pw 1") -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"client1", LEAF[1], LEAF[0], [CA[0]], enc)


def _p12_opts(data: bytes, extra: str = "", askpass: bytes = b"pw 1\n"):
    files = {"/p/c.p12": data, "/p/pw.txt": askpass, "/p/ca.pem": CA[0].public_bytes(PEM),
             "/p/x.pem": b"-----BEGIN CERTIFICATE-----\nXX\n-----END CERTIFICATE-----\n"}
    text = "client\ndev tun\nremote 198.18.0.1 1194\npkcs12 c.p12\n" + extra
    return parse_config(text, "/p/c.ovpn", lambda p: files[p])


def test_pkcs12_with_askpass_gives_cert_key_and_without_ca_its_cas():
    o = _p12_opts(_p12(), "askpass pw.txt\n")
    assert not keyunlock.needs_prompt(o)
    check_key_material(o)                      # opens it, and the TLS context takes what it gave
    assert o.pkcs12 is None and o.ca == CA[0].public_bytes(PEM)
    assert o.cert == LEAF[0].public_bytes(PEM)
    assert serialization.load_pem_private_key(o.key, None).public_key() == LEAF[1].public_key()


def test_pkcs12_with_a_ca_line_sends_its_cas_after_ours_and_extra_certs_last():
    o = _p12_opts(_p12(None), "extra-certs x.pem\nca ca.pem\n")
    assert not keyunlock.needs_prompt(o)
    keyunlock.unlock(o)
    assert o.cert == LEAF[0].public_bytes(PEM) + CA[0].public_bytes(PEM) + o.extra_certs


def test_pkcs12_errors_name_their_lines():
    o = _p12_opts(_p12())
    assert keyunlock.needs_prompt(o)
    with pytest.raises(ConfigError) as ei:
        keyunlock.unlock(o)
    assert str(ei.value).startswith("/p/c.ovpn:4: pkcs12: cannot open the PKCS#12 file without a password")
    o = _p12_opts(_p12(), "askpass pw.txt\n", askpass=b"wrong\n")
    with pytest.raises(ConfigError) as ei:
        keyunlock.unlock(o)
    assert str(ei.value).startswith("/p/c.ovpn:5: askpass: cannot open the PKCS#12 file with the password")
    keyunlock.unlock(o, "pw 1")                # typed right
    assert o.pkcs12 is None
    no_ca = pkcs12.serialize_key_and_certificates(b"c", LEAF[1], LEAF[0], None, serialization.NoEncryption())
    with pytest.raises(ConfigError) as ei:
        keyunlock.unlock(_p12_opts(no_ca))
    assert "/p/c.ovpn:4: pkcs12: no `ca`, and the PKCS#12 file holds no CA certificate" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        _p12_opts(_p12(), "cert x.pem\n")
    assert "/p/c.ovpn:5: cert: cannot be used with pkcs12" in str(ei.value)


def test_an_inline_pkcs12_is_base64_and_extra_certs_before_cert_still_count():
    import base64
    text = ("client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n<pkcs12>\n"
            + base64.encodebytes(_p12(None)).decode() + "</pkcs12>\n")
    o = parse_config(text, "/p/c.ovpn", lambda p: b"")
    assert pkcs12.load_key_and_certificates(o.pkcs12, None)[1] == LEAF[0]    # the block's DER, decoded
    with pytest.raises(ConfigError) as ei:
        parse_config(text.replace("<pkcs12>\n", "<pkcs12>\n!!"), "/p/c.ovpn", lambda p: b"")
    assert "pkcs12: the inline <pkcs12> block must hold the file in base64" in str(ei.value)
    o = parse_config("client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\nextra-certs e.pem\ncert c.pem\nkey k.pem\n",
                     "/p/c.ovpn", lambda p: {"/p/e.pem": b"E", "/p/c.pem": b"C", "/p/k.pem": b"K"}[p])
    assert o.cert == b"C\nE", "extra-certs before cert was dropped"
