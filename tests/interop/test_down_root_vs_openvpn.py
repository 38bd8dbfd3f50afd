"""The down-root plugin line and management-up-down against Debian's OpenVPN 2.6, in namespaces.

The same client profile (`user nobody`, `group nogroup`, `script-security 2`, the down-root plugin
line by Debian's path with a command and arguments, `management SOCK unix`, `management-up-down`)
runs in Debian's client and in ours against Debian's server. At SIGTERM the down-root command
must run as root (uid 0, from the helper forked before the drop) with the arguments as given and
the same environment names (the environment the tunnel came up with, the server chain's X509_*
variables among them), while the process itself runs as nobody; a management client must hear
>UPDOWN:UP and >UPDOWN:DOWN with the same variable names. Values that differ by nature (the
start time, the pid, the config's path) are not compared; the rest are. The same for a server
(down-root command and >UPDOWN:DOWN at its SIGTERM; its UP comes before any tool can connect).
"""
from __future__ import annotations

import os
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

from tests.interop.test_ops_vs_openvpn import Mgmt

PLUGIN = "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so"
# Values each run has its own of (or that name files of the run).
VARIES = {"config", "daemon_pid", "daemon_start_time"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("downroot")
    os.chmod(tmp, 0o755)                  # nobody must reach the profile's directory
    with Lab(tmp=tmp) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "drsrv")
        yield lab


def _recorder(lab: Lab, tag: str):
    """The down-root command: writes `uid`, its arguments and its environment (sorted), whole."""
    out = lab.tmp / f"downroot-{tag}"
    script = lab.write(f"downroot-{tag}.sh", "#!/bin/sh\n"
                       f'{{ echo "uid=$(id -u)"; for a in "$@"; do echo "arg=$a"; done; env | sort; }} > {out}.tmp\n'
                       f"mv {out}.tmp {out}\n")
    script.chmod(0o755)
    return script, out


def _env(lines: list[str]) -> dict[str, str]:
    return dict(x.split("=", 1) for x in lines if "=" in x)


def _run(lab: Lab, which: str) -> tuple[list[str], dict[str, list[str]], str]:
    script, out = _recorder(lab, which)
    sock = str(lab.tmp / f"dr-{which}.sock")
    prof = client_profile(lab.pki, extra=f"user nobody\ngroup nogroup\nscript-security 2\n"
                                         f"plugin {PLUGIN} \"{script} one 'two words'\"\n"
                                         f"management {sock} unix\nmanagement-hold\nmanagement-up-down\n")
    p = lab.ours(lab.cli, prof, f"drcli-{which}", wait=0, readable_python=True) if which == "ours" else \
        lab.openvpn(lab.cli, prof, f"drcli-{which}", wait=0)
    m = Mgmt(sock, p)
    notes: dict[str, list[str]] = {"UP": [], "DOWN": []}
    m.lines(0.5)
    m.cmd("hold release")
    end = time.monotonic() + 25
    while time.monotonic() < end and ">UPDOWN:ENV,END" not in m.notes:
        m.lines(0.2)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, p.log()[-3000:]
    with open(f"/proc/{p.p.pid}/status") as f:
        uid_line = next(x for x in f if x.startswith("Uid:"))
    p.p.send_signal(15)
    assert p.exit_within(15) is not None, p.log()[-3000:]
    m.lines(0.3)
    m.close()
    which_ev = None
    for n in m.notes:
        if n.startswith(">UPDOWN:ENV,"):
            if which_ev is not None and n != ">UPDOWN:ENV,END":
                notes[which_ev].append(n[len(">UPDOWN:ENV,"):])
        elif n.startswith(">UPDOWN:"):
            which_ev = n[len(">UPDOWN:"):]
    assert out.exists(), p.log()[-3000:]
    return out.read_text().splitlines(), notes, uid_line


def _names(lines: list[str]) -> list[str]:
    return sorted(x.split("=", 1)[0] for x in lines)


def _fixed(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in VARIES}


def test_down_root_and_updown_as_openvpns(lab):
    theirs, t_notes, t_uid = _run(lab, "openvpn")
    ours, o_notes, o_uid = _run(lab, "ours")
    nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
    for uid_line in (t_uid, o_uid):
        assert uid_line.split()[1:] == [nobody] * 4, uid_line        # the process ran as nobody
    # The command ran as root, with its arguments split as OpenVPN splits them.
    assert theirs[:3] == ["uid=0", "arg=one", "arg=two words"], theirs
    assert ours[:3] == theirs[:3], ours
    t_env, o_env = _env(theirs[3:]), _env(ours[3:])
    assert "X509_0_CN" in t_env and t_env.get("dev") == "tun0", t_env
    assert _names(ours[3:]) == _names(theirs[3:]), f"OpenVPN:\n{theirs}\nours:\n{ours}"
    assert _fixed(o_env) == _fixed(t_env)
    # management-up-down: the same events, the same names (values as above).
    assert t_notes["UP"] and t_notes["DOWN"], t_notes
    for ev in ("UP", "DOWN"):
        # The same names in the same order (OpenVPN's environment set lists the newest first).
        assert [x.split("=", 1)[0] for x in o_notes[ev]] == [x.split("=", 1)[0] for x in t_notes[ev]], \
            (ev, t_notes[ev], o_notes[ev])
        assert _fixed(_env(o_notes[ev])) == _fixed(_env(t_notes[ev])), ev


def _server_run(lab: Lab, which: str) -> tuple[list[str], list[str]]:
    script, out = _recorder(lab, f"srv-{which}")
    sock = str(lab.tmp / f"drs-{which}.sock")
    # Its own routes and IPv6 network: 2.6 gives the plugin and >UPDOWN their route_* and
    # ifconfig_ipv6_* variables (route_vpn_gateway the pool's .2, a line's own gateway and metric).
    cfg = server_config(lab.pki, port=1195, extra=f"user nobody\ngroup nogroup\nplugin {PLUGIN} \"{script} s\"\n"
                                                  f"management {sock} unix\nmanagement-up-down\n"
                                                  "route 198.18.140.0 255.255.255.0\n"
                                                  "route 198.18.141.0 255.255.255.0 198.19.0.7 5\n"
                                                  "server-ipv6 fd00:198:19::/64\nroute-ipv6 fd00:198:20::/64\n")
    p = lab.ours(lab.srv, cfg, f"drsrv-{which}", pattern="listening on UDP", readable_python=True) \
        if which == "ours" else lab.openvpn(lab.srv, cfg, f"drsrv-{which}")
    m = Mgmt(sock)
    m.lines(0.3)
    p.p.send_signal(15)
    assert p.exit_within(15) is not None, p.log()[-3000:]
    m.lines(0.3)
    m.close()
    assert out.exists(), p.log()[-3000:]
    down = m.notes[m.notes.index(">UPDOWN:DOWN") + 1:] if ">UPDOWN:DOWN" in m.notes else []
    return out.read_text().splitlines(), [n[len(">UPDOWN:ENV,"):] for n in down if n != ">UPDOWN:ENV,END"]


def test_server_down_root_as_openvpns(lab):
    theirs, t_down = _server_run(lab, "openvpn")
    ours, o_down = _server_run(lab, "ours")
    assert theirs[:2] == ["uid=0", "arg=s"] and ours[:2] == theirs[:2], (theirs, ours)
    assert "route_metric_2=5" in theirs and "route_ipv6_network_1=fd00:198:20::/64" in theirs, theirs
    assert _names(ours[2:]) == _names(theirs[2:]), f"OpenVPN:\n{theirs}\nours:\n{ours}"
    assert _fixed(_env(ours[2:])) == _fixed(_env(theirs[2:]))
    assert t_down and [x.split("=", 1)[0] for x in o_down] == [x.split("=", 1)[0] for x in t_down], (t_down, o_down)
    assert _fixed(_env(o_down)) == _fixed(_env(t_down))


def _verify_run(lab: Lab, which: str) -> list[list[str]]:
    """tls-verify's environment at the first handshake and at a renegotiation (after the tunnel's
    UP): the calls' `env`, sorted, oldest first."""
    d = lab.tmp / f"tv-{which}"
    d.mkdir()
    script = lab.write(f"tv-{which}.sh", "#!/bin/sh\n"
                       f'f={d}/$(date +%s%N)-$1; env | grep -v "^PATH=" | sort > $f.tmp && mv $f.tmp $f\nexit 0\n')
    script.chmod(0o755)
    prof = client_profile(lab.pki, extra=f"script-security 2\ntls-verify {script}\nreneg-sec 3\n")
    p = lab.ours(lab.cli, prof, f"tvcli-{which}") if which == "ours" else lab.openvpn(lab.cli, prof, f"tvcli-{which}")
    end = time.monotonic() + 15
    while time.monotonic() < end and len([f for f in os.listdir(d) if not f.endswith(".tmp")]) < 4:
        time.sleep(0.2)
    p.stop(5)
    files = sorted(f for f in os.listdir(d) if not f.endswith(".tmp"))[:4]
    assert len(files) == 4, p.log()[-3000:]
    return [(d / f).read_text().splitlines() for f in files]


def test_tls_verify_sees_the_environment_set_as_openvpns(lab):
    """OpenVPN's client runs tls-verify with its one environment set: the settings at the first
    handshake, and at a renegotiation also what the tunnel's UP put there (dev, routes, the last
    chain's tls_* variables; its X509_* are cleared first). PATH is ours (OpenVPN gives none)."""
    theirs, ours = _verify_run(lab, "openvpn"), _verify_run(lab, "ours")
    assert "dev=tun0" not in theirs[0] and "dev=tun0" in theirs[2], theirs      # what the test is worth
    for t, o in zip(theirs, ours):
        assert _names(o) == _names(t), f"OpenVPN:\n{t}\nours:\n{o}"
        assert _fixed(_env(o)) == _fixed(_env(t))


def _server_usr1(lab: Lab, which: str, signum: int = 10, extra: str = "") -> tuple[list[list[str]], str]:
    """A server (without persist-tun unless `extra` says) at SIGUSR1 (or `signum`): the down-root
    command's runs (each its sorted environment), then SIGTERM if it still runs."""
    tag = f"{signum}{'p' if extra else ''}-{which}"
    out = lab.tmp / f"dr-usr1-{tag}"
    script = lab.write(f"dr-usr1-{tag}.sh", f"#!/bin/sh\n{{ env | sort; echo ----; }} >> {out}\n")
    script.chmod(0o755)
    cfg = server_config(lab.pki, port=1196, extra=f"plugin {PLUGIN} \"{script}\"\nroute 198.18.140.0 255.255.255.0\n"
                        + extra)
    p = lab.ours(lab.srv, cfg, f"drusr1-{tag}", pattern="listening on UDP") if which == "ours" \
        else lab.openvpn(lab.srv, cfg, f"drusr1-{tag}")
    p.p.send_signal(signum)
    end = time.monotonic() + 30              # returns once it ran: generous for a loaded machine
    while time.monotonic() < end and not (out.exists() and "----" in out.read_text()):
        time.sleep(0.1)
    time.sleep(1.0)
    if p.alive():
        p.p.send_signal(15)
    assert p.exit_within(15) is not None, p.log()[-3000:]
    runs = out.read_text().split("----\n") if out.exists() else []
    return [r.splitlines() for r in runs if r.strip()], p.log()


def test_server_down_root_at_sigusr1_without_persist_tun_as_openvpns(lab):
    """2.6's server closes its device at a SIGUSR1 restart without persist-tun: its down-root
    command runs then, with the UP's environment (ours keeps its TUN and clients, and runs it
    again at its end)."""
    theirs, t_log = _server_usr1(lab, "openvpn")
    ours, o_log = _server_usr1(lab, "ours")
    assert theirs and "route_network_1=198.18.140.0" in theirs[0], t_log[-2000:]
    assert len(ours) == 2, o_log[-3000:]
    assert _fixed(_env(ours[0])) == _fixed(_env(theirs[0])) and _names(ours[0]) == _names(theirs[0])


def test_server_down_root_at_sighup_even_with_persist_tun_as_openvpns(lab):
    """2.6's SIGHUP closes a server's device whatever persist-tun says (init.c do_close_tun keeps
    it only at a SIGUSR1 with persist-tun): the down-root command runs then, with the UP's
    environment, as at SIGUSR1 without persist-tun. Ours, whose SIGHUP is a reload keeping its
    clients and TUN, runs it there too (and again at its end)."""
    theirs, t_log = _server_usr1(lab, "openvpn", signum=1, extra="persist-tun\n")
    ours, o_log = _server_usr1(lab, "ours", signum=1, extra="persist-tun\n")
    assert theirs and "route_network_1=198.18.140.0" in theirs[0], t_log[-2000:]
    assert len(ours) == 2, o_log[-3000:]
    assert _fixed(_env(ours[0])) == _fixed(_env(theirs[0])) and _names(ours[0]) == _names(theirs[0])
