"""The router's IPv4/IPv6 forwarding is on only while the kill switch is in.

Why: run_toml switched forwarding on before the kill switch went in (with the remotes' DNS
resolution in between, seconds when a name resolves slowly), and its undo list, run newest first,
removed the kill switch and NAT before it switched forwarding off again. In both windows the
kernel forwarded LAN packets out of the WAN in clear, with the LAN's own source addresses; the
second one opens whenever the run ends, so a hostile server's HALT (or `inactive 1`, or an
AUTH_FAILED) could time it. tests/interop/test_forwarding_windows.py shows the leak on the wire.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance import run_toml as rt
from appliance.router import killswitch
from appliance.router.killswitch import Endpoint

OVPN = "client\ndev tun\nproto udp\nremote 198.18.0.1 1194\n<ca>\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n</ca>\n"
TOML = """\
[wan]
name = "eth0"
address = "198.18.0.2/24"
gateway = "198.18.0.1"

[lan]
name = "eth1"
address = "198.18.50.1/24"
nat = true

[vpn]
role = "client"
config = "client.ovpn"
"""


class _Host:
    """What the kernel would hold: forwarding on or off, our nft tables in or out; every moment
    with forwarding on and no kill switch is written down."""

    def __init__(self) -> None:
        self.forwarding = False
        self.rules = False
        self.unguarded: list[str] = []
        self.ran = False

    def _check(self, what: str) -> None:
        if self.forwarding and not self.rules:
            self.unguarded.append(what)

    def enable_forwarding(self, undo, ipv6: bool = False) -> None:
        self.forwarding = True
        self._check("forwarding switched on")

        def off() -> None:
            self.forwarding = False
        undo.push("ip_forward", off)

    def apply_ruleset(self, text: str, netns: str | None = None) -> None:
        self.rules = True
        self._check("rules installed")

    def flush(self, netns: str | None = None) -> None:
        self.rules = False
        self._check("kill switch removed")

    def client_gateway(self, *a, **kw):
        host = self

        class _Gw:
            def run(self) -> int:
                host.ran = True
                host._check("tunnel running")
                return 1          # as after a server's HALT
        return _Gw()


@pytest.mark.parametrize("resolves", [True, False])
def test_forwarding_never_on_without_the_kill_switch(tmp_path: Path, monkeypatch, resolves: bool):
    (tmp_path / "client.ovpn").write_text(OVPN)
    (tmp_path / "appliance.toml").write_text(TOML)
    host = _Host()
    monkeypatch.setattr(rt, "validate_runtime", lambda cfg: None)
    monkeypatch.setattr(rt, "configure_nic", lambda nic, undo, avoid=(): nic.name)
    monkeypatch.setattr(rt, "missing_nic", lambda cfg: None)   # no such NICs here
    monkeypatch.setattr(rt, "keep_nic_redirects", lambda nics, undo: None)
    monkeypatch.setattr(rt, "lan_address6", lambda lan, ifname: None)
    monkeypatch.setattr(rt, "enable_forwarding", host.enable_forwarding)
    monkeypatch.setattr(rt, "lan_observers", lambda cfg, wan_if, lan_if, opts=None: [])
    monkeypatch.setattr(killswitch, "apply_ruleset", host.apply_ruleset)
    monkeypatch.setattr(killswitch, "flush", host.flush)
    monkeypatch.setattr(rt.gateway, "client_gateway", host.client_gateway)
    monkeypatch.setattr(rt, "setup_logging", lambda level, verbose: None)

    def resolve(opts, wan_ipv6=False):
        # The remotes are resolved while forwarding may already be on: nothing may be forwarded
        # unguarded meanwhile, nor when the resolution fails and the run ends.
        host._check("remotes resolved")
        if not resolves:
            raise RuntimeError("none of the remotes resolves to an address the WAN can reach")
        return [Endpoint("198.18.0.1", 1194, "udp")]
    monkeypatch.setattr(rt, "resolve_remotes", resolve)

    assert rt.run_toml(str(tmp_path / "appliance.toml")) == 1
    assert host.ran == resolves
    assert not host.forwarding and not host.rules        # all undone
    assert host.unguarded == [], f"LAN packets forwarded without the kill switch: {host.unguarded}"
