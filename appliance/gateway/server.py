"""The server's policy on the shared pump: one TUN, one UDP socket or a TCP listener with many
connections, and the engine's dispatcher in the middle.

Fault rule: whatever one client causes (a datagram the kernel refuses to answer, a reset
connection, a broken TCP frame, a packet that trips a bug of ours) ends at most that client's
session or connection; it is counted by reason and logged at a limited rate. Only our TUN or
listening socket failing ends the server (PortGone), with one line saying why.

TCP connections are keyed by a counter, never by file descriptor number: a number the kernel
reuses must not let a stale record touch a new connection.
"""
from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Callable, Protocol

from ..openvpn import ciphers, events as ev
from ..openvpn.crl import background_reader
from ..openvpn.datapath import MssPolicy, ServerDataPath
from ..openvpn.l2switch import SwitchDataPath
from ..openvpn.config import Options
from ..openvpn.server import QUIET_DROPS, ServerDispatcher, ServerSettings, StreamKey
from ..openvpn.portshare import Verdict, decide
from ..openvpn.settings import mss_rule
from ..openvpn.errors import ConfigError
from ..openvpn.sources import source_group
from ..transport.link import TcpLink
from .auth import AuthChecker
from .eventlog import fmt_addr, log_server_event
from .loop import Faults, Pump, SignalWakes, Signals, Waiter, freeze_startup_heap, run_gateway
from .ops import Operations
from .server_files import CcdFiles, CcdReader
from .slots import identity_of_cert
from ..ioerrors import start_failed
from .ports import Clock, DatagramPort, ListenerPort, PortGone, Ports, TunPort
from .portshare import JournalDir, PortShare
from .refused_streams import RefusedStreams

if TYPE_CHECKING:
    from ..host.down_root import DownRoot

log = logging.getLogger("vpn-appliance")

BATCH = 64
DROP_LOG_EVERY = 5.0
ACCEPTS_PER_WAKE = 32
ACCEPT_PAUSE = 1.0            # after EMFILE/ENFILE: stop accepting for this long (no busy loop)
PER_SOURCE_CONNS = 8          # TCP connections without a completed handshake, per source (IPv6: per /64)
SNIFF_READ = 4096             # port-share: a new connection's first read, before its kind is known
RESTART_WAIT = 2.0            # stopping: at most this long for clients to acknowledge RESTART (OpenVPN 2.6: 2 s)
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class ServerNet(Protocol):
    """The server's TUN with its address and routes (gateway/server_net.py; lab/fakes.py)."""

    def open(self) -> TunPort: ...

    def close(self) -> None: ...


class ServerGateway(SignalWakes):
    """Serve many clients. `run()` for real use; `start()`/`pump.step()` for tests."""

    def __init__(self, opts: Options, settings: ServerSettings, ports: Ports, net: ServerNet, clock: Clock,
                 waiter: Waiter, signals: Signals | None = None, auth: AuthChecker | None = None) -> None:
        self.opts = opts
        self.st = settings
        self.ports = ports
        self.net = net
        self.clock = clock
        self.signals = signals
        self.faults = Faults(DROP_LOG_EVERY)
        self.faults.quiet = QUIET_DROPS
        self.pump = Pump(clock, waiter, self.faults)
        # The 5 s drop-log timer also gives back what a bug in a release left (_reconcile): it must
        # not die with a bug on its first line (loop.py TimerHeap.retry).
        self.pump.timers.retry["drops"] = DROP_LOG_EVERY
        self.pump.after_wake = self._after_wake
        self.d = ServerDispatcher(settings, clock())
        path = SwitchDataPath if settings.layer2 else ServerDataPath       # dev tap: frames by MAC
        self.dp = path(self.d, self._mss_rule(opts), settings.client_to_client)
        self.tun: TunPort | None = None
        self.down_root: "DownRoot | None" = None     # the down-root plugin's root helper (cli.py)
        self._down_root_running = False              # its command at a SIGUSR1 (restart_down)
        self.udp: DatagramPort | None = None
        self.listener: ListenerPort | None = None
        self.conns: dict[StreamKey, TcpLink] = {}   # in accept order (the oldest is evicted first)
        # Connections whose client was told AUTH_FAILED, let go slowly: gateway/refused_streams.py
        self.refused_streams = RefusedStreams(self.pump, self.faults.count, clock)
        self.unestablished: dict[str, int] = {}      # source_group -> its connections without a handshake yet
        # How a password checker is made: here, and by a reload that adds auth-user-pass-verify
        # (tests make inline ones, checked in the caller's thread on a fake clock).
        self.make_auth: Callable[[object], AuthChecker] = lambda verify: AuthChecker(verify, clock)
        if auth is None and settings.defer_auth and settings.verify_user is not None:
            auth = self.make_auth(settings.verify_user)
        self.auth = auth
        self.established_conns: set[StreamKey] = set()
        self._conn_ids = itertools.count(1)
        self.sends: dict = {}
        self.result: int | None = None
        self._restart_deadline: float | None = None   # stopping: told clients RESTART, waiting (request_stop)
        self._stops_seen = 0
        self.listen_addr: tuple[str, int] | None = None
        self.conn_addrs: dict[int, tuple] = {}      # connection id -> the client's (IP, port)
        self.ops = Operations(self)                 # management, status, pool file, scripts, reload
        self.d.on_create = self.ops.created         # its client ID, as 2.6 numbers them
        self.portshare: PortShare | None = None     # port-share: the relays (gateway/portshare.py)
        self.sniffing: dict[StreamKey, bytearray] = {}   # port-share: connections not yet known OpenVPN or not
        self.portshare_target: tuple[str, int] | None = None   # port-share's HOST already resolved (run_toml)
        self.ccd_reader: CcdReader | None = None   # large client-config-dir files, read off the loop

    @property
    def max_conns(self) -> int:
        """TCP connections held at most: room for every client plus some handshakes. Read from
        the settings each time, so a reload's new `max-clients` moves the cap too."""
        return self.st.max_clients + 64

    def _mss_rule(self, opts: Options):
        v6 = opts.proto_family == "6" or (opts.local or "").count(":") > 0
        return mss_rule(opts, self.st.tcp, v6)

    def set_mss_rule(self, opts: Options) -> None:
        """A reload's `mssfix` (and the ciphers and compression it depends on): every SYN clamped
        from now on, new sessions' and running ones' (after OpenVPN's SIGHUP all are new)."""
        self.dp.mss = MssPolicy(self._mss_rule(opts))

    # ---------------------------------------------------------------- running
    def run(self, after_start: "Callable[[], None] | None" = None) -> int:
        """`after_start`: what runs once the server holds its TUN and sockets (the privilege drop)."""
        def start() -> None:
            self.start()
            if after_start is not None:
                after_start()
            freeze_startup_heap()
        return run_gateway(self.pump, self.signals, self._on_signal, start, lambda: self.result, self._cleanup)

    def _cleanup(self) -> None:
        """What run_gateway runs at the end: each step under its own guard (Faults.each), as the
        client's. Why: a bug of ours in one (port-share's close, the management notices) skipped
        the others before the TUN's -- the management client never told EXITING, our sockets
        and the auth and ccd workers left to the process's end."""
        self.faults.each("the clean-up at exit", [
            *(partial(self._close_conn, cid) for cid in list(self.conns)),
            self.refused_streams.close_all,
            lambda: self.portshare is not None and self.portshare.close(),  # every relay closed, its journal gone
            self.ops.stop_notices,              # >UPDOWN:DOWN (unless a SIGHUP's is pending), >STATE EXITING
            self.ops.close,
            *(p.close for p in (self.udp, self.listener, self.auth, self.ccd_reader) if p is not None),
            self.net.close,
            self._down_root])

    def _down_root(self) -> None:
        """The down-root command (host/down_root.py), after the TUN went, as OpenVPN's DOWN call;
        not when the start failed before the TUN was up (OpenVPN's plugin had no UP then)."""
        helper, self.down_root = self.down_root, None
        if helper is None:
            return
        try:
            if self.tun is not None:
                log.info("down-root: running %s", " ".join(argv[0] for _p, argv in self.opts.down_root))
                helper.run(self.ops.up_down_env(plugin=True))
        finally:
            helper.close()

    def restart_down(self) -> None:
        """SIGUSR1 without persist-tun: 2.6's server closes its device at that restart (its
        do_close_tun): >UPDOWN:DOWN, then the down-root command (the plugin's DOWN call), with the
        UP's environment, as Debian's server does; ours keeps its TUN and clients (the reload
        follows, then >UPDOWN:UP). The command runs off the loop, one at a time (a SIGUSR1 while
        one runs adds none); its failure is logged (2.6 exits there -- and would at its next UP,
        which its plugin fails)."""
        self.ops.up_down("DOWN")
        helper = self.down_root
        if helper is None or self.tun is None or self._down_root_running:
            return
        env = self.ops.up_down_env(plugin=True)
        self._down_root_running = True

        def job() -> None:
            try:
                log.info("down-root: running %s (SIGUSR1 without persist-tun)",
                         " ".join(argv[0] for _p, argv in self.opts.down_root))
                if not helper.run(env):
                    log.warning("down-root: the command at SIGUSR1 failed (OpenVPN 2.6 would exit)")
            finally:
                self._down_root_running = False
        threading.Thread(target=job, name="down-root", daemon=True).start()

    def bind_addr(self) -> tuple[str, int]:
        """`proto udp6/tcp6` (or an IPv6 `local`) listens on IPv6 (dual-stack on `::`)."""
        o = self.opts
        v6 = o.proto_family == "6" or (o.local or "").count(":") > 0
        return (o.local or ("::" if v6 else "0.0.0.0"), o.local_port)

    def start(self) -> None:
        # The data ciphers' one-time set-up (the compiled AEAD's first Key loads OpenSSL's provider:
        # 0.5-5 ms) at start, not in the first client's key exchange.
        o = self.opts
        ciphers.warm_up([*o.data_ciphers, o.data_ciphers_fallback, o.cipher])
        if o.port_share is not None and self.st.tcp:
            self.portshare = self._open_portshare()
        self.tun = self.net.open()
        if isinstance(self.dp, SwitchDataPath):
            self.dp.server_mac = self.net.hw_address()      # dev tap: never a client's (l2switch.py)
        self.pump.watch(self.tun, self._on_tun_read)
        addr = self.listen_addr = self.bind_addr()
        try:
            self._bind(addr)
        except OSError as e:
            raise self._bind_failed(addr, e) from None
        addr = self._bound(addr)
        if self.st.tcp:
            self.pump.watch(self.listener, self._on_accept)
            log.info("listening on TCP %s", fmt_addr(addr))
        else:
            self.pump.watch(self.udp, self._on_udp_read)
            log.info("listening on UDP %s%s", fmt_addr(addr),
                     " (multihome: each client answered from the address it wrote to)" if o.multihome else "")
        if self.auth is not None and not self.auth.inline:
            self.pump.watch(self.auth, self.auth.drain)
        self.attach_ccd_reader()
        self.pump.timers.arm("drops", self.clock() + DROP_LOG_EVERY, self._log_drops)
        self.read_crl_in_background(self.st)
        self.ops.start()
        self.ops.up_down("UP")                  # (a management client connected this early hears it)

    def _bound(self, addr):
        """`lport 0`: the port the kernel chose, for the "listening on" line -- it
        said ":0", and no client can be pointed at that (2.6 logs the 0 too). Else `addr`."""
        if addr[1] != 0:
            return addr
        sock = getattr(self.listener if self.st.tcp else self.udp, "sock", None)
        try:
            return (addr[0], sock.getsockname()[1]) if sock is not None else addr
        except OSError:
            return addr

    def _bind(self, addr) -> None:
        if self.st.tcp:
            self.listener = self.ports.tcp_listen(addr)
        elif self.opts.multihome:
            # Each client answered from the local address it wrote to (the addresses carry it:
            # transport/udp.py); only asked for with the directive, the plain path unchanged.
            self.udp = self.ports.udp(addr, None, multihome=True)
        else:
            self.udp = self.ports.udp(addr, None)

    def _bind_failed(self, addr, e: OSError) -> PortGone:
        """The listening socket not bound (OpenVPN 2.6: "Socket bind failed on local address ...",
        fatal at start): at `local`'s line when that address is not this host's, else at the
        port's (the last `port` or `lport` line). It was a traceback."""
        o = self.opts
        if e.errno == errno.EADDRNOTAVAIL and o.local:
            d = "local"
        else:
            d = "lport" if "lport" in o.source and o.source["lport"] == o.source.get("local_port") else "port"
        why = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            why += " (another process listens there)"
        elif e.errno == errno.EADDRNOTAVAIL:
            why += " (no interface of this host has that address)"
        return start_failed(o, d, f"cannot listen on {'TCP' if self.st.tcp else 'UDP'} {fmt_addr(addr)}: {why}")

    def _open_portshare(self) -> PortShare:
        """port-share's target resolved (its first address, as OpenVPN takes the first) and DIR
        opened, at start: a failure stops the start with the config line."""
        host, port, jdir = self.opts.port_share
        path, line = self.opts.source.get("port_share", (self.opts.path, None))
        try:
            target = self.portshare_target or self.ports.resolve(host, port, "tcp", None)[0]
        except OSError as e:
            raise PortGone(str(ConfigError(f"cannot resolve {host}: {e.strerror or e}", path, line, "port-share"))) from e
        lhost, lport = self.bind_addr()
        if target[1] == lport and (target[0] == lhost or _is_loopback(target[0])):
            # Every relayed connection would come back to this port and be relayed again (the
            # caps would end the chain, but nothing would ever be served).
            raise PortGone(str(ConfigError(f"{fmt_addr(target)} is this server's own port: every relayed "
                                           "connection would come back here", path, line, "port-share")))
        journal = None
        if jdir is not None:
            try:
                journal = JournalDir(jdir)
            except OSError as e:
                raise PortGone(str(ConfigError(f"DIR {jdir}: {e.strerror or e}", path, line, "port-share"))) from e
        log.info("port-share: connections that are not OpenVPN go to %s%s", fmt_addr(target),
                 f", journal files in {jdir}" if jdir else "")
        return PortShare(self.pump, self.faults, self.clock, self.ports.tcp_connect, target, journal)

    @staticmethod
    def read_crl_in_background(st: ServerSettings) -> None:
        """A large `crl-verify` file that changes is read by a worker thread, not on this loop:
        at 100,000 entries the reading stalled every client's packets ~0.35 s (crl.py)."""
        crl = st.session_config(0).tls.crl
        if crl is not None:
            crl.reader = background_reader

    def request_stop(self) -> None:
        """SIGTERM/SIGINT. On UDP with `explicit-exit-notify N` (N >= 1), first, as OpenVPN 2.6's
        server: RESTART (N = 1) or RESTART,[N] (N >= 2: "go to your next remote") to every
        client over the control channel, new clients ignored, and the server stays up to
        RESTART_WAIT seconds for the acknowledgements (retransmitting) -- OpenVPN waits that long
        in every case; we stop as soon as all have acknowledged. A second SIGTERM ends the wait.
        Then (and otherwise at once) the stop proper: `_stop_now`."""
        if self._restart_deadline is not None:
            self._stop_now()                    # a second stop request
            return
        n = self.opts.explicit_exit_notify
        if self.udp is not None and n >= 1 and self.d.clients:
            now = self.clock()
            told = self.d.restart_all(now, next_remote=n >= 2)
            self._take_internal_errors("a client's RESTART")
            self._flush_sends()
            if told:
                log.info("stopping: told %d clients to restart%s; waiting up to %.0f s for their "
                         "acknowledgements", told, " with the next remote" if n >= 2 else "", RESTART_WAIT)
                self._restart_deadline = now + RESTART_WAIT
                self.pump.timers.arm("restart-wait", self._restart_deadline, self._stop_now)
                return
        self._stop_now()

    def _stop_now(self) -> None:
        """Exit notifications to every client still here, final counters, done (whatever fails
        on the way, the server stops)."""
        if self.result is not None:
            return
        self.pump.timers.cancel("restart-wait")
        try:
            log.info("stopping: notifying %d clients", len(self.d.clients))
            self.d.close_all(self.clock())
            for err in self.d.take_internal_errors():
                # (under the step that raised: a release's bug at the stop is no exit notification's)
                self.faults.internal_exc(getattr(err, "where", None) or "a client's exit notification", err.exc)
            self._flush_sends()
            for link in list(self.conns.values()):
                try:
                    link.flush()
                except (ConnectionError, OSError):
                    pass
            self._drain_events()
            self._log_drops(final=True)
        finally:
            self.result = 0

    def _on_noted(self, signum: int) -> None:
        self.ops.on_signal(signum)              # SIGHUP/SIGUSR1: reload; SIGUSR2: statistics

    def _on_stop(self) -> None:
        self.request_stop()

    def _log_statistics(self) -> None:
        """SIGUSR2: the clients and the counters, now."""
        clients = self.d.clients
        log.info("statistics: %d clients%s", len(clients),
                 "".join(f"; {r.common_name or '?'} {fmt_addr(r.addr)} {r.vaddr or '-'}" for r in clients[:50]))
        log.info("statistics: held %s", ", ".join(f"{k} {v}" for k, v in self.held_counts().items()))
        self._log_drops(final=True, title="drop counters")

    def held_counts(self) -> dict[str, int]:
        """What the server holds that grows with its clients' churn (SIGUSR2 logs it): a soak
        (lab/reliability/soak_l2.py) samples it and a count that keeps growing is a leak."""
        d = self.d
        out = {"clients": len(d.clients)}
        macs = getattr(self.dp, "macs", None)
        if macs is not None:                  # dev tap (openvpn/l2switch.py)
            out.update({"MACs": len(macs), "MAC holders": len(macs.held), "server-side MACs": len(self.dp.server_side),
                        "learn-address asking": len(self.dp.asking),
                        "learn-address refusals": len(self.dp.refused)})
        bcast = getattr(self.dp, "bcast", None)
        if bcast is not None:                 # client-to-client's budgets (tun multicast, tap broadcast)
            out.update({"broadcast buckets": len(bcast.buckets), "buckets kept by name": len(bcast.left)})
        reader = self.ccd_reader
        if reader is not None:                # large ccd files read off the loop (server_files.py)
            out.update({"ccd reads waiting": reader.waiting, "ccd answers held": len(reader.ready)})
        learn = self.ops.learn
        out.update({"learn-address queues": len(learn.queues), "learn-address learned": len(learn.owner),
                    "scripts pending": self.ops.scripts.pending if self.ops.scripts is not None else 0})
        # The tables a client's departure must empty: an entry left here after every client left
        # is an address (transport or tunnel) or a peer-id held for nobody (soak37: checked after
        # NAT rebindings, blackouts and renegotiations under loss).
        pool = d.st.pool
        out.update({"transport addresses": len(d.by_addr), "pending": len(d.pending),
                    "peer-ids": len(d.by_peer_id), "heirs": len(d.heirs), "tunnel addresses": len(d.by_vaddr),
                    "pool leased": len(pool.leased) if pool is not None else 0})
        # A refused login's (or renegotiation's) remnant lives REFUSAL_HOLD s at most (refusals.py)
        out.update({"refusal remnants": len(d.refusals), "refusal timers": d.refusals.timer_entries()})
        ops = self.ops
        out.update({"client infos": len(ops.info), "traffic books": len(ops.traffic.keys),
                    "inactive checks": len(ops.inactive), "TCP streams": len(self.conns),
                    "refused TCP streams": len(self.refused_streams)})
        return out

    # ---------------------------------------------------------------- packets in
    def _on_udp_read(self) -> None:
        assert self.udp is not None
        now = self.clock()
        from_link = self.dp.from_link
        assert self.tun is not None
        to_tun, sends = self.tun.queue, self.sends
        self.d.begin_batch()                 # one reply per client per batch, its ACKs on it
        try:
            for pkt, src in self.udp.recv_batch(BATCH):
                try:
                    from_link(pkt, src, now, to_tun, sends)
                except Exception:  # noqa: BLE001 - our bug on this packet: dropped, counted
                    # Not "end the session at this source": a UDP source can be forged, and a spoofed
                    # packet that trips a bug must not end somebody else's session.
                    self.faults.internal("a client packet")
        finally:
            self.d.end_batch(now)
        if self.udp.has_spill:               # read past this wake-up's share: the rest at the next
            self.pump.again(self.udp, self._on_udp_read)
        self._take_internal_errors()

    def _on_tun_read(self) -> None:
        assert self.tun is not None
        pkts = self.tun.read_batch(BATCH)
        if pkts:
            self.dp.from_tun(pkts, self.clock(), self.sends)

    def _on_accept(self) -> None:
        lst = self.listener
        assert lst is not None
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                stream, peer = lst.accept()
            except BlockingIOError:
                return
            except OSError as e:
                name = errno.errorcode.get(e.errno or 0, str(e.errno))
                self.faults.count(f"accept {name}")
                if e.errno in _ACCEPT_RESOURCE_ERRORS:
                    # Out of descriptors: stop watching the listener for a while instead of
                    # spinning on a socket that stays readable; connections wait in the backlog.
                    self.pump.unwatch(lst)
                    self.pump.timers.arm("accept", self.clock() + ACCEPT_PAUSE, self._resume_accept)
                    return
                continue
            ip = str(peer[0])
            src = source_group(ip)
            if self.unestablished.get(src, 0) >= PER_SOURCE_CONNS:
                self.faults.count("TCP connection refused: too many without handshake from one address")
                stream.close()
                continue
            if (len(self.conns) + len(self.refused_streams) >= self.max_conns
                    and not self.refused_streams.close_oldest() and not self._evict_one()):
                self.faults.count("TCP connection refused: too many connections")
                stream.close()
                continue
            key = StreamKey(next(self._conn_ids), ip)
            link = TcpLink(stream)
            self.conns[key] = link
            self.conn_addrs[key] = peer
            self.unestablished[src] = self.unestablished.get(src, 0) + 1
            self.ops.stream_accepted(key, self.d.accepted(key))     # numbered now, as 2.6 does
            if self.portshare is not None:
                self.sniffing[key] = bytearray()     # OpenVPN or not: its first bytes say (_sniff)
            self.pump.watch(link, *self._conn_handlers(key, link))
            self.pump.timers.arm(("hand-window", key), self.clock() + self.st.hand_window,
                                 lambda k=key: self._hand_window_over(k))
            log.info("TCP connection from %s (%s)", fmt_addr(peer), key)

    def _evict_one(self) -> bool:
        """Full: the oldest connection that has not completed a handshake makes room (idle
        connections must not lock real clients out), but never one whose peer has shown a
        verified certificate: a client whose login waits for its verdict (management-client-auth,
        an auth script, a second factor) was the oldest such connection, and anyone opening
        connections from a few dozen addresses cut it off. False (the newcomer refused) when
        every connection is a client or a verified peer."""
        for key in self.conns:
            if key not in self.established_conns and not self._verified_peer(key):
                self.faults.count("TCP connection without handshake evicted (server full)")
                self._end_peer(key, "evicted: the server is full")
                return True
        return False

    def _verified_peer(self, key: StreamKey) -> bool:
        """The connection's session has a peer certificate that passed the TLS checks."""
        rec = self.d.by_addr.get(key)
        try:
            return rec is not None and rec.session.peer_certificate is not None
        except Exception:  # noqa: BLE001 - an unreadable session is no reason to keep the connection
            return False

    def _resume_accept(self) -> None:
        if self.listener is not None and self.result is None:
            self.pump.watch(self.listener, self._on_accept)

    def _hand_window_over(self, key: StreamKey) -> None:
        if key in self.conns and key not in self.established_conns:
            self.faults.count("TCP connection without handshake closed")
            self._end_peer(key, "no handshake within hand-window")

    def _reconcile(self) -> None:
        """What our bug in a release left held by no session, given back (ServerDispatcher.reconcile):
        counted, and one line when there was any."""
        try:
            pids, addrs, books = self.d.reconcile()
        except Exception:  # noqa: BLE001
            self.faults.internal("reconciling the peer-ids, address pools, routes, MACs and admission counts")
            return
        if pids or addrs or books:
            self.faults.count("internal error: held by no session, given back", pids + addrs + books)
            log.warning("after an internal error: %d peer-id(s), %d pool address(es) and %d route, admission "
                        "count or MAC entry(ies) that no session held given back", pids, addrs, books)

    def _conn_handlers(self, key: StreamKey, link: TcpLink) -> tuple[Callable[[], None], Callable[[], None]]:
        """The pump's read and write handlers for one client connection, bound to its socket as
        well as its key. Why: a socket our bug left watched after its connection was forgotten
        (a fault midway through closing it) stayed readable -- the client's next bytes, its
        close -- and a handler that found no connection under its key returned without reading:
        the level-triggered loop woke for it at once, for ever (100% CPU). Such a socket is now
        closed at its first wake-up."""
        def read() -> None:
            if self.conns.get(key) is link:
                self._on_conn_read(key)
            else:
                self._stale_conn(link)

        def write() -> None:
            if self.conns.get(key) is link:
                self._on_conn_write(key)
            else:
                self._stale_conn(link)
        return read, write

    def _stale_conn(self, link: TcpLink) -> None:
        """A forgotten connection's socket, still watched (see _conn_handlers): closed now, counted."""
        self.faults.count("internal error: a finished connection's socket closed late")
        self.pump.unwatch(link)
        link.close()

    def _on_conn_read(self, key: StreamKey) -> None:
        link = self.conns.get(key)
        if link is None:
            return
        if key in self.sniffing and not self._sniff(key, link):
            return
        try:
            pkts = link.recv_packets(BATCH)
        except (ConnectionError, OSError) as e:
            log.info("%s: %s", key, e or "closed")
            self._end_peer(key)
            return
        now = self.clock()
        assert self.tun is not None
        closed = self.d.closed_streams
        self.d.begin_batch()                 # as for UDP: one reply per read, its ACKs on it
        try:
            for pkt in pkts:
                try:
                    self.dp.from_link(pkt, key, now, self.tun.queue, self.sends)
                except Exception:  # noqa: BLE001 - our bug on this client's packet: its connection ends
                    self.faults.internal("a client packet")
                    self.d.end_batch(now)
                    self._end_peer(key)
                    return
                if key in closed:
                    # Its one session is over: so is the connection, but only after its last
                    # word (AUTH_FAILED, the ACKs) is written: _drain_events closes it, after
                    # _flush_sends (told AUTH_FAILED: once the client closes, refused_streams.py). Closed here at once, that was lost, and a client refused
                    # in-band reconnected for ever instead of stopping. Nothing more is read
                    # from it meanwhile (the dispatcher drops what a closed stream sends).
                    self.d.end_batch(now)
                    return
        finally:
            self.d.end_batch(now)              # a no-op when already ended above
        self._take_internal_errors()
        if link.has_pending and key in self.conns:
            self.pump.again(link, lambda: self._on_conn_read(key))

    def _sniff(self, key: StreamKey, link: TcpLink) -> bool:
        """port-share: read a new connection's first bytes until OpenVPN's rule decides
        (openvpn/portshare.py); True once it is an OpenVPN client (its bytes framed as usual).
        A foreign one is handed to the relay and leaves the server's connections."""
        head = self.sniffing[key]
        try:
            data = link.t.sock.recv(SNIFF_READ)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            log.info("%s: %s", key, e)
            self._end_peer(key)
            return False
        if not data:
            log.info("%s: connection closed by peer", key)
            self._end_peer(key)
            return False
        head += data
        verdict = decide(bytes(head))
        if verdict is Verdict.UNDECIDED:
            return False                      # one byte so far: hand-window bounds the wait
        del self.sniffing[key]
        if verdict is Verdict.OPENVPN:
            try:
                link.feed(bytes(head))
            except ConnectionError as e:
                log.info("%s: %s", key, e)
                self._end_peer(key)
                return False
            return True
        self._hand_over(key, link, bytes(head))
        return False

    def _hand_over(self, key: StreamKey, link: TcpLink, head: bytes) -> None:
        """A foreign connection: out of the server's books (no session, no hand-window, no
        per-source handshake count), its socket kept open for the relay."""
        assert self.portshare is not None
        peer = self.conn_addrs.pop(key, None) or (key.ip, 0)
        self.conns.pop(key, None)
        self.pump.timers.cancel(("hand-window", key))
        self.pump.unwatch(link)
        for step in (lambda: self.ops.stream_gone(key), lambda: self._one_less_unestablished(key.ip),
                     lambda: self.d.stream_closed(key)):
            try:
                step()
            except Exception:  # noqa: BLE001 - our bug in one step (as _close_conn); the relay still gets it
                self.faults.internal("handing a connection to port-share")
        log.debug("%s: not an OpenVPN client: relayed (port-share)", key)    # counted: the drop counters
        self.portshare.adopt(link.t, peer, head)

    def _on_conn_write(self, key: StreamKey) -> None:
        link = self.conns.get(key)
        if link is None:
            return
        try:
            if link.flush():
                self.pump.want_write(link, False, *self._conn_handlers(key, link))
        except (ConnectionError, OSError) as e:
            log.info("%s: %s", key, e)
            self._end_peer(key)

    # ---------------------------------------------------------------- peers ending
    def _end_peer(self, addr, why: str | None = None) -> None:
        """End one client's session (and, on TCP, its connection); nobody else is touched."""
        try:
            if not isinstance(addr, StreamKey):
                self.d.disconnect(addr)
        except Exception:  # noqa: BLE001
            self.faults.internal("ending a client session")
        if isinstance(addr, StreamKey):
            if why:
                log.info("%s: %s", addr, why)
            self._close_conn(addr)

    def _close_conn(self, key: StreamKey, refused: bool = False) -> None:
        """Close one TCP connection and forget it everywhere. Each step on its own guard, as the
        dispatcher's _forget: a bug of ours in one (the status books' stream_gone, the session's
        end) skipped the rest -- the socket stayed open and watched, the client connected to a
        server that no longer read it, until its ping-restart (lab/reliability/fault_sweep.py)."""
        link = self.conns.pop(key, None)
        self.conn_addrs.pop(key, None)
        self.sniffing.pop(key, None)
        self.pump.timers.cancel(("hand-window", key))
        for step in self._close_steps(key, link, refused):
            try:
                step()
            except Exception:  # noqa: BLE001 - our bug in one step; the others still run
                self.faults.internal("closing a client's connection")

    def _close_steps(self, key: StreamKey, link: TcpLink | None, refused: bool = False) -> list:
        """The parts of _close_conn that call other objects (each may raise: see _close_conn);
        the socket's own close last but one, so nothing after it can keep it open. `refused`:
        the socket handed to refused_streams instead, which closes it within REFUSAL_HOLD s."""
        def counts() -> None:
            if key in self.established_conns:
                self.established_conns.discard(key)
            elif link is not None:
                self._one_less_unestablished(key.ip)

        steps = [lambda: self.d.stream_closed(key), lambda: self.ops.stream_gone(key), counts]
        if link is not None:
            def unwatch() -> None:
                self.pump.unwatch(link)

            def stats() -> None:
                for k, v in link.errors.items():
                    self.faults.count(k, v)
                if link.t.stats.get("dropped"):
                    self.faults.count("TCP writes dropped (client not reading)", link.t.stats["dropped"])
            def let_go() -> None:
                try:
                    self.refused_streams.keep(key, link)
                except Exception:
                    link.close()            # our bug: the socket goes at once rather than never
                    raise

            steps += [unwatch, let_go if refused else link.close, stats]
        return steps

    def _one_less_unestablished(self, ip: str) -> None:
        src = source_group(ip)
        n = self.unestablished.get(src, 0) - 1
        if n > 0:
            self.unestablished[src] = n
        else:
            self.unestablished.pop(src, None)

    def attach_ccd_reader(self, inline: bool = False) -> None:
        """Give the settings' client-config-dir loader (at start, after a reload) the worker that
        reads its large files; made, and watched, the first time one is needed."""
        files = self.st.ccd
        if not isinstance(files, CcdFiles):
            return
        if self.ccd_reader is None:
            self.ccd_reader = CcdReader(inline=inline)
            if not inline:
                self.pump.watch(self.ccd_reader, self.ccd_reader.drain)
        files.reader = self.ccd_reader

    def _ccd_files_read(self) -> None:
        """Large ccd files read by the worker: the clients waiting on them go on (ccd_loaded),
        then the answers are dropped (the next connect reads the file again, as OpenVPN's)."""
        reader = self.ccd_reader
        if reader is None:
            return
        paths = reader.take_finished()
        if not paths:
            return
        try:
            self.d.ccd_loaded(paths, self.clock())
        except Exception:  # noqa: BLE001
            self.faults.internal("a client's client-config-dir file")
        finally:
            reader.forget(paths)
        self._take_internal_errors("a client's client-config-dir file")

    # ---------------------------------------------------------------- after each wake-up
    def _after_wake(self) -> None:
        if self.dp.failed:
            failed, self.dp.failed = self.dp.failed, []
            for rec, exc in failed:
                self.faults.internal_exc("sealing for a client", exc)
                self._end_record(rec)
        if self.tun is not None:
            self.tun.flush()
        if self.auth is not None:
            now = self.clock()
            for (rec, key_id, check), v in self.auth.take_results(wanted=lambda key: key[0].alive):
                if not self.ops.check_done(rec, key_id, check, v):     # (management-client-auth decides with it)
                    self.d.auth_result(rec, key_id, v.ok, now, client_reason=v.client_reason, why=v.why, check=check,
                                       temporary=v.temporary)
            asked, self.auth.pending_requests = self.auth.pending_requests, []
            for (rec, key_id, _check), (timeout, text) in asked:
                # The command's auth_pending_file: the client is told to wait and what to do.
                if not self.d.auth_pending(rec, key_id, text, timeout, now) and rec.alive:
                    log.info("%s: pending auth not told (%d bytes of text, or no login waits)", rec.common_name,
                             len(text))
            nxt = self.auth.next_poll()
            if nxt is not None:                     # a command's deferred verdict: read its file again
                self.pump.timers.arm("auth-deferred", nxt, lambda: None)
        self._ccd_files_read()
        self.ops.after_wake()
        self._take_internal_errors("a client's client-connect verdict")    # connect_result's bug
        self._flush_sends()
        self._drain_events()
        self._flush_sends()          # what the events caused (refused logins answered at once)
        if self._restart_deadline is not None and self.result is None and self.d.restarts_acked():
            self._stop_now()         # every client acknowledged our RESTART: no need to wait on
            return
        self.pump.timers.arm("engine", self.d.next_deadline(), self._on_engine_timer)

    def _on_engine_timer(self) -> None:
        try:
            self.d.handle_timer(self.clock())
        except Exception:  # noqa: BLE001
            self.faults.internal("the session timers")
        self._take_internal_errors("a client's timer")

    def _take_internal_errors(self, where: str = "a client's session") -> None:
        """Sessions the dispatcher caught raising (our bug): each is logged, under the step that
        raised (the dispatcher's note; `where` only names what this wake-up was doing), and that
        client ends."""
        for err in self.d.take_internal_errors():
            self.faults.internal_exc(getattr(err, "where", None) or where, err.exc)
            self._end_record(err.rec)

    def _end_record(self, rec) -> None:
        """End the session of `rec` (our bug in it), and on TCP its connection. Not _end_peer(rec.addr):
        over UDP a restart waits under the address of the established client it would replace
        (ServerDispatcher.pending), and a fault in the newcomer must not end that client."""
        if isinstance(rec.addr, StreamKey):
            self._end_peer(rec.addr)
            return
        try:
            self.d.end(rec, "internal error")
        except Exception:  # noqa: BLE001
            self.faults.internal("ending a client session")

    def _flush_sends(self) -> None:
        """This wake-up's datagrams out, address by address, and the queue emptied whatever
        happens on the way. Why the `finally`: a send that raised (our bug, a MemoryError) left
        the whole queue for the next wake-up, which sent the addresses before it again (their
        clients saw replays) -- and, were it to keep raising, at every wake-up while the queue
        grew. What had not gone out is lost with it, as a datagram on the way."""
        sends = self.sends
        try:
            for p, a in self.d.take_outgoing():
                sends.setdefault(a, []).append(p)
            if not sends:
                return
            if self.udp is not None:
                send = self.udp.send_batch
                for a, ps in sends.items():
                    send(ps, a)
            else:
                for cid, ps in sends.items():
                    link = self.conns.get(cid)
                    if link is None:
                        continue
                    try:
                        link.send_packets(ps)
                    except (ConnectionError, OSError) as e:
                        log.info("%s: %s", cid, e)
                        self._end_peer(cid)
                        continue
                    if link.wants_write:
                        self.pump.want_write(link, True, *self._conn_handlers(cid, link))
        finally:
            sends.clear()

    def _drain_events(self) -> None:
        """Each event logged and acted on, each under its own guard (counted as an internal
        error). Why: a bug on one event -- its log line, a script's hand-over -- raised out of
        the loop here and took the rest of the batch with it (other clients' logins, closings);
        now it costs that event only, and a log line that fails still lets its event act."""
        d = self.d
        while d.events:
            rec, e = d.events.popleft()
            try:
                log_server_event(rec, e)
            except Exception:  # noqa: BLE001 - our bug: the line is lost, the event still acts
                self.faults.internal("logging a client's event")
            try:
                self._act_on(rec, e)
            except Exception:  # noqa: BLE001 - our bug on this event only; the batch goes on
                self.faults.internal("a client's event")

    def _act_on(self, rec, e: object) -> None:
        self.ops.on_event(rec, e)
        if isinstance(e, ev.AuthRequested):
            self._check_password(rec, e)
        key = rec.addr
        if isinstance(key, StreamKey):
            if isinstance(e, ev.TunnelUp) and key in self.conns and key not in self.established_conns:
                self.established_conns.add(key)
                self._one_less_unestablished(key.ip)
            elif isinstance(e, ev.SessionClosed) and key in self.conns and self.d.record(key) is None:
                # The connection's (only) session is over. Told AUTH_FAILED, the client gets time
                # to read it before the socket goes (refused_streams.py).
                self._close_conn(key, refused=rec.session.told_refused)

    def _check_password(self, rec, e: "ev.AuthRequested") -> None:
        """Hand the check to the worker; a refused one (rate, queue) fails the login at once."""
        source = rec.addr[0] if isinstance(rec.addr, tuple) else rec.addr.ip
        if self.ops.client_auth is not None:                # management-client-auth
            if not e.username and not self.opts.auth_user_pass_optional:
                # As OpenVPN 2.6 (key_method_2_read): credentials are required, unless
                # auth-user-pass-optional hands a login without them to the management client.
                self.d.auth_result(rec, e.key_id, False, self.clock(), why="the client sent no username", check=e.check)
                return
            if not self.ops.ask_management(rec, e, check_pending=self.auth is not None):
                self.faults.count("login refused: too many waiting for the management client")
                self.d.auth_result(rec, e.key_id, False, self.clock(), temporary=True, check=e.check)
                return
            if self.auth is None:
                return
        env = None
        if self.opts.auth_user_pass_verify_script or self.opts.auth_pam is not None:
            env = self.ops.user_pass_env(rec)
            if e.session_state is not None:          # auth-gen-token (add_session_token_env)
                env["session_state"], env["session_id"] = e.session_state, e.session_id or ""
        why = "no password checker" if self.auth is None else \
            self.auth.submit((rec, e.key_id, e.check), str(source), e.username, e.password, e.common_name, env,
                             cert_identity=identity_of_cert(rec.session.peer_certificate))
        if why is not None:
            self.faults.count(why)
            if self.ops.client_auth is not None:
                w = self.ops.client_auth.for_key(rec, e.key_id, e.check)
                if w is not None:
                    self.ops.client_auth.take(w, now=self.clock())
            self.d.auth_result(rec, e.key_id, False, self.clock(), temporary=True, check=e.check)

    def _log_drops(self, final: bool = False, title: str | None = None) -> None:
        if self.d.suspect:
            self._reconcile()
        bcast = getattr(self.dp, "bcast", None)
        if bcast is not None and bcast.left:
            bcast.prune(self.clock())         # kept buckets full again: nothing left to carry
        if self.d.departed:
            self.d.forget_departed(self.clock())
        extra = self.d.drop_counters()
        for k, v in self.dp.stats.items():
            extra[k] = extra.get(k, 0) + v
        if self.udp is not None:
            for k, v in self.udp.errors.items():
                extra[k] = extra.get(k, 0) + v
        self.faults.maybe_log(self.clock(), extra, final=final, title=title)
        if not final:
            self.pump.timers.arm("drops", self.clock() + DROP_LOG_EVERY, self._log_drops)

