"""The client's management interface: OpenVPN's, as Debian's OpenVPN 2.6 client answers it (the
lab's recording is in tests/gateway/test_client_mgmt.py; tests/interop compares live).

The sockets, the password, the throttle and the bounded buffers are gateway/management.py's, the
server's own code: a client that never reads is cut off, a long line too, and none of it ever
waits on the tunnel's pump. Here are only the client's answers (ClientManagement.answer) and what
the client tells (ClientMgmt): >STATE lines with OpenVPN's state names and fields, >HOLD while
`management-hold` (or `hold on`) keeps the client from connecting, >BYTECOUNT with the transport
bytes, >INFOMSG for the server's INFO/INFO_PRE (a web login's URL), and >PASSWORD:Verification
Failed when the server says AUTH_FAILED. With management-query-passwords, >PASSWORD:Need 'Auth'
username/password (SC:... with static-challenge) asks for the credentials the profile lacks; the
`username`/`password` commands answer it, `forget-passwords` drops them (and the auth-token). A
dynamic challenge (AUTH_FAILED,CRV1:...) is told in the Verification Failed line, and with
auth-retry interact the next question takes the CRV1 response, as OpenVPN 2.6's. With
management-query-remote (or -proxy) each remote is asked of the tool first: >REMOTE (>PROXY),
answered by `remote` (`proxy`).

The states, in the order OpenVPN 2.6's client gave them in the lab (UDP and TCP): CONNECTING once
the interface is open, then per attempt RESOLVE (a name only), TCP_CONNECT (TCP), WAIT (our
first reset out), AUTH (the server's first packet), AUTH_PENDING, ASSIGN_IP, ADD_ROUTES (routes
pushed; >UPDOWN:UP after it; with route-delay both once the delay is over), CONNECTED,SUCCESS;
RECONNECTING,<reason> and EXITING,<reason> in OpenVPN's words (restart_reason). GET_CONFIG is
not told: 2.6 asks for its options with the key exchange and did not report it in any lab run
either.

Signals as our client has them (gateway/client.py): SIGUSR1 restarts the connection, SIGTERM and
SIGINT stop (explicit-exit-notify's wait included), SIGUSR2 logs the counters. SIGHUP is refused
("currently ignored", an answer OpenVPN gives too): OpenVPN's client re-reads its config then,
ours cannot in a running process and ignores the signal, so a tool is told so rather than
"thrown" for a signal that does nothing. While on hold, SIGUSR1 and SIGHUP are ignored as in
OpenVPN 2.6 (manage.c management_hold sets MANSIG_IGNORE_USR1_HUP).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

from ..openvpn import events as ev
from ..openvpn.catoi import atoi
from .client_status import render_client
from .mgmt_env import EnvBlock, env_filter_command
from .mgmt_help import HELP
from .management import (VERSION_LINE, Management, MgmtConn, common_reply, mute_reply, needs_reply, not_served,
                         verb_reply)

if TYPE_CHECKING:
    from .client import ClientGateway

log = logging.getLogger("vpn-appliance")

STATE_HISTORY = 100          # OpenVPN's default state buffer (management_state_buffer_size)
BYTECOUNT_TICK = 1.0
INFOMSG_MAX = 255            # OpenVPN builds >INFOMSG:<text> in 256 bytes and drops a longer one


# OpenVPN commands a client does not serve here: answered as OpenVPN answers a command its
# current mode lacks (the server's, and the credential and key prompts: the profile gives those).
UNSUPPORTED = frozenset(("kill", "client-kill", "remote-entry-count", "remote-entry-get", "net", "nclients"))
SIGNALS = ("SIGHUP", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")


def remote_entry_reply(opts, a: list[str]) -> list[str]:
    """`remote-entry-count`, `remote-entry-get N [M] | all` and `net`, as Debian's 2.6.14 client
    answers them once its first hold is over (before, "not supported": its callbacks are not set
    yet); ours said "not supported" always (host44, beside Debian's client). An entry is
    `I,HOST,PORT,PROTO,enabled` (init.c management_callback_remote_entry_get; none is disabled
    here); N and M are read as 2.6 reads them, atoi cast to unsigned, M defaulting to N + 1,
    so at most every remote is listed whatever the numbers."""
    if a[0] == "net":
        return ["ERROR: Sorry, this command is currently only implemented on Windows"]
    entries = []
    for r in opts.remotes:
        fam = opts.family_of(r) or ""
        proto = f"udp{fam}" if r.proto == "udp" else f"tcp{fam}-client"
        entries.append(f"{r.host},{r.port},{proto},enabled")
    if a[0] == "remote-entry-count":
        return [str(len(entries)), "END"]
    if a[1] == "all":
        first, last = 0, len(entries)
    else:
        first = atoi(a[1]) & 0xFFFFFFFF
        last = (atoi(a[2]) if len(a) > 2 else first + 1) & 0xFFFFFFFF
    return [f"{i},{entries[i]}" for i in range(first, min(last, len(entries)))] + ["END"]


def _tun_ips(pushed) -> tuple[str, str]:
    """The tunnel's IPv4 and IPv6 addresses as the state lines name them ("" for none)."""
    ip = pushed.ifconfig[0] if pushed is not None and pushed.ifconfig else ""
    ip6 = pushed.ifconfig_ipv6[0].split("/")[0] if pushed is not None and pushed.ifconfig_ipv6 else ""
    return ip, ip6


class StateEntry:
    """One state change, printed as OpenVPN's log_entry_print does for states."""
    __slots__ = ("t", "name", "detail", "tun_ip", "remote", "local", "tun_ip6")

    def __init__(self, t: int, name: str, detail: str = "", tun_ip: str = "", remote: tuple | None = None,
                 local: tuple | None = None, tun_ip6: str = "") -> None:
        self.t, self.name, self.detail = t, name, detail
        self.tun_ip, self.remote, self.local, self.tun_ip6 = tun_ip, remote, local, tun_ip6

    def line(self) -> str:
        def sock(a: tuple | None) -> str:
            return f"{a[0]},{a[1]}" if a else ","
        out = f"{self.t},{self.name},{self.detail},{self.tun_ip},{sock(self.remote)},{sock(self.local)}"
        return out + (f",{self.tun_ip6}" if self.tun_ip6 else "")


class ClientManagement(Management):
    """The server's management socket code with the client's answers."""

    serves_client_auth = False

    def __init__(self, spec: tuple, pump, ops: "ClientMgmt", drops_root: bool = False,
                 log_cache: int | None = None, peer_ids: tuple[int | None, int | None] = (None, None)) -> None:
        super().__init__(spec, pump, ops, drops_root, log_cache, peer_ids)
        self.cops = ops

    def welcome(self) -> list[str]:
        return super().welcome() + self.cops.special()

    def drop(self, c: MgmtConn, why: str | None) -> None:
        told = c.authed and not c.closed and c in self.conns
        super().drop(c, why)
        if told:
            self.cops.disconnected()

    def answer(self, c: MgmtConn, a: list[str]) -> list[str]:    # noqa: C901 - one branch per command
        ops = self.cops
        cmd = a[0]
        refused = needs_reply(a)
        if refused is not None:
            return refused
        if cmd in ("quit", "exit"):
            self.drop(c, None)
            return []
        if cmd == "help":
            return HELP
        if cmd == "version":
            return [] if len(a) > 1 else [VERSION_LINE, "Management Version: 5", "END"]
        if cmd == "pid":
            return [f"SUCCESS: pid={os.getpid()}"]
        if cmd == "load-stats":
            return ["SUCCESS: nclients=0,bytesin=0,bytesout=0"]     # as OpenVPN's client
        if cmd == "status":
            if ops.holding is not None:
                return ["ERROR: The 'status' command is not supported by the current daemon mode"]
            return ops.status_lines()
        if cmd in ("state", "log", "echo"):
            return self.history(c, cmd, a)
        if cmd == "bytecount":
            n = atoi(a[1])
            c.bytecount = max(n, 0)
            ops.bytecount_changed(c)
            return ["SUCCESS: bytecount interval changed"]
        if cmd == "hold":
            return ops.hold_command(a[1] if len(a) > 1 else None)
        if cmd in ("username", "password"):
            return ops.user_pass_command(cmd, a[1], a[2])
        # On the first hold OpenVPN's client has no connection context yet, whose callbacks
        # answer these: "not supported" then (lab/mgmt_parity.py beside Debian's 2.6.14 client).
        if cmd in ("remote", "proxy") and ops.first_hold:
            return [not_served(cmd)]
        if cmd == "remote":
            return ops.remote_command(a[1:])
        if cmd == "proxy":
            return ops.proxy_command(a[1:])
        if cmd == "cr-response":
            return ["SUCCESS: command succeeded"] if ops.gw.send_cr_response(a[1]) else ["ERROR: command failed"]
        if cmd == "forget-passwords":
            ops.gw.forget_passwords()
            return ["SUCCESS: Passwords were forgotten"]
        if cmd == "verb":
            return verb_reply(a, ops.gw.opts.verb, ops.set_verb)
        if cmd == "mute":
            return mute_reply(self, a)
        if cmd == "signal":
            return ops.signal_command(a[1])
        if cmd in ("client-auth", "client-auth-nt", "client-deny", "client-pending-auth"):
            return self._client_auth(c, cmd, a)
        if cmd == "env-filter":
            return env_filter_command(c, a)
        if cmd == "auth-retry":
            return ops.auth_retry_command(a[1] if len(a) > 1 else None)
        if cmd in ("net", "remote-entry-count", "remote-entry-get") and not ops.first_hold:
            return remote_entry_reply(ops.gw.opts, a)
        if cmd in UNSUPPORTED:
            return [not_served(cmd)]
        common = common_reply(a)
        if common is not None:
            return common
        return ["ERROR: unknown command, enter 'help' for more options"]

    def state_lines(self) -> list[str]:
        return [e.line() for e in self.cops.states]


class ClientMgmt:
    """What the client tells its management clients, and what their commands make it do."""

    def __init__(self, gw: "ClientGateway", wall: Callable[[], float] = time.time) -> None:
        self.gw = gw
        self.wall = wall
        self.states: deque[StateEntry] = deque(maxlen=STATE_HISTORY)
        self.hold_flag = bool(gw.opts.management_hold)
        self.holding: int | None = None        # the hold's time while on hold (>HOLD:...:N)
        self._release: Callable[[], None] | None = None
        self.released = False                   # a hold was released (the connection began)
        self.mgr: ClientManagement | None = None
        # management-query-passwords: what gets the answer while asking, and the answer so far.
        self._answer: Callable[[str, str], None] | None = None
        self._q_user = ""
        self._q_pass: str | None = None
        # management-query-remote: the >REMOTE line being asked and what gets the answer.
        self._remote_line: str | None = None
        self._remote_answer: Callable[[tuple], None] | None = None
        # management-query-proxy: the >PROXY line being asked, its remote, and what gets the answer.
        self._proxy_line: str | None = None
        self._proxy_remote = None
        self._proxy_answer: Callable[[object], None] | None = None

    # ---------------------------------------------------------------- the socket
    def open(self, drops_root: bool = False) -> None:
        """Bind the socket (before a `user` drop, when there is one: cli.py); OSError as bind's."""
        o = self.gw.opts
        self.mgr = ClientManagement(o.management, self.gw.pump, self, drops_root, o.management_log_cache,
                                    peer_ids=(o.management_client_user, o.management_client_group))
        self.state("CONNECTING")

    def close(self) -> None:
        if self.mgr is not None:
            self.gw.pump.timers.cancel("mgmt-bytecount")
            self.mgr.close()
            self.mgr = None

    def auth_retry_command(self, mode: str | None) -> list[str]:
        """`auth-retry [none|nointeract|interact]`, as OpenVPN 2.6's client answers it: the mode
        shown, or changed for the next AUTH_FAILED (interact only where the profile could ask:
        management-query-passwords, the rule the config applies at its line)."""
        o = self.gw.opts
        if mode is None:
            now = "interact" if o.auth_retry_interact else "nointeract" if o.auth_retry else "none"
            return [f"SUCCESS: auth-retry={now}"]
        if mode not in ("none", "nointeract", "interact"):
            return ["--auth-retry method must be 'interact', 'nointeract', or 'none'", "ERROR: bad auth-retry parameter"]
        if mode == "interact" and not o.management_query_passwords:
            return ["ERROR: bad auth-retry parameter"]
        o.auth_retry, o.auth_retry_interact = mode != "none", mode == "interact"
        return ["SUCCESS: auth-retry parameter changed"]

    def special(self) -> list[str]:
        """OpenVPN's special_state_msg: what a client that connects now is told after the banner."""
        if self.holding is not None:
            return [self._hold_line()]
        if self._remote_line is not None:
            return [self._remote_line]
        if self._proxy_line is not None:
            return [self._proxy_line]
        return [self._password_line()] if self._answer is not None else []

    def _hold_line(self) -> str:
        return f">HOLD:Waiting for hold release:{self.holding}"

    def _notify(self, lines: list[str], flag: str | None = None) -> None:
        """To every authenticated client (with `flag` on); our bug here is counted, never raised
        into the client's connection handling (a management client must not end a tunnel)."""
        if self.mgr is None:
            return
        try:
            self.mgr.notify(lines, flag)
        except Exception as e:  # noqa: BLE001
            self.gw.faults.internal_exc("management notification", e)

    def fatal(self, text: str) -> None:
        """>FATAL:TEXT, as OpenVPN 2.6 tells a management client every M_FATAL message before it
        exits (manage.c man_log's LOG_FATAL_NOTIFY): GUIs show it as the reason."""
        self._notify([">FATAL:" + text])

    # ---------------------------------------------------------------- states
    def state(self, name: str, detail: str = "", tun_ip: str = "", remote: tuple | None = None,
              local: tuple | None = None, tun_ip6: str = "") -> None:
        e = StateEntry(int(self.wall()), name, detail, tun_ip, remote, local, tun_ip6)
        self.states.append(e)
        self._notify([">STATE:" + e.line()], "state_on")

    def connected(self, pushed, remote: tuple, local: tuple | None) -> None:
        """CONNECTED,SUCCESS, as OpenVPN 2.6's client says it at "Initialization Sequence
        Completed" (after assigned and adding_routes: as there, the client says each when it
        happens -- with route-delay ADD_ROUTES only once the delay is over)."""
        ip, ip6 = _tun_ips(pushed)
        self.state("CONNECTED", "SUCCESS", ip, remote, local, ip6)

    def assigned(self, pushed) -> None:
        """ASSIGN_IP: the tunnel's addresses are set (2.6's do_ifconfig)."""
        ip, ip6 = _tun_ips(pushed)
        self.state("ASSIGN_IP", "", ip, tun_ip6=ip6)

    def adding_routes(self, pushed) -> None:
        """ADD_ROUTES, when routes came (2.6's add_routes)."""
        if pushed is not None and (pushed.routes or pushed.routes_ipv6):
            self.state("ADD_ROUTES")

    def up_down(self, kind: str, env: dict[str, str]) -> None:
        """management-up-down: >UPDOWN:UP or DOWN, then the environment (gateway/updown.py)."""
        block = EnvBlock((f">UPDOWN:{kind}",), {k: one_line(v) for k, v in env.items()}, "UPDOWN", filtered=False)
        self._notify(block.lines(0))           # never filtered (mgmt_env.py)

    def event(self, e: object) -> None:
        """The engine's events a management client hears of."""
        if isinstance(e, ev.ServerInfo):
            line = ">INFOMSG:" + one_line(e.text)
            if len(line.encode()) <= INFOMSG_MAX:           # as OpenVPN: a longer one is not told
                self._notify([line])
        elif isinstance(e, ev.AuthFailed):
            reason = "" if e.message == "authentication failed" else one_line(e.message)
            self._notify([">PASSWORD:Verification Failed: 'Auth'" + (f" ['{reason}']" if reason else "")])
        elif isinstance(e, ev.AuthPending):
            self.state("AUTH_PENDING", one_line(e.keywords))

    # ---------------------------------------------------------------- hold
    def hold(self, holdtime: int, then: Callable[[], None]) -> bool:
        """On hold (the flag on): `then` runs at `hold release`; False when not holding."""
        if not self.hold_flag or self.mgr is None:
            return False
        self.holding = max(int(holdtime), 0)
        self._release = then
        log.info("management: waiting for hold release")
        self._notify([self._hold_line()])
        return True

    def set_verb(self, n: int) -> None:
        """`verb N` (management.verb_reply decided N is in range)."""
        from ..logsetup import apply_verb
        self.gw.opts.verb = n
        apply_verb(n)

    @property
    def first_hold(self) -> bool:
        """On management-hold's hold before the first connection."""
        return self.holding is not None and not self.released

    def hold_command(self, arg: str | None) -> list[str]:
        if arg is None:
            return [f"SUCCESS: hold={int(self.hold_flag)}"]
        if arg in ("on", "off"):
            self.hold_flag = arg == "on"
            return [f"SUCCESS: hold flag set to {arg.upper()}"]
        if arg != "release":
            return ["ERROR: bad hold command parameter"]
        then, self._release = self._release, None
        if then is not None:
            self.holding = None
            self.released = True
            # After this reply: what the release starts logs and notifies on its own.
            self.gw.pump.timers.arm("mgmt-release", self.gw.clock(), then)
        return ["SUCCESS: hold release succeeded"]

    # ---------------------------------------------------------------- remote
    def query_remote(self, remote, then: Callable[[tuple], None]) -> bool:
        """management-query-remote (init.c ce_management_query_remote): >REMOTE:HOST,PORT,PROTO
        and, at the answer, `then(("accept",))`, `then(("skip", N))` or `then(("mod", HOST,
        PORT))`. False when not asking (the directive off, or no interface). As in OpenVPN 2.6 the
        client waits for the answer, however long; a management client connecting meanwhile is
        told the question after the banner."""
        if not self.gw.opts.management_query_remote or self.mgr is None:
            return False
        self._remote_line = f">REMOTE:{remote.host},{remote.port},{remote_proto(remote, self.gw.opts)}"
        self._remote_answer = then
        self._notify([self._remote_line])
        return True

    def remote_command(self, a: list[str]) -> list[str]:
        """`remote ACCEPT|SKIP [N]|MOD HOST PORT`, answered as OpenVPN 2.6's client
        (management_callback_remote_cmd): a failure when nothing is asked, for another word, a
        MOD without both, or a HOST of 80 characters or more (RH_HOST_LEN). Stricter: MOD's PORT
        must be a port number (OpenVPN took any text under 20 characters and failed later)."""
        if self._remote_answer is None:
            return ["ERROR: remote command failed"]
        if a[0] == "ACCEPT":
            decision: tuple = ("accept",)
        elif a[0] == "SKIP":
            decision = ("skip", atoi(a[1]) if len(a) > 1 else 1)
        elif a[0] == "MOD" and len(a) > 2 and len(a[1]) < 80 and a[2].isascii() and a[2].isdigit() \
                and 1 <= int(a[2]) <= 65535:
            decision = ("mod", a[1], int(a[2]))
        else:
            return ["ERROR: remote command failed"]
        then, self._remote_answer, self._remote_line = self._remote_answer, None, None
        # After this reply, as the hold's release: what the answer starts logs on its own.
        self.gw.pump.timers.arm("mgmt-remote", self.gw.clock(), lambda: then(decision))
        return ["SUCCESS: remote command succeeded"]

    # ---------------------------------------------------------------- proxy
    def query_proxy(self, index: int, remote, then: Callable[[object], None]) -> bool:
        """management-query-proxy (init.c ce_management_query_proxy): >PROXY:N,UDP|TCP,HOST
        (N: the remote's place in the profile, from 1) and, at the answer, `then(remote)` with
        the remote to dial (its proxy as the answer says). False when not asking."""
        if not self.gw.opts.management_query_proxy or self.mgr is None:
            return False
        self._proxy_line = f">PROXY:{index},{'UDP' if remote.proto == 'udp' else 'TCP'},{remote.host}"
        self._proxy_remote, self._proxy_answer = remote, then
        self._notify([self._proxy_line])
        return True

    def proxy_command(self, a: list[str]) -> list[str]:
        """`proxy NONE | HTTP HOST PORT [nct] | SOCKS HOST PORT`, answered as OpenVPN 2.6's client
        (management_callback_proxy_cmd): NONE keeps the profile's way (its http-proxy, if any);
        HTTP puts the remote behind that proxy (the profile's proxy options and credentials kept,
        `nct`: no credentials sent, the only ones here being Basic's cleartext), SOCKS behind that
        SOCKS5 proxy (the profile's socks-proxy credentials kept) -- refused for a UDP remote, the
        question still open, as there for HTTP (SOCKS over UDP is not done here); anything else
        malformed is a failure that ends the question with the profile's way, as there. Not
        asked, it is answered as there and changes nothing. Stricter: PORT must be a number."""
        from ..openvpn.httpproxy import HttpProxy, line_problem
        from ..openvpn.socksproxy import SocksProxy, connect_request
        remote = self._proxy_remote
        kind = a[0]
        new = None
        if kind == "NONE":
            ok = True
        elif len(a) > 2 and kind in ("HTTP", "SOCKS"):
            if remote is not None and remote.proto == "udp":
                log.warning("management: %s proxy support only works for TCP based connections here", kind)
                return ["ERROR: proxy command failed"]
            if not (a[2].isascii() and a[2].isdigit() and 1 <= int(a[2]) <= 65535):
                return ["ERROR: proxy command failed"]
            had = remote.proxy if remote is not None else None
            if kind == "HTTP":
                base = had if isinstance(had, HttpProxy) else HttpProxy()
                nct = len(a) > 3 and a[3] == "nct"
                new = dataclasses.replace(base, server=a[1], port=int(a[2]),
                                          **({"auth": "none", "credentials": None} if nct else {}))
                bad = remote is not None and line_problem(new, remote.host, remote.port) is not None
            else:
                new = dataclasses.replace(had, server=a[1], port=int(a[2])) if isinstance(had, SocksProxy) \
                    else SocksProxy(a[1], int(a[2]))
                try:
                    bad = remote is not None and not connect_request(remote.host, remote.port)
                except ValueError:
                    bad = True
            if bad:
                return ["ERROR: proxy command failed"]
            ok = True
        else:
            log.warning("management: bad proxy command")
            ok = False
        then, self._proxy_answer, self._proxy_line, self._proxy_remote = self._proxy_answer, None, None, None
        if then is not None and remote is not None:
            chosen = dataclasses.replace(remote, proxy=new) if new is not None else remote
            if new is not None:
                log.info("management: %s:%d through %s proxy %s:%d", remote.host, remote.port, a[0], new.server,
                         new.port)
            self.gw.pump.timers.arm("mgmt-proxy", self.gw.clock(), lambda: then(chosen))
        return ["SUCCESS: proxy command succeeded" if ok else "ERROR: proxy command failed"]

    # ---------------------------------------------------------------- passwords
    def query_passwords(self, then: Callable[[str, str], None]) -> None:
        """Ask for the username and password (manage.c management_query_user_pass): `then(user,
        password)` once both came. Asked anew each time: an earlier half-answer is dropped."""
        self._answer, self._q_user, self._q_pass = then, "", None
        if self.mgr is None or not any(c.authed for c in self.mgr.conns):
            log.info("Need password(s) from management interface, waiting...")
        self._notify([self._password_line()])

    def _password_line(self) -> str:
        line = ">PASSWORD:Need 'Auth' username/password"
        sc = self.gw.opts.static_challenge
        return line + (f" SC:{int(sc[1])},{sc[0]}" if sc is not None else "")

    def user_pass_command(self, what: str, kind: str, value: str) -> list[str]:
        """`username TYPE VALUE` / `password TYPE VALUE`, answered in OpenVPN 2.6's words
        (man_query_user_pass). An empty password is a blank one (its [[BLANK]]); an empty username
        is stored and does not complete the answer. (The command line's words are at most 255
        characters, as OpenVPN's: within what a key-method message carries.)"""
        if self._answer is None:
            return [f"ERROR: no {what} is currently needed at this time"]
        if kind != "Auth":
            return [f"ERROR: {what} of type '{kind}' entered, but we need one of type 'Auth'"]
        if what == "username":
            self._q_user = value
        else:
            self._q_pass = value
        if self._q_user and self._q_pass is not None:
            then, user, pw = self._answer, self._q_user, self._q_pass
            self._answer, self._q_user, self._q_pass = None, "", None
            # After this reply, as the hold's release: what the answer starts logs on its own.
            self.gw.pump.timers.arm("mgmt-passwords", self.gw.clock(), lambda: then(user, pw))
        return [f"SUCCESS: '{kind}' {what} entered, but not yet verified"]

    def disconnected(self) -> None:
        """An authenticated management client left (manage.c man_reset_client_socket): with
        management-forget-disconnect the credentials and auth-token go; with management-signal
        the connection restarts (not on hold: SIGUSR1 is ignored there, as OpenVPN's
        MANSIG_IGNORE_USR1_HUP). OpenVPN does both for any client, one that never gave the
        interface's password too; here only one that did can restart the tunnel by leaving."""
        gw, o = self.gw, self.gw.opts
        if not (o.management_forget_disconnect or o.management_signal):
            return
        if gw.result is not None or self.mgr is None:
            return                                  # the interface closing at the end of the run
        if o.management_forget_disconnect:
            gw.forget_passwords()
        if o.management_signal and self.holding is None:
            log.info("MANAGEMENT: Triggering management signal")
            gw.pump.timers.arm(("mgmt-signal", "SIGUSR1"), gw.clock(),
                               lambda: gw.user_restart("management-disconnect"))

    # ---------------------------------------------------------------- signals
    def signal_command(self, name: str) -> list[str]:
        if name not in SIGNALS:
            return [f"ERROR: signal '{name}' is not a known signal type"]
        if name == "SIGHUP" or (name == "SIGUSR1" and self.holding is not None):
            if name == "SIGHUP" and self.holding is None:
                log.warning("management: SIGHUP: re-reading the profile is not supported by this client; "
                            "ignored (SIGUSR1 reconnects)")
            return [f"ERROR: signal '{name}' is currently ignored", *self.special()]
        gw = self.gw
        act = {"SIGUSR1": gw.user_restart, "SIGUSR2": gw.log_counters}.get(name, gw.request_stop)
        # After the reply, as a signal would come; one timer per signal, so a SIGTERM thrown is
        # not replaced by another client's SIGUSR2 before it was acted on (a repeated one is one).
        gw.pump.timers.arm(("mgmt-signal", name), gw.clock(), act)
        return [f"SUCCESS: signal {name} thrown"]

    # ---------------------------------------------------------------- status, bytecount
    def status_lines(self) -> list[str]:
        return render_client(self.gw.counters, self.wall())

    def bytecount_changed(self, c: MgmtConn) -> None:
        """The tick starts unless it runs already: re-armed at each `bytecount`, another management
        client repeating the command more often than once a second kept it from ever firing, and
        a tool that had asked for `bytecount 1` heard nothing."""
        c.bytecount_last = self.gw.clock()     # on the connection: gone with it (no table to grow)
        timers = self.gw.pump.timers
        if self.mgr is not None and any(x.bytecount for x in self.mgr.conns) and not timers.armed("mgmt-bytecount"):
            timers.arm("mgmt-bytecount", self.gw.clock() + BYTECOUNT_TICK, self._bytecount)

    def _bytecount(self) -> None:
        """>BYTECOUNT:in,out every N seconds per client: the transport bytes over the run (OpenVPN
        counts its link reads and writes, kept across reconnects); not while on hold."""
        m = self.mgr
        if m is None:
            return
        active = [c for c in m.conns if c.bytecount and c.authed]
        if not active:
            return
        now = self.gw.clock()
        if self.holding is None:
            cnt = self.gw.counters
            line = [f">BYTECOUNT:{cnt.wire_in},{cnt.wire_out}"]
            for c in active:
                if now - getattr(c, "bytecount_last", now) >= c.bytecount - 1e-6:
                    c.bytecount_last = now
                    c.send_lines(line)
        self.gw.pump.timers.arm("mgmt-bytecount", now + BYTECOUNT_TICK, self._bytecount)


def one_line(text: str) -> str:
    """The server's text on one management line: the engine escapes control characters already
    (keymethod.py); a CR or LF left would let the server forge lines a tool reads as ours."""
    return text.replace("\r", "\\x0d").replace("\n", "\\x0a")


def restart_reason(e: ev.SessionClosed) -> str:
    """OpenVPN 2.6's signal text for what ended a session (its >STATE:...,RECONNECTING|EXITING,X)."""
    r = e.reason
    if e.tls_error:
        return "tls-error"
    if r.startswith("AUTH_FAILED TEMP"):
        return "auth-temp-failure (server temporary reject)"
    if r.startswith("AUTH_FAILED"):
        return "auth-failure"
    if r.startswith("inactivity timeout (ping-restart"):
        return "ping-restart"
    if r.startswith("inactivity timeout (ping-exit"):
        return "ping-exit"
    if r.startswith("server sent RESTART"):
        return "server-pushed-connection-reset"
    if r.startswith("server sent HALT"):
        return "server-pushed-halt"
    if "exit" in r.lower():
        return "remote-exit"
    return "connection-reset"


def remote_proto(remote, opts) -> str:
    """OpenVPN 2.6's proto2ascii short form for a client's remote: udp / tcp-client, with 4 or 6
    when the remote's line (or `proto`) names the family."""
    fam = opts.family_of(remote) or ""
    return f"udp{fam}" if remote.proto == "udp" else f"tcp{fam}-client"
