"""A client's start-up comes before its first packet (lab/first_packet.py): `vpn-appliance run
profile.ovpn` loads neither the server's modules, the TOML/router side, nor, before the tunnel
network starts its background import, the netlink library."""
import subprocess
import sys

CODE = """
import sys
import appliance.cli
from appliance.gateway import client as _client, system as _system, loop as _loop
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("pyroute2", "asyncio")
             or m in ("appliance.run_toml", "appliance.gateway.server", "appliance.gateway.server_files",
                      "appliance.config.schema", "appliance.bench",
                      "appliance.config.ovpn_import") or m.startswith("appliance.router"))
print("loaded:", bad)
from appliance.gateway import ClientGateway, ServerGateway, ccd_loader   # still importable by name
print("names:", ClientGateway.__name__, ServerGateway.__name__, ccd_loader.__name__)
"""

THREAD = """
import sys, time
from appliance.gateway.tunnel import prefetch_netlink
prefetch_netlink().join(120)
print("netlink:", "pyroute2" in sys.modules and "appliance.router.routes" in sys.modules)
"""


def test_the_client_start_path_skips_server_toml_and_netlink_modules():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "loaded: []" in r.stdout, r.stdout
    assert "names: ClientGateway ServerGateway ccd_loader" in r.stdout, r.stdout


def test_the_background_import_loads_the_netlink_modules_the_tun_setup_uses():
    r = subprocess.run([sys.executable, "-c", THREAD], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "netlink: True" in r.stdout, r.stdout
