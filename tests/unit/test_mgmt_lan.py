"""The management interface off localhost: which `management` lines a server config takes
(any address literal, with a password file off loopback; refused with file:line otherwise), and
the throttle of wrong passwords across connections (gateway/mgmt_throttle.py) on a fake clock."""
from __future__ import annotations

import pytest

from appliance.gateway import mgmt_throttle as mt
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError

SERVER = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\ndev tun\ndh none\n"
          "<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n")
LINE = SERVER.count("\n") + 1


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


def _errors(exc: ConfigError) -> list[str]:
    return [str(e) for e in getattr(exc, "errors", [exc])]


@pytest.mark.parametrize("line, want", [
    ("management 127.0.0.1 7505", ("127.0.0.1", 7505, None)),
    ("management localhost 7505", ("127.0.0.1", 7505, None)),
    ("management ::1 7505", ("::1", 7505, None)),
    ("management 198.18.5.1 7505 pw.txt", ("198.18.5.1", 7505, "/p/pw.txt")),
    ("management 0.0.0.0 7505 /etc/openvpn/pw", ("0.0.0.0", 7505, "/etc/openvpn/pw")),
    ("management :: 7505 pw", ("::", 7505, "/p/pw")),
    ("management 2001:DB8::1 7505 pw", ("2001:db8::1", 7505, "/p/pw")),
    ("management 127.0.0.1 7505 pw", ("127.0.0.1", 7505, "/p/pw")),
])
def test_any_address_literal_is_taken_with_a_password_file_off_loopback(line, want):
    o = parse_config(SERVER + line + "\n", "/p/s.conf", _no_files)
    assert o.management == want


@pytest.mark.parametrize("line, why", [
    ("management 198.18.5.1 7505", "needs a password file"),
    ("management 0.0.0.0 7505", "needs a password file"),
    ("management :: 7505", "needs a password file"),
    ("management vpn.example.org 7505 pw", "not an IPv4 or IPv6 address"),
    ("management fe80::1%eth0 7505 pw", "not an IPv4 or IPv6 address"),
    ("management 198.18.5.1 0 pw", ""),
    ("management 198.18.5.1 7505 stdin", "stdin is not supported"),
])
def test_refused_at_its_line_with_the_reason(line, why):
    """Off loopback without a password anyone reaching the port could kill clients and stop the
    server: OpenVPN 2.6 only warns, we refuse (a security directive is enforced or refused)."""
    with pytest.raises(ConfigError) as ei:
        parse_config(SERVER + line + "\n", "/p/s.conf", _no_files)
    errs = _errors(ei.value)
    assert any(e.startswith(f"/p/s.conf:{LINE}: management: ") and why in e for e in errs), errs
    if "password file" in why:
        assert any("OpenVPN only warns" in e for e in errs), errs


@pytest.mark.parametrize("line", ["management-hold", "management-client-user nobody", "management-external-key",
                                  "management-client", "management-query-passwords"])
def test_other_management_directives_stay_refused_or_noted(line):
    """Nothing of them is served (hold, client-user, external key...): refused at their line, as
    before; management-query-passwords is a client's and only noted."""
    try:
        o = parse_config(SERVER + "management 198.18.5.1 7505 pw\n" + line + "\n", "/p/s.conf", _no_files)
    except ConfigError as e:
        assert any(x.startswith(f"/p/s.conf:{LINE + 1}: ") for x in _errors(e)), _errors(e)
    else:
        assert line == "management-query-passwords" and o.management[0] == "198.18.5.1"


# ------------------------------------------------------------------ the throttle
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _throttle():
    clock, logged = Clock(), []
    return mt.LoginThrottle(clock, logged.append), clock, logged


def test_one_source_is_blocked_after_its_burst_and_let_in_again_by_the_refill():
    th, clock, _ = _throttle()
    for _ in range(mt.SOURCE_BURST):
        assert th.may_try("198.18.7.2")
        th.failed("198.18.7.2")
    assert not th.may_try("198.18.7.2")
    assert th.may_try("198.18.7.3"), "another source still gets in"
    clock.t += mt.SOURCE_REFILL - 0.5
    assert not th.may_try("198.18.7.2")
    clock.t += 1
    assert th.may_try("198.18.7.2")
    th.failed("198.18.7.2")
    assert not th.may_try("198.18.7.2"), "after the burst, one try per refill period"


def test_an_ipv6_source_is_its_64_and_a_mapped_ipv4_its_address():
    th, _, _ = _throttle()
    for i in range(mt.SOURCE_BURST):
        th.failed(f"2001:db8:1:2::{i + 1:x}")
    assert not th.may_try("2001:db8:1:2:ffff::9"), "rotating through a /64 is one source"
    assert th.may_try("2001:db8:1:3::1")
    for _ in range(mt.SOURCE_BURST):
        th.failed("::ffff:198.18.7.9")
    assert not th.may_try("198.18.7.9")


def test_many_sources_together_are_held_to_the_global_rate_but_a_trusted_one_gets_in():
    th, clock, _ = _throttle()
    th.succeeded("198.18.99.1")                   # the operator's monitor, earlier
    n = 0
    for i in range(1000):                        # a botnet: a few guesses from each of many sources
        src = f"198.18.{8 + i // 250}.{i % 250 + 1}"
        if th.may_try(src):
            th.failed(src)
            n += 1
    assert n == mt.GLOBAL_BURST
    assert not th.may_try("198.18.20.20"), "a new source is refused while the global bucket is empty"
    assert th.may_try("198.18.99.1"), "a source that authenticated recently is not locked out"
    clock.t += 10
    tried = 0
    for i in range(100):
        src = f"198.18.30.{i + 1}"
        if th.may_try(src):
            th.failed(src)
            tried += 1
    assert tried == int(10 * mt.GLOBAL_RATE)


def test_the_source_table_is_bounded():
    th, _, _ = _throttle()
    for i in range(mt.MAX_SOURCES * 3):
        th.failed(f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1")
        th.succeeded(f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1")
    assert len(th.sources) == mt.MAX_SOURCES and len(th.trusted) == mt.MAX_SOURCES


def test_refused_connections_are_logged_at_most_every_few_seconds_with_a_count():
    th, clock, logged = _throttle()
    for _ in range(500):
        th.refused_connection("198.18.7.2")
        clock.t += 0.01
    assert len(logged) == 1 and "1 connection(s) closed at once (last from 198.18.7.2" in logged[0]
    clock.t += mt.LOG_EVERY
    th.refused_connection("198.18.7.4")
    assert len(logged) == 2 and logged[1].startswith("management: 500 connection(s)")
