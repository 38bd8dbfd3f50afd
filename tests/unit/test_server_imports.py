"""An idle server's memory (issue 11: at most 40 MB with no client): the server process never loads
the netlink library (pyroute2 and the asyncio it pulls in, ~14 MB); it configures its TUN from a
plain spec with the stdlib's netlink (appliance/gateway/server_net.py, appliance/tun/rtnl.py)."""
import subprocess
import sys

from appliance.gateway.server_net import ServerTunnelNetwork
from appliance.openvpn.addresspool import AddressPool, AddressPool6
from appliance.openvpn.config.model import Options

CODE = """
import sys
import appliance.cli
from appliance.gateway import server_gateway, ServerGateway
from appliance.gateway.server_net import ServerTunnelNetwork, configure
import appliance.router.links, appliance.router.routes      # what configure() imports
from appliance.gateway import ops
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pyroute2", "asyncio"))
print("heavy:", heavy[:5])
print("lan:", sorted(m for m in sys.modules if m.startswith("appliance.lan")))
"""


def test_the_server_path_does_not_import_the_netlink_library():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout, r.stdout
    # The LAN's services are the appliance TOML's (router mode): a server loads only the DHCP
    # codec its tap data path reads with (openvpn/dhcprouter.py), not the RA, DNS, DHCP server
    # or status line (lan/__init__ imported them all once; helper startup47).
    assert "lan: ['appliance.lan', 'appliance.lan.dhcp_codec']" in r.stdout, r.stdout


CLIENT_CODE = """
import sys
import appliance.cli
from appliance.gateway import client_gateway
import appliance.gateway.client, appliance.gateway.tunnel, appliance.gateway.system, appliance.gateway.credentials
print("server:", sorted(m for m in sys.modules if m in (
    "appliance.openvpn.server", "appliance.openvpn.server_model", "appliance.openvpn.admission",
    "appliance.openvpn.clientpush", "appliance.gateway.server", "appliance.gateway.server_files",
    "appliance.gateway.management", "appliance.gateway.learn")))
"""

PAM_CODE = CODE + """
print("pam:", sorted(m for m in sys.modules if "pam" in m or m == "ctypes"))
"""


def test_the_client_path_does_not_import_the_servers_dispatcher():
    """A client's start (cli -> client_gateway) loads none of the server's modules: the dispatcher,
    its client records and admission came with openvpn/settings.py and datapath.py's annotations,
    ~10 ms of every client's start-up CPU (helper startup49)."""
    r = subprocess.run([sys.executable, "-c", CLIENT_CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "server: []" in r.stdout, r.stdout


def test_the_server_path_loads_the_pam_modules_only_for_a_plugin_line():
    """The PAM helper's client and rules (and ctypes) are loaded by server_files.load_server_settings
    when the config has an auth-pam plugin line; a server without one never loads them."""
    r = subprocess.run([sys.executable, "-c", PAM_CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pam: []" in r.stdout, r.stdout


def test_setup_spec_for_subnet_net30_ipv6_and_routes():
    o = Options()
    o.tun_mtu = 1500
    o.server, o.topology = ("198.19.0.0", "255.255.255.0"), "subnet"
    o.route = [("198.18.200.0", "255.255.255.0", None, None), ("198.18.201.0", "24", None, 5)]
    s = ServerTunnelNetwork(o, AddressPool("198.19.0.0", "255.255.255.0", "subnet"),
                            AddressPool6("fd00:1::/64")).spec("tun7")
    assert s["dev"] == "tun7" and s["mtu"] == 1500
    assert s["addr"] == ["198.19.0.1", 24, None]
    assert s["addr6"][1] == 64 and s["addr6"][0].startswith("fd00:1::")
    assert s["routes"] == [["198.18.200.0", 24, None], ["198.18.201.0", 24, 5]]
    o.route, o.topology = [], "net30"
    s = ServerTunnelNetwork(o, AddressPool("198.19.0.0", "255.255.255.0", "net30"), None).spec("tun0")
    assert s["addr"] == ["198.19.0.1", 32, "198.19.0.2"]            # local with its peer
    assert s["routes"] == [["198.19.0.0", 24, None]]                 # the pool via the TUN
    assert s["addr6"] is None


def test_route_noexec_leaves_out_the_configs_routes_not_the_pool():
    """route-noexec on a server: its `route` lines are the user's to add (OpenVPN 2.6 runs no
    route then); the TUN's address, and with net30 the pool's route, still go in."""
    o = Options()
    o.tun_mtu = 1500
    o.server, o.topology = ("198.19.0.0", "255.255.255.0"), "net30"
    o.route = [("198.18.200.0", "255.255.255.0", None, None)]
    o.route_noexec = True
    s = ServerTunnelNetwork(o, AddressPool("198.19.0.0", "255.255.255.0", "net30"), None).spec("tun0")
    assert s["routes"] == [["198.19.0.0", 24, None]]
    o.route_noexec = False
    s = ServerTunnelNetwork(o, AddressPool("198.19.0.0", "255.255.255.0", "net30"), None).spec("tun0")
    assert ["198.18.200.0", 24, None] in s["routes"]


def test_ifconfig_noexec_is_refused_at_its_line():
    import pytest
    from appliance.openvpn.config import parse_config
    with pytest.raises(Exception) as e:
        parse_config("client\ndev tun\nifconfig-noexec\n", "/mem/c.ovpn")
    assert "ifconfig-noexec" in str(e.value) and ":3" in str(e.value), str(e.value)


def test_a_tun_set_up_failure_is_told_not_raised():
    """The server sets its TUN up in its own process (no child since helper startup47); a refusal
    comes back as the reason ServerTunnelNetwork.open stops the start with (PortGone)."""
    from appliance.gateway.server_net import configure_checked
    not_added, why = configure_checked({"dev": "nosuchtun47", "mtu": 1500, "addr": ["198.19.0.1", 24, None],
                                    "routes": [], "addr6": None, "routes6": []})
    assert why is not None and "nosuchtun47" in why and not_added == {}, why
