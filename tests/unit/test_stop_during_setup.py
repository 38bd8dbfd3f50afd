"""A signal while `run appliance.toml` sets up (or restores) on a host still restores what it set.

Why (review44c, host44): run_toml's undo list -- the NICs' sysctls (`all` and, since atk42,
`default` redirect switches), addresses, the kill switch, forwarding -- runs in a `finally`, but
Python's default actions ended the process before it: SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2
killed it on the spot, SIGINT raised KeyboardInterrupt wherever it landed (the undo list
included), from configure_nic until the gateway's loop takes the signals (the remotes' DNS
resolution in between, seconds when a name resolves slowly), and again while the undo list ran.
A host's service manager stopping or reloading the run, or a Ctrl-C, then left the host's
redirect switches at 0 and the forwarding on. What each does now is host/setup_signals.py's
`decision`, as OpenVPN 2.6's pre-init handlers: SIGTERM/SIGINT stop with the host restored,
SIGHUP/SIGUSR1/SIGUSR2 are ignored (2.6: SIG_IGN until its start is done). Run in a child
process: the signals are real. tests/interop/test_host_setup_signals.py is the same in a netns
with real NICs, nft and sysctls."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.host.setup_signals import IGNORED, STOPS, SetUpSignals, StoppedInSetUp, decision
from tests.unit.test_forwarding_order import OVPN, TOML

CHILD = textwrap.dedent("""
    import logging, os, signal, sys, time
    from appliance import run_toml as rt
    from appliance.router import killswitch
    out, sig = sys.argv[2], getattr(signal, sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    def mark(what):
        with open(out, "a") as f:
            f.write(what + "\\n")

    def configure_nic(nic, undo, avoid=()):
        if nic.name == "eth0":
            undo.push("a sysctl", lambda: mark("restored"))
            # run first at the stop: the same signal again while the undo list runs
            undo.push("second", lambda: (os.kill(os.getpid(), sig), time.sleep(0.2)))
        return nic.name

    def resolve(opts, wan_ipv6=False):
        os.kill(os.getpid(), sig)        # a service manager stopping (or reloading) the run now
        for _ in range(10):
            time.sleep(0.1)
        mark("set-up went on")
        return []

    class Gateway:
        def run(self):
            mark("loop")
            return 0

    rt.validate_runtime = lambda cfg: None
    rt.configure_nic = configure_nic
    rt.missing_nic = lambda cfg: None
    rt.keep_nic_redirects = lambda nics, undo: None
    rt.lan_address6 = lambda lan, ifname: None
    rt.enable_forwarding = lambda undo, ipv6=False: None
    rt.lan_observers = lambda cfg, wan_if, lan_if, opts=None: []
    rt.setup_logging = lambda level, verbose: None
    rt.resolve_remotes = resolve
    rt.gateway.client_gateway = lambda *a, **k: Gateway()
    killswitch.apply_ruleset = lambda text, netns=None: None
    killswitch.flush = lambda netns=None: None
    status = rt.run_toml(sys.argv[1])
    mark(f"status {status}")
""")


def _run(tmp_path: Path, sig: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    (tmp_path / "client.ovpn").write_text(OVPN)
    (tmp_path / "appliance.toml").write_text(TOML)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "appliance.toml"), str(out), sig],
                       cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    return p, (out.read_text().split("\n")[:-1] if out.exists() else [])


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_during_set_up_and_during_the_undo_still_restores_everything(tmp_path: Path, sig: str):
    p, marks = _run(tmp_path, sig)
    assert p.returncode == 0 and marks == ["restored", "status 0"], (p.returncode, marks, p.stderr[-2000:])
    assert f"{sig}: stopping (restoring what was set)" in p.stderr
    assert "Traceback" not in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGUSR1", "SIGUSR2"])
def test_a_restart_or_status_signal_during_set_up_is_ignored_and_the_run_goes_on(tmp_path: Path, sig: str):
    # 2.6 sets them to SIG_IGN while it initialises (no restart once the start is done); the
    # same signal during the undo list is ignored too, so the restore runs whole.
    p, marks = _run(tmp_path, sig)
    assert p.returncode == 0 and marks == ["set-up went on", "loop", "restored", "status 0"], \
        (p.returncode, marks, p.stderr[-2000:])
    assert f"{sig} outside the tunnel's loop (setting up or restoring the host): ignored" in p.stderr, p.stderr


def test_the_decision_stops_on_sigterm_and_sigint_in_set_up_and_on_nothing_while_restoring():
    assert [decision(s, restoring=False) for s in STOPS] == ["stop", "stop"]
    assert [decision(s, restoring=False) for s in IGNORED] == ["ignore"] * 3
    assert {decision(s, restoring=True) for s in (*STOPS, *IGNORED)} == {"ignore"}


def test_the_handlers_come_back_as_they_were_and_ignored_ones_are_counted_for_one_line():
    before = {s: signal.getsignal(s) for s in (*STOPS, *IGNORED)}
    sigs = SetUpSignals()
    sigs.install()
    try:
        for s in (signal.SIGHUP, signal.SIGHUP, signal.SIGUSR1):
            signal.raise_signal(s)
        assert sigs.take_ignored() == "SIGHUP x2, SIGUSR1"
        assert sigs.take_ignored() == ""
        with pytest.raises(StoppedInSetUp) as e:
            signal.raise_signal(signal.SIGTERM)
        assert e.value.name == "SIGTERM" and sigs.restoring_now
        # once stopping, every one of them is ignored (and counted): none ends the undo list
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.raise_signal(s)
        assert sigs.take_ignored() == "SIGHUP, SIGINT, SIGTERM"
    finally:
        sigs.uninstall()
    assert {s: signal.getsignal(s) for s in (*STOPS, *IGNORED)} == before


# The loop has ended (the gateway gave the signals back) and a SIGTERM is pending: CPython runs its
# handler when the next call begins -- here `restoring()`'s first line, in run_toml's `finally`.
LATE = CHILD.replace('''class Gateway:
    def run(self):
        mark("loop")
        return 0
''', '''class Gateway:
    def run(self):
        mark("loop")
        signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
        os.kill(os.getpid(), sig)            # pending until restoring() begins
        return 0

from appliance.host import setup_signals
real_restoring = setup_signals.SetUpSignals.restoring
def restoring(self):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])   # the handler runs on this call's return
    real_restoring(self)
setup_signals.SetUpSignals.restoring = restoring
''').replace("    os.kill(os.getpid(), sig)        # a service", "    0 and os.kill(os.getpid(), sig)  # a service")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_as_the_loop_ends_still_restores_everything(tmp_path: Path, sig: str):
    """review45c: raised as the `finally` began its `restoring()` call, the stop skipped the undo
    list -- no "restored", the host's switches, addresses and kill switch left as set."""
    assert LATE.count("pthread_sigmask") == 2 and "0 and os.kill" in LATE
    (tmp_path / "client.ovpn").write_text(OVPN)
    (tmp_path / "appliance.toml").write_text(TOML)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", LATE, str(tmp_path / "appliance.toml"), str(out), sig],
                       cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    marks = out.read_text().split("\n")[:-1] if out.exists() else []
    assert marks[:2] == ["set-up went on", "loop"] and "restored" in marks, (p.returncode, marks, p.stderr[-2000:])
    assert f"{sig}: stopping (restoring what was set)" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
