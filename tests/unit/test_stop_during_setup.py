"""A SIGTERM while `run appliance.toml` sets up (or restores) on a host still restores what it set.

Why (review44c): run_toml's undo list -- the NICs' sysctls (`all` and, since atk42, `default`
redirect switches), addresses, the kill switch, forwarding -- runs in a `finally`, but SIGTERM's
default action ended the process before it: from configure_nic until the gateway's loop takes
the signal (the remotes' DNS resolution in between, seconds when a name resolves slowly), and
again while the undo list ran. A host's service manager stopping the run then left the host's
redirect switches at 0 and the forwarding on. Run in a child process: the signal is real."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.test_forwarding_order import OVPN, TOML

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from appliance import run_toml as rt
    from appliance.router import killswitch
    out = sys.argv[2]

    def mark(what):
        with open(out, "a") as f:
            f.write(what + "\\n")

    def configure_nic(nic, undo, avoid=()):
        if nic.name == "eth0":
            undo.push("a sysctl", lambda: mark("restored"))
            # run first at the stop: a second SIGTERM while the undo list runs
            undo.push("second", lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.2)))
        return nic.name

    def resolve(opts, wan_ipv6=False):
        os.kill(os.getpid(), signal.SIGTERM)        # a service manager stopping the run now
        for _ in range(50):
            time.sleep(0.1)
        mark("set-up went on")
        return []

    rt.validate_runtime = lambda cfg: None
    rt.configure_nic = configure_nic
    rt.missing_nic = lambda cfg: None
    rt.lan_address6 = lambda lan, ifname: None
    rt.enable_forwarding = lambda undo, ipv6=False: None
    rt.lan_observers = lambda cfg, wan_if, lan_if, opts=None: []
    rt.setup_logging = lambda level, verbose: None
    rt.resolve_remotes = resolve
    killswitch.apply_ruleset = lambda text, netns=None: None
    killswitch.flush = lambda netns=None: None
    status = rt.run_toml(sys.argv[1])
    mark(f"status {status}")
""")


def test_a_sigterm_during_set_up_and_during_the_undo_still_restores_everything(tmp_path: Path):
    (tmp_path / "client.ovpn").write_text(OVPN)
    (tmp_path / "appliance.toml").write_text(TOML)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "appliance.toml"), str(out)],
                       cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    marks = out.read_text().split() if out.exists() else []
    assert p.returncode == 0 and marks == ["restored", "status", "0"], (p.returncode, marks, p.stderr[-2000:])
