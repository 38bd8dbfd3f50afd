"""A challenge answered through the management interfaces on both ends: the server's management
client asks (client-pending-auth ... "CR_TEXT:E,R:Enter code"), our client's management client
sees it (>INFOMSG:CR_TEXT:...) and answers with `cr-response <base64>`, which goes to the server as
CR_RESPONSE,<base64> and reaches its management client as >CLIENT:CR_RESPONSE,CID,KID,<base64>
with the client's environment, as OpenVPN 2.6's; client-auth then lets the login in. Before, our
client answered `cr-response` "not supported" and our server logged CR_RESPONSE as unknown."""
from __future__ import annotations

from tests.gateway.test_client_mgmt import Tap, ask
from tests.gateway.test_mgmt_client_auth import _login, _up


def _with_client_mgmt(pki, tmp_path):
    w, m, c, cid, kid = _login(pki, tmp_path, client_extra=f"management {tmp_path}/c.sock unix\n")
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    return w, m, c, cid, kid, tap


def test_a_challenge_is_answered_with_cr_response_and_told_to_the_servers_tool(pki, tmp_path):
    w, m, c, cid, kid, tap = _with_client_mgmt(pki, tmp_path)
    assert w.server.ops.management_pending(cid, kid, "CR_TEXT:E,R:Enter code", 60)
    assert w.run(lambda: ">INFOMSG:CR_TEXT:E,R:Enter code" in tap.got, max_time=10), tap.got
    assert ask(c, tap, "cr-response MTIzNDU2") == ["SUCCESS: command succeeded"]
    assert w.run(lambda: any(x.startswith(">CLIENT:CR_RESPONSE,") for x in m.lines), max_time=10)
    i = next(i for i, x in enumerate(m.lines) if x.startswith(">CLIENT:CR_RESPONSE,"))
    assert m.lines[i] == f">CLIENT:CR_RESPONSE,{cid},{kid},MTIzNDU2"
    env = m.lines[i + 1:m.lines.index(">CLIENT:ENV,END", i) + 1]
    assert ">CLIENT:ENV,common_name=client0" in env and env[-1] == ">CLIENT:ENV,END"
    assert not _up(c)
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10)


def test_cr_response_without_a_connection_fails_and_unasked_ones_are_not_told(pki, tmp_path):
    w, m, c, cid, kid, tap = _with_client_mgmt(pki, tmp_path)
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10)
    n = len(m.lines)
    for _ in range(20):                               # nobody waits for one now: counted, not told
        assert ask(c, tap, "cr-response eA==") == ["SUCCESS: command succeeded"]
    w.run_for(2)
    assert not any(x.startswith(">CLIENT:CR_RESPONSE,") for x in m.lines[n:])
    assert _up(c)
    assert ask(c, tap, "cr-response") == ["ERROR: the 'cr-response' command requires 1 parameter"]
    c.conn = None                                     # between connections: nothing to carry it
    assert ask(c, tap, "cr-response eA==") == ["ERROR: command failed"]


PENDING_CR = """#!/bin/sh
printf "60\\ncrtext\\nCR_TEXT:E,R:Enter code\\n" > "$auth_pending_file"
exit 2
"""
CRRESPONSE = """#!/bin/sh
# the answer is in the file given last; the verdict goes into the waiting login's control file
env > {out}.tmp && mv {out}.tmp {out}
[ "$(cat "$1")" = MTIzNDU2 ] && echo 1 > "$auth_control_file" && exit 0
exit 1
"""


def _script_world(pki, tmp_path, monkeypatch):
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    from tests.gateway.conftest import World, client_conf, server_conf
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    check, crr = tmp_path / "check.sh", tmp_path / "crr.sh"
    check.write_text(PENDING_CR)
    crr.write_text(CRRESPONSE.format(out=tmp_path / "crr.env"))
    for p in (check, crr):
        p.chmod(0o755)
    w = World()
    w.add_server(server_conf(pki, extra=f"auth-user-pass-verify {check} via-file\nscript-security 2\n"
                             f"tmp-dir {tmp_path}\nclient-crresponse {crr}\n"))
    c = w.add_client(client_conf(pki, extra=f"auth-user-pass\nsetenv IV_SSO crtext\nmanagement {tmp_path}/c.sock unix\n"),
                     username="alice", password="pw")
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    assert w.run(lambda: ">INFOMSG:CR_TEXT:E,R:Enter code" in tap.got, max_time=20), tap.got
    return w, c, tap


def test_client_crresponse_gets_the_answer_and_decides_the_waiting_login(pki, tmp_path, monkeypatch):
    w, c, tap = _script_world(pki, tmp_path, monkeypatch)
    assert ask(c, tap, "cr-response MTIzNDU2") == ["SUCCESS: command succeeded"]
    assert w.run(lambda: _up(c), max_time=20)
    env = dict(x.split("=", 1) for x in (tmp_path / "crr.env").read_text().splitlines() if "=" in x)
    assert env["script_type"] == "client-crresponse" and env["common_name"] == "client0"
    assert "MTIzNDU2" not in (tmp_path / "crr.env").read_text()       # in the file, not the environment


def test_a_wrong_answer_refuses_the_login(pki, tmp_path, monkeypatch):
    w, c, tap = _script_world(pki, tmp_path, monkeypatch)
    assert ask(c, tap, "cr-response d3Jvbmc=") == ["SUCCESS: command succeeded"]
    assert w.run(lambda: c.result is not None or (c.conn is not None and c.conn.session.closed), max_time=20)
    w.run_for(2)
    assert not _up(c)


def test_answers_repeated_by_waiting_logins_leave_the_script_runner_room(pki, tmp_path, monkeypatch):
    """Each waiting login may send 8 CR_RESPONSEs per key; each ran client-crresponse in the
    runner client-connect/-disconnect share (64 at most): a few logins filled it and every other
    client was refused ("too many scripts running"). Now one run per login, a few in all; a
    login's newest answer waits for its turn and runs when a slot frees."""
    from appliance.gateway.scripts import MAX_PENDING
    from appliance.openvpn import events as ev
    from tests.gateway.conftest import client_conf
    w, c, tap = _script_world(pki, tmp_path, monkeypatch)
    for name in ("client1", "client2"):
        w.add_client(client_conf(pki, name, extra="auth-user-pass\nsetenv IV_SSO crtext\n"),
                     username="alice", password="pw")
    ops = w.server.ops
    ops.crr_runs.limit = 2                                        # (4 by default)
    assert w.run(lambda: len(w.server.auth.deferred) == 3, max_time=20)
    submitted: list = []

    def submit(key, argv, env, connect, arg_text=None):          # runs nothing: every run stays under way
        submitted.append((key, arg_text))
        ops.scripts.pending += 1
        return None
    monkeypatch.setattr(ops.scripts, "submit", submit)
    logins = [d[0] for d in w.server.auth.deferred]
    for rec, key_id, _check in logins:
        for i in range(8):
            ops.on_event(rec, ev.CrResponse(key_id, f"answer{i}"))
    assert len(submitted) == 2 and {id(k[1][0]) for k, _ in submitted} == {id(r) for r, _, _ in logins[:2]}
    assert ops.scripts.pending <= 2 < MAX_PENDING
    # As runs end, each login's newest answer runs, in the order they came to wait.
    for i in range(5):
        ops._script_done(submitted[i][0], True, None, "")
        assert len(ops.crr_runs.running) <= 2
    runs = [(next(n for n, lg in enumerate(logins) if lg[0] is k[1][0]), text) for k, text in submitted]
    assert runs == [(0, b"answer0"), (1, b"answer0"), (0, b"answer7"), (1, b"answer7"), (2, b"answer7")]
