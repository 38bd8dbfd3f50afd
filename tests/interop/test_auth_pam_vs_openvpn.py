"""`plugin .../openvpn-plugin-auth-pam.so SERVICE` on our server beside Debian's OpenVPN 2.6 server
running its real plugin: the SAME config (the real plugin line, `user nobody`/`group nogroup`)
on both, OpenVPN's own client, a temporary PAM service whose auth step is a pam_exec script:

- the right password brings the tunnel up, a wrong one gets AUTH_FAILED, and a user the account
  step refuses (pam_succeed_if) gets AUTH_FAILED though its password is right;
- the script sees the same on both: PAM_USER, PAM_RHOST (the client's address), PAM_SERVICE,
  PAM_TYPE and the password (pam_exec's expose_authtok), in the same order;
- with name/value pairs (`"SERVICE login USERNAME password PASSWORD"`: PAM is started without a
  user, the prompts answered by their text) the outcomes and what the script sees are the same;
- ours with its helper's checks process killed after the first login (a crash: the helper, still
  root, starts it again) decides the later logins as Debian's does.
(In memory, with a fake PAM: tests/gateway/test_auth_pam.py; the rules: tests/unit/test_auth_pam_rules.py.)
"""
from __future__ import annotations

import os
import secrets
import signal
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, Lab

UP = "Initialization Sequence Completed"
PLUGIN = "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-auth-pam.so"

CHECK = """#!/bin/sh
# pam_exec expose_authtok: the password on stdin. Right: first-pw (for anyone; the account step
# refuses carol). What PAM gave the script goes to {out}, one line a run.
IFS= read -r pw
echo "user=${{PAM_USER-UNSET}} rhost=${{PAM_RHOST-UNSET}} service=$PAM_SERVICE type=$PAM_TYPE pw=$pw" >> {out}
[ "$pw" = first-pw ]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not os.path.exists(PLUGIN):
        pytest.skip(f"Debian's auth-pam plugin is not installed ({PLUGIN})")
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def service(lab):
    """A PAM service file of our own, removed at the end whatever happened."""
    name = f"vpnapp-pam29-{secrets.token_hex(4)}"
    out = lab.tmp / "pam-seen.txt"
    script = lab.write("pam-check.sh", CHECK.format(out=out))
    script.chmod(0o755)
    path = f"/etc/pam.d/{name}"
    with open(path, "x") as f:
        f.write(f"auth required pam_exec.so expose_authtok quiet {script}\n"
                "account required pam_succeed_if.so user != carol quiet\n")
    try:
        yield name, out
    finally:
        os.unlink(path)


def _helpers(pid: int) -> list[int]:
    """The PAM helper processes among `pid`'s children."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in f.read().split():
                with open(f"/proc/{child}/cmdline", "rb") as c:
                    if b"appliance.host.pam_helper" in c.read():
                        out.append(int(child))
    return out


def _gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def _crash_checks_process(srv) -> None:
    """SIGKILL our PAM helper's checks process (a crash of it): the helper, still root where our
    server is not, starts it again (host/pam_helper.keep_serving)."""
    (helper,) = _helpers(srv.p.pid)
    (loop,) = _children(helper)
    os.kill(loop, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end and _children(helper) in ([], [loop]):
        time.sleep(0.05)
    assert _children(helper) not in ([], [loop]), srv.log()[-2000:]


def _run(lab, procs, kind: str, line: str, out, kill: bool = False, crash: bool = False
         ) -> tuple[list[bool], list[str]]:
    """Three logins on server `kind` (alice right, alice wrong, carol right): whether each came
    up, and the lines the PAM script wrote. Ours: its PAM helper ends with it, when it stops or
    when it is killed (`kill`: SIGKILL, no clean-up of its own); `crash`: its checks process
    killed after the first login (the later logins must be decided as before)."""
    conf = server_config(lab.pki, "udp", extra=f"{line}\nuser nobody\ngroup nogroup\npersist-key\npersist-tun\n")
    name = f"pam-{kind}-{secrets.token_hex(2)}"
    srv = (lab.openvpn(lab.srv, conf, name) if kind == "openvpn"
           else lab.ours(lab.srv, conf, name, pattern=r"listening on UDP", readable_python=True))
    procs.append(srv)
    if out.exists():
        out.unlink()
    ups = []
    for i, (user, pw) in enumerate((("alice", "first-pw"), ("alice", "guess"), ("carol", "first-pw"))):
        creds = lab.write(f"{name}-{i}.txt", f"{user}\n{pw}\n")
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\nauth-retry none\n"),
                          f"{name}-c{i}", wait=0)
        procs.append(cli)
        got = cli.wait_for(f"{UP}|AUTH_FAILED", 30)
        assert got, cli.log()[-1500:] + "\n--- server:\n" + srv.log()[-3000:]
        up = UP in cli.log()
        if up:
            assert lab.ping(lab.cli, "198.19.0.1", 2) == 2
        ups.append(up)
        cli.stop(8)
        if crash and kind == "ours" and i == 0:
            _crash_checks_process(srv)
    assert srv.alive(), srv.log()[-3000:]
    helpers = _helpers(srv.p.pid) if kind == "ours" else []
    assert len(helpers) == (kind == "ours"), helpers
    if kill:
        os.kill(srv.p.pid, signal.SIGKILL)
    srv.stop(8)
    assert all(_gone(h, 5) for h in helpers), "the PAM helper outlived our server"
    return ups, out.read_text().splitlines() if out.exists() else []


@pytest.mark.parametrize("args", ["{service}", '"{service} login USERNAME password PASSWORD"'])
def test_same_pam_verdicts_and_conversation_on_both_servers(lab, procs, service, args):
    name, out = service
    line = f"plugin {PLUGIN} " + args.format(service=name)
    theirs, seen_t = _run(lab, procs, "openvpn", line, out)
    ours, seen_o = _run(lab, procs, "ours", line, out, kill="login" in args, crash="login" not in args)
    assert theirs == [True, False, False], (theirs, seen_t)
    assert ours == theirs, (ours, seen_o)
    assert seen_o == seen_t
    assert len(seen_o) == 3 and f"rhost={CLI_IP} service={name} type=auth pw=first-pw" in seen_o[0]
    assert seen_o[1].endswith("pw=guess")
