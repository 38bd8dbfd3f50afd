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
    text = "client\nremote 198.18.0.1 1194\n<ca>\nX\n</ca>\ncert c.pem\nkey k.pem\n" + extra
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
