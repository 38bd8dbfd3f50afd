"""KeyedMac (keyed once, copied per message) gives exactly the HMAC `hmac.digest` gives, for the
digests tls-auth, CBC data channels and cookies use, message after message."""
from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.openvpn.mac import KeyedMac


@pytest.mark.parametrize("name", ["SHA1", "sha224", "SHA256", "sha-384", "SHA512", "md5", "sha3_256"])
@settings(max_examples=25, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), msgs=st.lists(st.binary(max_size=3000), min_size=1, max_size=4))
def test_same_as_hmac_digest_for_every_message(name, key, msgs):
    m = KeyedMac(key, name)
    std = name.lower().replace("-", "")
    for msg in msgs:
        assert m.digest(msg) == hmac.digest(key, msg, std)
    assert m.size == len(m.digest(b""))


def test_an_unknown_digest_is_refused_when_made():
    with pytest.raises(ValueError):
        KeyedMac(b"k" * 32, "no-such-digest")
