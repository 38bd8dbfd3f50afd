"""The client's own scripts against Debian's OpenVPN 2.6, in namespaces: the same profile
(`script-security 2`, `ipchange`, `up`, `route-up`, `route-pre-down`, `down`, each a recorder of
its uid, arguments and environment) runs in Debian's client and in ours against Debian's server,
then ends at SIGTERM; once as root, once with `user nobody`/`group nogroup`, where 2.6 runs
ipchange, up and route-up as root before its drop and route-pre-down and down as nobody (ours:
the root helper, host/script_root.py, for the first three). The scripts must run in the same
order, as the same user, with the same arguments and the same environment: the same names and
values, but for what differs by nature (the start time, the pid, the config's path) and PATH
(ours sets one; OpenVPN passes none).

With `route-delay` (the profile's 30 s, a second Debian server pushing 3 s, which replaces it),
`user nobody` and management-up-down: the routes, >STATE:ADD_ROUTES, >UPDOWN:UP, route-up
(still as root) and >STATE:CONNECTED all come after the pushed delay, in that order, with the
same route-up environment and >UPDOWN lines as Debian's client. With persist-tun, a SIGUSR1
reconnect (the same push) says neither ASSIGN_IP nor ADD_ROUTES again, as Debian's client.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, SRV_IP, TUN_SERVER_IP, Lab

from tests.interop.test_ops_vs_openvpn import Mgmt

KINDS = ("ipchange", "up", "route-up", "route-pre-down", "down")
LOGS: dict[str, str] = {}       # each run's log's end, for a failure's message
VARIES = {"config", "daemon_pid", "daemon_start_time", "PATH"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("cscripts")) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "cssrv")
        yield lab


@pytest.fixture(scope="module")
def shared():
    """The scripts and their records where `nobody` reaches them (pytest's own tree is root's, 0700)."""
    d = tempfile.mkdtemp(prefix="cscripts-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _run(lab: Lab, shared: Path, which: str, user: str, restart: bool) -> list[tuple[str, list[str]]]:
    """The scripts' records in the order they ran: (kind, lines: uid=, arg=..., then env sorted).
    `restart`: up-restart, and a SIGUSR1 once the tunnel is up (the end once it is up again)."""
    which = f"{which}{user}{'-restart' if restart else ''}"
    d = shared / f"cs-{which}"
    d.mkdir()
    os.chmod(d, 0o777)                    # down runs as `user`
    lines = ["script-security 2"] + ([f"user {user}", "group nogroup"] if user else []) + \
        (["up-restart", "persist-tun"] if restart else [])
    for kind in KINDS:
        s = shared / f"cs-{which}-{kind}.sh"
        s.write_text("#!/bin/sh\n"
                     f'f={d}/$(date +%s%N)-{kind}\n'
                     '{ echo "uid=$(id -u)"; for a in "$@"; do echo "arg=$a"; done; env | sort; } > $f.tmp\n'
                     "mv $f.tmp $f\n")
        s.chmod(0o755)
        lines.append(f"{kind} {s}")
    prof = client_profile(lab.pki, extra="\n".join(lines) + "\n")
    p = lab.ours(lab.cli, prof, f"cscli-{which}", wait=0, readable_python=bool(user)) if which.startswith("ours") else \
        lab.openvpn(lab.cli, prof, f"cscli-{which}", wait=0)
    end = time.monotonic() + 20
    while time.monotonic() < end and not any(f.endswith("-route-up") for f in os.listdir(d)):
        time.sleep(0.1)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, p.log()[-3000:]
    if restart:
        p.p.send_signal(10)
        end = time.monotonic() + 20
        while time.monotonic() < end and len([f for f in os.listdir(d) if f.split("-", 1)[1] == "up"]) < 2:
            time.sleep(0.1)
    p.p.send_signal(15)
    assert p.exit_within(15) is not None, p.log()[-3000:]
    LOGS[which] = p.log()[-4000:]
    files = sorted(f for f in os.listdir(d) if not f.endswith(".tmp"))
    return [(f.split("-", 1)[1], (d / f).read_text().splitlines()) for f in files]


def _env(lines: list[str]) -> dict[str, str]:
    return {k: v for k, v in (x.split("=", 1) for x in lines if "=" in x and not x.startswith(("uid=", "arg=")))
            if k not in VARIES}


RESTARTED = ["ipchange", "up", "route-up", "down", "ipchange", "up", "route-pre-down", "down"]


@pytest.mark.parametrize("user, restart", [("", False), ("nobody", False), ("", True)])
def test_scripts_run_as_openvpns(lab, shared, user, restart):
    theirs, ours = _run(lab, shared, "openvpn", user, restart), _run(lab, shared, "ours", user, restart)
    tag = f"{user}{'-restart' if restart else ''}"
    assert [k for k, _ in theirs] == (RESTARTED if restart else list(KINDS)), LOGS[f"openvpn{tag}"]
    assert [k for k, _ in ours] == [k for k, _ in theirs], LOGS[f"ours{tag}"]
    nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
    for (kind, t), (_, o) in zip(theirs, ours):
        as_root = not user or kind in ("ipchange", "up", "route-up")
        assert t[0] == f"uid={0 if as_root else nobody}" and o[0] == t[0], (kind, t[0], o[0])
        t_args, o_args = [x for x in t if x.startswith("arg=")], [x for x in o if x.startswith("arg=")]
        assert o_args == t_args, (kind, t_args, o_args)
        t_env, o_env = _env(t), _env(o)
        assert sorted(o_env) == sorted(t_env), (kind, sorted(set(t_env) ^ set(o_env)))
        assert o_env == t_env, (kind, {k: (t_env[k], o_env[k]) for k in t_env if t_env[k] != o_env.get(k)})


DELAY_PUSHED, DELAY_PROFILE = 3, 30
PUSHED_NET = BEHIND_IP.rsplit(".", 1)[0] + ".0/24"      # server_config's pushed route


@pytest.fixture(scope="module")
def delay_server(lab):
    """A second Debian server (its own port and tunnel network) pushing route-delay."""
    conf = server_config(lab.pki, port=1195, extra=f'push "route-delay {DELAY_PUSHED}"\n')
    p = lab.openvpn(lab.srv, conf.replace("server 198.19.0.0 ", "server 198.19.2.0 "), "cssrv-rd")
    yield p
    p.stop_promptly(8)


def _run_delayed(lab: Lab, shared: Path, which: str):
    """One client run against delay_server: the times (s after its up script) the pushed route
    was first seen and route-up ran, the scripts' records, the management events in order
    (state names and UPDOWN), and the >UPDOWN:UP lines (but for what varies by nature)."""
    d = shared / f"rd-{which}"
    d.mkdir()
    os.chmod(d, 0o777)
    script = shared / f"rd-{which}.sh"
    script.write_text("#!/bin/sh\n"
                      f'f={d}/$(date +%s%N)-$script_type\n'
                      '{ echo "uid=$(id -u)"; for a in "$@"; do echo "arg=$a"; done; env | sort; } > $f.tmp\n'
                      "mv $f.tmp $f\n")
    script.chmod(0o755)
    sock = shared / f"rd-{which}.sock"
    lines = ["script-security 2", "user nobody", "group nogroup", f"route-delay {DELAY_PROFILE}", f"up {script}",
             f"route-up {script}", f"management {sock} unix", "management-hold", "management-up-down"]
    prof = client_profile(lab.pki, remotes=[(SRV_IP, 1195, "udp")], extra="\n".join(lines) + "\n")
    p = lab.ours(lab.cli, prof, f"rdcli-{which}", wait=0, readable_python=True) if which == "ours" else \
        lab.openvpn(lab.cli, prof, f"rdcli-{which}", wait=0)
    try:
        m = Mgmt(str(sock), p)
        m.lines(0.3)
        m.cmd("state on")
        m.cmd("hold release")
        route_seen = None
        end = time.monotonic() + 40
        while time.monotonic() < end and not any(",CONNECTED," in n for n in m.notes):
            m.lines(0.1)
            if route_seen is None and lab.cli.run(f"ip route show {PUSHED_NET}", check=False).stdout.strip():
                route_seen = time.time()
        m.lines(0.3)
        m.close()
    finally:
        p.p.send_signal(15)
        p.exit_within(15)
        LOGS[f"rd-{which}"] = p.log()[-4000:]
    files = sorted(f for f in os.listdir(d) if not f.endswith(".tmp"))
    recs = [(f.split("-", 1)[1], (d / f).read_text().splitlines()) for f in files]
    times = {f.split("-", 1)[1]: int(f.split("-", 1)[0]) / 1e9 for f in files}
    up_at = times.get("up", 0.0)
    events, updown_up, in_up = [], [], False
    for n in m.notes:
        if n.startswith(">STATE:"):
            events.append(n.split(",")[1])
        elif n in (">UPDOWN:UP", ">UPDOWN:DOWN"):
            events.append(n[1:])
            in_up = n == ">UPDOWN:UP"
        elif n.startswith(">UPDOWN:ENV,") and in_up and n != ">UPDOWN:ENV,END" \
                and n[12:].split("=", 1)[0] not in VARIES:
            updown_up.append(n[12:])
    seen = route_seen - up_at if route_seen is not None else None
    return seen, times.get("route-up", 0.0) - up_at, recs, events, updown_up


def test_route_delay_pushed_as_openvpns(lab, shared, delay_server):
    t_seen, t_rup, theirs, t_events, t_updown = _run_delayed(lab, shared, "openvpn")
    o_seen, o_rup, ours, o_events, o_updown = _run_delayed(lab, shared, "ours")
    # What the test is worth: Debian's client waited the pushed delay (not the profile's 30 s).
    assert t_seen is not None and DELAY_PUSHED - 0.5 <= t_seen < DELAY_PROFILE - 5, (t_seen, LOGS["rd-openvpn"])
    assert o_seen is not None and DELAY_PUSHED - 0.5 <= o_seen < DELAY_PROFILE - 5, (o_seen, LOGS["rd-ours"])
    assert DELAY_PUSHED - 0.5 <= o_rup < DELAY_PROFILE - 5, (o_rup, LOGS["rd-ours"])
    after = ["ASSIGN_IP", "ADD_ROUTES", "UPDOWN:UP", "CONNECTED"]
    assert t_events[t_events.index("ASSIGN_IP"):] == after, t_events
    assert o_events[o_events.index("ASSIGN_IP"):] == after, (o_events, LOGS["rd-ours"])
    assert o_updown == t_updown, sorted(set(o_updown) ^ set(t_updown))
    assert [k for k, _ in theirs] == ["up", "route-up"] and [k for k, _ in ours] == ["up", "route-up"]
    for (kind, t), (_, o) in zip(theirs, ours):
        assert t[0] == "uid=0" and o[0] == t[0], (kind, t[0], o[0])      # route-up before the drop
        t_env, o_env = _env(t), _env(o)
        assert o_env == t_env, (kind, sorted(set(t_env.items()) ^ set(o_env.items())))


def _persisted_reconnect(lab: Lab, shared: Path, which: str) -> tuple[list[str], list[str]]:
    """persist-tun and route-delay 2: once the routes are in (CONNECTED), a SIGUSR1 reconnect
    (management-hold released again); -> the state names before and after the signal."""
    sock = shared / f"pr-{which}.sock"
    prof = client_profile(lab.pki, extra=f"persist-tun\nroute-delay 2\nmanagement {sock} unix\nmanagement-hold\n")
    p = lab.ours(lab.cli, prof, f"prcli-{which}", wait=0) if which == "ours" else \
        lab.openvpn(lab.cli, prof, f"prcli-{which}", wait=0)
    try:
        m = Mgmt(str(sock), p)
        m.lines(0.3)
        m.cmd("state on")
        m.cmd("hold release")
        end = time.monotonic() + 30
        while time.monotonic() < end and not any(",CONNECTED," in n for n in m.notes):
            m.lines(0.1)
        first, m.notes[:] = list(m.notes), []
        p.p.send_signal(10)
        released = False
        end = time.monotonic() + 30
        while time.monotonic() < end and not any(",CONNECTED," in n for n in m.notes):
            m.lines(0.1)
            if not released and any(n.startswith(">HOLD:") for n in m.notes):
                m.cmd("hold release")
                released = True
        m.lines(0.3)
        m.close()
    finally:
        p.p.send_signal(15)
        p.exit_within(15)
        LOGS[f"pr-{which}"] = p.log()[-4000:]
    names = [[n.split(",")[1] for n in notes if n.startswith(">STATE:")] for notes in (first, m.notes)]
    return names[0], names[1]


def test_a_persisted_device_reconnects_as_openvpns(lab, shared):
    """The same push over a persist-tun SIGUSR1 reconnect: 2.6 keeps its device (no do_ifconfig,
    no do_route), so neither ASSIGN_IP nor ADD_ROUTES the second time."""
    t_first, t_again = _persisted_reconnect(lab, shared, "openvpn")
    o_first, o_again = _persisted_reconnect(lab, shared, "ours")
    assert t_first[-3:] == ["ASSIGN_IP", "ADD_ROUTES", "CONNECTED"], (t_first, LOGS["pr-openvpn"])
    assert o_first[-3:] == t_first[-3:], (o_first, LOGS["pr-ours"])
    assert t_again[-1] == "CONNECTED" and "ASSIGN_IP" not in t_again, (t_again, LOGS["pr-openvpn"])
    assert o_again[o_again.index("RECONNECTING"):] == t_again[t_again.index("RECONNECTING"):], \
        (o_again, t_again, LOGS["pr-ours"])
