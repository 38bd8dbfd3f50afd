"""Nothing is made on first use between the client's first packet and its tunnel up: a regular
expression compiled there (re's cache filled lazily) cost 0.1-0.3 ms of a fresh interpreter's CPU
inside the push, on the way to the first packet (lab/first_packet.py; README, issue 11). Patterns
on that path are compiled with their modules, at start-up, and no module is imported there. In
memory, real pumps; only what the client's own handlers do counts (the server runs in the same
process)."""
from __future__ import annotations

import importlib._bootstrap as bootstrap
import re
import sys

from appliance.gateway.client import ClientGateway
from appliance.openvpn.config import parse_config
from lab.fakes import FakeTunnelNetwork, MemoryPorts, MemoryWaiter
from tests.gateway.conftest import World, client_conf, server_conf


def _in_client() -> bool:
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.endswith("gateway/client.py"):
            return True
        f = f.f_back
    return False


def _made_by_the_client_up_to_tunnel_up(pki, monkeypatch, protection: str, extra: str = "") -> tuple[list, list]:
    """(patterns compiled, modules imported) by the client from its hard reset to its tunnel up. re's
    cache is emptied first; sys.modules cannot be, so a module an earlier test in this process
    imported is not seen (run alone, every lazy import is)."""
    w = World()
    w.add_server(server_conf(pki, protection=protection, extra=extra))
    net, port = FakeTunnelNetwork(w.net), MemoryPorts(w.net, "198.18.0.2")
    c = ClientGateway(parse_config(client_conf(pki, protection=protection), "/mem/client.ovpn"), port, net,
                      w.clock, MemoryWaiter(w.net))
    w.clients.append(c)
    compiled: list = []
    imported: list = []
    real, real_load = re._compiler.compile, bootstrap._find_and_load
    watching = False

    def spy(pattern, flags=0):
        if watching and _in_client():
            compiled.append(pattern)
        return real(pattern, flags)

    def load_spy(name, import_):                # a module not imported yet (the import statement's slow path)
        if watching and name not in sys.modules and _in_client():
            imported.append(name)
        return real_load(name, import_)
    monkeypatch.setattr(re._compiler, "compile", spy)
    monkeypatch.setattr(bootstrap, "_find_and_load", load_spy)
    re.purge()                      # what another test compiled before must not hide a lazy pattern
    c.start()                       # start-up, then the hard reset
    watching = True
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    assert c.conn.session.pushed is not None and c.conn.session.pushed.ping == 10   # the push's numbers were read
    watching = False
    return compiled, imported


def test_no_pattern_is_compiled_nor_module_imported_between_the_hard_reset_and_the_tunnel_up(pki, monkeypatch):
    # keepalive 10 60 pushes ping and ping-restart (read with atoi); route-delay and inactive too
    assert _made_by_the_client_up_to_tunnel_up(
        pki, monkeypatch, "tls-crypt", extra='push "route-delay 0"\npush "inactive 3600 100000"') == ([], [])


def test_nor_without_control_channel_protection(pki, monkeypatch):
    assert _made_by_the_client_up_to_tunnel_up(pki, monkeypatch, "none") == ([], [])
