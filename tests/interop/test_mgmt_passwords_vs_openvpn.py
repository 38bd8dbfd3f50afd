"""management-query-passwords against Debian's OpenVPN 2.6 client, in namespaces: the same
profile (`auth-user-pass` without a file, `management SOCK unix`, `management-query-passwords`,
`auth-retry interact`) run with OpenVPN's client and then ours, against one OpenVPN server whose
verify script accepts alice/right. A management client answers the question with a wrong
password, hears the failure and the question again, answers right, and the tunnel comes up; then
`forget-passwords` and a SIGUSR1 make it ask once more, and so does the management client
leaving (management-signal, management-forget-disconnect). What each client tells and answers is
compared line by line, and the server's script must have seen the same credentials from both."""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

from tests.interop.test_ops_vs_openvpn import Mgmt

NEED = ">PASSWORD:Need 'Auth' username/password"
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


def _until(m: Mgmt, line: str, within: float = 30) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if line in m.notes:
            return True
        m.lines(0.2)
    return False


def _notes(m: Mgmt) -> list[str]:
    out = [n for n in m.notes if n.startswith((">PASSWORD:", ">HOLD:"))]
    m.notes.clear()
    return out


def _session(lab: Lab, kind: str, calls) -> dict[str, list[str]]:
    sock = str(lab.tmp / f"pw-{kind}.sock")
    prof = client_profile(lab.pki, extra=f"auth-user-pass\nmanagement {sock} unix\nmanagement-query-passwords\n"
                          "auth-retry interact\nmanagement-signal\nmanagement-forget-disconnect\n")
    start = lab.ours if kind == "ours" else lab.openvpn
    p = start(lab.cli, prof, f"pw-cli-{kind}", wait=0)
    try:
        m = Mgmt(sock, p)
        out: dict[str, list[str]] = {}
        assert _until(m, NEED, 10), (m.notes, p.log()[-2000:])
        out["asked"] = _notes(m)
        out["other type"] = m.cmd("username Other alice")
        out["wrong"] = m.cmd("username Auth alice") + m.cmd('password "Auth" "wrong"')
        assert _until(m, NEED, 40), (m.notes, p.log()[-2000:])
        out["failed, asked again"] = _notes(m)
        out["right"] = m.cmd("username Auth alice") + m.cmd("password Auth right")
        assert p.wait_count(UP[kind], 1, timeout=30), p.log()[-3000:]
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
        out["not needed"] = m.cmd("username Auth bob") + m.cmd("password Auth x")
        out["forget"] = m.cmd("forget-passwords")
        m.cmd("signal SIGUSR1")
        assert _until(m, NEED, 30), (m.notes, p.log()[-2000:])
        out["after forget"] = _notes(m)
        m.cmd("username Auth alice")
        m.cmd("password Auth right")
        assert p.wait_count(UP[kind], 2, timeout=30), p.log()[-3000:]
        m.close()                           # management-signal + -forget-disconnect: restart, ask again
        m = Mgmt(sock)
        assert _until(m, NEED, 30), (m.notes, p.log()[-2000:])
        out["after disconnect"] = _notes(m)
        out["reconnect reasons"] = [x.split(",")[2] for x in m.cmd("state all") if ",RECONNECTING," in x]
        m.close()
    finally:
        p.stop()
    out["server saw"] = calls.read_text().splitlines()
    calls.write_text("")
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("mgmtpw")) as lab:
        yield lab


def test_credentials_asked_of_the_management_client_as_openvpns(lab, procs):
    calls = lab.tmp / "pw-calls.log"
    calls.write_text("")
    script = lab.write("pw-verify.sh", "#!/bin/sh\n"          # via-file: $1 holds username, password
                       f'u=$(sed -n 1p "$1"); p=$(sed -n 2p "$1"); echo "$u $p" >> {calls}\n'
                       '[ "$u" = alice ] && [ "$p" = right ]\n')
    script.chmod(0o755)
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\n")), "pw-srv"))
    theirs = _session(lab, "openvpn", calls)
    ours = _session(lab, "ours", calls)
    print("openvpn:", theirs, "\nours:", ours)
    assert theirs["asked"] == [NEED]
    assert theirs["failed, asked again"] == [">PASSWORD:Verification Failed: 'Auth'", NEED]
    assert theirs["server saw"] == ["alice wrong", "alice right", "alice right"]
    for k in theirs:
        assert ours[k] == theirs[k], (k, ours[k], theirs[k])
