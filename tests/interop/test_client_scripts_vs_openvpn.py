"""The client's own scripts against Debian's OpenVPN 2.6, in namespaces: the same profile
(`script-security 2`, `ipchange`, `up`, `route-up`, `route-pre-down`, `down`, each a recorder of
its uid, arguments and environment) runs in Debian's client and in ours against Debian's server,
then ends at SIGTERM; once as root, once with `user nobody`/`group nogroup`, where 2.6 runs
ipchange, up and route-up as root before its drop and route-pre-down and down as nobody (ours:
the root helper, host/script_root.py, for the first three). The scripts must run in the same
order, as the same user, with the same arguments and the same environment: the same names and
values, but for what differs by nature (the start time, the pid, the config's path) and PATH
(ours sets one; OpenVPN passes none).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

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
