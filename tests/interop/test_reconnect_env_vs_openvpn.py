"""A reconnect's scripts and down-root command against Debian's OpenVPN 2.6, in namespaces.

Debian's server pushes from a client-config-dir file, rewritten between the two connections
(another ifconfig, routes, dhcp-options). The same profile (script-security 2, tls-verify,
ipchange, up, route-up, route-pre-down, down, each a recorder of its arguments and environment;
with and without persist-tun) runs in Debian's client and in ours: connected, SIGUSR1 once the push changed,
connected again, SIGTERM, a management client hearing >UPDOWN (management-up-down; the
restart holds again). 2.6 closes its device at the restart (route-pre-down and down `init`
with signal=sigusr1), makes the next connection's set afresh (tls-verify from the settings again)
and runs up `init` and route-up with the new push's values: ours must run the same scripts in the
same order with the same arguments and environment (but for the start time, pid, config path and
PATH). With the down-root plugin line instead, 2.6 runs its command at that restart with the
first UP's environment (then its plugin's second UP fails and it exits; ours runs on).
"""
from __future__ import annotations

import os
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

from tests.interop.test_ops_vs_openvpn import Mgmt

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

PLUGIN = "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so"
KINDS = ("tlsverify", "ipchange", "up", "route-up", "route-pre-down", "down", "downroot")
VARIES = {"config", "daemon_pid", "daemon_start_time", "PATH"}
FIRST = 'ifconfig-push 198.19.0.50 255.255.255.0\npush "route 198.18.120.0 255.255.255.0"\n' \
        'push "dhcp-option DNS 198.18.5.5"\n'
SECOND = 'ifconfig-push 198.19.0.60 255.255.255.0\npush "route 198.18.130.0 255.255.255.0"\n' \
         'push "route 198.18.131.0 255.255.255.0"\npush "dhcp-option DNS 198.18.6.6"\n' \
         'push "dhcp-option DOMAIN example.org"\n'


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconnenv")
    with Lab(tmp=tmp) as lab:
        (lab.tmp / "ccd").mkdir()
        lab.openvpn(lab.srv, server_config(lab.pki, extra=f"client-config-dir {lab.tmp / 'ccd'}\n"), "rcsrv")
        yield lab


def _count(d, kind: str) -> int:
    return len([f for f in os.listdir(d) if f.endswith("-" + kind)])


def _updown(notes: list[str]) -> list[tuple[str, list[str]]]:
    """The >UPDOWN events in order: (UP|DOWN, its NAME=VALUE lines in order), but for the
    values each run has its own of."""
    out: list[tuple[str, list[str]]] = []
    for n in notes:
        if n.startswith(">UPDOWN:ENV,"):
            if n != ">UPDOWN:ENV,END" and out and n[12:].split("=", 1)[0] not in VARIES:
                out[-1][1].append(n[12:])
        elif n.startswith(">UPDOWN:"):
            out.append((n[8:], []))
    return out


def _run(lab: Lab, which: str, plugin: bool, persist: bool = False):
    """The records in the order they ran: (kind, arguments, environment); the log; the
    >UPDOWN events (without the plugin)."""
    tag = f"{which}{'-plugin' if plugin else ''}{'-persist' if persist else ''}"
    d = lab.tmp / f"rec-{tag}"
    d.mkdir()
    (lab.tmp / "ccd" / "client1").write_text(FIRST)

    def recorder(kind: str):
        return lab.write(f"rc-{tag}-{kind}.sh", "#!/bin/sh\n" f"f={d}/$(date +%s%N)-{kind}\n"
                         '{ for a in "$@"; do echo "arg=$a"; done; env | sort; } > $f.tmp\nmv $f.tmp $f\n')

    lines = ["script-security 2"] + (["persist-tun"] if persist else [])
    if plugin:
        lines.append(f'plugin {PLUGIN} "{recorder("downroot")}"')
    else:
        lines.append(f"tls-verify {recorder('tlsverify')}")
        lines += [f"{k} {recorder(k)}" for k in KINDS[1:6]]
        sock = lab.tmp / f"rc-{tag}.sock"
        lines += [f"management {sock} unix", "management-hold", "management-up-down"]
    for f in lab.tmp.glob(f"rc-{tag}-*.sh"):
        f.chmod(0o755)
    prof = client_profile(lab.pki, extra="\n".join(lines) + "\n")
    wait = 0 if not plugin else 60
    p = lab.ours(lab.cli, prof, f"rccli-{tag}", wait=wait) if which == "ours" else \
        lab.openvpn(lab.cli, prof, f"rccli-{tag}", wait=wait)
    m = None
    if not plugin:
        m = Mgmt(str(sock), p)
        m.lines(0.3)
        m.cmd("hold release")
        end = time.monotonic() + 20
        while time.monotonic() < end and not _count(d, "route-up"):
            m.lines(0.1)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, p.log()[-3000:]
    (lab.tmp / "ccd" / "client1").write_text(SECOND)
    p.p.send_signal(10)
    end = time.monotonic() + 20
    if m is None:
        while time.monotonic() < end and not _count(d, "downroot"):
            time.sleep(0.1)
        time.sleep(1.5)                      # Debian's client exits at its second UP; ours runs on
    else:
        released = False
        while time.monotonic() < end and _count(d, "route-up") < 2:
            m.lines(0.1)
            if not released and sum(n.startswith(">HOLD:") for n in m.notes) >= 2:
                m.cmd("hold release")       # the restart holds again, as the start did
                released = True
        assert lab.ping(lab.cli, "198.19.0.1", 2) == 2, p.log()[-3000:]
    if p.alive():
        p.p.send_signal(15)
    p.exit_within(15)
    notes: list[str] = []
    if m is not None:
        m.lines(0.3)
        m.close()
        notes = m.notes
    log = p.log()
    files = sorted(f for f in os.listdir(d) if not f.endswith(".tmp"))
    out = []
    for f in files:
        rec = (d / f).read_text().splitlines()
        out.append((f.split("-", 1)[1], [x[4:] for x in rec if x.startswith("arg=")],
                    {k: v for k, v in (x.split("=", 1) for x in rec if "=" in x and not x.startswith("arg="))
                     if k not in VARIES}))
    return out, log, _updown(notes)


@pytest.mark.parametrize("persist", [False, True], ids=["no-persist-tun", "persist-tun"])
def test_scripts_at_a_reconnect_with_a_changed_push_as_openvpns(lab, persist):
    """With persist-tun too: 2.6 then closes and reopens its device once it sees the push changed
    ("Pulled options changed on restart"): route-pre-down and down with signal=UNKNOWN, the old
    addresses and the new connection's set (no route_*), then up `init` and route-up."""
    theirs, t_log, t_updown = _run(lab, "openvpn", False, persist)
    ours, o_log, o_updown = _run(lab, "ours", False, persist)
    kinds = [(k, a) for k, a, _e in theirs]
    # What the test is worth: 2.6 closed and reopened its tunnel, the new push in the second up.
    assert [k for k, _a in kinds].count("up") == 2 and ("down", ["tun0", "1500", "0", "198.19.0.50",
                                                                 "255.255.255.0", "init"]) in kinds, kinds
    assert kinds[-2][1][3] == "198.19.0.60", kinds
    assert [(k, a) for k, a, _e in ours] == kinds, f"OpenVPN:\n{kinds}\nours:\n{o_log[-3000:]}"
    for (k, _a, t), (_k, _a2, o) in zip(theirs, ours):
        assert o == t, (k, sorted(set(t.items()) ^ set(o.items())))
    # management-up-down: DOWN at the restart (before route-pre-down), UP with the new push,
    # DOWN at the end: the same events with the same variables in the same order.
    assert [e for e, _v in t_updown] == ["UP", "DOWN", "UP", "DOWN"], t_updown
    assert [e for e, _v in o_updown] == [e for e, _v in t_updown], o_updown
    for (ev, t), (_e, o) in zip(t_updown, o_updown):
        assert o == t, (ev, t, o)


def test_down_root_at_a_reconnect_without_persist_tun_as_openvpns(lab):
    theirs, t_log, _ = _run(lab, "openvpn", True)
    ours, o_log, _ = _run(lab, "ours", True)
    # 2.6: the command at the SIGUSR1 restart, with the first UP's environment; its plugin's
    # second UP then fails and the client exits. Ours runs the command alike and runs on: at the
    # end (SIGTERM) the command runs again, with the second tunnel's environment.
    assert "ERROR: up/down plugin call failed" in t_log and len(theirs) == 1, (theirs, t_log[-2000:])
    assert theirs[0][2]["ifconfig_local"] == "198.19.0.50", theirs
    assert len(ours) == 2, o_log[-3000:]
    assert ours[0][1:] == theirs[0][1:]
    assert ours[1][2]["ifconfig_local"] == "198.19.0.60" and ours[1][2]["route_network_3"] == "198.18.131.0"
