"""Server-side IPv6 routing directives as a config and a ccd file say them (config/d_network.py,
config/ccd.py): what OpenVPN 2.6 takes works, anything else fails at its file:line."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from appliance.gateway.server_net import ServerTunnelNetwork
from appliance.openvpn.addresspool import AddressPool, AddressPool6
from appliance.openvpn.config import parse_ccd, parse_config
from appliance.openvpn.config.model import Route6
from appliance.openvpn.errors import ConfigError
from tests.unit.test_options import SERVER, _errors, _server_files

PATH = "/etc/openvpn/server/server.conf"
AT = SERVER.count("\n") + 1           # the first line added after SERVER


def _srv(extra: str):
    return parse_config(SERVER + extra, PATH, _server_files)


def _fails(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        _srv(extra)
    return [str(e) for e in _errors(ei.value)]


def test_route_ipv6_forms_as_openvpn_reads_them():
    o = _srv("server-ipv6 fd00:77::/64\nroute-ipv6 fd00:99::/48\nroute-ipv6 fd00:98::5\n"
             "route-ipv6 fd00:97::/64 fd00:77::2 7\n")
    # Without /bits a /64 (socket.c get_addr_generic); host bits cleared for the kernel's route.
    assert o.route_ipv6 == [Route6("fd00:99::/48", None, None), Route6("fd00:98::/64", None, None),
                            Route6("fd00:97::/64", "fd00:77::2", 7)]


@pytest.mark.parametrize("line, why", [
    ("route-ipv6 198.18.5.0/24", "must be an IPv6 address with an optional /BITS"),
    ("route-ipv6 fd00:99::/129", "must be an IPv6 address with an optional /BITS"),
    ("route-ipv6 fd00:99::/+48", "must be an IPv6 address with an optional /BITS"),
    ("route-ipv6 fe80::1%eth0/64", "must be an IPv6 address with an optional /BITS"),
    ("route-ipv6 fd00:99::/48 198.18.0.1", "the gateway is not an IPv6 address"),
    ("route-ipv6 fd00:99::/48 fd00:77::2 x", "expected a number"),
    ("route-ipv6 fd00:99::/48 net_gateway_ipv6", "a server's route-ipv6 goes into its TUN"),
    ("route-ipv6 fd00:99::/48 fd00:77::2 1 extra", "route-ipv6"),
    ("max-routes-per-client lots", "expected a number"),
    ("tcp-queue-limit 0", "out of range"),
    ("stale-routes-check 30", "remove the line"),
    ("stale-routes-check 30 10", "remove the line"),
    ("ifconfig-ipv6-pool fd00:77::1000/64", "needs ifconfig-ipv6"),
    ("server-ipv6 fd00:77::/64\nifconfig-ipv6-pool fd00:77::1000/64", "server-ipv6 already lays out the IPv6 pool"),
    ("ifconfig-ipv6 fd00:77::1/64 fd00:77::2\nifconfig-ipv6-pool fd00:77::1000/48", "between /64 and /124"),
    ("ifconfig-ipv6 fd00:77::1/48 fd00:77::2", "between 64 and 124"),
    ("server-ipv6 fd00:77::/63", "between /64 and /124 (not /63)"),      # 2.6.14 refuses it in these words
    ("server-ipv6 fd00:77::/32", "between /64 and /124 (not /32)"),
    ("server-ipv6 fd00:77::/125", "between /64 and /124 (not /125)"),
    ("ifconfig-ipv6 fd00:77::1/64 198.18.0.1", "must be valid addresses"),
    ("ifconfig-ipv6 fd00:77::1/64", "expects"),
    ("iroute-ipv6 fd00:99::/48", "belongs in a client-config-dir file"),
    ("ifconfig-ipv6-push fd00:77::5/64", "belongs in a client-config-dir file"),
])
def test_bad_server_lines_fail_at_their_line(line, why):
    errs = _fails(line + "\n")
    at = AT + line.count("\n")                # the last line given: the one that is wrong
    assert len(errs) == 1 and errs[0].startswith(f"{PATH}:{at}: ") and why in errs[0], errs


def test_max_routes_per_client_default_and_floor():
    assert _srv("").max_routes_per_client == 256              # OpenVPN 2.6's default
    assert _srv("max-routes-per-client 10\n").max_routes_per_client == 10
    o = _srv("max-routes-per-client 0\n")
    assert o.max_routes_per_client == 1                       # as OpenVPN's max_int(atoi(), 1)
    assert any("0 taken as 1" in n for n in o.notes)


def test_tcp_queue_limit_is_accepted_with_its_reason():
    o = _srv("tcp-queue-limit 64\n")
    assert any("tcp-queue-limit" in n and "256 KiB" in n for n in o.notes)


def test_the_servers_route_ipv6_goes_into_its_tun_and_not_with_route_noexec():
    o = _srv("server-ipv6 fd00:77::/64\nroute-ipv6 fd00:99::/48\nroute-ipv6 fd00:98::/64 fd00:77::2 7\n")
    spec = ServerTunnelNetwork(o, AddressPool("198.19.0.0", "255.255.255.0", "subnet"),
                               AddressPool6(o.server_ipv6)).spec("tun7")
    assert spec["routes6"] == [["fd00:99::", 48, None], ["fd00:98::", 64, 7]]
    o.route_noexec = True
    assert ServerTunnelNetwork(o, None, None).spec("tun7")["routes6"] == []


def test_ccd_ipv6_lines():
    c = parse_ccd("iroute-ipv6 fd00:99:1::5/64\niroute-ipv6 fd00:99:2::\nifconfig-ipv6-push fd00:77::50/64 fd00:77::1\n")
    assert c.iroutes6 == ["fd00:99:1::/64", "fd00:99:2::/64"]
    assert c.ifconfig_ipv6_push == ("fd00:77::50", 64, "fd00:77::1")
    assert parse_ccd("ifconfig-ipv6-push fd00:77::50\n").ifconfig_ipv6_push == ("fd00:77::50", 64, None)


@pytest.mark.parametrize("line, why", [
    ("iroute-ipv6 198.18.5.0/24", "not an IPv6 address[/bits]"),
    ("iroute-ipv6 fd00:99::/200", "not a prefix length"),
    ("iroute-ipv6 fd00:99::/48 fd00:99::/49", "takes 1 argument, not 2"),
    ("ifconfig-ipv6-push 198.19.0.5/24", "not an IPv6 address[/bits]"),
    ("ifconfig-ipv6-push fd00:77::50/64 bogus", "not an IPv6 address[/bits]"),
    ("ifconfig-ipv6-push fd00:77::50/128", "not a usable tunnel address"),
    ("ifconfig-ipv6-push ::/64", "not a usable tunnel address"),
    ("ifconfig-ipv6-push ff02::1/64", "not a usable tunnel address"),
    ("ifconfig-ipv6-push fd00:77::50/64 fd00:77::1 x", "takes 1 to 2 arguments, not 3"),
])
def test_bad_ccd_lines_fail_at_their_line(line, why):
    with pytest.raises(ConfigError) as ei:
        parse_ccd("# alice\n" + line + "\n", "/etc/openvpn/ccd/alice")
    assert str(ei.value).startswith("/etc/openvpn/ccd/alice:2: ") and why in str(ei.value), str(ei.value)


def test_an_ipv6_pool_holds_static_addresses_and_frees_only_its_own_range():
    """A ccd address in the dynamic range is not handed out while held (and is shared, freed with
    its last holder); one below the range (::50) never joins it after its client leaves."""
    p = AddressPool6("fd00:77::/64")
    assert p.lease_static("fd00:77::1000") and not p.lease_static("fd00:77::1000")
    assert p.lease() == "fd00:77::1001"
    p.release("fd00:77::1000")
    assert p.lease() == "fd00:77::1002"          # still held by the second holder
    p.release("fd00:77::1000")
    assert p.lease() == "fd00:77::1000"          # now free
    assert p.lease_static("fd00:77::50") and p.lease_static("fd00:78::5")   # outside the net: nobody's here
    p.release("fd00:77::50")
    assert p.lease() == "fd00:77::1003"


def test_ifconfig_ipv6_pool_with_ifconfig_ipv6_is_openvpns_manual_server_ipv6():
    """OpenVPN 2.6's manual form: the server's TUN takes ifconfig-ipv6's address and bits, the
    pool starts at ifconfig-ipv6-pool's base (one further from a ::0 host part), and clients are
    pushed ifconfig-ipv6's bits with the server's address as remote (multi.c)."""
    from appliance.openvpn.settings import _local_ip6, _pool6
    o = _srv("ifconfig-ipv6 fd00:77::1/64 fd00:77::2\nifconfig-ipv6-pool fd00:77::100/112\n")
    assert o.ifconfig_ipv6 == ("fd00:77::1", 64, "fd00:77::2") and o.ifconfig_ipv6_pool == "fd00:77::100/112"
    pool6 = _pool6(o)
    assert _local_ip6(o) == "fd00:77::1"
    assert [pool6.lease(), pool6.lease()] == ["fd00:77::100", "fd00:77::101"]
    assert pool6.ifconfig_push("fd00:77::100") == "ifconfig-ipv6 fd00:77::100/64 fd00:77::1"
    spec = ServerTunnelNetwork(o, None, pool6).spec("tun7")
    assert spec["addr6"] == ["fd00:77::1", 64]
    assert _pool6(_srv("ifconfig-ipv6 fd00:77::1/64 fd00:77::2\nifconfig-ipv6-pool fd00:77::/64\n")).lease() \
        == "fd00:77::2"     # ::0 skipped (anycast), ::1 is the server's


def test_ifconfig_ipv6_beside_server_ipv6_is_overridden_with_a_note():
    o = _srv("server-ipv6 fd00:77::/64\nifconfig-ipv6 fd00:78::1/64 fd00:78::2\n")
    assert o.ifconfig_ipv6 is None and any("server-ipv6 sets the server's IPv6 address" in n for n in o.notes)


def test_ifconfig_ipv6_and_its_pool_in_a_client_profile_fail_at_their_lines():
    from tests.unit.test_options import GOOD_CLIENT, _no_files
    with pytest.raises(ConfigError) as ei:
        parse_config(GOOD_CLIENT + "ifconfig-ipv6 fd00:77::5/64 fd00:77::1\nifconfig-ipv6-pool fd00:77::100/64\n",
                     "/p/c.ovpn", _no_files)
    errs = [str(e) for e in _errors(ei.value)]
    n = GOOD_CLIENT.count("\n")
    assert any(e.startswith(f"/p/c.ovpn:{n + 1}: ifconfig-ipv6: a client here takes") for e in errs), errs
    assert any(e.startswith(f"/p/c.ovpn:{n + 2}: ifconfig-ipv6-pool: is a server directive") for e in errs), errs


@pytest.mark.openvpn
@pytest.mark.skipif(not (shutil.which("openvpn") or os.path.exists("/usr/sbin/openvpn")), reason="needs openvpn")
@pytest.mark.parametrize("net, refused", [
    ("fd00:77::/32", True), ("fd00:77::/63", True), ("fd00:77::/125", True),
    ("fd00:77::/64", False), ("fd00:77::/124", False),
])
def test_server_ipv6_bounds_are_debian_openvpns(tmp_path, net, refused):
    """Debian's 2.6.14 on the same `server-ipv6` (review49d: ours took a /32 that 2.6 refuses):
    it refuses what we refuse in the words we quote, before reading any file, and takes the
    bounds (then stops at the missing key files, which we do not give it)."""
    exe = shutil.which("openvpn") or "/usr/sbin/openvpn"
    none = str(tmp_path / "none")
    p = subprocess.run([exe, "--dev", "tun", "--server", "198.18.77.0", "255.255.255.0", "--server-ipv6", net,
                        "--dh", "none", "--ca", none, "--cert", none, "--key", none, "--verb", "1"],
                       capture_output=True, text=True, timeout=20)
    errs = [x for x in (p.stdout + p.stderr).splitlines() if "Options error" in x]
    assert p.returncode != 0 and errs, p.stdout + p.stderr
    bits = net.split("/")[1]
    want = f"between /64 and /124 (not /{bits})"
    if refused:
        assert want in errs[0], errs
        ours = _fails(f"server-ipv6 {net}\n")
        assert len(ours) == 1 and ours[0].startswith(f"{PATH}:{AT}: ") and want in ours[0], ours
    else:
        assert all("fails with" in e or "Please correct" in e for e in errs), errs      # only the missing files
        assert _srv(f"server-ipv6 {net}\n").server_ipv6 == net
