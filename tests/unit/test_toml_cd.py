"""`cd DIR` in the appliance TOML's profile: the process runs in DIR, as a host run of the same
profile does (host/workdir.py) and as OpenVPN 2.6 chdir()s there; the TOML path read its relative
names from DIR but stayed where it started."""
from __future__ import annotations

import os
from pathlib import Path

from appliance import run_toml as rt
from appliance.router import killswitch
from appliance.router.killswitch import Endpoint
from tests.unit.test_forwarding_order import OVPN, TOML


def test_a_toml_profile_with_cd_runs_in_that_directory(tmp_path: Path, monkeypatch):
    (tmp_path / "keys").mkdir()
    (tmp_path / "client.ovpn").write_text("cd keys\n" + OVPN)
    (tmp_path / "appliance.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    seen: list[str] = []

    class _Gw:
        def run(self) -> int:
            seen.append(os.getcwd())
            return 1

    monkeypatch.setattr(rt, "validate_runtime", lambda cfg: None)
    monkeypatch.setattr(rt, "configure_nic", lambda nic, undo, avoid=(): nic.name)
    monkeypatch.setattr(rt, "missing_nic", lambda cfg: None)   # no such NICs here
    monkeypatch.setattr(rt, "keep_nic_redirects", lambda nics, undo: None)
    monkeypatch.setattr(rt, "lan_address6", lambda lan, ifname: None)
    monkeypatch.setattr(rt, "enable_forwarding", lambda undo, ipv6=False: None)
    monkeypatch.setattr(rt, "lan_observers", lambda cfg, wan_if, lan_if, opts=None: [])
    monkeypatch.setattr(rt, "resolve_remotes", lambda opts, wan_ipv6=False: [Endpoint("198.18.0.1", 1194, "udp")])
    monkeypatch.setattr(killswitch, "apply_ruleset", lambda text, netns=None: None)
    monkeypatch.setattr(killswitch, "flush", lambda netns=None: None)
    monkeypatch.setattr(rt.gateway, "client_gateway", lambda *a, **kw: _Gw())
    monkeypatch.setattr(rt, "setup_logging", lambda level, verbose: None)
    assert rt.run_toml("appliance.toml") == 1
    assert seen == [str(tmp_path / "keys")]
