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
