"""The client's policy on the shared pump: connect over the remote list, bring the tunnel up, move
packets, reconnect with backoff, leave cleanly.

Everything here is decisions; waiting, timers and error accounting are gateway/loop.py's, data-path
protocol decisions (MSS, sealing) are openvpn/datapath.py's, and the ports come from the caller.
A fault caused by the server (a reset stream, garbage, a refused send) ends at most the current
connection, and the client starts over; only our own TUN or socket failing ends the process.
"""
from __future__ import annotations

import errno

import dataclasses

import ipaddress
import logging
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, Protocol

from ..openvpn import ciphers
from ..openvpn import events as ev
from ..openvpn.authtoken import AuthToken
from ..openvpn.clientnat import MAX_ENTRIES as NAT_MAX
from ..openvpn.clientnat import ClientNat, combined
from ..logpace import NoteLimit
from ..openvpn.datapath import ClientDataPath
from ..openvpn.config import ConfigError, Options, Remote
from ..openvpn.config.connection_entry import entry_of
from ..openvpn.errors import BadPacket
from ..openvpn.httpproxy import ConnectReply, ProxyRefused, request_bytes
from ..openvpn.socksproxy import SocksHandshake, SocksProxy
from ..openvpn.profile_push import outside_ipv6_dropped, with_profile
from ..openvpn.settings import (NO_SERVER_CERT_CHECK, checks_server_certificate, client_session_config,
                                fragment_room, mss_rule, p2p_session_config,
                                p2p_session_maker)
from ..openvpn.p2p import p2p_network
from ..openvpn.session import Session
from ..openvpn.tls import CHAIN_UNREADABLE, CHAIN_UNREADABLE_SAID
from ..transport.link import TcpLink, UdpLink
from ..openvpn.ethernet import is_ipv6_frame
from ..transport.p2p_link import P2PListenLink
from ..tun.rtnl import DumpInterrupted
from .block_ipv6 import is_ipv6, no_route_reply
from .credentials import Credentials, CredentialsUnavailable
from .resolver import BackgroundResolver
from .eventlog import fmt_addr, log_client_event, log_malformed, log_unrecognized, push_summary
from .inactivity import INACTIVE_LOG, Inactivity
from .loghold import LogHold
from .loop import Faults, Pump, SignalWakes, Signals, Waiter, freeze_startup_heap, run_gateway
from .observers import ClientCounters, TunnelObserver, TunnelState
from .p2p_server import TakeOver
from .push_fatal import fatal_push
from ..ioerrors import start_failed
from .ports import AddressWatchPort, Clock, PortGone, Ports, TunPort
from .recursive_routing import RecursiveGuard
from .route_keeper import RouteKeeper
from .shaper import Shaper, header_bytes
from .restart_pause import restart_pause
from .status import vm_rss
from .tlsverify import VerifyRunner, make_verify_runner
from .client_scripts import DOWN_ROOT, ClientScriptPlan, ClientScripts
from .route_delay import ROUTER_ON_LINK_POLL, ROUTER_WAIT, delay_of, usable_router
from .updown import UpDown

if TYPE_CHECKING:
    from .client_mgmt import ClientMgmt

log = logging.getLogger("vpn-appliance")

BATCH = 64
ADDR_READS = 16                  # netlink datagrams read per wake-up (address changes are rare)
DROP_LOG_EVERY = 5.0
STOP_BACKSTOP = 2.0             # s after explicit-exit-notify's wait: the end, whatever broke in the wait
FAULT_RETRY = 5.0               # s: the next attempt after our bug broke a restart midway (_schedule_retry)
# What waits until the first packets of a new tunnel have had their round trip: the log lines
# of the handshake and the push (LogHold) and the services' "tunnel up" (observers). On a
# 2-core machine any CPU we spend while the server and the first packet's path need it shows
# up in the time to the first packet; 20 ms on, the burst is over.
AFTER_UP_DELAY = 0.02
SCRIPT_POLL = 0.05              # CONNECTED waits for up/route-up: looked at this often
DHCP_ROUTER_LOG_EVERY = 10.0    # s: route-gateway dhcp's "Extracted DHCP router address" at most this often
DHCP_ROUTERS_KEPT = 4           # usable DHCP routers the wait chooses among (the newest on the tap's network)


class Lazy:
    """A log argument worked out only when the line is written (LogHold may write it later)."""
    __slots__ = ("fn", "args")

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __str__(self) -> str:
        return str(self.fn(*self.args))


class TunnelNet(Protocol):
    """The client's TUN and the pushed network config (gateway/tunnel.py; lab/fakes.py)."""
    tun: TunPort | None
    block_ipv6: bool            # the push said block-ipv6: IPv6 from the TUN is answered, not sent

    def apply(self, pushed, remote_ip: str) -> None: ...

    def device_reopened(self) -> None: ...

    def reach(self, remote_ip: str) -> None: ...

    def prepare(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class Connection:
    """One attempt at one remote: its link, session and data path."""
    remote: Remote
    addr: tuple
    link: UdpLink | TcpLink | P2PListenLink
    session: Session
    dp: ClientDataPath
    was_up: bool = False
    connecting: bool = False           # TCP: the non-blocking connect is still under way
    auth_said: bool = False            # the management clients were told AUTH (the server answered)
    # http-proxy / socks-proxy: the proxy's answers to our CONNECT, until it let us through
    proxy: ConnectReply | SocksHandshake | None = None


class ClientGateway(SignalWakes):
    """Connect, tunnel, reconnect. `run()` for real use; `start()`/`pump.step()` for tests."""

    def __init__(self, opts: Options, ports: Ports, net: TunnelNet, clock: Clock, waiter: Waiter,
                 username: str = "", password: str = "", advertise_ekm: bool = True,
                 signals: Signals | None = None, rng: random.Random | None = None,
                 observers: "tuple[TunnelObserver, ...] | list[TunnelObserver]" = (),
                 credentials: Credentials | None = None) -> None:
        self.opts = opts
        self.ports = ports
        self.net = net
        self.clock = clock
        self.username, self.password = username, password
        # auth-nocache (credentials.py): fetched at each key-method message instead of the above.
        self.credentials = credentials
        # management-query-passwords: whether the two above are there to send; when not, the
        # management client is asked before the connection (ClientMgmt.query_passwords).
        self._creds_given = bool(username and password)
        # Remote names resolved in a worker thread where the resolver may be slow (the host's),
        # never on the loop; in-memory ports answer at once and keep the direct call.
        self._resolver = BackgroundResolver(ports.resolve) if getattr(ports, "resolves_slowly", False) else None
        self._resolving = False
        # management-query-remote: waiting for the management client's `remote` answer; and how
        # often `remote SKIP N` answers went past the list's end since one was accepted.
        self._querying = False
        self._skip_wraps = 0
        self.advertise_ekm = advertise_ekm
        self.signals = signals
        self.faults = Faults(DROP_LOG_EVERY)
        self.pump = Pump(clock, waiter, self.faults)
        # Our bug in the next attempt's very first line must not end the attempts (loop.py TimerHeap.retry).
        self.pump.timers.retry["reconnect"] = FAULT_RETRY
        self.pump.after_wake = self._after_wake
        self.remotes = list(opts.remotes)
        if opts.remote_random:
            (rng or random).shuffle(self.remotes)
        self.attempt = 0
        # The addresses of the remote tried last that are still to be tried, before the next
        # remote (OpenVPN 2.6: next_connection_entry takes the name's next address, ai_next).
        self._more: list[tuple[str, int]] = []
        self._more_of: Remote | None = None
        # The settings of the connection tried last (its <connection> block's, else the
        # profile's): its attempt, its session, and the pause after it (2.6's c->options.ce).
        self.entry: Options = opts
        # Remotes begun since the last tunnel was up (OpenVPN's unsuccessful_attempts), for
        # connect-retry-max N: the run ends once each remote was tried N times in vain.
        self.unsuccessful = 0
        self.conn: Connection | None = None
        # The current link's handlers for the pump (_link_handlers): (link, read, write).
        self._handlers: tuple | None = None
        self.dhcp_router: str | None = None      # route-gateway dhcp: the last DHCPACK's router (a tap client)
        # ... and the usable ones before it, newest last: the wait goes via the newest on the
        # tap's network, so a forged ACK after the real one does not replace its router (atk50).
        self._dhcp_routers: deque[str] = deque(maxlen=DHCP_ROUTERS_KEPT)
        # (connection, push, since): the routes wait for a DHCP router alone (no route-delay)
        self._router_wait: tuple | None = None
        self._dhcp_router_said = float("-inf")
        self._routers_checked = float("-inf")     # when _route_delay_over last asked which router is on the tap's network
        self._unusable_router_note = NoteLimit(DHCP_ROUTER_LOG_EVERY)
        self._takeover: TakeOver | None = None       # p2p tls-server: a new session beside the live one
        self._tcp_listener: tuple | None = None      # p2p tls-server over TCP: (listener, allowed) until a peer
        self.tun_watched: TunPort | None = None
        # shaper N (gateway/shaper.py): the TUN is not read while it says wait; `_shaped`: the
        # device whose reading it holds back now.
        self.shaper: Shaper | None = Shaper(opts.shaper) if opts.shaper else None
        self._shaped: TunPort | None = None
        self.result: int | None = None          # exit status once the gateway has finished
        self.connections = 0                    # tunnels brought up (for tests and the log)
        self.observers = list(observers)
        self.counters = ClientCounters()
        self._state = TunnelState(False)
        self._logs = LogHold(log)
        self._inactive: Inactivity | None = None
        # The server's auth-token outlives each connection (authtoken.py): reconnects send it.
        self.auth_token = AuthToken()
        self._stop_at: float | None = None      # explicit-exit-notify's wait ends then
        self._stops_seen = 0
        self._addr_watch: AddressWatchPort | None = None
        self._route_keeper: RouteKeeper | None = None
        self._recursive: RecursiveGuard | None = None      # the current peer's recursive-routing drop
        # tls-verify (gateway/tlsverify.py): the server's chain goes to the command off the loop.
        if opts.tls_verify and opts.script_security < 2:
            path, line = opts.source.get("tls_verify", (opts.path, None))
            raise ConfigError("scripts run only with `script-security 2`", path, line, "tls-verify")
        self.verify: VerifyRunner | None = make_verify_runner(opts) if opts.tls_verify else None
        # The management interface (gateway/client_mgmt.py), with `management` in the profile;
        # the reason the next >STATE RECONNECTING (or the last EXITING) gives, as OpenVPN words it.
        self.mgmt: "ClientMgmt | None" = None
        # management-up-down and the down-root command (gateway/updown.py; its helper: cli.py).
        self.updown = UpDown(opts)
        self.updown.faults = self.faults
        # up/route-up/ipchange/route-pre-down/down (gateway/client_scripts.py): a worker runs them.
        self.scripts: ClientScriptPlan | None = None
        if ClientScriptPlan.wanted(opts):
            self.scripts = ClientScriptPlan(opts, self.updown, ClientScripts())
            self.scripts.runner.down_root = self.updown.down_root_now     # a reconnect's down-root command
        self._why = "connection-reset"
        self._exit_why = "SIGTERM"
        self._push_key = None       # the last tunnel's push, as 2.6's digest sees it (_push_changed)
        # Whether 2.6 would still hold an open device from the last tunnel (persist-tun, the same
        # push): its next connection then has no do_open_tun -- no ASSIGN_IP, no ADD_ROUTES.
        self._tun_kept = False

    # ---------------------------------------------------------------- running
    def run(self) -> int:
        """Until SIGINT/SIGTERM (0), a fatal auth/config failure (1) or our own port failing (1)."""
        return run_gateway(self.pump, self.signals, self._on_signal, self.start, lambda: self.result,
                           self._cleanup)

    def _cleanup(self) -> None:
        """What run_gateway runs at the end: each step under its own guard (Faults.each), in
        this order. Why: the first steps (the held log lines, the resolver's, tls-verify's and
        the scripts' workers) ran outside any guard, so a bug of ours in one -- or a MemoryError
        on a host out of memory -- skipped the rest: the host kept our routes (those to the
        server outlive the TUN), the DNS and the down script never ran."""
        self.faults.each("the clean-up at exit", [
            self._logs.write, self._close_resolver, self._close_workers,
            lambda: self.updown.down_notice(self.mgmt),
            lambda: self.scripts is not None and self.scripts.before_routes_go(self._exit_why),
            self._close_mgmt, self._close_conn, self._close_watchers,
            *(partial(self._close_observer, o) for o in self.observers),
            self.net.close,                     # the routes, the TUN
            self.updown.down_run,
            lambda: self.scripts is not None and self.scripts.after_device_went(self._exit_why)])

    def _close_resolver(self) -> None:
        if self._resolver is not None:
            self.pump.unwatch(self._resolver)
            self._resolver.close()

    def _close_workers(self) -> None:
        """tls-verify's and the scripts' workers off the loop (an up still running is killed:
        the end is here)."""
        for w in (self.verify, self.scripts.runner if self.scripts is not None else None):
            if w is not None:
                if not w.inline:
                    self.pump.unwatch(w)
                w.close()

    def _close_mgmt(self) -> None:
        if self.mgmt is not None:
            self.mgmt.state("EXITING", self._exit_why)
            self.mgmt.close()

    def _close_watchers(self) -> None:
        if self._route_keeper is not None:
            self._route_keeper.close()
            self._route_keeper = None
        if self._addr_watch is not None:
            self.pump.unwatch(self._addr_watch)
            self._addr_watch.close()
            self._addr_watch = None

    def _close_observer(self, o: TunnelObserver) -> None:
        try:
            o.close()
        except Exception as e:  # noqa: BLE001 - each observer undoes its own part
            self.faults.internal_exc(f"closing {type(o).__name__}", e)

    # ---------------------------------------------------------------- observers
    def _counters(self) -> ClientCounters:
        return self.counters

    def _notify(self, state: TunnelState) -> None:
        """Tell every observer; one that raises is counted (our bug) and the rest still hear."""
        if state == self._state:
            return
        self._state = state
        for o in self.observers:
            try:
                o.tunnel_changed(state)
            except Exception as e:  # noqa: BLE001 - a service's bug must not touch the tunnel
                self.faults.internal_exc(f"{type(o).__name__}.tunnel_changed", e)

    def start(self) -> None:
        # Local set-up before the first packet, not between the server's packets (README
        # "Handshake to first packet"): the data ciphers' one-time set-up (ciphers.warm_up; it
        # was ~1 ms when PUSH_REPLY arrived) and the TUN device (~0.3-0.5 ms of kernel work; it is
        # kept across connections anyway, persist-tun), so the exchange with the server carries
        # only the work it needs.
        if not self.opts.tls_server and not checks_server_certificate(self.opts):    # 2.6: a tls-client's warning
            log.warning(NO_SERVER_CERT_CHECK)      # once per run, as OpenVPN; not per connection
        ciphers.warm_up([*self.opts.data_ciphers, self.opts.data_ciphers_fallback, self.opts.cipher])
        if self.net.tun is None:
            self.net.prepare()
        for o in self.observers:
            o.attach(self.pump, self._counters)
        self.pump.timers.arm("drops", self.clock() + DROP_LOG_EVERY, self._log_drops)
        if self.verify is not None and not self.verify.inline:
            self.pump.watch(self.verify, self._on_verdicts)
        if self.scripts is not None and not self.scripts.runner.inline:
            self.pump.watch(self.scripts.runner, self._on_script_results)
        self._watch_addresses()
        self._keep_routes()
        if self._resolver is not None:
            self.pump.watch(self._resolver, self._resolver.drain)
        self.open_management()
        freeze_startup_heap()
        if self.mgmt is None or not self.mgmt.hold(0, self._connect_next):
            self._connect_next()

    def open_management(self, drops_root: bool = False) -> None:
        """Bind the management interface the profile asks for (once; cli.py calls this before a
        `user` drop, as OpenVPN binds it before its own). PortGone: it cannot be bound."""
        if not self.opts.management or self.mgmt is not None:
            return
        from .client_mgmt import ClientMgmt        # not loaded by a client without `management`
        m = ClientMgmt(self)
        try:
            m.open(drops_root)
        except OSError as e:
            spec = self.opts.management
            where = spec[0] if spec[1] == "unix" else f"{spec[0]}:{spec[1]}"
            raise start_failed(self.opts, "management", f"cannot open {where}: {e.strerror or e}") from None
        self.mgmt = m

    def request_stop(self) -> None:
        """SIGINT/SIGTERM, as OpenVPN 2.6's client (sig.c process_sigterm): with
        explicit-exit-notify N on a UDP connection, the exit notification and N seconds of
        waiting before the end (an OCC exit each second when the server has no cc-exit); without
        it, or over TCP (the closing stream says it), the end at once with nothing sent. Why: ours
        sent an exit notification at every stop, which a server whose admin did not ask for it
        reads as the client leaving on purpose. A second stop during the wait ends it at once.
        The wait holds while no data channel key exists yet too (the handshake goes on, and the
        notification follows once keys are there), as 2.6 enters it whenever its connection's
        loop runs (process_explicit_exit_notification_init does not look for a key); between two
        attempts (no connection) the end is at once, as 2.6 in its restart pause."""
        if self.result is not None:
            return
        if self.mgmt is not None and self.mgmt.holding is not None:
            self._exit_why = "init_instance"        # OpenVPN 2.6's words for a stop during the hold
        c = self.conn
        if self._stop_at is None and c is not None and not c.session.closed and (n := c.session.exit_notify):
            now = self.clock()
            self._stop_at = now + n             # first: a failed send ends the run, no reconnect
            try:
                if c.session.notify_exit(now, first=True):
                    log.info("stopping: exit notification sent, exiting in %d s (explicit-exit-notify)", n)
                    self._send(c, c.session.take_outgoing())
                else:
                    log.info("stopping: no data channel key yet to send the exit notification with, "
                             "exiting in %d s (explicit-exit-notify)", n)
            except Exception as e:  # noqa: BLE001 - whatever fails on the way out, we stop
                self.faults.count("exit notification not sent")
                log.info("exit notification not sent: %s", e)
                self._stop_now()
                return
            if self.result is None:
                self.pump.timers.arm("exit-notify", now + 1, self._exit_notify_tick)
                # The end comes even if the wait's own ticks break (our bug in one): a client
                # told to stop that never stops holds up a shutdown (lab/reliability/fault_sweep.py).
                self.pump.timers.arm("stop-backstop", self._stop_at + STOP_BACKSTOP, self._stop_backstop)
            return
        log.info("stopping")
        self._stop_now()

    def _stop_backstop(self) -> None:
        if self.result is None:
            self.faults.count("stop forced after the exit notification's wait")
            log.warning("stopping: the exit notification's wait did not end by itself; stopping now")
            self.result = 0

    def user_restart(self, why: str = "SIGUSR1") -> None:
        """SIGUSR1, as OpenVPN 2.6's client on a hard SIGUSR1 ("SIGUSR1[hard,] received, process
        restarting"): the connection ends without a word to the server and a new one begins,
        to the same server (and address) once the tunnel was up there (its no_advance, set at
        initialization_sequence_completed, as for ping-restart), otherwise to the next, after
        connect-retry's pause. The TUN, its address and routes stay meanwhile, as for any
        reconnect here (2.6 keeps them with persist-tun), and the auth-token too. During
        explicit-exit-notify's wait it is ignored, as 2.6 ("Ignoring SIGUSR1 received during exit
        notification", sig.c ignore_restart_signals); between two attempts the next one stands."""
        if self.result is not None:
            return
        if self._stop_at is not None:
            log.info("SIGUSR1 ignored during the exit notification's wait")
            return
        if self.opts.remap_usr1 == "SIGTERM":
            log.info("SIGUSR1 remapped to SIGTERM (remap-usr1): stopping")
            self.request_stop()
            return
        c = self.conn
        if c is None:
            log.info("SIGUSR1: already between connections; the next attempt stands")
            return
        log.info("%s: restarting the connection to %s", why, fmt_addr(c.addr))
        self._why = why
        self._restart(c, same_remote=c.was_up)

    def _exit_notify_tick(self) -> None:
        """Each second of explicit-exit-notify's wait: another round, or the end once N s passed."""
        now = self.clock()
        c = self.conn
        if self._stop_at is None or now >= self._stop_at or c is None:
            self._stop_now()
            return
        try:
            if c.session.notify_exit(now, first=False):
                self._send(c, c.session.take_outgoing())
        except Exception as e:  # noqa: BLE001 - as in request_stop
            self.faults.count("exit notification not sent")
            log.info("exit notification not sent: %s", e)
        self.pump.timers.arm("exit-notify", now + 1, self._exit_notify_tick)

    def _stop_now(self) -> None:
        self.pump.timers.cancel("exit-notify")
        self.pump.timers.cancel("stop-backstop")
        try:
            self._log_drops(final=True)
        finally:
            self.result = 0

    def log_counters(self) -> None:
        """SIGUSR2 (the signal, or management's `signal SIGUSR2`): the counters now -- the
        client's drops, then each service's that keeps its own (an observer with a
        `log_counters()`: the LAN's DNS forwarder and DHCP server, whose lines come otherwise at
        most every 30 s, and only when something changed). One that raises is counted (our bug),
        the others still log."""
        self._log_drops(final=True)
        for o in self.observers:
            say = getattr(o, "log_counters", None)
            if say is None:
                continue
            try:
                say()
            except Exception as e:  # noqa: BLE001 - a service's bug must not touch the tunnel
                self.faults.internal_exc(f"{type(o).__name__}.log_counters", e)

    def _on_noted(self, signum: int) -> None:
        if signum == signal.SIGUSR2:
            self.log_counters()
            if self.scripts is not None:      # (a soak samples it: lab/reliability/soak_l2.py)
                r = self.scripts.runner
                log.info("statistics: held scripts pending %d, queued %d", r.pending, len(r._queued))
        elif signum == signal.SIGUSR1:
            self.user_restart()
        elif signum == signal.SIGHUP:
            # OpenVPN 2.6's client re-reads its config on SIGHUP and starts over from the
            # first remote with a new TUN (openvpn.c main's outer loop). Ours cannot re-read
            # the profile in a running client (credentials asked, privileges dropped, the
            # services built on it): refused, said so, and the way to get either half named.
            log.warning("SIGHUP: re-reading the profile is not supported by this client; ignored "
                        "(SIGUSR1 reconnects, a restart of the program re-reads the profile)")
        else:
            log.warning("signal %d ignored", signum)

    def _on_stop(self) -> None:
        if self._stop_at is not None:
            log.info("stopping at once (second signal)")
            self._stop_now()
        else:
            self.request_stop()

    # ---------------------------------------------------------------- the host's addresses
    def _watch_addresses(self) -> None:
        try:
            self._addr_watch = w = self.ports.address_watch()
        except OSError as e:
            log.info("not watching this host's addresses (%s): a lost source address is noticed at "
                     "ping-restart", e)
            return
        self.pump.watch(w, self._on_addresses)

    def _keep_routes(self) -> None:
        """The tunnel's routes added again when a link flap drops them (gateway/route_keeper.py).
        Not without a way to watch (a test's ports, a host refusing the socket): a lost host
        route then ends at ping-restart, as before."""
        make = getattr(self.ports, "route_watch", None)
        restore = getattr(self.net, "restore_routes", None)
        if make is None or restore is None:
            return
        try:
            w = make()
        except OSError as e:
            log.info("not watching links and routes (%s): a route a link flap drops is noticed at "
                     "ping-restart", e)
            return
        self._route_keeper = RouteKeeper(self.pump, self.clock, w, restore, getattr(self.net, "kept_routes", None))

    def _on_addresses(self) -> None:
        """An address left the host: if it is the one the connection's packets leave from, that
        connection is dead (the kernel refuses the source, the server's answers have nowhere to
        go), and it restarts now, as SIGUSR1 would, instead of at ping-restart. Why not OpenVPN
        2.6's way (it waits for ping-restart): a router whose ISP renumbers its WAN lost the
        tunnel for a minute with the usual `keepalive 10 60`; a new connection, from the address
        the host has now, is what ping-restart would have made anyway, only later."""
        w = self._addr_watch
        if w is None:
            return
        try:
            removed = w.removed(ADDR_READS)
            if w.has_pending:
                self.pump.again(w, self._on_addresses)
            c = self.conn
            if not removed or c is None:
                return
            local = c.link.local_address()
            if local is None or w.is_local(local):
                return
        except DumpInterrupted as e:
            # The addresses kept changing while they were read: not known to be gone, and the
            # watch stays (the next removal asks again; ping-restart is there meanwhile).
            log.info("this host's addresses not checked now: %s", e)
            return
        except OSError as e:
            # The watch is a shortcut, never a reason to stop: without it ping-restart still works.
            log.warning("no longer watching this host's addresses: %s", e)
            self.pump.unwatch(w)
            w.close()
            self._addr_watch = None
            return
        log.warning("this host no longer has %s, the address the connection to %s used: reconnecting",
                    local, fmt_addr(c.addr))
        self.counters.source_lost += 1
        self._restart(c, same_remote=c.was_up)

    # ---------------------------------------------------------------- connecting
    def _connect_next(self) -> None:
        if self.result is not None or self._resolving or self._querying or self._ask_passwords():
            return
        if self.opts.p2p and self.opts.tls_server:
            self._listen()
            return
        if self._more and self._more_of is not None:
            remote, addr = self._more_of, self._more.pop(0)
        else:
            remote, addr = self.remotes[self.attempt % len(self.remotes)], None
            self.attempt += 1
            self.unsuccessful += 1
            most = self.opts.connect_retry_max_count
            if most and self.unsuccessful > most * len(self.remotes):
                # As OpenVPN 2.6 (init.c next_connection_entry); a same-remote retry or another
                # address of the same name is no new attempt there either.
                self._fatal(f"All connections have been connect-retry-max ({most}) times unsuccessful, exiting")
                return
            if self.mgmt is not None and self.mgmt.query_remote(remote, lambda d: self._remote_answered(remote, d)):
                self._querying = True
                return
            if self.mgmt is not None and self.mgmt.query_proxy(
                    (self.attempt - 1) % len(self.remotes) + 1, remote, self._proxy_answered):
                self._querying = True
                return
        self._dial(remote, addr)

    def _remote_answered(self, remote: Remote, decision: tuple) -> None:
        """The management client's `remote` answer to >REMOTE for `remote` (init.c
        ce_management_query_remote): ACCEPT tries it, MOD tries HOST PORT instead (this attempt
        only), SKIP N moves N remotes on (round the list: N modulo its length; N < 1 moves one)
        and asks again -- a skipped one is no attempt for connect-retry-max, and the second time
        skips go past the list's end the run ends, as OpenVPN 2.6 (next_connection_entry's
        n_cycles: "No usable connection profiles are present"). Before, a large N ended the run
        at once, and SKIP 0 asked for the same remote again."""
        self._querying = False
        if self.result is not None or self.conn is not None:
            return
        if decision[0] == "skip":
            n, size = (decision[1] if decision[1] > 0 else 1), len(self.remotes)
            here = (self.attempt - 1) % size
            if here + n >= size:
                self._skip_wraps += 1
            self.attempt += (here + n) % size - here - 1      # the next attempt takes (here + n) % size
            self.unsuccessful -= 1
            if self._skip_wraps >= 2:
                self._fatal("No usable connection profiles are present",
                            " (every remote skipped by the management client)")
                return
            self._connect_next()
            return
        self._skip_wraps = 0
        if decision[0] == "mod":
            log.info("management: remote %s:%d changed to %s:%d", remote.host, remote.port, decision[1], decision[2])
            remote = dataclasses.replace(remote, host=decision[1], port=decision[2])
        self._dial(remote, None)

    def _proxy_answered(self, remote: Remote) -> None:
        """The management client's `proxy` answer to >PROXY: `remote` with the proxy to use."""
        self._querying = False
        if self.result is None and self.conn is None:
            self._dial(remote, None)

    def _dial(self, remote: Remote, addr: tuple[str, int] | None) -> None:
        """Resolve `remote` unless `addr` is one of its addresses, then connect."""
        self.entry = entry_of(self.opts, remote)
        if addr is None:
            # http-proxy: the proxy's name is resolved and dialled; the remote's goes, as
            # written, into the CONNECT request (OpenVPN 2.6 socket.c: proxy_dest_host).
            hp = remote.proxy
            host, port = (remote.host, remote.port) if hp is None else (hp.server, hp.port)
            args = (host, port, remote.proto, self.opts.family_of(remote))
            if not _literal(host):
                if self.mgmt is not None:
                    self.mgmt.state("RESOLVE")
                if self._resolver is not None:
                    self._resolving = True
                    self._resolver.submit(args, lambda r: self._resolved(remote, r))
                    return
            try:
                addrs = self.ports.resolve(*args)
            except (OSError, ConnectionError) as e:
                self._unreachable(remote, e)
                return
            addr, self._more, self._more_of = addrs[0], list(addrs[1:]), remote
        self._connect_to(remote, addr)

    def _resolved(self, remote: Remote, result: object) -> None:
        """The resolver thread's answer for `remote` (gateway/resolver.py), on the loop."""
        self._resolving = False
        if self.result is not None or self.conn is not None:
            return
        if isinstance(result, BaseException):
            if not isinstance(result, (OSError, ConnectionError, UnicodeError)):
                self.faults.internal_exc("resolving a remote name", result)
            self._unreachable(remote, result)
            return
        addrs = list(result)                 # type: ignore[call-overload]
        if not addrs:
            self._unreachable(remote, OSError(f"cannot resolve {remote.host}"))
            return
        addr, self._more, self._more_of = addrs[0], addrs[1:], remote
        self._connect_to(remote, addr)

    def _unreachable(self, remote: Remote, e: BaseException) -> None:
        if remote.proxy is not None:
            log.warning("cannot reach %s %s:%d (for %s:%d): %s", _proxy_kind(remote), remote.proxy.server,
                        remote.proxy.port, remote.host, remote.port, e)
        else:
            log.warning("cannot reach %s:%d (%s): %s", remote.host, remote.port, remote.proto, e)
        self._schedule_retry()

    def _connect_to(self, remote: Remote, addr: tuple[str, int]) -> None:
        """An attempt at `addr` (of `remote`): its link, its session, its timers, each with the
        remote's own settings (its <connection> block's: keys, MTU, exit notification, ...)."""
        o = self.entry = entry_of(self.opts, remote)
        poll = o.server_poll_timeout
        hp = remote.proxy
        if hasattr(self.ports, "mtu_disc"):
            self.ports.mtu_disc = o.mtu_disc       # set on the socket before its connect (system.py)
        try:
            self.net.reach(addr[0])      # past the last push's routes, which stay while we reconnect
            if hp is not None:
                log.info("connecting to %s:%d through %s %s", remote.host, remote.port, _proxy_kind(remote),
                         fmt_addr(addr))
                if self.mgmt is not None:
                    self.mgmt.state("TCP_CONNECT")
                link: UdpLink | TcpLink = TcpLink(self.ports.tcp_connect(addr, self._local_for(addr)))
            elif remote.proto == "tcp":
                log.info("connecting to %s over TCP", fmt_addr(addr))
                if self.mgmt is not None:
                    self.mgmt.state("TCP_CONNECT")
                link = TcpLink(self.ports.tcp_connect(addr, self._local_for(addr)))
            else:
                log.info("connecting to %s over UDP", fmt_addr(addr))
                link = UdpLink(self.ports.udp(self._local_for(addr), addr))
        except (OSError, ConnectionError) as e:
            self._bind_fatal(addr, e)
            self._unreachable(remote, e)
            return
        if o.p2p:
            cfg = p2p_session_config(o, remote.proto)
        else:
            cfg = client_session_config(o, remote.proto, self.username, self.password, self.advertise_ekm,
                                        self.credentials)
        cfg.auth_token = self.auth_token
        cfg.fragment_room = fragment_room(o, ":" in addr[0])
        now = self.clock()
        s = Session(cfg, now)
        rule = mss_rule(o, remote.proto == "tcp", ":" in addr[0])
        self.conn = c = Connection(remote, addr, link, s, ClientDataPath(s, rule, tap=o.dev_type == "tap"))
        self.updown.new_connection()            # its own environment set (tls-verify's afresh)
        self.pump.watch(link, *self._link_handlers(link))
        # With a proxy, the poll covers the proxy's answer too (OpenVPN 2.6 reads it within
        # get_server_poll_remaining_time).
        self.pump.timers.arm("poll", now + poll, self._on_poll_timeout)
        self._arm_inactive(self.opts.inactive)      # each attempt starts the N seconds anew, as OpenVPN
        self._arm_session(self.opts.session_timeout)    # and session-timeout's (init.c do_init_timers)
        if isinstance(link, TcpLink) and link.t.connecting:
            c.connecting = True          # the session starts once the connect completes
            self.pump.want_write(link, True, *self._link_handlers(link))
            return
        self._connected(c, now)

    def _listen(self) -> None:
        """Point-to-point tls-server: wait on our port for the peer's first reset (from the
        `remote`'s address only, when there is one), as OpenVPN 2.6 without `mode server`."""
        o = self.opts
        allowed = None
        if o.remotes:
            r = o.remotes[0]
            try:
                allowed = self.ports.resolve(r.host, r.port, "udp", o.family_of(r))[0]
            except OSError as e:
                log.warning("cannot resolve the peer %s: %s", r.host, e)
                self._schedule_retry()
                return
        local = (o.local or ("::" if allowed is not None and ":" in allowed[0] else "0.0.0.0"),
                 o.local_port)
        if o.proto == "tcp":
            self._listen_tcp(local, allowed)
            return
        try:
            link = P2PListenLink(self.ports.udp(local, None), allowed, o.floating)
        except OSError as e:
            log.error("cannot listen on %s: %s", fmt_addr(local), e)
            self._schedule_retry()
            return
        six = ":" in local[0]
        rule = mss_rule(o, False, six)

        configs = p2p_session_maker(o, "udp")

        def make(now: float) -> Session:
            cfg = configs()
            cfg.fragment_room = fragment_room(o, six)
            return Session(cfg, now)

        now = self.clock()
        s = make(now)
        remote = o.remotes[0] if o.remotes else Remote("", local[1], "udp")
        self.conn = c = Connection(remote, allowed or local, link, s, ClientDataPath(s, rule))
        self.updown.new_connection()            # as a dialled connection: its own environment set
        self._takeover = TakeOver(make, rule, configs().make_wrapper())
        self.pump.watch(link, *self._link_handlers(link))
        self._arm_inactive(o.inactive)
        self._arm_session(o.session_timeout)
        log.info("point-to-point tls-server: waiting for %s on %s (udp)",
                 fmt_addr(allowed) if allowed is not None else "the peer", fmt_addr(local))
        self._begin(c, now)

    def _listen_tcp(self, local: tuple[str, int], allowed: tuple | None) -> None:
        """proto tcp-server: one connection at a time, as OpenVPN 2.6's p2p TCP server (it
        accepts one, and listens again only after a restart): from the `remote`'s address only
        when there is one; anyone else's connection is closed at once."""
        try:
            lst = self.ports.tcp_listen(local)
        except OSError as e:
            log.error("cannot listen on %s (tcp): %s", fmt_addr(local), e)
            self._schedule_retry()
            return
        self._tcp_listener = (lst, allowed)
        self.pump.watch(lst, self._on_tcp_accept)
        log.info("point-to-point tls-server: waiting for %s on %s (tcp)",
                 fmt_addr(allowed) if allowed is not None else "the peer", fmt_addr(local))

    def _on_tcp_accept(self) -> None:
        if self._tcp_listener is None or self.conn is not None:
            return
        lst, allowed = self._tcp_listener
        for _ in range(16):                     # bounded per wake-up
            try:
                t, addr = lst.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if isinstance(e, PortGone):
                    raise
                self.faults.count("p2p: TCP accept failed")       # EMFILE, ECONNABORTED: the next one may do
                return
            if allowed is not None and str(addr[0]).removeprefix("::ffff:") != str(allowed[0]).removeprefix("::ffff:"):
                t.close()
                self.faults.count("p2p: TCP connection from an address other than the remote")
                continue
            self._close_tcp_listener()
            o = self.opts
            six = ":" in str(addr[0])
            cfg = p2p_session_config(o, "tcp")
            now = self.clock()
            s = Session(cfg, now)
            remote = o.remotes[0] if o.remotes else Remote("", addr[1], "tcp")
            self.conn = c = Connection(remote, addr[:2], TcpLink(t), s, ClientDataPath(s, mss_rule(o, True, six)))
            self.updown.new_connection()
            self.pump.watch(c.link, *self._link_handlers(c.link))
            self._arm_inactive(o.inactive)
            self._arm_session(o.session_timeout)
            log.info("point-to-point tls-server: peer %s (tcp)", fmt_addr(c.addr))
            # The one connection must authenticate in time, or the port is free again: the
            # session has no key (no deadline) until a reset it accepts, so a stranger's idle
            # connection, or one sending junk the tls-auth key refuses, held it for good.
            # OpenVPN 2.6 drops it at ping-restart or hand-window, whichever comes first.
            wait = min(cfg.hand_window, cfg.ping_restart or cfg.hand_window)
            self.pump.timers.arm("p2p-handshake", now + wait, self._on_p2p_handshake_timeout)
            self._begin(c, now)
            return

    def _on_p2p_handshake_timeout(self) -> None:
        c = self.conn
        if c is None or c.was_up or c.session.established or not isinstance(c.link, TcpLink):
            return
        cfg = c.session.cfg
        if cfg.ping_restart and cfg.ping_restart < cfg.hand_window:
            why = f"Inactivity timeout (--ping-restart, {cfg.ping_restart} s)"
        else:
            why = f"TLS key negotiation failed to occur within {cfg.hand_window} seconds"
        log.warning("point-to-point tls-server: no authenticated session from %s: %s; listening again",
                    fmt_addr(c.addr), why)
        self._why = "ping-restart"
        self._restart(c, same_remote=False)

    def _close_tcp_listener(self) -> None:
        if self._tcp_listener is not None:
            lst, self._tcp_listener = self._tcp_listener[0], None
            self.pump.unwatch(lst)
            lst.close()

    def _p2p_read(self, c: Connection, now: float) -> None:
        """The listener's bookkeeping after a read: the peer its first reset chose, and the
        resets set aside for a new session (p2p_server.TakeOver), which replaces the live one
        once it has authenticated."""
        link = c.link
        assert isinstance(link, P2PListenLink)
        if link.addr is not None and link.addr != c.addr[:2] and not c.was_up:
            c.addr = link.addr
            log.info("point-to-point tls-server: peer %s", fmt_addr(c.addr))
        link.live_sid = c.session.peer_sid
        link.proven = c.session.established
        if link.floaters:
            items, link.floaters = link.floaters, []
            self._p2p_float(c, items, now)
        if link.newcomers:
            items, link.newcomers = link.newcomers, []
            self._p2p_took_over(c, self._takeover.feed(link, items, now), now)
        self._arm_candidate()

    def _p2p_float(self, c: Connection, items: list, now: float) -> None:
        """`float`: the peer's data from a new address. Opened by the live session: one it
        authenticates (a fresh packet id under its keys: a replay or forgery never counts) moves
        the peer there, as OpenVPN 2.6's --float; the rest are dropped by the session as usual."""
        link = c.link
        assert isinstance(link, P2PListenLink)
        tun, s = self.net.tun, c.session
        for data, src in items:
            before = s.data_authenticated
            try:
                pts = c.dp.open(data, now)
            except Exception as e:  # noqa: BLE001 - as any packet of the peer's
                self._engine_failed(c, e, "the client session")
                return
            if s.data_authenticated > before and not link.is_peer(src):
                log.info("point-to-point tls-server: peer moved from %s to %s (float)", fmt_addr(c.addr),
                         fmt_addr(src))
                link.addr = c.addr = src
                if self.scripts is not None:
                    # As 2.6 (socket.h link_socket_set_outgoing_addr -> connection_initiated):
                    # the link taken to a new address runs ipchange again, with that address.
                    self.scripts.connected(s, src)
                    self._scripts_queued()
            if pts and tun is not None:
                for pt in pts:
                    self.counters.bytes_in += len(pt)
                    tun.queue(pt)

    def _arm_candidate(self) -> None:
        d = self._takeover.deadline() if self._takeover is not None else None
        if d is None:
            self.pump.timers.cancel("p2p-candidate")
        else:
            self.pump.timers.arm("p2p-candidate", d, self._on_candidate_timer)

    def _on_candidate_timer(self) -> None:
        c = self.conn
        if c is None or self._takeover is None or not isinstance(c.link, P2PListenLink):
            return
        now = self.clock()
        self._p2p_took_over(c, self._takeover.timer(c.link, now), now)
        self._arm_candidate()

    def _p2p_took_over(self, c: Connection, cand, now: float) -> None:
        """A new session authenticated: it becomes the live one, as OpenVPN 2.6 moves its
        untrusted session to the active slot; the old one (its peer restarted, or moved)
        ends without a word to it."""
        if cand is None:
            return
        link = c.link
        assert isinstance(link, P2PListenLink)
        old = c.session
        log.info("point-to-point tls-server: a new authenticated session from %s replaces the one with %s",
                 fmt_addr(cand.addr), fmt_addr(c.addr))
        c.session, c.dp, c.addr = cand.session, cand.dp, cand.addr
        link.addr, link.live_sid, link.proven = cand.addr, cand.session.peer_sid, True
        self._release(old)
        self._after_engine(c)

    def _connected(self, c: Connection, now: float) -> None:
        """The TCP connection (or UDP port) is there: the session begins, or first the CONNECT."""
        hp = c.remote.proxy
        if hp is None:
            self._begin(c, now)
            return
        assert isinstance(c.link, TcpLink)
        if isinstance(hp, SocksProxy):
            try:
                c.proxy = SocksHandshake(hp, c.remote.host, c.remote.port)
            except ValueError as e:
                # A name SOCKS5 cannot carry (over 255 bytes): `remote MOD` takes 79 characters,
                # up to 316 bytes in UTF-8 -- the attempt stalled until server-poll-timeout.
                self._proxy_failed(c, str(e))
                return
            first = c.proxy.first()
        else:
            c.proxy = ConnectReply(hp.auth)
            first = request_bytes(hp, c.remote.host, c.remote.port)
        try:
            c.link.t.send(first, keep=True)
        except (ConnectionError, OSError) as e:
            self._proxy_failed(c, f"sending to the proxy failed: {e}")
            return
        if c.link.wants_write:
            self.pump.want_write(c.link, True, *self._link_handlers(c.link))

    def _on_proxy_read(self, c: Connection) -> None:
        """The proxy's answer, as it comes (a byte at a time, or with the server's first bytes
        after it): at most MAX_HEADER bytes of header, within server-poll-timeout. On 200 the
        bytes after its CRLF CRLF are the server's stream and go to the framing; anything else
        ends this attempt (OpenVPN 2.6: "HTTP proxy error", a restart with the next remote)."""
        assert c.proxy is not None and isinstance(c.link, TcpLink)
        try:
            data = c.link.t.recv()
            if not data:
                return
            rest = c.proxy.feed(data)
            if isinstance(c.proxy, SocksHandshake) and c.proxy.out:
                out, c.proxy.out = bytes(c.proxy.out), bytearray()
                c.link.t.send(out, keep=True)      # SOCKS: the credentials, then the CONNECT
                if c.link.wants_write:
                    self.pump.want_write(c.link, True, *self._link_handlers(c.link))
        except (ConnectionError, OSError) as e:
            self._proxy_failed(c, f"{e} before its answer ended")
            return
        except ProxyRefused as e:
            self._proxy_failed(c, e.why)
            return
        if rest is None:
            return
        c.proxy = None
        log.info("%s %s: CONNECT %s:%d accepted", _proxy_kind(c.remote), fmt_addr(c.addr), c.remote.host,
                 c.remote.port)
        if rest:
            try:
                c.link.pending.extend(c.link.framer.feed(rest))
            except BadPacket as e:
                self._lost(c, f"broken stream: {e.reason}")
                return
        self._begin(c, self.clock())
        if self.conn is c and c.link.has_pending:
            self.pump.again(c.link, self._on_link_read)     # the server's bytes that came with the answer

    def _proxy_failed(self, c: Connection, why: str) -> None:
        """One line, one count, and the next attempt (OpenVPN 2.6: SIGUSR1 "HTTP proxy error")."""
        self.counters.proxy_failures += 1
        log.warning("%s %s (for %s:%d): %s", _proxy_kind(c.remote), fmt_addr(c.addr), c.remote.host, c.remote.port,
                    why)
        self._schedule_retry()

    def _begin(self, c: Connection, now: float) -> None:
        """The session's first steps, once the link is there (UDP: at once; TCP: connected)."""
        if self.mgmt is not None:
            self.mgmt.state("WAIT")             # OpenVPN 2.6: as its first reset goes out
        if not self.opts.allow_recursive_routing:
            self._recursive_guard(c)            # now, not at the first TUN read after the push
        try:
            c.session.start(now)
            c.session.prime()            # TLS's first flight and our key-method message, before the reset goes out
        except Exception as e:  # noqa: BLE001 - auth-nocache's file unreadable, or our bug
            self._engine_failed(c, e, "the client session's start")
            return
        self._after_engine(c)

    def _schedule_retry(self, backoff: int = 0, poll_timeout: bool = False) -> None:
        """The next attempt after OpenVPN 2.6's restart pause (restart_pause.py), whatever ended
        this one and whichever remote comes next; `backoff`: the least wait the server asked
        for; `poll_timeout`: the attempt ended at server-poll-timeout (no pause then)."""
        # Armed first, replaced below: our bug anywhere on the way (closing the old connection,
        # its scripts' and listeners' notices) left the client with no connection and no
        # attempt to come -- alive, tunnel-less, for ever (lab/reliability/fault_sweep.py).
        self.pump.timers.arm("reconnect", self.clock() + FAULT_RETRY, self._connect_guarded)
        if self.conn is not None and self.conn.was_up:
            self._tunnel_restarting(self._why)
        self._close_conn()
        if self._stop_at is not None:
            # The connection ended during explicit-exit-notify's wait: no reconnect, the end
            # now (OpenVPN 2.6 turns such a restart into SIGTERM: sig.c ignore_restart_signals).
            self._stop_now()
        if self.result is not None:
            self.pump.timers.cancel("reconnect")
            return
        o = self.opts
        if o.remap_usr1 == "SIGTERM":
            # Every restart of ours is OpenVPN's SIGUSR1, which remap-usr1 SIGTERM turns into the
            # end of the run (sig.c remap_signal): a supervisor restarts the program instead.
            log.error("connection ended; exiting instead of reconnecting (remap-usr1 SIGTERM)")
            self._finish(1)
            return
        ce = self.entry                 # the pause is the last connection's (2.6: socket_restart_pause)
        wait = restart_pause(ce.connect_retry, ce.connect_retry_max, self.unsuccessful, len(self.remotes),
                             o.auth_retry and not o.auth_retry_interact, backoff, poll_timeout,
                             listening=o.proto if o.p2p and o.tls_server else "")
        if self.mgmt is not None:
            self.mgmt.state("RECONNECTING", self._why)
            self._why = "connection-reset"
            # Hold on: the management client's `hold release` ends the pause (OpenVPN 2.6's
            # socket_restart_pause hands the pause to management_hold, which reports it).
            if self.mgmt.hold(int(wait), self._connect_next):
                self.pump.timers.cancel("reconnect")
                return
        if wait:
            log.info("restarting in %.0f s", wait)
        self.pump.timers.arm("reconnect", self.clock() + wait, self._connect_guarded)

    def _connect_guarded(self) -> None:
        """The next attempt; our bug while starting it (counted, logged at Faults' rate) ends
        this attempt only: another follows after the restart pause, never a busy loop."""
        try:
            self._connect_next()
        except Exception:  # noqa: BLE001 - our bug: this attempt ends, the client goes on
            self.faults.internal("starting a connection")
            self._schedule_retry()

    def _push_changed(self, c: Connection, raw, pushed, dev: str) -> None:
        """With persist-tun, a reconnect whose push differs from the last one's (but for peer-id,
        the auth-token and the cipher: 2.6's push_update_digest skips them) makes 2.6 close and
        reopen its device ("Pulled options changed on restart"): the down side with `signal`
        UNKNOWN in the new connection's set, then a first tunnel's up side. Ours keeps its TUN
        (the new push is applied to it); the scripts and listeners see what 2.6's do."""
        if not self.opts.persist_tun:
            return              # nothing to compare, ever: no copy of the push on the way to the first packet
        key = None if raw is None else dataclasses.replace(raw, peer_id=None, auth_token=None,
                                                           auth_token_user=None, cipher=None)
        last, self._push_key = self._push_key, key
        if last is None or key == last:
            return
        log.info("NOTE: Pulled options changed on restart, will need to close and reopen TUN/TAP device.")
        self._tun_kept = False
        if self.updown.plugin_env is None:
            return
        self.updown.closing_set(c.session, c.addr, pushed, dev)
        self._close_tunnel("UNKNOWN")

    def _close_tunnel(self, why: str) -> None:
        """2.6's do_close_tun at a restart: >UPDOWN:DOWN, then route-pre-down, the down-root
        command and down queued (gateway/client_scripts.py), then the next UP is a first one."""
        self._tun_kept = False
        self.net.device_reopened()          # route-delay waits again at the next tunnel-up
        self.updown.down_notice(self.mgmt)
        if self.scripts is not None:
            self.scripts.closing(why)
            self._scripts_queued()
        self.updown.forget()

    def _tunnel_restarting(self, why: str) -> None:
        """A connection whose tunnel was up ends for a reconnect (OpenVPN 2.6's SIGUSR1 restart).
        With persist-tun 2.6 keeps its device: only up-restart's down runs. Without it, 2.6 closes
        the device there: the down side runs as at the end (gateway/updown.py), and the next
        tunnel is a first one again. Ours keeps its TUN either way (LAN traffic dropped meanwhile,
        never sent in clear: gateway/tunnel.py); only what the scripts and listeners see follows
        2.6."""
        if self.opts.persist_tun:
            if self.scripts is not None:
                self.scripts.restarting(why)            # up-restart's down (`restart`)
            return
        self._close_tunnel(why)

    def _release(self, session) -> None:
        """A session's end (Session.release), and what it counted there kept: an unreadable chain
        certificate, which release counts in the session's own stats -- and those go with the
        session (_log_drops reads the current one only)."""
        session.release()
        n = session.stats.pop(CHAIN_UNREADABLE, 0)
        if n:
            self.faults.count_warn(CHAIN_UNREADABLE, CHAIN_UNREADABLE_SAID, n)

    def _close_conn(self) -> None:
        self._close_tcp_listener()
        c, self.conn = self.conn, None
        if self._takeover is not None and c is not None and isinstance(c.link, P2PListenLink):
            self._takeover.drop(c.link)
        for t in ("poll", "engine", "session", "p2p-candidate", "p2p-handshake", "route-delay"):        # session-timeout counts within a connection
            self.pump.timers.cancel(t)
        # inactive too: the pause before the next attempt belongs to no server (2.6 sets its
        # timers up afresh at each start, do_init_timers), and a pulled `inactive N` left armed
        # here ended the whole client N s into a longer pause, before it reached the next server.
        self.pump.timers.cancel("inactive")
        self._inactive = None
        if c is not None:
            self.pump.unwatch(c.link)
            c.link.close()
            # The session and its role refer to each other: without this each reconnect's
            # session (its TLS objects, keys, replay windows) waited for Python's cyclic
            # collector, as the server's departed clients did (README, Reliability).
            self._release(c.session)
            if c.was_up:
                self.counters.up_since = None
                self._notify(TunnelState(False, tun_name=self._tun_name()))

    def _tun_name(self) -> str | None:
        tun = self.net.tun
        return getattr(tun, "name", None) if tun is not None else None

    def _on_poll_timeout(self) -> None:
        """server-poll-timeout, as OpenVPN 2.6 (forward.c check_server_poll_timeout): a restart
        only when the server has not answered at all; once its first packet came, hand-window
        and the push's wait govern. Before, a server that answered but took longer than the
        poll timeout to let us in (a password check waiting for a push approved on a phone; a
        busy server) was left at that timeout, 10 s in eduVPN's profiles, where OpenVPN's client
        waits up to hand-window (60 s)."""
        c = self.conn
        if c is not None and c.proxy is not None:
            what = "to CONNECT" if isinstance(c.proxy, ConnectReply) else "from the SOCKS proxy"
            self._proxy_failed(c, f"no complete answer {what} within {self.entry.server_poll_timeout:.0f} s "
                               "(server-poll-timeout)")
            return
        if c is not None and not c.was_up and c.session.peer_sid is None:
            log.warning("no answer from %s within %.0f s (server-poll-timeout)", fmt_addr(c.addr),
                        self.entry.server_poll_timeout)
            self._why = "server_poll"
            self._schedule_retry(poll_timeout=True)     # no pause after a silent server, as 2.6

    def _lost(self, c: Connection, why: str) -> None:
        log.warning("link to %s lost: %s", fmt_addr(c.addr), why)
        self._restart(c, same_remote=c.was_up)

    def _restart(self, c: Connection, same_remote: bool, backoff: int = 0) -> None:
        """Reconnect; to the remote of `c` first when `same_remote`. Why: OpenVPN 2.6 sets its
        no_advance once a tunnel is up (init.c initialization_sequence_completed) and
        next_connection_entry then keeps the current remote for the next attempt, whatever
        restarted the connection (ping-restart, a lost TCP stream, the server's EXIT or
        RESTART); only RESTART,[N] clears it (push.c server_pushed_signal). A client that moved
        on to its next remote after a server's blip left the server its profile lists first."""
        if same_remote:
            # The same address, too (OpenVPN keeps the name's current address over a soft
            # restart); the name's other addresses follow if that one stays silent.
            self._more.insert(0, c.addr)
            self._more_of = c.remote
            log.info("reconnecting to %s:%d (%s) first", c.remote.host, c.remote.port, c.remote.proto)
        self._schedule_retry(backoff)

    def _bind_fatal(self, addr: tuple[str, int], e: BaseException) -> None:
        """A socket that cannot be bound where `local`/`lport` say ends the run, as OpenVPN 2.6
        ("Socket bind failed on local address ...", fatal): no retry makes `local` an address of
        this host. It was retried as "cannot reach" the server, without end by default."""
        local = self._local_for(addr)
        if local is None or not isinstance(e, OSError) or e.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
            return
        o = self.entry
        if e.errno == errno.EADDRNOTAVAIL and o.local:
            d, why = "local", f"{e.strerror} (no interface of this host has that address)"
        else:
            at = o.source.get("local_port")          # the line that set the local port: lport's or port's
            d = "local" if at is None else ("lport" if o.source.get("lport") == at else "port")
            why = f"{e.strerror} (another process uses it)" if e.errno == errno.EADDRINUSE else str(e.strerror)
        raise start_failed(o, d, f"cannot bind {fmt_addr(local)}: {why}") from None

    def _local_for(self, addr: tuple[str, int]) -> tuple[str, int] | None:
        """The local address the socket to `addr` is bound to: none (an ephemeral port, any
        address) unless the profile says `local`, `lport` or `bind`, as OpenVPN 2.6's client
        (options.c: need_bind; `port` alone does not); then `local` (else any) and the local
        port, the last `port` or `lport` as 2.6 (`rport` is the remote's alone): the connection's
        own (its <connection> block's)."""
        o = self.entry
        # A point-to-point peer binds its port unless nobind, as OpenVPN 2.6 (options.c: only a
        # pulling client's default is an ephemeral port): its peer's `remote` names that port.
        if not (o.local or o.lport is not None or o.bind or (o.p2p and not o.nobind)):
            return None
        return (o.local or ("::" if ":" in addr[0] else "0.0.0.0"), o.local_port)

    def send_cr_response(self, response: str) -> bool:
        """The management command `cr-response`: CR_RESPONSE,<response> to the server on this
        connection's control channel (the answer to a CR_TEXT challenge); False without one."""
        c = self.conn
        if c is None or not c.session.send_control_text("CR_RESPONSE," + response, self.clock()):
            return False
        self._send(c, c.session.take_outgoing())
        return True

    # ---------------------------------------------------------------- credentials
    def _ask_passwords(self) -> bool:
        """management-query-passwords: when the profile gave no password (or a management client
        made us forget it) and no auth-token stands in for it, ask the management client and
        connect once it answered (True: asked). OpenVPN 2.6 asks the same question while it
        writes its key-method message; asked before the connection here, the answer is never
        raced by the server's hand-window, and a management client sees the same lines."""
        o = self.opts
        if not (o.management_query_passwords and o.auth_user_pass_required) or self.mgmt is None:
            return False
        if self._creds_given or self.auth_token.in_use:
            return False
        self.mgmt.query_passwords(self._got_passwords)
        return True

    def _got_passwords(self, username: str, password: str) -> None:
        self.username, self.password, self._creds_given = username, password, True
        self._connect_next()

    def forget_passwords(self) -> None:
        """The management command forget-passwords (and auth-retry interact after AUTH_FAILED):
        the username/password and the auth-token are dropped, as OpenVPN 2.6's ssl_purge_auth +
        ssl_clean_auth_token. With management-query-passwords the next connection asks again;
        without it, the profile's own credentials are what OpenVPN would read again from it."""
        self.auth_token.take_auth_failed()
        if self.opts.management_query_passwords:
            self.username, self.password, self._creds_given = "", "", False

    # ---------------------------------------------------------------- packets
    def _link_handlers(self, link) -> tuple[Callable[[], None], Callable[[], None]]:
        """The read and write handlers the pump calls for `link`: the connection's own while it
        is the current one's link. Why bound to the link: a link our bug left watched when its
        connection ended (a fault on the way out, before its close) stayed readable -- the
        server's close, its last bytes -- and the handler read the *current* connection
        instead: the level-triggered loop woke for it at once, for ever (100% CPU; found by
        lab/reliability/fault_sweep.py). Such a link is now closed at its first wake-up."""
        cached = self._handlers
        if cached is not None and cached[0] is link:
            return cached[1], cached[2]

        def read() -> None:
            if self.conn is not None and self.conn.link is link:
                self._on_link_read()
            else:
                self._stale_link(link)

        def write() -> None:
            if self.conn is not None and self.conn.link is link:
                self._on_link_write()
            else:
                self._stale_link(link)
        self._handlers = (link, read, write)
        return read, write

    def _stale_link(self, link) -> None:
        """A finished connection's socket, still watched (see _link_handlers): closed now, counted."""
        self.faults.count("internal error: a finished connection's socket closed late")
        self.pump.unwatch(link)
        link.close()

    def _on_link_read(self) -> None:
        c = self.conn
        if c is None:
            return
        if c.connecting:
            self._on_link_write()        # a failed connect shows as readable too
            return
        if c.proxy is not None:
            self._on_proxy_read(c)
            return
        try:
            pkts = c.link.recv_packets(BATCH)
        except (ConnectionError, OSError) as e:
            self._lost(c, str(e) or type(e).__name__)
            return
        if c.link.has_pending:
            self.pump.again(c.link, self._on_link_read)     # the rest at the next wake-up
        now = self.clock()
        if isinstance(c.link, P2PListenLink):
            self._p2p_read(c, now)
            if self.conn is not c:
                return
        tun = self.net.tun
        cnt = self.counters
        cnt.wire_in += sum(map(len, pkts))      # one C loop per batch, not a Python add per packet
        s = c.session
        s.begin_batch()                         # control replies and ACKs wrapped once, below
        try:
            pts = c.dp.open_batch(pkts, now)    # one call per batch (Session.receive_many)
        except Exception as e:  # noqa: BLE001 - our bug on the server's packet: this session ends
            self._engine_failed(c, e, "the client session")
            return
        if pts and tun is not None:
            cnt.bytes_in += sum(map(len, pts))
            tun.queue_many(pts)
        try:
            # The batch that brings the tunnel up: its ACK is wrapped after the first data packet
            # (_act_on_engine), not ahead of the tunnel's set-up.
            if s.end_batch(now, hold_flush=_brings_up(s)):     # the flush receive() used to do
                # ACKs the server waits for, before our reading
                failed = self._send(c, s.take_outgoing(), defer_loss=True)
                if self.conn is not c:
                    return
                s.settle(now)
                if failed is not None:
                    self._link_failed_after_reading(c, failed)
                    return
        except Exception as e:  # noqa: BLE001 - as above: this session ends, not the loop turn alone
            self._engine_failed(c, e, "the client session")
            return
        self._after_engine(c)

    def _on_link_write(self) -> None:
        c = self.conn
        if c is None:
            return
        if c.connecting:
            c.connecting = False
            self.pump.want_write(c.link, False, *self._link_handlers(c.link))
            assert isinstance(c.link, TcpLink)
            err = c.link.t.connect_error()
            if err:
                log.warning("cannot reach %s (tcp%s): %s", fmt_addr(c.addr),
                            f", {_proxy_kind(c.remote)}" if c.remote.proxy is not None else "", os.strerror(err))
                self._schedule_retry()
                return
            self._connected(c, self.clock())
            return
        try:
            if c.link.flush():
                self.pump.want_write(c.link, False, *self._link_handlers(c.link))
        except (ConnectionError, OSError) as e:
            self._lost(c, str(e))

    def _on_tun_read(self, defer_loss: bool = False) -> str | None:
        """`defer_loss`: a failed send's reason is returned, the link not yet lost (_send)."""
        tun = self.net.tun
        if tun is None:
            return None
        if self.shaper is not None:
            # (a device held back before a reopen is the old one: the new one is judged afresh)
            if self._shaped is tun or self._shaper_holds(tun):
                return None
            pkts = tun.read_batch(1)        # as 2.6: one packet, then the shaper's wait
        else:
            pkts = tun.read_batch(BATCH)
        c = self.conn
        if c is None or not pkts:
            return None                 # no tunnel right now: LAN packets are dropped, never sent in clear
        if self.net.block_ipv6:
            pkts = self._refuse_ipv6(tun, pkts)
            if not pkts:
                return None
        if not self.opts.allow_recursive_routing:
            pkts = self._not_to_the_peer(c, pkts)
            if not pkts:
                return None
        self.counters.bytes_out += sum(map(len, pkts))
        wire = c.dp.seal_batch(pkts, self.clock())
        failed = self._send(c, wire, defer_loss=defer_loss)
        if self.shaper is not None:
            self._shaper_holds(tun)
        return failed

    def _shaper_holds(self, tun: TunPort) -> bool:
        """shaper: whether the link is still busy with what was written; if so the TUN is not
        watched for reading until it is free (a timer), so the loop sleeps instead of waking for
        a readable device it must not read (level-triggered: that would spin)."""
        assert self.shaper is not None
        wait = self.shaper.wait(self.clock())
        if not wait:
            return False
        self._shaped = tun
        self.pump.reading(tun, self._on_tun_read, False)
        self.pump.timers.arm("shaper", self.clock() + wait, self._shaper_free)
        return True

    def _shaper_free(self) -> None:
        tun, self._shaped = self._shaped, None
        if tun is not None and tun is self.tun_watched:
            self.pump.reading(tun, self._on_tun_read, True)

    def _not_to_the_peer(self, c: Connection, pkts: list) -> list:
        """The batch without packets to the peer's own address (gateway/recursive_routing.py):
        sealed, they would come back from the TUN in a loop while its host route is gone."""
        g = self._recursive_guard(c)
        return pkts if g is None else g.keep(pkts)

    def _recursive_guard(self, c: Connection) -> RecursiveGuard | None:
        """The recursive-routing drop for this connection's peer address, made once per address;
        None when there is no address to compare (a p2p peer not known yet). _begin makes it
        before the session's first packet: made at the first TUN read, it was ~40 us of
        ipaddress parsing between PUSH_REPLY and our first data packet (README, firstpkt49)."""
        g = self._recursive
        if g is None or g.key != c.addr[0]:
            try:
                g = RecursiveGuard(c.addr[0], self.opts.dev_type == "tap", self.clock,
                                   lambda at, fn: self.pump.timers.arm("recursive-say", at, fn))
            except (ValueError, IndexError, TypeError):
                return None
            self._recursive = g
        return g

    def _refuse_ipv6(self, tun, pkts: list) -> list:
        """block-ipv6: each IPv6 packet is answered into the TUN with "no route" and not sent.
        On a tap device each frame carrying IPv6 is dropped (counted), unanswered: the answer
        would need the frame's own Ethernet header turned round, and applications fail over to
        IPv4 on the routes' "unreachable" (tunnel.py) before most frames are sent."""
        if self.opts.dev_type == "tap":
            keep = [p for p in pkts if not is_ipv6_frame(p)]
            self.counters.ipv6_refused += len(pkts) - len(keep)
            return keep
        keep = []
        for p in pkts:
            if not is_ipv6(p):
                keep.append(p)
                continue
            self.counters.ipv6_refused += 1
            reply = no_route_reply(p)
            if reply is not None:
                tun.queue(reply)
        return keep

    def _send(self, c: Connection, packets: list, defer_loss: bool = False) -> str | None:
        """Send; a link that fails is lost (`_lost`), or with `defer_loss` the reason is returned
        for the caller to decide after reading what it holds (_link_failed_after_reading)."""
        if not packets:
            return None
        # As OpenVPN 2.6's link_write_bytes: over TCP each packet's 2-byte length counts too
        # (link_socket_write_tcp prepends it before the count); reads count without it.
        self.counters.wire_out += sum(map(len, packets)) + (2 * len(packets) if c.session.tcp else 0)
        if self.shaper is not None:
            tcp = c.session.tcp
            self.shaper.wrote(packets, header_bytes(tcp, ":" in c.addr[0]) + (2 if tcp else 0), self.clock())
        try:
            c.link.send_packets(packets)
        except (ConnectionError, OSError) as e:
            if defer_loss:
                return str(e)
            self._lost(c, str(e))
            return None
        if c.link.wants_write:
            self.pump.want_write(c.link, True, *self._link_handlers(c.link))
        return None

    def _link_failed_after_reading(self, c: Connection, why: str) -> None:
        """Our send failed (a TCP server that closed the connection after its last word) while
        the session held what it had just read: that last word decides first -- AUTH_FAILED
        ends the run, RESTART restarts -- and only a session with nothing to say is a lost
        link. Why: a server that refuses a client writes AUTH_FAILED and closes; our ACK of it
        (sent before the session reads it, see end_batch) then fails, and treating that as a
        lost link made a refused TCP client reconnect for ever."""
        c.session.take_outgoing()              # nowhere to send it
        self._events(c)
        if self.conn is c:
            self._lost(c, why)

    # ---------------------------------------------------------------- engine results
    def _after_engine(self, c: Connection) -> None:
        """_act_on_engine, this connection's guard: our bug while acting on the session's events
        (the push applied, the tunnel announced) ends this session and the client starts over.
        Why: it went up to the loop's catch-all, the event was lost and the connection stayed
        established at the server but never up here, no ping-restart armed -- a client alive
        with no tunnel, for ever (lab/reliability/fault_sweep.py)."""
        try:
            self._act_on_engine(c)
        except PortGone:
            raise
        except Exception as e:  # noqa: BLE001 - our bug: this session ends, the client starts over
            if self.conn is c:
                self._engine_failed(c, e, "acting on the client session")
            else:
                self.faults.internal("acting on an ended client session")

    def _act_on_engine(self, c: Connection) -> None:
        """Send what the session queued, act on its events, re-arm its timer.

        Order, for the time to the first packet: what the server waits for goes out first; the
        rest follows AFTER_UP_DELAY later (a timer): the held log lines (LogHold), the services
        told of the tunnel. On the push itself the tunnel is configured and the packets waiting
        in the TUN are sent before our ACK of the push goes out (the server waits for nothing
        from us then, and each send hands the CPU to the server's receive path on 2 shared cores)."""
        if self.conn is not c:
            return
        s = c.session
        out = s.take_outgoing()
        if not s.events:
            self._send(c, out)
        else:
            # (What is wrapped already goes now, ahead of the tunnel's set-up: a message the peer
            # waits for -- a point-to-point tls-server's key-method message, read by the peer
            # before it can open our data; README, batch50. The push's ACK alone waits, unwrapped.)
            held = _brings_up(s)
            failed = self._send(c, out, defer_loss=True)
            if failed is not None:
                self._link_failed_after_reading(c, failed)
                return
            if not self._logs.held:
                self.pump.timers.arm("logs", self.clock() + AFTER_UP_DELAY, self._logs.write)
            self._logs.begin()
            try:
                self._events(c)
            except BaseException:
                self._logs.end()
                self._logs.write()      # before whatever the caller logs about it
                raise
            self._logs.end()
            if self.conn is not c:
                return
            if held and self.conn is c:
                # The tunnel just came up: what waited in the TUN meanwhile went out at once, as
                # soon as the device was set (_tunnel_up), ahead of our ACK of the push, which
                # is wrapped only now (end_batch's hold_flush).
                s.flush_held(self.clock())
                self._send(c, s.take_outgoing())
                if s.events and self.conn is c:
                    # That wrapping ended the session (the server left over SEND_QUEUE_MAX of
                    # our messages unacknowledged; control replay ids used up): acted on now. A
                    # closed session arms no timer, so it waited for the server's next datagram
                    # -- from a server gone silent, never: a client "up" for ever, no reconnect.
                    self._events(c)
                if self._route_keeper is not None and self.conn is c:
                    # The kernel's note of the address just set, read in this wake-up rather
                    # than at one of its own beside the echo (RouteKeeper.read_now).
                    self._route_keeper.read_now()
        if self.conn is c:                  # a failed send may have ended it
            if self.mgmt is not None and not c.auth_said and s.peer_sid is not None:
                c.auth_said = True
                self.mgmt.state("AUTH")         # OpenVPN 2.6: at the server's first packet
            self.pump.timers.arm("engine", s.next_deadline(), self._on_engine_timer)

    def _events(self, c: Connection) -> None:
        s = c.session
        while s.events and self.conn is c:
            e = s.events.popleft()
            log_client_event(e)
            if self.mgmt is not None:
                self.mgmt.event(e)
            if isinstance(e, ev.TunnelUp):
                self._tunnel_up(c, e)
            elif isinstance(e, ev.HandshakeCompleted) and e.key_id == 0 and self.scripts is not None:
                self.scripts.connected(c.session, c.addr)      # "Peer Connection Initiated": ipchange
                self._scripts_queued()
            elif isinstance(e, ev.TlsVerifyRequested):
                self._run_verify(c, e)
            elif isinstance(e, ev.KeyRenegotiated):
                self.counters.renegotiations += 1
            elif isinstance(e, ev.SessionClosed):
                if self.mgmt is not None:
                    from .client_mgmt import restart_reason
                    self._why = self._exit_why = restart_reason(e)
                if e.restart and e.tls_error and self.opts.tls_exit:
                    # As OpenVPN 2.6 (init.c do_signal_on_tls_errors: SIGTERM instead of SIGUSR1).
                    log.error("TLS error, exiting (tls-exit): %s", e.reason)
                    self._finish(1)
                elif e.restart:
                    if self.opts.auth_retry_interact and e.purge_auth:
                        self.forget_passwords()         # as OpenVPN 2.6's AR_INTERACT: ssl_purge_auth
                    if e.skip_addresses:
                        self._more = []         # the name's other addresses too (2.6's advance_next_remote)
                    self._restart(c, e.same_remote or (c.was_up and not e.next_remote), e.backoff)
                else:
                    self._finish(1)
                return

    # ---------------------------------------------------------------- tls-verify
    def _run_verify(self, c: Connection, e: ev.TlsVerifyRequested) -> None:
        """The server's chain to the tls-verify command; its verdict comes back in _on_verdicts
        (the session holds the handshake meanwhile). Environment as OpenVPN 2.6's client sets
        it: the server's address as untrusted_ip/untrusted_port, then the chain's variables."""
        ip, port = c.addr[0], c.addr[1]
        o = self.opts
        base = self.updown.verify_base(ip, port)    # (gateway/updown.py: the settings, after an UP its set)
        why = "no runner" if self.verify is None else \
            self.verify.submit_chain(("tls", c, e.key_id, e.check), ip, list(o.tls_verify or ()), e.chain, base,
                                    name=e.common_name, track=o.x509_track)
        if why is not None:
            log.warning("tls-verify not run: %s", why)
            c.session.tls_verify_result(e.key_id, False, self.clock(), check=e.check, tell=False)
        elif self.verify.inline:
            self.pump.timers.arm("verdicts", self.clock(), self._on_verdicts)

    def _on_verdicts(self) -> None:
        if self.verify is None:
            return
        self.verify.drain()
        for (_, c, key_id, check), ok, reason in self.verify.take_results():
            if self.conn is not c:
                continue                    # that connection is over: nothing waits for it
            if not ok:
                log.warning("%s", reason)
            try:
                c.session.tls_verify_result(key_id, ok, self.clock(), check=check)
            except Exception as ex:  # noqa: BLE001 - our bug: this session ends, the client starts over
                self._engine_failed(c, ex, "a tls-verify verdict")
                continue
            self._after_engine(c)

    def _tunnel_up(self, c: Connection, e: ev.TunnelUp) -> None:
        if self.opts.p2p:
            # Nothing is pushed on a point-to-point link: our own ifconfig lines say it all.
            e = e.replace(pushed=p2p_network(self.opts))
            log.info("point-to-point link with %s: %s", fmt_addr(c.addr), Lazy(push_summary, e.pushed))
        else:
            log.info("server pushed: %s", Lazy(push_summary, e.pushed, self.opts.dev_type == "tap"))
            log_unrecognized(e.pushed)
            log_malformed(e.pushed)
            if bad := len(getattr(e.pushed, "malformed", None) or ()):
                # Counted too (the final counters, the management's view): a server pushing bad
                # values, or our bug reading one (a ValueError in the parsing reads the same).
                self.faults.count("pushed options with a bad value (left out)", bad)
        # The profile's route-ipv6, route-metric, block-ipv6 and dns with the pushed ones, as
        # OpenVPN 2.6 (openvpn/profile_push.py): the tunnel and the services see both as one.
        pushed = with_profile(self.opts, e.pushed)
        if (why := fatal_push(self.entry, pushed)) is not None:
            self._fatal(why, ", exiting")       # as 2.6's M_FATAL: the next connection would meet it again
            return
        if pushed is not None and pushed.tun_mtu is None and self.entry.tun_mtu != self.opts.tun_mtu:
            # The connection's own tun-mtu (its <connection> block's, or link-mtu over its
            # protocol): the device takes it as it would a pushed one, as 2.6 opens it per entry.
            pushed = dataclasses.replace(pushed, tun_mtu=self.entry.tun_mtu)
        if outside := outside_ipv6_dropped(self.opts, e.pushed):
            log.warning("block-ipv6: %d pushed route-ipv6 via net_gateway_ipv6 not installed (%s%s): the profile "
                        "keeps IPv6 inside the tunnel", len(outside), ", ".join(outside[:3]),
                        ", ..." if len(outside) > 3 else "")
        try:
            self.net.apply(pushed, c.addr[0])
        except PortGone:
            raise                       # our TUN could not be made: nothing to retry
        except Exception as ex:  # noqa: BLE001 - what the server pushed cannot be set up here
            # A bad or hostile push must not end the appliance (as PID 1 it would power off):
            # this connection ends, and the client starts over with backoff.
            log.error("cannot configure the tunnel with what the server pushed: %s", ex)
            self._schedule_retry()
            return
        self._set_client_nat(c, e.pushed)
        self._set_dhcp_router(c, e.pushed)
        self._set_shaper(e.pushed)
        tun = self.net.tun
        if tun is not None and self.tun_watched is not tun:
            self.pump.watch(tun, self._on_tun_read)
            self.tun_watched = tun
        if not c.was_up:
            self.unsuccessful = 0
            self.connections += 1
            self.counters.connections += 1
            self.counters.up_since = time.time()
        c.was_up = True
        self.pump.timers.cancel("poll")
        # What waited in the TUN meanwhile goes out now, with the device, its address, routes and
        # client-nat set (a wait for readiness would cost a loop turn): what follows -- the push's
        # digest, the scripts' and listeners' up, timers, the log line -- changes nothing in how
        # a packet is sealed or sent, so the first packet no longer waits for it. (OpenVPN 2.6
        # runs its up script before it reads the TUN; ours are queued off the loop either way.)
        # A send that fails loses the link once this connection's up is complete, as before.
        # Not when the same batch ended the session behind the push (RESTART, HALT, AUTH_FAILED:
        # a client-kill just after it, or a hostile server): acted on in wire order, the push
        # applied and then the end, with no data under keys the server has dropped -- as 2.6.14,
        # which reads those messages in one call (forward.c check_incoming_control_channel) and
        # its socket before its TUN (README, batch50).
        lost = None if c.session.closed else self._on_tun_read(defer_loss=True)
        self._push_changed(c, e.pushed, pushed, tun.name if tun else self.opts.dev)
        first_up = self.updown.plugin_env is None
        waiting = getattr(self.net, "routes_waiting", None) is not None
        opened, self._tun_kept = not self._tun_kept, True       # 2.6's did_open_tun
        if self.mgmt is not None and opened:
            # As 2.6: ASSIGN_IP (do_ifconfig), then do_route's ADD_ROUTES before >UPDOWN:UP --
            # with route-delay once the delay is over (_route_delay_over). A device kept over a
            # reconnect (persist-tun, the same push) is not opened again: neither, CONNECTED only.
            self.mgmt.assigned(pushed)
            if not waiting:
                self.mgmt.adding_routes(pushed)
        self.updown.up(c.session, c.addr, pushed, tun.name if tun else self.opts.dev, self.mgmt,
                       announce=not waiting)
        if self.scripts is not None:
            self.scripts.up(first_up, c.session, c.addr, pushed, tun.name if tun else self.opts.dev,
                            route_up=not waiting)
            self._scripts_queued()
        if waiting:
            # route-delay (gateway/route_delay.py): the routes, >UPDOWN:UP and route-up then (with
            # route-gateway dhcp via the router a DHCP ACK gave by that time). Without route-delay
            # (route_delay.waits_for_router_alone) a router ends the wait (_dhcp_router), one known
            # already (a reconnect: the tap keeps its lease) at once, none at ROUTER_WAIT s.
            wait: float = delay_of(self.opts, pushed)
            self._router_wait = None
            if getattr(self.net, "router_alone", False):
                self._router_wait = (c, pushed, self.clock())
                wait = ROUTER_WAIT
                if usable_router(self.dhcp_router) is not None:
                    wait = 0
                    self.updown.route_setenv(route_vpn_gateway=self.dhcp_router)
            self.pump.timers.arm("route-delay", self.clock() + wait, lambda: self._route_delay_over(c, pushed))
        if e.pushed is not None and e.pushed.inactive is not None:
            self._arm_inactive(e.pushed.inactive)   # the server's value replaces ours
        p = e.pushed
        if p is not None and (p.session_timeout is not None or p.ping is not None or p.ping_restart is not None
                              or p.inactive is not None):
            # As OpenVPN 2.6 (init.c do_deferred_options: pushed timer options re-initialise the
            # timers): session-timeout counts afresh from the push, the server's value or ours.
            self._arm_session(p.session_timeout if p.session_timeout is not None else self.opts.session_timeout)
        log.info("tunnel up: %s, cipher %s, key derivation %s, peer-id %s, VmRSS %s", tun.name if tun else "-",
                 e.cipher, e.key_derivation, e.peer_id, Lazy(vm_rss))
        # The services (DNS forwarder, status, ...) hear of it once the first packets have flowed
        # (with route-delay: the DNS ones now, the rest at CONNECTED; _announce_up).
        self.pump.timers.arm("announce", self.clock() + AFTER_UP_DELAY, lambda: self._announce_up(c, pushed))
        if lost is not None and self.conn is c:
            self._lost(c, lost)

    def _set_client_nat(self, c: Connection, pushed) -> None:
        """client-nat: the profile's rules then the pushed ones (64 in all, as OpenVPN 2.6, which
        warns of the rest), for this connection only: a reconnect starts again from the profile's."""
        rules, dropped = combined(self.opts.client_nat, pushed.client_nat if pushed is not None else [])
        if dropped:
            log.warning("client-nat table overflow (max %d entries): %d pushed entr%s left out", NAT_MAX,
                        dropped, "y" if dropped == 1 else "ies")
        c.dp.set_nat(ClientNat(rules, frames=self.opts.dev_type == "tap") if rules else None)
        if rules:
            log.info("client-nat: %s", "; ".join(str(r) for r in rules))

    def _set_shaper(self, pushed) -> None:
        """A pushed `shaper N` replaces the profile's for this connection, as 2.6's client applies
        it (do_deferred_options: "traffic shaper enabled"); without one, the profile's. Stricter
        than 2.6 on purpose: 2.6 keeps a pulled shaper into later connections (pre_connect_restore
        leaves it out), so a first server's `shaper 100` throttles the tunnel to another, honest
        server that pushes none; here, as every other pushed value (README, helper pull41), it
        lasts the connection whose server pushed it."""
        rate = pushed.shaper if pushed is not None and pushed.shaper else self.opts.shaper
        tun = self.net.tun
        if tun is not None:             # (each push: a push may have opened a new device)
            tun.set_tso(not rate)       # one packet a read while shaped (TunDevice.set_tso says why)
        if rate != (self.shaper.rate if self.shaper is not None else 0):
            self.shaper = Shaper(rate) if rate else None
            if rate:
                log.info("traffic shaper enabled at %d bytes/s%s", rate, " (pushed)" if rate != self.opts.shaper else "")
            if self._shaped is not None:
                # The TUN held back by the old rate is judged by the new one now: a hold can last
                # minutes at a low rate (each write's cost is capped alone, as 2.6 caps it).
                self.pump.timers.cancel("shaper")
                self._shaper_free()

    def _set_dhcp_router(self, c: Connection, pushed) -> None:
        """`route-gateway dhcp` (the profile's, or pushed: a plain `server-bridge` pushes it) on a
        tap client, as OpenVPN 2.6 on every platform: the Router option is taken out of the
        server side's DHCP OFFER/ACK on their way to the tap (the DHCP client there never makes
        the bridged LAN's router its default route), and an ACK's router is logged as the VPN
        gateway learned. The routes were set at tunnel-up, before any DHCP reply could come, so
        those needing a gateway were skipped then, as 2.6's (without route-delay) are."""
        on = self.opts.dev_type == "tap" and "dhcp" in (self.opts.route_gateway,
                                                        pushed.route_gateway if pushed is not None else None)
        c.dp.set_dhcp_router(self._dhcp_router if on else None)

    def _dhcp_router(self, router: str) -> None:
        """An ACK's router (a server may send any number): said when it changes, at most every 10 s.
        One no route can go via (0.0.0.0, a broadcast, multicast or loopback address:
        route_delay.usable_router) is said but not taken: taken, it replaced a router that could
        be used, and a forged ACK right after the real one ended the connection (atk50)."""
        if router == self.dhcp_router:
            return
        if usable_router(router) is None:
            if (held := self._unusable_router_note.due(self.clock())) is not None:
                log.warning("route-gateway dhcp: a DHCP ACK named %s as router, no address routes can go via; "
                            "not used%s", router, f" ({held} more since)" if held else "")
            return
        self.dhcp_router = router
        if router in self._dhcp_routers:
            self._dhcp_routers.remove(router)
        self._dhcp_routers.append(router)
        if self._router_wait is not None and usable_router(router) is not None \
                and self.pump.timers.armed("route-delay"):
            c, pushed, _since = self._router_wait      # the routes waited for this router alone: in now
            # ... but not sooner than a poll after the last look: each look asks the kernel (two
            # dumps a kept router), and a host on the bridged LAN sending ACKs that name routers
            # in turn had one look per ACK, hundreds a second through the wait (review50b).
            self.pump.timers.arm("route-delay", max(self.clock(), self._routers_checked + ROUTER_ON_LINK_POLL),
                                 lambda: self._route_delay_over(c, pushed))
        self.updown.route_setenv(route_vpn_gateway=router)     # 2.6's route_list_add_vpn_gateway
        now = self.clock()
        if now - self._dhcp_router_said >= DHCP_ROUTER_LOG_EVERY:
            self._dhcp_router_said = now
            log.info("Extracted DHCP router address: %s (route-gateway dhcp; its Router option kept from the tap)",
                     router)

    def _route_delay_over(self, c: Connection, pushed) -> None:
        """route-delay is over: as 2.6's do_route then, the routes that waited (with route-gateway
        dhcp redirect-gateway via the DHCP router learned by now; none: the connection ends, tapredir48),
        redirect_gateway set, >STATE:ADD_ROUTES, >UPDOWN:UP, route-up (still as root: the drop
        to `user` follows it), and _announce_up's CONNECTED once route-up has run."""
        if self.conn is not c:
            return
        alone, self._router_wait = self._router_wait, None
        if self._dhcp_routers:
            self._routers_checked = self.clock()
            # (With route-delay too, review50b: a forged ACK after the real one had the halves
            # refused, and every reconnect waited its delay again to reuse that router.)
            on_link = next((r for r in reversed(self._dhcp_routers) if self.net.router_on_link(r)), None)
            if alone is not None and on_link is None and self.clock() < alone[2] + ROUTER_WAIT:
                # The ACK's router came before the DHCP client on the tap took the ACK's address:
                # routes via it wait for that too (ROUTER_ON_LINK_POLL), within the same deadline.
                self._router_wait = alone
                self.pump.timers.arm("route-delay", min(self.clock() + ROUTER_ON_LINK_POLL, alone[2] + ROUTER_WAIT),
                                     lambda: self._route_delay_over(c, pushed))
                return
            if on_link is not None and on_link != self.dhcp_router:
                # An earlier ACK's router, on the tap's network where a later one is not (a
                # forged ACK after the real one: any host on the bridged LAN sees the exchange).
                self.dhcp_router = on_link
                self.updown.route_setenv(route_vpn_gateway=on_link)
        try:
            router = usable_router(self.dhcp_router)
            if alone is not None and router is not None and not self.net.router_on_link(router):
                # Still off the tap's networks (or their broadcast address) at the deadline: the
                # host would refuse the halves via it. As no router: this connection ends, and the
                # next one waits (at most ROUTER_WAIT) for an ACK whose router is on the tap's
                # network -- a forged ACK naming the broadcast was taken at once and refused, and
                # the next connection reused it at once: a restart loop (atk50).
                log.warning("route-gateway dhcp: the DHCP router %s is not on the tap's network after %d s; "
                            "not used", router, ROUTER_WAIT)
                router = None
            redirected = self.net.add_waiting_routes(router)
        except Exception as ex:  # noqa: BLE001 - as a push the host refuses: this connection ends
            log.error("cannot add the routes route-delay held back: %s", ex)
            self._schedule_retry()
            return
        if alone is not None:
            log.info("route-gateway dhcp: routes in via the DHCP router %s, %.1f s after tunnel-up", router,
                     self.clock() - alone[2])
        else:
            log.info("route-delay %d s over: routes in", delay_of(self.opts, pushed))
        if redirected is not None:
            self.updown.route_setenv(redirect_gateway="1" if redirected else "0")
        if self.mgmt is not None:
            self.mgmt.adding_routes(pushed)
        self.updown.announce_up(self.mgmt)
        if self.scripts is not None:
            self.scripts.route_up_delayed()
            self._scripts_queued()
        self.pump.timers.arm("announce", self.clock() + AFTER_UP_DELAY, lambda: self._announce_up(c, pushed))

    def _announce_up(self, c: Connection, pushed) -> None:
        if self.conn is not c or not c.was_up:
            return                              # this connection ended meanwhile
        if self.scripts is not None and self.scripts.runner.busy:
            # As 2.6: CONNECTED once up and route-up have run (each bounded by its time limit).
            self.pump.timers.arm("announce", self.clock() + SCRIPT_POLL, lambda: self._announce_up(c, pushed))
            return
        remote = f"{fmt_addr(c.addr)}/{c.remote.proto}"
        if self.pump.timers.armed("route-delay"):
            # As 2.6: "Initialization Sequence Completed" (CONNECTED) once the delayed routes are
            # in: _route_delay_over asks again then (no poll meanwhile: a server may push a
            # delay of years). The pushed DNS applies now, as 2.6's up script (update-resolv-conf)
            # sets it at tunnel-up: the services hear routes_wait (gateway/observers.py).
            self._notify(TunnelState(False, remote, self._tun_name(), pushed, routes_wait=True))
            return
        if self.mgmt is not None:
            self.mgmt.connected(pushed, c.addr[:2], _tcp_local(c))
        self._notify(TunnelState(True, remote, self._tun_name(), pushed))

    def _scripts_queued(self) -> None:
        """A runner in the caller (tests) has its results already: read them on the next turn."""
        if self.scripts is not None and self.scripts.runner.inline:
            self.pump.timers.arm("scripts", self.clock(), self._on_script_results)

    def _on_script_results(self) -> None:
        """A script ended: a failed `up` ends the run, as OpenVPN 2.6's M_FATAL (status 1)."""
        if self.scripts is None:
            return
        runner = self.scripts.runner
        runner.drain()
        for kind, ok in runner.take_results():
            if kind in ("up", "route-pre-down", DOWN_ROOT) and not ok and self.result is None:
                # 2.6 exits there and then (M_FATAL): after a failed up its tunnel is not yet
                # the one tun_abort undoes, so no route-pre-down or down script follows; a
                # reconnect's failed route-pre-down or down-root command (at its close of the
                # tunnel, without persist-tun) ends it the same way.
                if kind == DOWN_ROOT:
                    log.error("ERROR: up/down plugin call failed")
                log.error("Exiting due to fatal error")
                self.scripts.ended = True
                self._finish(1)

    def _on_engine_timer(self) -> None:
        c = self.conn
        if c is None:
            return
        try:
            c.session.handle_timer(self.clock())
        except Exception as e:  # noqa: BLE001 - our bug: this session ends, the client starts over
            self._engine_failed(c, e, "the client session's timer")
            return
        self._after_engine(c)

    # ---------------------------------------------------------------- inactive (gateway/inactivity.py)
    def _traffic(self) -> int:
        return self.counters.bytes_in + self.counters.bytes_out     # tunnel packets only, no pings

    def _arm_inactive(self, setting: tuple[int, int] | None) -> None:
        now = self.clock()
        self._inactive = Inactivity.start(setting, self._traffic(), now)
        if self._inactive is None:
            self.pump.timers.cancel("inactive")
        else:
            self.pump.timers.arm("inactive", self._inactive.next_look(now), self._on_inactive_check)

    def _on_inactive_check(self) -> None:
        i = self._inactive
        if i is None or self.result is not None:
            return
        now = self.clock()
        if not i.expired(self._traffic(), now):
            self.pump.timers.arm("inactive", i.next_look(now), self._on_inactive_check)
            return
        log.warning("%s, exiting", INACTIVE_LOG)
        self._exit_why = "inactive"
        self.request_stop()             # as at SIGTERM (explicit-exit-notify's notice and wait); status 0

    # ---------------------------------------------------------------- session-timeout
    def _arm_session(self, seconds: int) -> None:
        """session-timeout N: the run ends N seconds on (0: never), as OpenVPN 2.6's client
        (forward.c check_session_timeout: "Session timeout, exiting", SIGTERM)."""
        if seconds > 0:
            self.pump.timers.arm("session", self.clock() + seconds, self._on_session_timeout)
        else:
            self.pump.timers.cancel("session")

    def _on_session_timeout(self) -> None:
        if self.result is not None:
            return
        log.warning("Session timeout, exiting")
        self._exit_why = "session-timeout"
        self.request_stop()             # as at SIGTERM (explicit-exit-notify's notice and wait); status 0

    def _engine_failed(self, c: Connection, e: Exception, where: str) -> None:
        """An engine call raised: the credentials it asked for could not be had (auth-nocache's
        file gone: the run ends, as OpenVPN 2.6's fatal error), or our bug (this session ends,
        the client starts over)."""
        if isinstance(e, CredentialsUnavailable):
            self._fatal(f"{e}", ", exiting")
            return
        self.faults.internal(where)
        self._lost(c, "internal error (see above)")

    def _fatal(self, text: str, more: str = "") -> None:
        """The run ends as OpenVPN 2.6's M_FATAL: logged (`more` in the log only), told to the
        management client as >FATAL:TEXT, status 1."""
        log.error("%s%s", text, more)
        if self.mgmt is not None:
            self.mgmt.fatal(text)
        self._finish(1)

    def _finish(self, status: int) -> None:
        self._close_conn()
        self._log_drops(final=True)
        self.result = status

    def _after_wake(self) -> None:
        tun = self.net.tun
        if tun is not None:
            tun.flush()
        c = self.conn
        if c is not None and c.link.wants_write:
            self.pump.want_write(c.link, True, *self._link_handlers(c.link))

    def _log_drops(self, final: bool = False) -> None:
        extra: dict[str, int] = {}
        c = self.conn
        if c is not None:
            extra.update(c.session.stats)
            extra.update(c.link.errors)
        self.faults.maybe_log(self.clock(), extra, final=final)
        if not final:
            self.pump.timers.arm("drops", self.clock() + DROP_LOG_EVERY, self._log_drops)


def _brings_up(s: Session) -> bool:
    """Whether the session's pending events bring the tunnel up (a TunnelUp among them)."""
    return any(type(e) is ev.TunnelUp for e in s.events) if s.events else False


def _proxy_kind(remote: Remote) -> str:
    """For the log: which kind of proxy `remote` is reached through."""
    return "SOCKS proxy" if isinstance(remote.proxy, SocksProxy) else "HTTP proxy"


def _literal(host: str) -> bool:
    """An address literal (no name to resolve)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _tcp_local(c: Connection) -> tuple | None:
    """The local address and port of a TCP connection, for >STATE's CONNECTED line; None over
    UDP, where OpenVPN 2.6's socket is not bound to an address and it prints none."""
    if not isinstance(c.link, TcpLink):
        return None
    try:
        return tuple(c.link.t.sock.getsockname()[:2])
    except (AttributeError, OSError):
        return None
