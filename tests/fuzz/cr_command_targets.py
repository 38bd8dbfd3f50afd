"""`cr-command`: the server's client-crresponse side in ops.py (`_cr_response_command` ..
`_submit_cr_response`, `_script_done`'s verdict), driven by what an authenticated client sends
while its login waits for a deferred auth-user-pass-verify.

Why: cr-runs drives only the slot bookkeeping (gateway/crresponse.py) and cr-response the
management client's notification; fuzz49's measure left the ops.py path that turns a client's
answer into a command -- its environment, its answer file, its verdict refusing the login, runs
ending after the login or its client went away -- untaken, because no in-memory world ran a
deferred check and a command per answer. Here a World server has `auth-user-pass-verify` (a
real script, deferring each login for 60 s), `client-crresponse`, and up to two clients (our
client gateways, holding the TLS session, so their control channel sends any plaintext); the
command runner is replaced by a recorder (`_Runner`): the input decides when each command ends
and with what verdict, so a run can outlive its login, its client, or be refused.

Input: steps split at SEP, first byte the step's kind: an answer (`CR_RESPONSE,<body>` from
client 0 or 1), raw control-channel plaintext, a command's end (which one, ok or not; an ok one
may write the login's auth_control_file, as a real command would), the deferred check's own
verdict in its control file, the server kicking a client, time. Checks after every step:
- nothing escapes; neither gateway counts an internal error; at most LOG_PER_STEP log lines;
- a command is submitted only for a login that waits (a deferred check of that session and key),
  with that login's auth_control_file, the username it announced, `script_type`
  client-crresponse, and the answer as the last argument's file (never in the environment);
- at most one command per login under way, at most crresponse.RUNNING in all, and the runner's
  `pending` is what was submitted and not yet taken back;
- a failed command of a login that still waits refuses it (once its result is read back, that
  key's login no longer waits for a verdict).
"""
from __future__ import annotations

import logging
from collections import deque

from appliance.gateway.crresponse import RUNNING
from appliance.gateway.scripts import MAX_PENDING

SEP = b"\xff\xfe"
LOG_PER_STEP = 40
USERS = ("alice", "bob")
PENDING = """#!/bin/sh
printf "60\\ncrtext\\nCR_TEXT:E,R:Enter code\\n" > "$auth_pending_file"
exit 2
"""


class _Runner:
    """The server's script runner, running nothing: submit() records a command, the input's
    `end` step finishes it (its result read back by ops as a real run's would be)."""
    inline = True
    tmp_dir: str | None = None

    def __init__(self) -> None:
        self.under_way: list[tuple] = []      # (key, env, arg_text), oldest first
        self.results: deque = deque()
        self.pending = 0
        self.ran = 0
        self.submitted: list[tuple] = []      # this step's, for the checks

    def submit(self, key, argv, env, connect, arg_text=None, after=""):  # noqa: ANN001
        if self.pending >= MAX_PENDING:
            return "too many scripts running"
        self.pending += 1
        self.under_way.append((key, dict(env), arg_text))
        self.submitted.append((key, dict(env), arg_text, list(argv), connect))
        return None

    def end(self, i: int, ok: bool) -> tuple | None:
        if not self.under_way:
            return None
        key, env, _arg = self.under_way.pop(i % len(self.under_way))
        self.results.append((key, ok, None, "" if ok else "crr exited with status 1"))
        return key, env

    def take_results(self) -> list:
        out = list(self.results)
        self.results.clear()
        self.pending -= len(out)
        self.ran += len(out)
        return out

    def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_cr_command():
    import os

    from tests.gateway.conftest import World, client_conf, server_conf

    from .contain_targets import _Lines
    from .control_targets import _queue
    from .mgmt_world import _pki
    from .scratch import scratch_dir

    d = scratch_dir("cr-command-")
    check = os.path.join(d, "check.sh")
    with open(check, "w") as f:
        f.write(PENDING)
    os.chmod(check, 0o755)
    state: dict = {}
    lines = _Lines()
    root = logging.getLogger()

    def deferred(gw) -> list:
        return list(gw.auth.deferred) if gw.auth is not None else []

    def world():
        w = state.get("w")
        if w is not None and state["n"] < 300 and w[1].result is None:
            wd, gw = w
            if deferred(gw) or wd.run(lambda: bool(deferred(gw)), max_time=10):
                state["n"] += 1
                return w
        pki = _pki()
        wd = World()
        gw = wd.add_server(server_conf(pki, extra=(
            f"auth-user-pass-verify {check} via-file\nscript-security 2\ntmp-dir {d}\n"
            "client-crresponse /bin/true\n")))
        gw.ops.scripts = _Runner()
        for i, user in enumerate(USERS):
            wd.add_client(client_conf(pki, "client0", extra="auth-user-pass\nsetenv IV_SSO crtext\n"),
                          username=user, password=f"pw{i}")
        if not wd.run(lambda: len(deferred(gw)) == 2, max_time=30):
            raise RuntimeError("cr-command world: the logins did not wait")
        state.update(w=(wd, gw), n=0)
        return wd, gw

    def send(c, data: bytes, now: float) -> None:
        if c.conn is None or c.conn.session.closed:
            return
        if _queue(c.conn.session, data):
            c.conn.session._flush(now)       # (private: what send_control_text does after its text)
            c._after_engine(c.conn)          # sent now, as the gateway sends what its session queued

    def one(data: bytes) -> None:
        if not data:
            return
        root.addHandler(lines)
        try:
            _script(data, *world())
        finally:
            root.removeHandler(lines)

    def _script(data: bytes, w, gw) -> None:
        ops = gw.ops
        runner: _Runner = ops.scripts
        for step in data.split(SEP)[:12]:
            if not step:
                continue
            op, body = step[0] % 8, step[1:]
            now = w.clock()
            c = w.clients[op & 1] if op in (0, 1) else w.clients[(body[:1] or b"\0")[0] & 1]
            pause = 0.1
            refused_check = None
            runner.submitted.clear()
            waiting_before = {(id(k[0]), k[1]): k for k, *_ in deferred(gw)}
            if op in (0, 1):
                send(c, b"CR_RESPONSE," + body + b"\0", now)
            elif op == 2:
                send(c, body, now)                    # raw control-channel plaintext
            elif op in (3, 4) and body:
                ok = bool(body[0] & 0x80)
                got = runner.end(body[0] >> 1, ok)
                if got is not None:
                    key, env = got
                    rec, key_id = key[1][0], key[1][1]
                    if ok and body[0] & 0x40 and env.get("auth_control_file"):
                        with open(env["auth_control_file"], "w") as f:
                            f.write("1" if body[0] & 0x20 else "0")
                    if not ok and rec.alive and (id(rec), key_id) in waiting_before:
                        refused_check = (rec, key_id)
            elif op == 5:
                # a deferred check decides by itself (its control file): which login, and how
                waits = deferred(gw)
                if waits and body:
                    v = waits[body[0] % len(waits)][2]
                    if v.control:
                        with open(v.control, "w") as f:
                            f.write("1" if body[0] & 0x80 else "0")
            elif op == 6:
                recs = list(gw.d.clients)
                if recs:
                    gw.d.kick(recs[(body[:1] or b"\0")[0] % len(recs)], now, "fuzz kill")
            else:
                pause = (body[0] if body else 0) / 8 + 0.1
            before = lines.n
            w.run_for(pause)
            assert lines.n - before <= LOG_PER_STEP, f"{lines.n - before} log lines in a step: {lines.last}"
            n = gw.faults.counts.get("internal error", 0)
            assert not n, f"{n} internal errors counted by the server's pump: {lines.last}"
            errs = gw.d.take_internal_errors()
            assert not errs, f"the server's internal errors: {errs!r}"
            for cl in w.clients:
                assert not cl.faults.counts.get("internal error", 0), f"a client's internal error: {lines.last}"
            _check_submitted(runner, waiting_before, deferred(gw))
            per_login: dict = {}
            for key, _env, _arg in runner.under_way:
                assert key[0] == "crresponse", key
                lk = (id(key[1][0]), key[1][1])
                per_login[lk] = per_login.get(lk, 0) + 1
                assert per_login[lk] <= 1, "two client-crresponse commands of one login under way"
            assert len(runner.under_way) <= RUNNING, f"{len(runner.under_way)} commands under way"
            assert runner.pending == len(runner.under_way) + len(runner.results), \
                (runner.pending, len(runner.under_way), len(runner.results))
            if refused_check is not None:
                rec, key_id = refused_check
                ks = rec.session.keys.get(key_id)
                assert rec.session.closed or ks is None or ks.pending_auth is None, \
                    "a failed client-crresponse left its login waiting"

    def _check_submitted(runner: _Runner, waiting_before: dict, waiting_after: list) -> None:
        known = dict(waiting_before)
        known.update({(id(k[0]), k[1]): k for k, *_ in waiting_after})
        for key, env, arg, argv, connect in runner.submitted:
            assert key[0] == "crresponse" and not connect and argv == ["/bin/true"], (key, argv)
            rec, key_id, check_key = key[1]
            lk = (id(rec), key_id)
            assert lk in known, "client-crresponse submitted for a login that did not wait"
            assert env.get("script_type") == "client-crresponse", env.get("script_type")
            assert env.get("username") in USERS, env.get("username")
            assert env.get("auth_control_file"), "no auth_control_file for the command"
            assert isinstance(arg, bytes), "the answer is not in the command's file"
            if arg:
                assert not any(arg.decode("utf-8", "replace") in v for v in env.values() if len(arg) > 3), \
                    "the answer is in the command's environment"
    return one


def seeds() -> list[bytes]:
    ans = lambda who, text: bytes((who,)) + text  # noqa: E731 - client `who`'s CR_RESPONSE
    end = lambda which, ok, write=0: bytes((3, (0x80 if ok else 0) | write | (which << 1 & 0x1E)))  # noqa: E731
    wait = lambda s: bytes((7, s))  # noqa: E731
    return [SEP.join(s) for s in (
        [ans(0, b"MTIzNDU2"), end(0, False)],
        [ans(0, b"MTIzNDU2"), end(0, True, 0x60)],
        [ans(0, b"MTIzNDU2"), end(0, True, 0x40)],
        [ans(0, b"a"), ans(0, b"b"), ans(0, b"c"), end(0, True), end(0, True)],
        [ans(0, b"a"), ans(1, b"b"), end(1, False), end(0, True)],
        [ans(0, b"x"), bytes((6, 0)), wait(20), end(0, False)],
        [ans(1, b"y"), bytes((5, 0x81)), wait(8), end(0, True)],
        [ans(0, b"z"), wait(255), wait(255), wait(255), end(0, False)],
        [bytes((2,)) + b"CR_RESPONSE,one\0CR_RESPONSE,two\0", end(0, True), end(0, True)],
        [ans(0, b"\xff\xfe\x80 caf\xc3\xa9\r\n>CLIENT:x"), end(0, False)],
        [ans(0, b"A" * 1500), end(0, True, 0x60)],
        [ans(0, b"MTIzNDU2"), end(0, True, 0x60), wait(16), ans(0, b"after the verdict")],
        [ans(1, b"one"), bytes((5, 0x80)), bytes((5, 0x81)), wait(16), ans(1, b"two"), end(0, True)],
    )]


def dict_entries() -> list[bytes]:
    return [SEP, b"CR_RESPONSE,", b"\0", b"MTIzNDU2", b"PUSH_REQUEST\0", b"\x03\x80", b"\x03\x00", b"\x07\xff"]
