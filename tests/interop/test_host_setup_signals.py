"""Signals while `run appliance.toml` sets up on a host leave the host as it was (host44).

Why: until the gateway's loop took the signals, Python's default actions applied: a SIGHUP (a
service manager's reload), SIGUSR1 or SIGUSR2 ended the run on the spot and a SIGINT (Ctrl-C)
raised KeyboardInterrupt wherever it landed -- the NICs' addresses and routes, the ICMP redirect
switches and forwarding stayed as set-up left them. Now, as OpenVPN 2.6 while it initialises
(sig.c pre_init_signal_catch): SIGHUP/SIGUSR1/SIGUSR2 are ignored, SIGINT/SIGTERM stop the run
with everything restored. Set-up is held deterministically at the remote's name: the
namespace's resolver is an address nobody answers (the lookup takes its whole timeout), and the
signals are sent once the NICs are configured. tests/unit/test_stop_during_setup.py holds the
decision and the undo-list phase on fakes.
"""
from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from lab.router_lab import WAN_APP, WAN_SRV, RouterLab, client_profile

pytestmark = [pytest.mark.root, pytest.mark.netns]

RESOLVE_TIMEOUT = 12        # seconds the remote's lookup takes: the window the signals fall in


def _host_state(lab: RouterLab) -> dict[str, str]:
    """What a user checks after the run: global addresses, routes, nft rules, the switches."""
    sysctls = lab.app.run("sysctl -a 2>/dev/null | grep -E '^net\\.ipv4\\.(ip_forward|conf\\.[^.]+\\."
                          "(send_redirects|accept_redirects|forwarding))|^net\\.ipv6\\.conf\\.[^.]+\\."
                          "(forwarding|accept_redirects) '", check=False).stdout
    return {"addresses": lab.app.run("ip -o addr show scope global").stdout,
            "routes": lab.app.run("ip -4 route show table all; ip -6 route show table all | grep -v fe80").stdout,
            "nft": lab.app.run("nft list ruleset").stdout,
            "sysctls": sysctls}


def test_sighup_sigusr1_sigusr2_then_sigint_during_set_up_leave_the_host_as_it_was(tmp_path: Path):
    with RouterLab() as lab:
        etc = Path("/etc/netns") / lab.app.name
        etc.mkdir(parents=True)
        try:
            (etc / "resolv.conf").write_text(f"nameserver 198.18.0.77\noptions timeout:{RESOLVE_TIMEOUT} attempts:1\n")
            profile = client_profile(lab.pki).replace(f"remote {WAN_SRV} 1194", "remote vpn.example.test 1194")
            # a host's NICs are up before the run (the run leaves a link up as it found it or not)
            lab.app.run(f"ip link set {lab.wan_if} up && ip link set {lab.lan_if} up")
            end = time.monotonic() + 15     # until the kernel has set the links up (their ff00::/8)
            while time.monotonic() < end and lab.app.run("ip -6 route show table local").stdout.count("ff00::/8") < 2:
                time.sleep(0.05)
            before = _host_state(lab)
            assert WAN_APP not in before["addresses"]
            app = lab.appliance(lab.appliance_toml(profile), wait=0)
            try:
                end = time.monotonic() + 20
                while time.monotonic() < end and WAN_APP not in lab.app.run("ip -o addr show").stdout:
                    assert app.alive(), app.log()[-3000:]
                    time.sleep(0.05)
                during = _host_state(lab)
                assert WAN_APP in during["addresses"], app.log()[-3000:]      # set-up is under way
                for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                    app.p.send_signal(s)
                    time.sleep(0.2)
                    assert app.alive(), (s, app.log()[-3000:])
                app.p.send_signal(signal.SIGINT)
                status = app.exit_within(RESOLVE_TIMEOUT + 20)
                assert status == 0, (status, app.log()[-3000:])
            finally:
                app.stop(10)
            log = app.log()
            assert "SIGINT: stopping (restoring what was set)" in log, log[-3000:]
            assert "none of the remotes resolves" not in log, log[-3000:]     # the signal stopped it
            assert "SIGHUP, SIGUSR1, SIGUSR2 outside the tunnel's loop" in log, log[-3000:]
            assert "Traceback" not in log, log[-3000:]
            after = _host_state(lab)
        finally:
            shutil.rmtree(etc, ignore_errors=True)
        assert during["sysctls"] != before["sysctls"]       # set-up had changed the switches ...
        changed = {k: sorted(set(after[k].splitlines()) ^ set(before[k].splitlines())) for k in before}
        assert not any(changed.values()), "\n".join(f"{k}: {x}" for k, v in changed.items() for x in v) + log[-3000:]
