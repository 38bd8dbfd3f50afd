"""Password file for auth-user-pass-verify (no scripts): format errors and verification."""
import pytest

from appliance.openvpn.errors import ConfigError
from appliance.openvpn.passdb import PasswordDb, hash_password


def test_verify_right_and_wrong_passwords():
    db = PasswordDb.parse(f"# users\nalice:{hash_password('s3cret', n=2**10)}\n")
    assert db.verify("alice", "s3cret")
    assert not db.verify("alice", "s3cret ")
    assert not db.verify("bob", "s3cret")


def test_bad_line_names_file_and_line():
    with pytest.raises(ConfigError) as e:
        PasswordDb.parse("alice:plaintext\n", "users.db")
    assert str(e.value).startswith("users.db:1: auth-user-pass-verify:")


@pytest.mark.parametrize("control", ["\t", "\x01", "\x7f", "\x1f", "\r"])
def test_a_password_with_a_control_character_lets_in_what_openvpn_26s_client_sends(control):
    """OpenVPN 2.6's client drops control characters (tab, 0x01-0x1F, DEL) from the password it
    sends (misc.c string_mod CC_PRINT, CC_CRLF, 0): a password made with a tab here, hashed as
    typed, never let Debian's client in. It counts without them now, from any client."""
    typed = f"pa{control}ss"
    db = PasswordDb.parse(f"alice:{hash_password(typed, n=2**10)}\n")
    assert db.verify("alice", "pass"), "what Debian's OpenVPN 2.6 client sends was refused"
    assert db.verify("alice", f"pa{control}ss"), "a client that sends the character as typed was refused"
    assert not db.verify("alice", "pa_ss") and not db.verify("alice", "pa ss")
    # Characters from U+0080 on are no control characters to OpenVPN (UTF-8 bytes): they count.
    c1 = "pa\u0085ss"
    db = PasswordDb.parse(f"alice:{hash_password(c1, n=2**10)}\n")
    assert db.verify("alice", "pa\u0085ss") and not db.verify("alice", "pass")


def test_passwd_says_what_it_does_with_control_characters(monkeypatch, capsys):
    import io
    import types

    from appliance import cli
    monkeypatch.setattr("sys.stdin", io.StringIO("pa\tss\x7f\n"))
    assert cli.cmd_passwd(types.SimpleNamespace(user="alice")) == 0
    out, err = capsys.readouterr()
    assert "(DEL, tab)" in err and "client drops before sending" in err and "other 4 characters" in err
    assert PasswordDb.parse(out).verify("alice", "pass")
    monkeypatch.setattr("sys.stdin", io.StringIO("\t\n"))
    assert cli.cmd_passwd(types.SimpleNamespace(user="alice")) == 2
    assert "nothing would be left" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert cli.cmd_passwd(types.SimpleNamespace(user="al\tice")) == 2
    assert "control characters" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["\u2028alice", "\x85alice", "\x0calice", " alice", "\u00a0alice", "alice\u3000"])
def test_a_name_passwd_accepted_is_never_read_as_another_users_line(name, monkeypatch, capsys):
    """`passwd` made a line for `\\u2028alice` (or ` alice`); the file's reader split lines at
    U+2028 (str.splitlines) and stripped U+00A0: the line became alice's and replaced hers, so
    that user's password let them in as alice and hers no longer did. Now either `passwd`
    refuses the name, or its line is its own."""
    import io
    import types

    from appliance import cli
    monkeypatch.setattr("sys.stdin", io.StringIO("mine\n"))
    rc = cli.cmd_passwd(types.SimpleNamespace(user=name))
    line = capsys.readouterr().out
    if rc == 0:
        db = PasswordDb.parse(f"alice:{hash_password('hers', n=2**10)}\n" + line)
        assert db.verify("alice", "hers") and not db.verify("alice", "mine")
        assert db.verify(name, "mine")
    else:
        assert rc == 2 and line == ""
    # Written by hand, such a line is refused with its line number rather than read as alice's.
    text = f"alice:{hash_password('hers', n=2**10)}\n{name}:{hash_password('mine', n=2**10)}\n"
    try:
        db = PasswordDb.parse(text, "users.db")
    except ConfigError as e:
        assert str(e).startswith("users.db:2:")
    else:
        assert db.verify("alice", "hers") and not db.verify("alice", "mine")


def test_a_username_given_twice_is_refused_with_both_lines():
    h = hash_password("x", n=2**10)
    with pytest.raises(ConfigError) as e:
        PasswordDb.parse(f"alice:{h}\n# c\nalice:{h}\n", "users.db")
    assert str(e.value).startswith("users.db:3:") and "line 1" in str(e.value)


def test_crlf_lines_and_blanks_around_the_hash_are_read():
    h = hash_password("x", n=2**10)
    assert PasswordDb.parse(f"  # c\r\nalice:{h} \r\n\r\n").verify("alice", "x")


def test_passwd_makes_the_line_of_a_latin1_username_and_password():
    """A username and password that are not UTF-8 (argv and stdin bytes) get the line the server
    checks them against, as bytes: passwd failed on them (stdin decode, stdout encode) where the
    locale is a real UTF-8 one (Python's stdio is strict there; under C.UTF-8 it is not)."""
    import os
    import subprocess
    import sys

    from appliance.openvpn.peernames import from_peer
    exe = os.path.join(os.path.dirname(sys.executable), "vpn-appliance")
    r = subprocess.run([exe, "passwd", b"caf\xe9"], input=b"secr\xe8t\n", capture_output=True, timeout=60,
                       env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})   # as under en_US.UTF-8
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"caf\xe9:scrypt$")
    db = PasswordDb.parse(from_peer(r.stdout))
    assert db.verify(from_peer(b"caf\xe9"), from_peer(b"secr\xe8t"))
    assert not db.verify(from_peer(b"caf\xe9"), "secr\ufffdt") and not db.verify("caf\ufffd", from_peer(b"secr\xe8t"))
