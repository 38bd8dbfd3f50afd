"""A client's start-up comes before its first packet (lab/first_packet.py): `vpn-appliance run
profile.ovpn` loads neither the server's modules, the TOML/router side, nor the netlink library
pyroute2 (250-400 ms of CPU to import): the client's TUN address and routes go through
appliance/tun/rtnl.py, which needs only the stdlib."""
import subprocess
from pathlib import Path
import sys

_HEAVY = """
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("pyroute2", "asyncio")
             or m in ("appliance.run_toml", "appliance.gateway.server", "appliance.gateway.server_files",
                      "appliance.config.schema", "appliance.bench", "appliance.config.ovpn_import",
                      "appliance.router.nics", "appliance.router.nat", "appliance.router.killswitch"))
print("loaded:", bad)
"""

CODE = """
import sys
import appliance.cli
from appliance.gateway import client as _client, system as _system, loop as _loop
""" + _HEAVY + """
from appliance.gateway import ClientGateway, ServerGateway, ccd_loader   # still importable by name
print("names:", ClientGateway.__name__, ServerGateway.__name__, ccd_loader.__name__)
"""

# Everything the client's TUN setup runs once the server has pushed (gateway/tunnel.py), imported.
TUN_SETUP = """
import sys
import appliance.cli
from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import Options
TunnelNetwork(Options())
""" + _HEAVY


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_client_start_path_skips_server_toml_and_netlink_modules():
    out = _run(CODE)
    assert "loaded: []" in out, out
    assert "names: ClientGateway ServerGateway ccd_loader" in out, out


def test_the_client_tun_and_route_setup_never_imports_pyroute2():
    out = _run(TUN_SETUP)
    assert "loaded: []" in out, out


# `run profile.ovpn` of a profile with auth-user-pass, up to the gateway (_run_profile stubbed):
# the credentials asked before the start came from run_toml.py, which loaded pyroute2, asyncio, the
# router and the TOML schema first (~0.13 s of CPU on a quiet machine, before the management socket).
RUN_WITH_CREDENTIALS = """
import sys
from pathlib import Path
from lab.configs import client_profile
from lab.pki import make_pki
import appliance.cli
d = Path(sys.argv[1])
prof = d / "p.ovpn"
prof.write_text(client_profile(make_pki(d / "pki", ["client1"]), "udp", extra="<auth-user-pass>\\nalice\\npw\\n</auth-user-pass>\\n"))
got = {}
appliance.cli._run_profile = lambda opts, args, who, tls, creds: got.update(creds=list(creds)) or 0
assert appliance.cli.main(["run", str(prof)]) == 0
print("creds:", got["creds"])
for m in [m for m in sys.modules if m.startswith("lab")]:
    del sys.modules[m]
""" + _HEAVY


def test_a_client_with_auth_user_pass_asks_its_credentials_without_the_toml_side(tmp_path):
    r = subprocess.run([sys.executable, "-c", RUN_WITH_CREDENTIALS, str(tmp_path)], capture_output=True, text=True,
                       timeout=120, cwd=str(Path(__file__).parents[2]))
    assert r.returncode == 0, r.stderr
    assert "creds: ['alice', 'pw']" in r.stdout, r.stdout
    assert "loaded: []" in r.stdout, r.stdout
