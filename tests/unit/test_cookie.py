"""CookieJar: the 2.6-style stateless server session id."""
from appliance.openvpn.cookie import CookieJar

ADDR = ("198.18.0.2", 40000)
CSID = bytes.fromhex("0102030405060708")


def test_session_id_is_8_bytes_and_deterministic():
    jar = CookieJar(b"k" * 32, hand_window=60)
    a = jar.session_id(ADDR, CSID, 1000.0)
    assert len(a) == 8
    assert a == jar.session_id(ADDR, CSID, 1000.0)
    assert a == CookieJar(b"k" * 32).session_id(ADDR, CSID, 1000.0)   # the secret is the only state


def test_depends_on_secret_address_client_sid_and_slot():
    jar = CookieJar(b"k" * 32, hand_window=60)
    a = jar.session_id(ADDR, CSID, 1000.0)
    assert a != CookieJar(b"j" * 32).session_id(ADDR, CSID, 1000.0)
    assert a != jar.session_id(("198.18.0.2", 40001), CSID, 1000.0)
    assert a != jar.session_id(("198.18.0.3", 40000), CSID, 1000.0)
    assert a != jar.session_id(ADDR, bytes(8), 1000.0)
    assert a != jar.session_id(ADDR, CSID, 1000.0 + 30)       # next 30-second slot


def test_valid_for_current_and_two_previous_slots():
    jar = CookieJar(b"s" * 32, hand_window=60)                  # slot = 30 s
    t0 = 900.0                                                   # start of a slot
    sid = jar.session_id(ADDR, CSID, t0)
    assert jar.valid(ADDR, CSID, sid, t0)
    assert jar.valid(ADDR, CSID, sid, t0 + 29.9)
    assert jar.valid(ADDR, CSID, sid, t0 + 30)
    assert jar.valid(ADDR, CSID, sid, t0 + 89.9)               # so at least hand-window seconds
    assert not jar.valid(ADDR, CSID, sid, t0 + 90)
    assert not jar.valid(ADDR, CSID, sid, t0 - 30)             # a cookie from the future


def test_invalid_for_other_client_or_forged_ids():
    jar = CookieJar(hand_window=60)
    sid = jar.session_id(ADDR, CSID, 100.0)
    assert not jar.valid(("198.18.0.9", 40000), CSID, sid, 100.0)
    assert not jar.valid(ADDR, b"\x00" * 8, sid, 100.0)
    assert not jar.valid(ADDR, CSID, bytes(8), 100.0)
    assert not jar.valid(ADDR, CSID, sid[:7], 100.0)
    assert not jar.valid(ADDR, CSID, sid + b"\x00", 100.0)
    flipped = bytes([sid[0] ^ 1]) + sid[1:]
    assert not jar.valid(ADDR, CSID, flipped, 100.0)


def test_random_secret_differs_between_jars():
    assert CookieJar().session_id(ADDR, CSID, 5.0) != CookieJar().session_id(ADDR, CSID, 5.0)


def test_short_hand_window_still_works():
    jar = CookieJar(b"x" * 16, hand_window=1)
    sid = jar.session_id(ADDR, CSID, 10.0)
    assert jar.valid(ADDR, CSID, sid, 11.5)
    assert not jar.valid(ADDR, CSID, sid, 13.0)


def test_a_wrong_cookie_costs_one_mac_at_most(monkeypatch):
    """Wrong cookies cost no state, and anybody with the tls-auth/tls-crypt key can send
    them from any address; each cost three HMACs (~35 us, ~60% of the server's work on such a
    packet). The cookie names its slot in two bits now, so a check computes one MAC."""
    from appliance.openvpn import mac
    jar = CookieJar(b"m" * 32, hand_window=60)
    calls = []
    real = mac.KeyedMac.digest
    monkeypatch.setattr(mac.KeyedMac, "digest", lambda self, msg: calls.append(1) or real(self, msg))
    for first in range(4):                   # every value of the slot bits
        assert not jar.valid(ADDR, CSID, bytes((first,)) + bytes(7), 1000.0)
    assert len(calls) <= 3
    good = jar.session_id(ADDR, CSID, 1000.0)
    calls.clear()
    assert jar.valid(ADDR, CSID, good, 1030.0) and len(calls) == 1
