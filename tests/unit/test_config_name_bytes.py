"""Names in a profile's files, as bytes: the auth-user-pass file's username goes out as the bytes
Debian's client sends from the same file, and a verify-x509-name whose bytes are not UTF-8 (it can
match no certificate in OpenVPN, whose names are UTF-8) is refused at the start with its line,
where it matched any certificate whose name held U+FFFD at those places."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import load_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.keymethod import KeyMethod2, decode_key_method_2_untrusted, encode_key_method_2
from appliance.openvpn.peernames import to_bytes

BASE = b"client\ndev tun\nremote 198.18.0.1 1194\nca ca.crt\n"


def test_the_auth_user_pass_file_keeps_a_latin1_username(tmp_path):
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "up").write_bytes(b"caf\xe9\nsecr\xe8t\n")
    (tmp_path / "c.ovpn").write_bytes(BASE + b"auth-user-pass up\n")
    user, pw = load_config(str(tmp_path / "c.ovpn")).auth_user_pass
    assert (to_bytes(user), to_bytes(pw)) == (b"caf\xe9", b"secr\xe8t")
    msg = encode_key_method_2(KeyMethod2(b"r" * 32, b"s" * 32, "V4", b"p" * 48, user, pw), True)
    assert b"\x00\x05caf\xe9\x00" in msg          # the bytes of the file, NUL-terminated, as OpenVPN sends them
    km = decode_key_method_2_untrusted(msg, True)
    assert (km.username, km.password) == (user, pw)


@pytest.mark.parametrize("name", [b"Soci\xe9t\xe9", "Soci\ufffdt\ufffd".encode()])
def test_verify_x509_name_that_is_not_utf8_is_refused_with_its_line(tmp_path, name):
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "c.ovpn").write_bytes(BASE + b"verify-x509-name " + name + b" name\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "c.ovpn"))
    assert "c.ovpn:5" in str(e.value) and "not UTF-8" in str(e.value)


def test_verify_x509_name_in_utf8_is_taken(tmp_path):
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "c.ovpn").write_bytes(BASE + "verify-x509-name Société name\n".encode())
    assert load_config(str(tmp_path / "c.ovpn")).verify_x509_name == ("Société", "name")


@pytest.mark.parametrize("lines", [b"u" * 4096 + b"\nsecret\n", b"alice\n" + b"p" * 4096 + b"\n"])
def test_a_username_or_password_longer_than_openvpn_reads_is_refused_with_its_line(tmp_path, lines):
    """OpenVPN 2.6 reads 4095 bytes of a line of this file (USER_PASS_LEN): a longer username's
    rest became its password, a longer password was cut. Ours sent the whole; refused here."""
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "up").write_bytes(lines)
    (tmp_path / "c.ovpn").write_bytes(BASE + b"auth-user-pass up\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "c.ovpn"))
    assert "c.ovpn:5" in str(e.value) and "longer than 4095 bytes" in str(e.value)
    (tmp_path / "up").write_bytes(b"u" * 4095 + b"\n" + b"p" * 4095 + b"\n")
    assert load_config(str(tmp_path / "c.ovpn")).auth_user_pass == ("u" * 4095, "p" * 4095)


def test_a_latin1_push_in_a_server_config_goes_out_as_its_bytes(tmp_path):
    """OpenVPN 2.6 pushes a config's bytes as they are: `caf\\xe9` reached clients as U+FFFD's bytes
    here. Every other directive reads bytes that are not UTF-8 as U+FFFD, as before (here a file
    name, at its line)."""
    from appliance.openvpn.keymethod import build_push_reply
    for n in ("ca.crt", "s.crt", "s.key"):
        (tmp_path / n).write_text("x")
    server = (b"port 1194\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\nca ca.crt\ncert s.crt\n"
              b"key s.key\ndh none\n# Caf\xe9 du coin\npush \"setenv-safe MOTD caf\xe9\"\n")
    (tmp_path / "s.conf").write_bytes(server)
    o = load_config(str(tmp_path / "s.conf"))
    assert b"setenv-safe MOTD caf\xe9" in to_bytes(build_push_reply(o.push)[0])
    (tmp_path / "s.conf").write_bytes(server + b"ca caf\xe9.crt\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "s.conf"))
    assert "s.conf:11: ca: cannot read caf\ufffd.crt" in str(e.value)
