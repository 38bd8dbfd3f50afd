"""Host DNS (appliance/host/): what the server pushed, turned into resolv.conf / resolved settings,
applied and restored exactly. Pure tests on temporary files; the real run against Debian's
OpenVPN server is tests/interop/test_host_dns.py."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from appliance.gateway.observers import TunnelState
from appliance.host import resolv_conf as rc_mod
from appliance.host.dns_settings import DnsSettings, from_pushed
from appliance.host.resolv_conf import MARKER, ResolvConf
from appliance.host.resolved import Resolved, commands, resolved_running
from appliance.host.resolver import HostDns
from appliance.openvpn.keymethod import PushedOptions

ORIGINAL = b"# my resolver\nnameserver 198.18.7.53\nsearch home.example\noptions edns0 ndots:2\n"


def pushed(dns=("198.18.100.53",), opts=(("DOMAIN", "vpn.example"),), redirect=None, search=None) -> PushedOptions:
    p = PushedOptions(dns=list(dns), dhcp_options=[("DNS", d) for d in dns] + list(opts), redirect_gateway=redirect)
    if search is not None:
        p.search_domains = list(search)      # the 2.6 `dns search-domains` form (dns helper's field)
    return p


# ------------------------------------------------------------------ what was pushed
def test_settings_from_both_forms_in_order_without_duplicates():
    p = pushed(dns=("198.18.100.53", "2001:db8::53", "198.18.100.53"),
               opts=(("DOMAIN", "vpn.example"), ("DOMAIN-SEARCH", "corp.example"), ("DOMAIN-ROUTE", "lab.example")),
               search=["svc.example", "vpn.example"])
    s = from_pushed(p)
    assert s.servers == ("198.18.100.53", "2001:db8::53")
    assert s.search == ("vpn.example", "corp.example", "svc.example")
    assert s.routing == ("lab.example",)
    assert not s.default_route


def test_pushed_dns_servers_not_through_the_tunnel_are_not_given_to_the_host():
    """The LAN's rule (lan/pushed_dns.py) for the host's own resolver too: a hostile server's
    `dhcp-option DNS 224.0.0.251` (or ff02::fb, a broadcast) sent every name the host looked up to
    its whole local network in clear; loopback or the tunnel's own address to whatever listens
    here. Left out, and said so; a real server stays."""
    bad = ("224.0.0.251", "ff02::fb", "255.255.255.255", "127.0.0.53", "::1", "198.19.0.2")
    p = pushed(dns=(*bad, "198.18.100.53"))
    p.ifconfig = ("198.19.0.2", "255.255.255.0")
    s = from_pushed(p)
    assert s.servers == ("198.18.100.53",)
    assert [r.split()[0] for r in s.refused] == list(bad)


def test_a_hostile_push_cannot_inject_resolv_conf_lines_or_grow_without_bound():
    p = pushed(dns=["198.18.100.53\nnameserver 203.0.113.9", "not-an-address"] + [f"198.18.9.{i}" for i in range(50)],
               opts=[("DOMAIN", "x.example\nnameserver 203.0.113.9"), ("DOMAIN", "-bad-.example"), ("DOMAIN", ".")]
               + [("DOMAIN-SEARCH", f"d{i}.example") for i in range(100)])
    s = from_pushed(p)
    assert "203.0.113.9" not in " ".join(s.servers) and len(s.servers) <= 8
    assert all("\n" not in d and " " not in d for d in s.search) and len(s.search) <= 32
    assert s.search[0] == "d0.example"


@pytest.mark.parametrize("pushed_rg, local_rg, want", [
    (["def1"], None, True), (None, ["def1", "bypass-dhcp"], True), (None, None, False),
    (["!ipv4"], None, False), (["!ipv4", "ipv6"], None, True),
    # review46d: the pushed line adds to the profile's, as the routes take them (2.6 ORs them):
    # the profile's IPv6 redirect stays under a pushed `!ipv4`, so the tunnel's DNS is the default
    (["!ipv4"], ["def1", "ipv6"], True), (["bypass-dns"], ["!ipv4"], True)])
def test_default_route_follows_redirect_gateway(pushed_rg, local_rg, want):
    assert from_pushed(pushed(redirect=pushed_rg), local_rg).default_route is want



def _profile(lines: str):
    from appliance.openvpn.config import parse_config
    return parse_config(f"client\ndev tun\nremote 198.18.60.9\n<ca>\n</ca>\n{lines}", "/mem/p.ovpn",
                        read_file=lambda p: b"")


@pytest.mark.parametrize("profile, want", [
    # review47d: the profile's lines in their order, as the routes fold them (compat47): here all
    # IPv6 goes into the tunnel (redirect-gateway's `ipv6`), so its DNS is the default; read as
    # "redirect-gateway's line, then redirect-private's" this was redirect-private's, no default
    ("redirect-private\nredirect-gateway def1 ipv6 !ipv4\n", True),
    # redirect-private's on IPv4; `ipv6` is a flag of its own that no line takes back (2.6)
    ("redirect-gateway def1 ipv6 !ipv4\nredirect-private\n", True),
    ("redirect-gateway def1 !ipv4\nredirect-private\n", False),
    ("redirect-private ipv6\n", True),           # IPv6 redirected, as the routes do it
    ("redirect-private local\n", False),         # nothing redirected
])
def test_default_route_reads_the_profile_lines_in_order_as_the_routes(profile, want):
    o = _profile(profile)
    s = from_pushed(pushed(), o.redirect_gateway, o.redirect_private, o.redirect_lines)
    assert s.default_route is want
    from appliance.openvpn.profile_push import redirect_in_effect
    rg, rp = redirect_in_effect(o, pushed())        # what the tunnel's routes are made from
    redirected6 = any(f is not None and "ipv6" in f for f in (rg, rp))
    redirected4 = rg is not None and "!ipv4" not in rg
    assert (redirected4 or redirected6) is want


def test_run_dns_observer_passes_the_profile_lines_in_order(fake_resolvectl):
    o = _profile("redirect-private\nredirect-gateway def1 ipv6 !ipv4\n")
    dns = HostDns(o.redirect_gateway, backend=Resolved, threaded=False, redirect_private=o.redirect_private,
                  redirect_lines=o.redirect_lines)
    dns.attach(None, lambda: None)
    dns.tunnel_changed(TunnelState(True, "198.18.0.1:1194/udp", "tun3", pushed()))
    dns.close()
    assert "default-route tun3 yes" in fake_resolvectl.read_text().splitlines()


# ------------------------------------------------------------------ /etc/resolv.conf
@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_bytes(ORIGINAL)
    os.chmod(path, 0o640)
    return path


def _settings(**kw) -> DnsSettings:
    return from_pushed(pushed(**kw))


def test_resolv_conf_while_up_and_exact_restore(conf):
    r = ResolvConf(str(conf))
    r.apply(_settings(opts=(("DOMAIN", "vpn.example"), ("DOMAIN-SEARCH", "corp.example"))), "tun7")
    text = conf.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["nameserver 198.18.100.53", "search vpn.example corp.example", "options edns0 ndots:2"]
    assert text.splitlines()[0] == MARKER and "tun7" in text
    assert oct(os.stat(conf).st_mode & 0o777) == oct(0o640)
    r.restore()
    assert conf.read_bytes() == ORIGINAL
    assert os.stat(conf).st_mode & 0o777 == 0o640


def test_original_without_final_newline_and_with_odd_bytes_comes_back_byte_for_byte(conf):
    odd = b"nameserver 198.18.7.53\n; \xff\xfe latin-1 \xe9\r\nsearch a.example"
    conf.write_bytes(odd)
    r = ResolvConf(str(conf))
    r.apply(_settings(), "tun0")
    r.restore()
    assert conf.read_bytes() == odd


def test_symlinked_resolv_conf_gets_its_symlink_back(tmp_path):
    target = tmp_path / "stub-resolv.conf"
    target.write_bytes(ORIGINAL)
    link = tmp_path / "resolv.conf"
    link.symlink_to("stub-resolv.conf")
    r = ResolvConf(str(link))
    r.apply(_settings(), "tun0")
    assert not link.is_symlink() and "nameserver 198.18.100.53" in link.read_text()
    assert target.read_bytes() == ORIGINAL, "the file the link pointed to is not ours to change"
    r.restore()
    assert link.is_symlink() and os.readlink(link) == "stub-resolv.conf"
    assert target.read_bytes() == ORIGINAL


def test_missing_resolv_conf_is_missing_again_afterwards(tmp_path):
    path = tmp_path / "resolv.conf"
    r = ResolvConf(str(path))
    r.apply(_settings(), "tun0")
    assert "198.18.100.53" in path.read_text()
    r.restore()
    assert not path.exists() and not path.is_symlink()


def test_a_run_that_died_is_repaired_at_the_next_start(conf):
    ResolvConf(str(conf)).apply(_settings(), "tun0")      # the process "dies" here: no restore
    # The marker names our own pid; a new process would have another: pretend to be it.
    text = conf.read_text().replace(f"(pid {os.getpid()})", "(pid 999999999)")
    conf.write_text(text)
    assert ResolvConf(str(conf)).recover() is True
    assert conf.read_bytes() == ORIGINAL
    assert ResolvConf(str(conf)).recover() is False      # nothing of ours left


def test_a_running_instance_keeps_its_file(conf):
    other = subprocess.Popen(["sh", "-c", "sleep 30", "vpn-appliance"])
    try:
        ResolvConf(str(conf)).apply(_settings(), "tun0")
        conf.write_text(conf.read_text().replace(f"(pid {os.getpid()})", f"(pid {other.pid})"))
        before = conf.read_bytes()
        assert ResolvConf(str(conf)).recover() is False
        assert conf.read_bytes() == before
    finally:
        other.kill()
        other.wait()


def test_a_file_rewritten_by_someone_else_is_left_alone(conf):
    r = ResolvConf(str(conf))
    r.apply(_settings(), "tun0")
    conf.write_bytes(b"nameserver 198.18.8.8\n")            # NetworkManager, DHCP client, the admin...
    r.restore()
    assert conf.read_bytes() == b"nameserver 198.18.8.8\n"


def test_rename_refused_with_ebusy_writes_in_place(conf, monkeypatch):
    """What a bind-mounted resolv.conf does (containers, `ip netns exec`): rename over it fails."""
    ino = os.stat(conf).st_ino

    def busy(src, dst):
        raise OSError(16, "Device or resource busy")
    monkeypatch.setattr(rc_mod.os, "rename", busy)
    r = ResolvConf(str(conf))
    r.apply(_settings(), "tun0")
    assert "198.18.100.53" in conf.read_text() and os.stat(conf).st_ino == ino
    r.restore()
    assert conf.read_bytes() == ORIGINAL and os.stat(conf).st_ino == ino
    assert sorted(p.name for p in conf.parent.iterdir()) == ["resolv.conf"], "no temporary file left"


def test_reapply_after_reconnect_keeps_the_first_original(conf):
    r = ResolvConf(str(conf))
    r.apply(_settings(), "tun0")
    r.apply(_settings(dns=("198.18.100.54",)), "tun0")
    assert "198.18.100.54" in conf.read_text() and "198.18.100.53" not in conf.read_text()
    r.restore()
    assert conf.read_bytes() == ORIGINAL


# ------------------------------------------------------------------ systemd-resolved
def test_resolvectl_lines_for_a_full_tunnel():
    s = _settings(dns=("198.18.100.53", "2001:db8::53"), opts=(("DOMAIN", "vpn.example"),), redirect=["def1"])
    assert commands(s, "tun0") == [
        ["resolvectl", "dns", "tun0", "198.18.100.53", "2001:db8::53"],
        ["resolvectl", "domain", "tun0", "vpn.example", "~."],
        ["resolvectl", "default-route", "tun0", "yes"]]


def test_resolvectl_lines_for_a_split_tunnel():
    s = _settings(opts=(("DOMAIN-SEARCH", "corp.example"), ("DOMAIN-ROUTE", "lab.example")))
    assert commands(s, "tun1") == [
        ["resolvectl", "dns", "tun1", "198.18.100.53"],
        ["resolvectl", "domain", "tun1", "corp.example", "~lab.example"],
        ["resolvectl", "default-route", "tun1", "no"]]
    # servers without any domain: the link must stay a default route, or they would never be asked
    assert commands(_settings(opts=()), "tun1")[-1] == ["resolvectl", "default-route", "tun1", "yes"]


def test_resolved_detection(tmp_path, monkeypatch):
    calls = []
    ok = lambda argv: calls.append(list(argv)) or 0          # noqa: E731
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    assert resolved_running(ok, str(tmp_path / "absent")) is False and calls == []
    assert resolved_running(ok, str(tmp_path)) is True and calls == [["resolvectl", "status"]]
    assert resolved_running(lambda argv: 1, str(tmp_path)) is False    # installed, but not on the bus


@pytest.fixture
def fake_resolvectl(tmp_path, monkeypatch):
    """A `resolvectl` on PATH that records its command lines (resolved is not installed in CI)."""
    log = tmp_path / "calls"
    exe = tmp_path / "bin" / "resolvectl"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n[ \"$2\" != fail0 ]\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}:{os.environ['PATH']}")
    return log


def test_observer_with_resolved_runs_resolvectl_and_reverts(fake_resolvectl):
    dns = HostDns(None, backend=Resolved, threaded=False)
    dns.attach(None, lambda: None)
    dns.tunnel_changed(TunnelState(True, "198.18.0.1:1194/udp", "tun3", pushed(redirect=["def1"])))
    dns.tunnel_changed(TunnelState(False, tun_name="tun3"))
    dns.tunnel_changed(TunnelState(True, "198.18.0.1:1194/udp", "tun3", pushed()))
    dns.close()
    assert fake_resolvectl.read_text().splitlines() == [
        "dns tun3 198.18.100.53", "domain tun3 vpn.example ~.", "default-route tun3 yes", "revert tun3",
        "dns tun3 198.18.100.53", "domain tun3 vpn.example", "default-route tun3 no", "revert tun3"]
    assert dns.errors == 0


def test_a_failing_resolver_never_reaches_the_tunnel(fake_resolvectl, caplog):
    dns = HostDns(None, backend=Resolved, threaded=False)
    dns.attach(None, lambda: None)
    dns.tunnel_changed(TunnelState(True, "r", "fail0", pushed()))    # the fake exits 1 for this link
    assert dns.errors == 1 and "tunnel is not affected" in caplog.text


def test_observer_on_resolv_conf_follows_the_tunnel(conf):
    dns = HostDns(None, backend=lambda: ResolvConf(str(conf)), threaded=False)
    dns.attach(None, lambda: None)
    dns.tunnel_changed(TunnelState(True, "r", "tun0", pushed()))
    assert "nameserver 198.18.100.53" in conf.read_text()
    dns.tunnel_changed(TunnelState(False, tun_name="tun0"))
    assert conf.read_bytes() == ORIGINAL
    dns.tunnel_changed(TunnelState(True, "r", "tun0", PushedOptions()))      # no DNS pushed: untouched
    assert conf.read_bytes() == ORIGINAL
    dns.tunnel_changed(TunnelState(True, "r", "tun0", pushed(dns=("198.18.100.54",))))
    dns.close()
    assert conf.read_bytes() == ORIGINAL


def test_unwritable_resolv_conf_is_logged_not_raised(tmp_path, caplog):
    d = tmp_path / "ro"
    d.mkdir()
    dns = HostDns(None, backend=lambda: ResolvConf(str(d / "sub" / "resolv.conf")), threaded=False)   # its directory is missing
    dns.attach(None, lambda: None)
    dns.tunnel_changed(TunnelState(True, "r", "tun0", pushed()))
    dns.close()
    assert dns.errors == 1


def test_the_work_is_off_the_pump_and_close_waits_for_the_restore(conf, caplog):
    """A resolver that takes its time (resolvectl waiting on a busy resolved) holds the worker,
    not the caller; close() returns once the original is back."""
    import threading
    import time as _time
    gate = threading.Event()

    class Slow(ResolvConf):
        def apply(self, dns, link):
            gate.wait(10)
            super().apply(dns, link)
    dns = HostDns(None, backend=lambda: Slow(str(conf)))
    dns.attach(None, lambda: None)
    t0 = _time.monotonic()
    dns.tunnel_changed(TunnelState(True, "r", "tun0", pushed()))
    assert _time.monotonic() - t0 < 1 and conf.read_bytes() == ORIGINAL      # not done yet, not waited for
    caplog.set_level("INFO", "vpn-appliance")
    gate.set()
    dns.close()
    assert conf.read_bytes() == ORIGINAL and dns.errors == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("host DNS: ")]
    assert [m.split()[3] for m in said[-2:]] == ["now", "restored"], said


def test_openvpn_26_dns_form_as_debians_server_pushes_it():
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    p = parse_push_reply_untrusted(
        "PUSH_REPLY,dns server 1 address 198.19.0.1 2001:db8:19::1,dns search-domains vpn.test corp.test,"
        "dhcp-option DNS 198.19.0.1,ifconfig 198.19.0.2 255.255.255.0,topology subnet,redirect-gateway def1")
    s = from_pushed(p)
    assert s.servers == ("198.19.0.1", "2001:db8:19::1")
    assert s.search == ("vpn.test", "corp.test") and s.default_route


def test_a_server_pushed_on_another_port_is_not_asked_on_port_53(conf, caplog):
    """`dns server 0 address 198.18.100.53:5353`: resolv.conf (and resolved's per-link list as we
    set it) have no port, and `nameserver 198.18.100.53` sent the host's queries to port 53 of that
    host, a service nobody pushed; it is left out and said so, the port-53 ones stay."""
    from appliance.host.resolver import HostDns
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 198.19.0.2 255.255.255.0,"
                                   "dns server 0 address 198.18.100.53:5353 [2001:db8::53]:5300,"
                                   "dhcp-option DNS 198.18.100.54")
    s = from_pushed(p)
    assert s.servers == ("198.18.100.54",) and s.skipped == ("198.18.100.53:5353", "[2001:db8::53]:5300")
    dns = HostDns(backend=lambda: ResolvConf(str(conf)), threaded=False)
    dns.attach(None, None)
    with caplog.at_level("WARNING", logger="vpn-appliance"):
        dns.tunnel_changed(TunnelState(True, "x", "tun0", p))
    text = conf.read_text()
    assert "nameserver 198.18.100.54" in text and "198.18.100.53" not in text.replace("#@", "")
    assert "198.18.100.53:5353" in caplog.text
    dns.close()
