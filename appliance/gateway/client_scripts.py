"""The client's own scripts (`up`, `route-up`, `ipchange`, `route-pre-down`, `down`), run as
OpenVPN 2.6's client runs them with persist-tun (ours keeps its TUN across reconnects), read from
init.c (do_open_tun, do_route, do_close_tun, run_up_down) and socket.c (ipchange) and checked
against Debian's 2.6.14 (tests/interop/test_client_scripts_vs_openvpn.py):

- `ipchange CMD`: `CMD "[AF_INET]IP PORT"` (one word: 2.6.14 appends print_sockaddr_ex's text
  as one argument, `[AF_INET6]` for IPv6) at each connection, when its first TLS handshake
  completes ("Peer Connection Initiated"); a failure is only logged.
- without `persist-tun` a reconnect closes the tunnel as the end does (closing(): route-pre-down,
  the down-root command, down, `init`, `signal`) and the next tunnel is a first one (up `init`,
  route-up), as 2.6 closes and reopens its device (gateway/updown.py).
- each connection's scripts see that connection's environment set (2.6 makes it afresh at each:
  a reconnect's ipchange has no tunnel variables, up-restart's up no route_* ones).
- `up CMD`: `CMD DEV TUN_MTU 0 IFCONFIG_LOCAL IFCONFIG_REMOTE|NETMASK init` when the first tunnel
  of the run is up, `script_type=up`, with the up environment (gateway/updown_env.py); a non-zero
  exit ends the run with status 1 ("WARNING: Failed running command (--up/--down): ...", M_FATAL
  there). With `up-restart` it runs again (`restart` last) when a reconnect's tunnel is up.
- `route-up CMD`: `CMD` alone after `up`, once (a reconnect keeps the device and its routes, so 2.6
  does not run do_route again), `script_type=route-up`, `redirect_gateway` set; failure logged.
- at the end (SIGTERM, SIGINT, exit on inactivity...), if a tunnel was ever up: `route-pre-down
  CMD` (the `up` words, `init`) before the routes go, then `down CMD` (the same) after the device
  went (before it with `down-pre`), each with `signal` set (`sigterm`: 2.6's lower case); a
  failed route-pre-down is fatal there (no down follows), a failed down is logged. With
  `up-restart`, `down` runs at each reconnect too (`restart`).

Deviations, by design: OpenVPN runs each script in its one thread and waits for ever; here up,
route-up and ipchange run one at a time, in order, in a worker thread (a hanging script holds
neither the tunnel nor the management interface), each killed with its process group after
TIME_LIMIT (a killed `up` ends the run as a failed one does); >STATE:CONNECTED waits for up and
route-up, as there (gateway/client.py). OpenVPN's up runs before the routes are added; ours runs
once the addresses and routes are in (net.apply sets both at once) -- a script that adds its own
routes sees ours present. route-pre-down and down run at the end in the exiting thread, bounded
by DOWN_TIME_LIMIT each. The environment carries PATH (as every command here; 2.6 passes none).
Scripts run as the process runs (root, or `user`), but for what 2.6 runs before its privilege
drop -- ipchange before the first tunnel, the first up and route-up --, which the root helper
forked before ours runs with `user`/`group` (host/script_root.py; closed at the END_ROOT marker
queued after the first route-up, where 2.6 drops; with route-delay after the delayed route-up).
"""
from __future__ import annotations

import logging
import os
from collections import deque
from typing import TYPE_CHECKING, Callable

from .offloop import OffLoopWorkers
from .script_env import fit_env
from .scripts import Running, run_limited

if TYPE_CHECKING:
    from ..host.script_root import RootScripts

log = logging.getLogger("vpn-appliance")

TIME_LIMIT = 60.0           # up / route-up / ipchange, each (OpenVPN waits for ever)
DOWN_TIME_LIMIT = 30.0      # route-pre-down / down at the end, each (as the down-root command)
MAX_PENDING = 16            # reconnects faster than ipchange scripts end: the rest are skipped, logged
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
END_ROOT = "end-root"       # a queued marker: the first tunnel's scripts ran, the root helper ends
DOWN_ROOT = "down-root"     # a queued down-root command at a reconnect (ClientScripts.down_root runs it)
CLOSING = ("route-pre-down", DOWN_ROOT, "down")     # a tunnel's down side, queued at a reconnect

# How OpenVPN 2.6 names each in its failure line (openvpn_run_script's error_message).
LABEL = {"up": "--up/--down", "down": "--up/--down", "route-up": "--route-up", "route-pre-down": "--up/--down",
         "ipchange": "--ipchange"}


def tunnel_words(env: dict[str, str], context: str) -> list[str]:
    """run_up_down's words after the command: DEV TUN_MTU 0 LOCAL REMOTE|NETMASK CONTEXT (an
    address the tunnel lacks is an empty word, as there: IA_EMPTY_IF_UNDEF)."""
    remote = env.get("ifconfig_netmask", env.get("ifconfig_remote", ""))
    return [env.get("dev", ""), env.get("tun_mtu", ""), "0", env.get("ifconfig_local", ""), remote, context]


def ipchange_word(ip: str, port: int) -> str:
    """The one argument 2.6.14's ipchange gets (socket.c ipchange_fmt: argv_printf_cat "%s")."""
    return f"[AF_INET{'6' if ':' in ip else ''}]{ip} {port}"


def signal_word(why: str) -> str:
    """`signal` as 2.6's signal_description gives it: a signal's name in lower case (`sigterm`),
    else the reason's own text (`ping-restart`, `inactive`)."""
    return why.lower() if why.startswith("SIG") else why


def status_text(status: int | None, limit: float) -> str:
    """As 2.6's system_error_message words it (ours adds the time limit)."""
    if status is None:
        return f"ran past its {limit:g} s limit and was killed"
    if status < 0:
        return f"external program was killed by signal {-status}"
    return f"external program exited with error status: {status}"


def run_script(kind: str, argv: list[str], env: dict[str, str], limit: float,
               running: Running | None = None, root: "RootScripts | None" = None) -> bool:
    """Run one script (its output the process's, as OpenVPN's); True if it exited 0. A failure
    is logged as 2.6 logs it. `root`: the root helper runs it (host/script_root.py)."""
    # A NUL (which no C string holds) in what a server pushed would make the exec fail -- an
    # `up` then ends the run: it is made `_`, as down_root.encode does.
    argv = [a.replace("\0", "_") for a in argv]
    log.info("%s", " ".join(argv))                      # as 2.6's argv_msg before each run
    if root is not None:
        if root.run(kind, argv[len(root.commands[kind]):], env):
            return True
        log.warning("WARNING: Failed running command (%s): run as root, it failed or was refused", LABEL[kind])
        return False
    full = fit_env({"PATH": os.environ.get("PATH", DEFAULT_PATH),
                    **{k: v.replace("\0", "_") for k, v in env.items() if k and "=" not in k and "\0" not in k}},
                   argv[0])
    try:
        status = run_limited(argv, full, limit, running=running)
    except (OSError, ValueError) as e:                  # ValueError: a NUL (tlsverify.clean makes none)
        log.warning("WARNING: Failed running command (%s): could not execute external program: %s",
                    LABEL[kind], getattr(e, "strerror", None) or e)
        return False
    if status == 0:
        return True
    log.warning("WARNING: Failed running command (%s): %s", LABEL[kind], status_text(status, limit))
    return False


class ClientScripts(OffLoopWorkers):
    """up / route-up / ipchange in one worker thread, in order; `take_results()` gives (kind,
    ok) once each ended (the loop watches `fileno()`). `inline=True` runs them in the caller
    (tests). route-pre-down and down run in the caller: `run_now`."""

    def __init__(self, time_limit: float = TIME_LIMIT, inline: bool = False) -> None:
        self.time_limit = time_limit
        self.inline = inline
        self.results: deque = deque()
        self.pending = 0
        self.running = Running()
        self.halted = False             # an `up` (or a reconnect's route-pre-down/down-root) failed: nothing more runs
        # DOWN_ROOT's runner (UpDown.down_root_now: the root helper's command), set by the client.
        self.down_root: "Callable[[dict[str, str]], bool] | None" = None
        # With `user`/`group`: the helper that runs as root what 2.6 runs before its drop (cli.py
        # forks it while root); closed once the first tunnel's up and route-up ran.
        self.root: RootScripts | None = None
        super().__init__(inline, 1, "client-script")
        # What the worker has not finished, in order (close() runs a tunnel's down side left in it).
        self._queued: dict = {}

    @property
    def room(self) -> bool:
        """Whether a bounded submit would be queued now."""
        return self.pending < MAX_PENDING

    @property
    def busy(self) -> bool:
        """Whether a script is queued or running (CONNECTED waits for up and route-up)."""
        return self.pending > 0

    def submit(self, kind: str, argv: list[str], env: dict[str, str], keep: bool = False) -> bool:
        """Queue one script; False (logged) when too many wait already, unless `keep`: the first
        tunnel's up, route-up and END_ROOT, queued once a run, are never skipped -- else a server
        reconnecting faster than a slow ipchange ends had the tunnel up without its up script
        (a firewall's or DNS's setting never made) and the root helper kept past the drop."""
        if self.pending >= MAX_PENDING and not keep:
            log.warning("%s not run: %d scripts still waiting", kind, self.pending)
            return False
        self.pending += 1
        if self._pool is None:
            self.results.append((kind, self._job(kind, argv, env)))
            return True
        fut = self._pool.submit(self._job, kind, argv, env)
        self._queued[fut] = (kind, argv, env)
        fut.add_done_callback(lambda f, k=kind: self._done(k, f))
        return True

    def _job(self, kind: str, argv: list[str], env: dict[str, str]) -> bool:
        """In the worker: a failed `up` ends the run (the loop hears it), so what was queued
        after it (route-up) runs no more, as in 2.6 where the process is gone by then."""
        if kind == END_ROOT:
            if self.root is not None:
                self.root.close()
                self.root = None
            return True
        if self.halted:
            return True
        if kind == DOWN_ROOT:
            ok = self.down_root(env) if self.down_root is not None else True
            self.halted = not ok
            return ok
        root = self.root if self.root is not None and kind in self.root.commands else None
        ok = run_script(kind, argv, env, self.time_limit, self.running, root)
        if kind in ("up", "route-pre-down") and not ok:
            self.halted = True
        return ok

    def _done(self, kind: str, fut) -> None:
        if fut.cancelled():
            return
        self._queued.pop(fut, None)
        try:
            ok = bool(fut.result())
        except Exception as e:  # noqa: BLE001 - our bug: counted as a failed script
            log.warning("%s: %s", kind, e)
            ok = False
        self.results.append((kind, ok))
        self._ring()

    def take_results(self) -> list[tuple[str, bool]]:
        out = []
        while self.results:
            out.append(self.results.popleft())
            self.pending -= 1
        return out

    def run_now(self, kind: str, argv: list[str], env: dict[str, str]) -> bool:
        """route-pre-down / down at the end, in the caller, bounded."""
        return run_script(kind, argv, env, DOWN_TIME_LIMIT)

    def close(self) -> None:
        """Kill what still runs (the exit would wait for it) and drop what waits -- but for a
        tunnel's down side queued at a reconnect behind a slow script, whose up side ran: it
        runs here, in the caller, each bounded (DOWN_TIME_LIMIT, the down-root command's own),
        since the end has no tunnel left to close (the reconnect forgot it) and 2.6 ran it at
        the reconnect. Only the first such side: a later one's tunnel had its up side dropped too."""
        owed: list[tuple[str, list[str], dict[str, str]]] = []
        if self._pool is not None:
            halted = self.halted            # before the kill below: a killed script is no failure of its own
            self._pool.shutdown(wait=False, cancel_futures=True)     # first: the worker takes no next job
            if not halted:
                owed = _owed_down_side([job for fut, job in list(self._queued.items()) if fut.cancelled()])
        self.running.stop()
        root = self.root
        if root is not None:
            if self._pool is None:
                root.close()
            else:
                root.abort()                # the worker may wait on it: it wakes and reaps it
                root.reap(2.0)              # a root up it runs killed before the end's down
        if self._wake is not None:
            self._wake.close()
        for kind, argv, env in owed:
            if kind == DOWN_ROOT:
                ok = self.down_root(env) if self.down_root is not None else True
            else:
                ok = run_script(kind, argv, env, DOWN_TIME_LIMIT)
            if not ok and kind != "down":
                break                       # 2.6 exits there (M_FATAL): nothing after it


def _owed_down_side(dropped: list[tuple[str, list[str], dict[str, str]]]) -> list[tuple[str, list[str], dict[str, str]]]:
    """Of the jobs close() dropped (in order), the first tunnel down side, unless that tunnel's
    up side was dropped before it (then it never ran: nothing to undo)."""
    out: list = []
    for job in dropped:
        if job[0] in CLOSING:
            out.append(job)
        elif out or job[0] in ("up", "route-up"):
            break
    return out


SCRIPT_SECURITY_WARNING = ("WARNING: External program may not be called unless '--script-security 2' or higher "
                           "is enabled. See --help text or man page for detailed info.")


class ClientScriptPlan:
    """When each script runs and with what (the environment from gateway/updown.py's UpDown, the
    set OpenVPN's scripts share: each script_type set stays in it for the next, as there)."""

    def __init__(self, opts, updown, runner: ClientScripts) -> None:
        self.opts = opts
        self.updown = updown
        self.runner = runner
        if opts.script_security < 2:
            # up/down were refused at their line (config/client_scripts.py); 2.6 skips the rest.
            self.route_up = self.route_pre_down = self.ipchange = None
            if opts.route_up_script or opts.route_pre_down_script or opts.ipchange_script:
                log.warning("%s", SCRIPT_SECURITY_WARNING)
        else:
            self.route_up = opts.route_up_script
            self.route_pre_down = opts.route_pre_down_script
            self.ipchange = opts.ipchange_script
        self.ended = False
        self.first_queued = False       # the run's first tunnel's up and route-up queued
        # Whether the tunnel's up side was queued: its down side then always is (past the bound),
        # and only then -- a server reconnecting faster than the scripts end skips whole pairs,
        # never an undoing (the root down-root command's) after an up that ran.
        self.opened = False

    @staticmethod
    def wanted(opts) -> bool:
        return any(getattr(opts, f) for f in ("up_script", "down_script", "route_up_script",
                                              "route_pre_down_script", "ipchange_script", "down_root"))

    def _set(self, **kw: str) -> dict[str, str]:
        """The shared set with `kw` set (the newest first), kept for the next script and the
        management lines."""
        env = {**kw, **{k: v for k, v in (self.updown.mgmt_env or {}).items() if k not in kw}}
        self.updown.mgmt_env = env
        return env

    def connected(self, session, remote: tuple) -> None:
        """A connection's first handshake completed: ipchange IP PORT."""
        if not self.ipchange:
            return
        env = self.updown.connection_env(session, remote)
        env = {"script_type": "ipchange", **env}
        self.runner.submit("ipchange", [*self.ipchange, ipchange_word(remote[0], remote[1])], env)

    def up(self, first: bool, session=None, remote: tuple = (), pushed=None, dev: str = "",
           route_up: bool = True) -> None:
        """The tunnel is up (UpDown.up has run): the first of the run runs up then route-up; a
        later one runs up (`restart`) with up-restart, in this connection's own set.
        `route_up=False`: route-delay holds route-up back (route_up_delayed runs it)."""
        o, u = self.opts, self.updown
        if u.plugin_env is None:
            return
        if first:
            # The run's first tunnel's are never skipped (ClientScripts.submit); a later first
            # one (a reconnect without persist-tun) is bounded as any: a server reconnecting
            # faster than the scripts end must not grow the queue without end. Whole: up
            # without its route-up (the last slot taken) was half a tunnel.
            keep, self.first_queued = not self.first_queued, True
            self.opened = keep or self.runner.room
            if not self.opened:
                log.warning("the tunnel's up side not run (nor its down side): %d scripts still waiting",
                            self.runner.pending)
                return
            if o.up_script:
                env = {"script_type": "up", **u.plugin_env}
                self.runner.submit("up", [*o.up_script, *tunnel_words(env, "init")], env, keep=True)
            if self.route_up and route_up:
                self.runner.submit("route-up", list(self.route_up), self._set(script_type="route-up"), keep=True)
            self.route_up_owed = bool(self.route_up) and not route_up
            if route_up and (keep or self.end_root_owed):
                self.end_root_owed = False
                self.runner.submit(END_ROOT, [], {}, keep=True)    # 2.6 drops to `user` here
            elif keep:
                # After the delayed route-up, as 2.6 (route_up_delayed); a connection that ended
                # before its delay was over leaves it owed to the next tunnel's.
                self.end_root_owed = True
        elif o.up_restart and o.up_script:
            env = self._set(script_type="up", script_context="restart")     # the set UpDown.up made
            self.opened = self.runner.submit("up", [*o.up_script, *tunnel_words(env, "restart")], env)

    route_up_owed = False               # route-delay held the first tunnel's route-up back
    end_root_owed = False               # ... and with it the drop to `user` (END_ROOT)

    def route_up_delayed(self, **env: str) -> None:
        """route-delay is over (gateway/route_delay.py): route-up, once a run, with `env` (the
        learned route_vpn_gateway, redirect_gateway) in the set, then the drop to `user`: as
        2.6, whose delayed do_route runs route-up as root and initialization_sequence_completed
        drops after it (Debian's 2.6.14 client: route-up's `id -u` 0, then "UID set to")."""
        if self.updown.plugin_env is None or not self.opened:
            return
        if self.route_up_owed:
            self.route_up_owed = False
            self.runner.submit("route-up", list(self.route_up), self._set(script_type="route-up", **env), keep=True)
        if self.end_root_owed:
            self.end_root_owed = False
            self.runner.submit(END_ROOT, [], {}, keep=True)

    def closing(self, why: str) -> None:
        """A restart without persist-tun closes the tunnel (2.6's do_close_tun, as at the end but
        queued in the worker, in its order): route-pre-down, the down-root command (the plugin's
        DOWN call comes before the down script), down -- each `init`, with `signal`, in the set
        as it stands. A failure of route-pre-down or down-root ends the run (M_FATAL there).
        UpDown.forget() follows (the tunnel's set is forgotten)."""
        u, sig = self.updown, signal_word(why)
        p = u.plugin_env
        if p is None:
            return
        if not self.opened:             # its up side was skipped (logged): nothing to undo
            return
        self.opened = False
        # run_up_down sets the device's name and MTU for each script (a persisted device's
        # reconnect set lacks them); the words name the closing device's addresses.
        dev = {k: p[k] for k in ("tun_mtu", "dev") if k in p}
        words = tunnel_words({**(u.mgmt_env or {}), **dev}, "init")
        if self.route_pre_down:
            env = self._set(script_type="route-pre-down", signal=sig, script_context="init", **dev)
            self.runner.submit("route-pre-down", [*self.route_pre_down, *words], env, keep=True)
        if self.opts.down_root:
            self.runner.submit(DOWN_ROOT, [], dict(p), keep=True)
        if self.opts.down_script:
            env = self._set(script_type="down", signal=sig, script_context="init", **dev)
            self.runner.submit("down", [*self.opts.down_script, *words], env, keep=True)

    def restarting(self, why: str) -> None:
        """A tunnel that was up ends for a reconnect: with up-restart, down (`restart`)."""
        if self.opts.up_restart and self.opts.down_script and self.updown.plugin_env is not None and self.opened:
            self.opened = False
            env = self._set(script_type="down", script_context="restart", signal=signal_word(why))
            self.runner.submit("down", [*self.opts.down_script, *tunnel_words(env, "restart")], env, keep=True)

    def before_routes_go(self, why: str) -> None:
        """At the end, before the routes and the device go: route-pre-down, and down with down-pre."""
        if self.updown.plugin_env is None or self.ended:
            return
        if self.route_pre_down:
            env = self._set(script_type="route-pre-down", script_context="init", signal=signal_word(why))
            if not self.runner.run_now("route-pre-down", [*self.route_pre_down, *tunnel_words(env, "init")], env):
                # 2.6's M_FATAL (run_up_down): it exits there, no down script after it.
                log.error("Exiting due to fatal error")
                self.ended = True
                return
        if self.opts.down_pre:
            self._down(why)

    def after_device_went(self, why: str) -> None:
        """At the end, after the device went: down (without down-pre)."""
        if self.updown.plugin_env is None or self.ended:
            return
        if not self.opts.down_pre:
            self._down(why)
        self.ended = True

    def _down(self, why: str) -> None:
        if self.opts.down_script:
            env = self._set(script_type="down", script_context="init", signal=signal_word(why))
            self.runner.run_now("down", [*self.opts.down_script, *tunnel_words(env, "init")], env)
