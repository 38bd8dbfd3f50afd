"""`vpn-appliance genkey` (appliance/genkey.py): every type reads back through the parser that
uses it, a client key unwraps with its server key to the metadata asked for, the bounds and
refusals are 2.6's, and a file is written 0600 and never through a planted link."""
from __future__ import annotations

import base64
import os
import stat
import struct

import pytest

from appliance import cli, genkey
from appliance.openvpn import gentoken, keyfiles


def test_each_type_reads_back_through_its_parser():
    for kind in ("secret", "tls-auth", "tls-crypt"):
        assert len(keyfiles.parse_static_key(genkey.make(kind))) == keyfiles.STATIC_KEY_LEN
    server_text = genkey.make("tls-crypt-v2-server")
    server = keyfiles.parse_tls_crypt_v2_server_key(server_text)
    assert gentoken.parse_secret(genkey.make("auth-token"))     # the HMAC key taken from its 128 bytes
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(
        genkey.make("tls-crypt-v2-client", server_text, base64.b64encode(b"dept=7").decode()))
    assert keyfiles.unwrap_client_key_untrusted(wkc, server) == (kc, keyfiles.METADATA_TYPE_USER, b"dept=7")
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(genkey.make("tls-crypt-v2-client", server_text, now=1234567))
    assert keyfiles.unwrap_client_key_untrusted(wkc, server) == \
        (kc, keyfiles.METADATA_TYPE_TIMESTAMP, struct.pack("!q", 1234567))
    assert genkey.make("tls-crypt") != genkey.make("tls-crypt")     # fresh randomness each time


def test_metadata_bounds_and_refusals_as_openvpn():
    server_text = genkey.make("tls-crypt-v2-server")
    genkey.make("tls-crypt-v2-client", server_text, base64.b64encode(b"m" * 733).decode())
    with pytest.raises(genkey.GenkeyError, match="too long"):
        genkey.make("tls-crypt-v2-client", server_text, base64.b64encode(b"m" * 734).decode())
    with pytest.raises(genkey.GenkeyError, match="base64"):
        genkey.make("tls-crypt-v2-client", server_text, "***")
    with pytest.raises(genkey.GenkeyError, match="--tls-crypt-v2"):
        genkey.make("tls-crypt-v2-client")
    with pytest.raises(genkey.GenkeyError, match="--tls-crypt-v2"):
        genkey.make("tls-crypt-v2-client", genkey.make("tls-crypt"))     # a static key is no server key
    with pytest.raises(genkey.GenkeyError, match="unknown genkey type"):
        genkey.make("tls-crypt-v3")


def test_file_written_0600_replacing_and_never_through_a_planted_link(tmp_path):
    target, victim = tmp_path / "ta.key", tmp_path / "victim"
    victim.write_text("precious\n")
    target.write_text("old\n")
    os.chmod(target, 0o644)
    os.symlink(victim, f"{target}.tmp{os.getpid()}")      # the temporary name, planted
    out = genkey.run("tls-crypt", str(target), None, None)
    assert "2048 bit key written to" in out
    assert victim.read_text() == "precious\n"
    assert target.stat().st_mode & 0o777 == 0o600
    keyfiles.parse_static_key(target.read_text())


def test_the_command_line(tmp_path, capsys):
    assert cli.main(["genkey", "tls-crypt-v2-server"]) == 0
    server_text = capsys.readouterr().out
    keyfiles.parse_tls_crypt_v2_server_key(server_text)
    (tmp_path / "s.key").write_text(server_text)
    assert cli.main(["genkey", "tls-crypt-v2-client", str(tmp_path / "c.key"), base64.b64encode(b"x").decode(),
                     "--tls-crypt-v2", str(tmp_path / "s.key")]) == 0
    assert (tmp_path / "c.key").exists()
    assert cli.main(["genkey", "secret", str(tmp_path / "x.key"), "bWV0YQ=="]) == 2       # metadata: v2 clients only
    assert cli.main(["genkey", "tls-crypt-v2-client", str(tmp_path / "d.key"), "--tls-crypt-v2",
                     str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "takes no metadata" in err and "missing" in err and not (tmp_path / "d.key").exists()


@pytest.mark.parametrize("words", [
    ["--genkey", "secret", "{d}/tc.key"],                         # Nyr's openvpn-install
    ["--genkey", "--secret", "{d}/tc.key"],                       # 2.4-era installers (deprecated in 2.6)
    ["--genkey", "tls-crypt", "{d}/tc.key"],
    ["--genkey", "tls-crypt-v2-server", "{d}/tc.key"],
    ["--tls-crypt-v2", "{d}/s.key", "--genkey", "tls-crypt-v2-client", "{d}/tc.key"],   # 2.6's man page order
    ["--genkey", "tls-crypt-v2-client", "{d}/tc.key", "bWV0YQ==", "--tls-crypt-v2", "{d}/s.key"],
])
def test_openvpn_s_own_genkey_words_work_as_there(tmp_path, capsys, words):
    (tmp_path / "s.key").write_text(genkey.make("tls-crypt-v2-server"))
    assert cli.main([w.format(d=tmp_path) for w in words]) == 0
    assert capsys.readouterr().out == ""       # as 2.6: `KEY=$(openvpn --genkey secret /dev/stdout)` gets the key alone
    text = (tmp_path / "tc.key").read_text()
    kind = next((w for w in words[words.index("--genkey") + 1:] if not w.startswith("--")), "secret")
    if kind.startswith("tls-crypt-v2"):
        assert f"BEGIN OpenVPN {kind.replace('-server', ' server').replace('-client', ' client')} key" in text
    else:
        keyfiles.parse_static_key(text)


def test_openvpn_s_genkey_refusals(tmp_path, capsys):
    assert cli.main(["--genkey", "tls-crypt", str(tmp_path / "a"), "--secret", str(tmp_path / "b")]) == 2
    assert cli.main(["--genkey", "secret", "--config", "x.conf"]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert "not supported" in capsys.readouterr().err
    assert cli.main(["--version"]) == 0 and "vpn-appliance" in capsys.readouterr().out


def test_a_device_fifo_or_dev_stdout_is_written_into_not_replaced(tmp_path):
    """`openvpn --genkey secret /dev/stdout` (scripts capture the key so), a FIFO a script reads: 2.6
    writes into them; replacing them with a regular file -- as root, /dev/stdout or /dev/null -- broke
    the host until reboot."""
    r, w = os.pipe()
    try:
        stdout_like = tmp_path / "stdout"
        os.symlink(f"/proc/self/fd/{w}", stdout_like)          # what /dev/stdout is
        genkey.run("secret", str(stdout_like), None, None)
        assert stdout_like.is_symlink()
        os.close(w)
        w = -1
        keyfiles.parse_static_key(os.read(r, 4096).decode())
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(genkey.GenkeyError, match="could not write key file"):
        genkey.run("secret", str(fifo), None, None)           # no reader: an error at once, no hang
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        genkey.run("tls-crypt", str(fifo), None, None)
        keyfiles.parse_static_key(os.read(reader, 4096).decode())
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    devnull_like = tmp_path / "null"
    os.symlink(os.devnull, devnull_like)
    genkey.run("secret", str(devnull_like), None, None)
    assert stat.S_ISCHR(os.stat(devnull_like).st_mode) and devnull_like.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the FIFO and link to another user")
def test_another_user_s_fifo_or_link_at_file_never_gets_the_key(tmp_path):
    """A FIFO (or a link to one) another user planted where the key goes would hand them the key."""
    theirs = tmp_path / "theirs"
    os.mkfifo(theirs)
    reader = os.open(theirs, os.O_RDONLY | os.O_NONBLOCK)
    try:
        link = tmp_path / "ta.key"
        os.symlink(theirs, link)
        for planted in (theirs, link):
            os.lchown(planted, 65534, 65534)
            with pytest.raises(genkey.GenkeyError, match="of another user's"):
                genkey.run("tls-crypt", str(planted), None, None)
        assert os.read(reader, 4096) == b""           # nothing was written into it
    finally:
        os.close(reader)
