"""`client-control`: what a hostile server says to our client gateway (gateway/client.py) once the
tunnel is up -- control texts (PUSH_REPLY, AUTH_PENDING, INFO / INFO_PRE with WEB_AUTH / OPEN_URL /
CR_TEXT, RESTART, HALT, AUTH_FAILED, EXIT), raw TLS plaintext on its control channel,
renegotiations, its own RESTART / kill / auth-pending, and time.

Why: fuzz48's measure left gateway/client.py at 40 % with no target of its own: push-client and
control-script reach the client's *Session*; what the gateway does with the events the session
raises (restart, stop, the pushed network applied again, the pending-auth prompt, its timers)
was reached by no input.

A World (lab/gateway_world.py) with the server and one client gateway of one of PROFILES (the
input's first byte), the client's tunnel up, then the input's steps (split at SEP; first byte the step's kind, the rest its body), each
followed by fake time (0.2 s, or the body's first byte / 4 s for a pause). Checks after every
step: nothing escapes the pumps, neither gateway counted an internal error, at most LOG_PER_STEP
log lines (a server's words never flood the client's log), the client either runs or has stopped
with a status (HALT, AUTH_FAILED). The world is kept for the next input while its client is up (a fresh
one every 200 inputs or once it stopped), so most inputs cost no handshake.
"""
from __future__ import annotations

import logging

SEP = b"\xff\xfe"
TEXTS = (b"PUSH_REPLY,", b"AUTH_PENDING,timeout ", b"INFO,", b"INFO_PRE,", b"RESTART", b"RESTART,[N]",
         b"HALT,", b"AUTH_FAILED,", b"AUTH_FAILED,TEMP[backoff ", b"EXIT", b"INFO,WEB_AUTH::", b"INFO,OPEN_URL:",
         b"INFO,CR_TEXT:", b"INFO_PRE,CR_TEXT:E,R:", b"AUTH_FAILED,CRV1:R,E:", b"PUSH_REPLY,push-continuation 2,")
LOG_PER_STEP = 40
# The client's profile (the input's first byte): as it is, with tls-exit, with a management
# interface on a unix socket (its state and event notifications: no management client connects).
# fuzz50: three more, for what the server's words make the gateway do past the session: route-delay
# with auth-retry nointeract (a pushed network applied late; AUTH_FAILED retried), remap-usr1
# SIGTERM (a restart ends the run), auth-retry interact with a password (AUTH_FAILED forgets it).
PROFILES = ("", "tls-exit\n", "management {dir}/client-{n}.sock unix\n",
            "route-delay 1\nauth-retry nointeract\n", "remap-usr1 SIGTERM\n",
            "auth-user-pass\nauth-retry interact\nmanagement {dir}/client-i{n}.sock unix\nmanagement-query-passwords\n")


def make_client_control():
    from lab.gateway_world import World, client_conf, server_conf

    from .contain_targets import _Lines, _pki
    from .control_targets import _queue

    from .scratch import scratch_dir

    pki = _pki()
    d = scratch_dir("client-control-")
    worlds: dict[int, dict] = {}
    lines = _Lines()
    root = logging.getLogger()

    def world(kind: int):
        state = worlds.setdefault(kind, {"made": 0})
        w = state.get("w")
        if w is not None and state["n"] < 200 and state["c"].result is None and w.server.result is None:
            c, gw = state["c"], w.server
            if c.conn is not None and c.conn.session.established and gw.d.clients:
                state["n"] += 1
                return w, gw, c
        if w is not None and state["c"].mgmt is not None:
            state["c"]._close_mgmt()
        state["made"] += 1
        w = World()
        gw = w.add_server(server_conf(pki))
        extra = PROFILES[kind].format(dir=d, n=state["made"])
        c = w.add_client(client_conf(pki, "client0", extra=extra), username="alice", password="pw")
        if not w.run(lambda: w.client_nets[0].pushed is not None and bool(gw.d.clients), max_time=30):
            raise RuntimeError("client-control world: the tunnel did not come up")
        state.update(w=w, c=c, n=0)
        return w, gw, c

    def one(data: bytes) -> None:
        if not data:
            return
        root.addHandler(lines)
        old = root.level
        root.setLevel(logging.INFO)
        try:
            _script(data[1:], *world(data[0] % len(PROFILES)))
        finally:
            root.removeHandler(lines)
            root.setLevel(old)

    def _script(data: bytes, w, gw, c) -> None:
        for step in data.split(SEP)[:12]:
            if not step:
                continue
            op, body = step[0] % 8, step[1:]
            now = w.clock()
            rec = gw.d.clients[0] if gw.d.clients else None
            ss = rec.session if rec is not None else None
            pause = 0.2
            if op == 0 and ss is not None:
                text = TEXTS[body[0] % len(TEXTS)] + body[1:] if body else b"INFO,x"
                _queue(ss, text + b"\0")
            elif op == 1 and ss is not None:
                _queue(ss, body)                         # raw TLS plaintext, server -> client
            elif op == 2 and ss is not None:
                ss.renegotiate(now)
                gw.d.rearm(rec)
            elif op == 3 and rec is not None:
                gw.d.tell(rec, now, "RESTART" + body.decode("utf-8", "replace")[:40])
            elif op == 4 and rec is not None:
                kid = max(ss.keys) if ss.keys else 0
                gw.d.auth_pending(rec, kid, body.decode("utf-8", "replace"), body[0] if body else 0, now)
            elif op == 5:
                pause = (body[0] if body else 0) / 4 + 0.2
            elif op == 6 and ss is not None:
                _queue(ss, b"PUSH_REPLY," + body + b"\0")
            elif op == 7 and rec is not None:
                gw.d.kick(rec, now, "fuzz kill")
            before = lines.n
            w.run_for(pause)
            assert lines.n - before <= LOG_PER_STEP, f"{lines.n - before} log lines in a step: {lines.last}"
            for who, g in (("client", c), ("server", gw)):
                n = g.faults.counts.get("internal error", 0)
                assert not n, f"{n} internal errors counted by the {who}'s pump: {lines.last}"
            errs = gw.d.take_internal_errors()
            assert not errs, f"the server's internal errors: {errs!r}"
            assert c.result is None or isinstance(c.result, int), c.result
    return one


def seeds() -> list[bytes]:
    t = lambda i, s=b"": bytes((0, i)) + s  # noqa: E731 - a text step: TEXTS[i] + s
    old = [bytes((i % 3,)) + SEP.join(s) for i, s in enumerate((
        [t(0, b"route 198.18.100.0 255.255.255.0,ping 10"), bytes((5, 8))],
        [t(1, b"60"), bytes((5, 20)), bytes((4,)) + b"WEB_AUTH::https://example.net/", bytes((5, 40))],
        [t(2, b"hello"), t(3, b"WEB_AUTH::https://x"), t(10, b"https://x"), t(11, b"https://y"), t(12, b"E,R:pin?")],
        [t(4), bytes((5, 40))],
        [t(5), bytes((5, 40))],
        [t(6, b"operator says stop")],
        [t(7, b"bad user")],
        [t(8, b" 30]"), bytes((5, 200))],
        [t(9), bytes((5, 40))],
        [t(14, b"Q29kZT8=:dXNlcg==:code?")],
        [bytes((1,)) + b"\x00\x01garbage", bytes((2,)), bytes((5, 40))],
        [bytes((3,)) + b",[N]", bytes((5, 40))],
        [bytes((6,)) + b"ifconfig 198.19.0.99 255.255.255.0,route-gateway 198.19.0.1,topology subnet", bytes((5, 8))],
        [bytes((6,)) + b"ifconfig 203.0.113.5 255.255.255.0,peer-id 7,cipher AES-256-GCM", bytes((5, 8))],
        [t(15, b"route 198.18.101.0 255.255.255.0"), t(0, b"route 198.18.102.0 255.255.255.0")],
        [bytes((7,)), bytes((5, 40))],
        [t(1, b"30"), bytes((5, 40))],
        [t(4), bytes((5, 40))],
    ))]
    # fuzz50: the newer profiles (3: route-delay, auth-retry nointeract; 4: remap-usr1 SIGTERM;
    # 5: auth-retry interact), AUTH_FAILED's TEMP flags and spellings 2.6 does not take as TEMP
    return old + [bytes((profile,)) + SEP.join(s) for profile, s in (
        (3, [t(7, b"bad user"), bytes((5, 80))]),
        (3, [t(0, b"route 198.18.103.0 255.255.255.0"), bytes((5, 8)), t(0, b"route-gateway 198.19.0.1")]),
        (4, [t(4), bytes((5, 40))]),
        (5, [t(7, b"wrong password"), bytes((5, 80))]),
        (0, [t(7, b"TEMP[advance remote]: elsewhere"), bytes((5, 40))]),
        (0, [t(8, b"-1,advance addr]: next address"), bytes((5, 40))]),
        (3, [t(8, b" 30,advance no, backoff 9]"), bytes((5, 200))]),
        (0, [bytes((1,)) + b"AUTH_FAILEDTEMP\0", bytes((5, 40))]),
        (2, [bytes((1,)) + b"AUTH_FAILED,,TEMP[backoff 3]\0", bytes((5, 40))]),
        (5, [t(7, b"SESSION: token expired"), bytes((5, 40))]),
    )]


def dict_entries() -> list[bytes]:
    return [SEP, *TEXTS, b"route ", b"ifconfig ", b"ifconfig-ipv6 ", b"route-gateway ", b"topology subnet",
            b"peer-id ", b"cipher ", b"ping ", b"ping-restart ", b"redirect-gateway def1", b"dhcp-option DNS ",
            b"auth-token ", b"push-continuation 1", b"255.255.255.0", b"198.19.0.", b","]
