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
    """Nothing of them is served by a server (hold, client-user, external key, a key passphrase
    asked of the management client...): refused at their line."""
    with pytest.raises(ConfigError) as ei:
        parse_config(SERVER + "management 198.18.5.1 7505 pw\n" + line + "\n", "/p/s.conf", _no_files)
    assert any(x.startswith(f"/p/s.conf:{LINE + 1}: ") for x in _errors(ei.value)), _errors(ei.value)


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


# ------------------------------------------------------------------ the appliance VM
TOML = ('[wan]\nname = "eth0"\n{wan}\n\n[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\n'
        'address6 = "fd18:50::1/64"\n\n[vpn]\nrole = "server"\ninline = """\n{profile}"""\n')
STATIC_WAN = 'address = "198.18.0.2/24"\ngateway = "198.18.0.1"'


def _toml(line: str, wan: str = STATIC_WAN) -> str:
    return TOML.format(wan=wan, profile=SERVER + line + "\n")


def _toml_line(text: str) -> int:
    return text.split('inline = """\n', 1)[0].count("\n") + 1 + LINE


@pytest.mark.parametrize("addr, side", [("198.18.50.1", "lan"), ("fd18:50::1", "lan"), ("198.18.0.2", "wan"),
                                        ("127.0.0.1", None)])
def test_a_server_vm_listens_on_the_interface_holding_the_address(addr, side):
    from appliance.config.mgmt_listen import management_side
    from appliance.config.schema import parse_appliance_config
    from appliance.run_toml import management_port
    cfg = parse_appliance_config(_toml(f"management {addr} 7505 /pw"), "/c/appliance.toml")
    assert management_side(cfg.wan, cfg.lan, cfg.vpn_options.management) == side
    assert management_port(cfg, "wan0", "lan0") == (None if side is None else (f"{side}0", 7505))


@pytest.mark.parametrize("addr, wan, why", [
    ("0.0.0.0", STATIC_WAN, "would listen on the WAN, the LAN and the tunnel at once"),
    ("::", STATIC_WAN, "would listen on the WAN, the LAN and the tunnel at once"),
    ("198.18.50.9", STATIC_WAN, "is no address of this appliance ([wan] address 198.18.0.2, [lan] address 198.18.50.1"),
    ("198.18.0.2", "dhcp = true", "a DHCP or SLAAC address"),
])
def test_a_server_vm_refuses_an_address_it_cannot_place_at_the_profiles_line(addr, wan, why):
    from appliance.config.schema import parse_appliance_config
    text = _toml(f"management {addr} 7505 /pw", wan)
    with pytest.raises(ConfigError) as ei:
        parse_appliance_config(text, "/c/appliance.toml")
    errs = _errors(ei.value)
    assert any(e.startswith(f"/c/appliance.toml:{_toml_line(text)}: management: ") and why in e for e in errs), errs


def test_the_firewall_opens_the_management_port_on_its_interface_only():
    from appliance.router.killswitch import render_router
    t = render_router("eth0", "tun0", "eth1", True, "server", (), (1194, "udp"), False, ["198.18.50.0/24"],
                      management=("eth1", 7505))
    chain = t.split("chain input {\n", 1)[1].split("\n\t}", 1)[0].splitlines()
    assert [ln.strip() for ln in chain[1:]] == [
        'iifname != "eth1" tcp dport 7505 counter drop comment "the management port only on eth1"']
    assert "chain input" not in render_router("eth0", "tun0", "eth1", True, "server", (), (1194, "udp"), False,
                                              ["198.18.50.0/24"])


def test_the_password_file_travels_in_the_bundle(tmp_path):
    """Relative or absolute in the profile, the password file is carried as key material and
    the rewritten line names it where the VM finds it (appliance/config/bundle.py)."""
    from lab.pki import make_pki
    from appliance.config.bundle import collect, write_dir
    from appliance.config.schema import load_appliance_config
    pki = make_pki(tmp_path / "pki", [])
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret/mgmt-pw").write_text("s3cret\n")
    (conf / "pw.txt").write_text("rel-pw\n")
    for line, want in ((f"management 198.18.50.1 7505 {tmp_path}/secret/mgmt-pw", b"s3cret\n"),
                       ("management 198.18.50.1 7505 pw.txt", b"rel-pw\n")):
        (conf / "server.ovpn").write_text(
            "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\ndh none\n"
            f"ca {pki.ca}\ncert {pki.server_cert}\nkey {pki.server_key}\n{line}\n")
        (conf / "appliance.toml").write_text(_toml("").split("[vpn]")[0] + '[vpn]\nrole = "server"\nconfig = "server.ovpn"\n')
        b = collect(conf / "appliance.toml")
        target = tmp_path / f"etc{len(want)}"
        write_dir(b, target)
        o = load_appliance_config(str(target / "appliance.toml")).vpn_options
        assert o.management[:2] == ("198.18.50.1", 7505)
        assert o.management[2].startswith(str(target)) and open(o.management[2], "rb").read() == want
