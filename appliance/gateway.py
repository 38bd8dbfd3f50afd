"""THE pump: the one place where engine calls meet I/O (TUN, sockets, clock, signals, netlink).

Data flow is one-way through the layers: the TUN and the link are read in batches (up to 64
packets per wake-up), each batch goes through the Session, and what comes out is written in
batches. Control-plane results come out of the Session as events, which this module turns into
TUN/route changes and log lines. The clock is read here and passed down.
"""
from __future__ import annotations

import logging
import random
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field

from .openvpn import events as ev
from .openvpn.options import Options, Remote
from .openvpn.profile import client_session_config
from .openvpn.session import Session
from .router.routes import RouteSet
from .tun.mss import clamp_mss, mss_for
from .transport.link import TcpLink, UdpLink
from .transport.tcp import TcpTransport
from .transport.udp import UdpTransport

log = logging.getLogger("vpn-appliance")

BATCH = 64


@dataclass
class Signals:
    """SIGINT/SIGTERM wake the select loop through a socketpair (signal.set_wakeup_fd)."""
    stop: bool = False
    rfd: socket.socket | None = None
    wfd: socket.socket | None = None
    old: dict = field(default_factory=dict)

    def install(self) -> None:
        self.rfd, self.wfd = socket.socketpair()
        self.rfd.setblocking(False)
        self.wfd.setblocking(False)
        signal.set_wakeup_fd(self.wfd.fileno())
        for s in (signal.SIGINT, signal.SIGTERM):
            self.old[s] = signal.signal(s, self._handler)

    def _handler(self, signum, frame) -> None:  # noqa: ANN001
        self.stop = True

    def drain(self) -> None:
        try:
            while self.rfd.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def uninstall(self) -> None:
        signal.set_wakeup_fd(-1)
        for s, h in self.old.items():
            signal.signal(s, h)
        for s in (self.rfd, self.wfd):
            if s is not None:
                s.close()


class TunnelNetwork:
    """The TUN device and the addresses/routes pushed by the server; kept across reconnects
    (persist-tun), so LAN traffic is dropped while the tunnel is down, never sent in clear."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.tun = None
        self.routes = None
        self.applied: tuple | None = None

    def apply(self, pushed, remote_ip: str) -> None:
        from .router.links import configure_tun
        from .tun.device import TunDevice
        if pushed is None or pushed.ifconfig is None:
            raise RuntimeError("server pushed no ifconfig")
        mtu = pushed.tun_mtu or self.opts.tun_mtu
        if self.tun is None:
            name = self.opts.dev if self.opts.dev not in ("tun", None) else "tun%d"
            self.tun = TunDevice(name, vnet_hdr=True, mtu=mtu)
            log.info("opened TUN device %s (offload %s)", self.tun.name, "on" if self.tun.vnet_hdr else "off")
        key = (pushed.ifconfig, pushed.topology, tuple(pushed.routes), tuple(pushed.redirect_gateway or ()), mtu,
               pushed.ifconfig_ipv6, tuple(pushed.routes_ipv6))
        if key == self.applied:
            return
        if self.routes is not None:
            self.routes.remove_all()
        # The paths that exist without the tunnel (OpenVPN's net_gateway), looked up before any
        # tunnel route goes in: excluded routes and the way to the server use them.
        ng4 = RouteSet.net_gateway(False, not_dev=self.tun.name)
        ng6 = RouteSet.net_gateway(True, not_dev=self.tun.name)
        local, second = pushed.ifconfig
        if pushed.topology == "subnet":
            prefix = _mask_to_prefix(second)
            configure_tun(self.tun.name, local, prefix, mtu)
        else:
            configure_tun(self.tun.name, local, 32, mtu, peer=second)
        log.info("tun %s: address %s %s (topology %s), mtu %d", self.tun.name, local, second, pushed.topology, mtu)
        has6 = False
        if pushed.ifconfig_ipv6 is not None:
            from pyroute2 import IPRoute
            addr6, _, plen = pushed.ifconfig_ipv6[0].partition("/")
            with IPRoute() as ipr:
                ipr.addr("add", index=ipr.link_lookup(ifname=self.tun.name)[0], address=addr6,
                         prefixlen=int(plen or 64), flags=0x02)   # IFA_F_NODAD
            log.info("tun %s: IPv6 address %s", self.tun.name, pushed.ifconfig_ipv6[0])
            has6 = True
        self.routes = RouteSet()
        if not self.opts.route_nopull:
            self._pushed_routes(pushed, remote_ip, ng4, ng6, has6)
        for net, mask, _gw, metric in getattr(self.opts, "route", []) or []:
            self.routes.add(net, _mask_to_prefix(mask or "255.255.255.255"), dev=self.tun.name, metric=metric)
        if pushed.dns:
            log.info("server pushed DNS %s (reported, not applied on this host)", ", ".join(pushed.dns))
        self.applied = key

    def _pushed_routes(self, pushed, remote_ip: str, ng4, ng6, has6: bool) -> None:
        """Routes as OpenVPN applies them: `net_gateway` ones go the pre-tunnel way, a pushed
        default route is split in two halves (the real default stays, as with def1), and
        redirect-gateway honours its `ipv6`, `!ipv4` and `block-local` flags."""
        tun, routes = self.tun.name, self.routes
        flags = pushed.redirect_gateway if pushed.redirect_gateway is not None else self.opts.redirect_gateway
        flags = set(flags) if flags is not None else None
        redirect4 = flags is not None and "!ipv4" not in flags
        redirect6 = flags is not None and "ipv6" in flags
        for net, mask, gw, metric in pushed.routes:
            prefix = _mask_to_prefix(mask)
            if gw == "net_gateway":
                if ng4 is None:
                    log.warning("route %s/%d net_gateway: there is no default route to use; skipped", net, prefix)
                    continue
                routes.add_via(net, prefix, ng4, metric)
                log.info("route %s/%d via the pre-tunnel gateway %s", net, prefix, ng4[0] or "(link)")
            elif prefix == 0:
                redirect4 = True          # a pushed default route: the two halves, like def1
            else:
                routes.add(net, prefix, dev=tun, metric=metric)
                log.info("route %s/%d dev %s", net, prefix, tun)
        for net6, gw6 in pushed.routes_ipv6:
            n6, _, p6 = net6.partition("/")
            plen6 = int(p6 or 128)
            if gw6 == "net_gateway_ipv6":
                if ng6 is None:
                    log.warning("route-ipv6 %s net_gateway_ipv6: there is no IPv6 default route; skipped", net6)
                    continue
                routes.add_via(n6, plen6, ng6)
                log.info("route-ipv6 %s via the pre-tunnel gateway %s", net6, ng6[0] or "(link)")
            elif not has6:
                log.warning("route-ipv6 %s pushed without ifconfig-ipv6; skipped", net6)
            elif plen6 == 0:
                redirect6 = True
            else:
                routes.add(n6, plen6, dev=tun)
                log.info("route-ipv6 %s dev %s", net6, tun)
        if redirect4:
            routes.add_redirect_gateway_def1(tun, remote_ip)
            log.info("redirect-gateway def1 via %s (server %s kept on the old default route)", tun, remote_ip)
        if redirect6:
            if has6:
                routes.add_redirect_gateway_ipv6(tun, remote_ip)
                log.info("IPv6 redirected: ::/1 and 8000::/1 via %s", tun)
            else:
                log.warning("redirect-gateway ipv6 pushed without ifconfig-ipv6: IPv6 is not redirected")
        if redirect4 and flags and "block-local" in flags:
            net = routes.block_local(tun, ng4) if ng4 is not None else None
            if net is None:
                log.warning("redirect-gateway block-local: no local network found to block")
            else:
                log.info("redirect-gateway block-local: %s only through %s (its gateway kept direct)", net, tun)

    def close(self) -> None:
        if self.routes is not None:
            try:
                self.routes.remove_all()
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.warning("removing routes: %s", e)
            self.routes = None
        if self.tun is not None:
            self.tun.close()
            self.tun = None


def fmt_addr(addr) -> str:
    """198.18.0.1:1194, or [2001:db8::1]:1194 for IPv6."""
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def _mask_to_prefix(mask: str) -> int:
    if mask.isdigit():
        return int(mask)
    return sum(bin(int(o)).count("1") for o in mask.split("."))


def _resolve(remote: Remote, family: str | None = None) -> tuple[str, int]:
    fam = socket.AF_INET6 if family == "6" else socket.AF_INET if family == "4" else socket.AF_UNSPEC
    infos = socket.getaddrinfo(remote.host, remote.port, fam,
                               socket.SOCK_DGRAM if remote.proto == "udp" else socket.SOCK_STREAM)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)   # IPv4 first unless the profile says udp6/tcp6
    if not infos:
        raise OSError(f"cannot resolve {remote.host}")
    return infos[0][4][:2]


class ClientGateway:
    """The host client: connect, bring the tunnel up, move packets, reconnect, leave cleanly."""

    def __init__(self, opts: Options, username: str = "", password: str = "", advertise_ekm: bool = True) -> None:
        self.opts = opts
        self.advertise_ekm = advertise_ekm
        self.username = username
        self.password = password
        self.sig = Signals()
        self.net = TunnelNetwork(opts)
        self.session: Session | None = None
        self.stats = {"tun_in": 0, "tun_out": 0, "link_in": 0, "link_out": 0}

    def run(self) -> int:
        self.sig.install()
        try:
            return self._run()
        finally:
            self.net.close()
            self.sig.uninstall()

    def _remotes(self) -> list[Remote]:
        rs = list(self.opts.remotes)
        if self.opts.remote_random:
            random.shuffle(rs)
        return rs

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.sig.stop:
            left = end - time.monotonic()
            if left <= 0:
                return
            sel = selectors.DefaultSelector()
            sel.register(self.sig.rfd, selectors.EVENT_READ)
            sel.select(left)
            sel.close()
            self.sig.drain()

    def _run(self) -> int:
        remotes = self._remotes()
        attempt = 0
        delay = self.opts.connect_retry
        while not self.sig.stop:
            remote = remotes[attempt % len(remotes)]
            attempt += 1
            result = self._connect_once(remote)
            if result == "stop" or self.sig.stop:
                return 0
            if result == "halt":
                return 1
            if result == "up-then-lost":
                delay = self.opts.connect_retry
            if attempt % len(remotes) == 0 or result == "up-then-lost":
                log.info("restarting in %.0f s", delay)
                self._sleep(delay)
                delay = min(delay * 2, self.opts.connect_retry_max)
        return 0

    def _open_link(self, remote: Remote, timeout: float):
        addr = _resolve(remote, self.opts.proto_family)
        if remote.proto == "tcp":
            log.info("connecting to %s over TCP", fmt_addr(addr))
            return TcpLink(TcpTransport.connect(addr, timeout)), addr
        log.info("connecting to %s over UDP", fmt_addr(addr))
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        return UdpLink(UdpTransport(None, addr, family=fam)), addr

    def _connect_once(self, remote: Remote) -> str:
        poll = self.opts.server_poll_timeout
        try:
            link, addr = self._open_link(remote, poll)
        except (OSError, ConnectionError) as e:
            log.warning("cannot reach %s:%d (%s): %s", remote.host, remote.port, remote.proto, e)
            return "retry"
        cfg = client_session_config(self.opts, remote.proto, self.username, self.password, self.advertise_ekm)
        now = time.monotonic()
        s = Session(cfg, now)
        self.session = s
        s.start(now)
        try:
            return self._pump(link, s, addr, now + poll)
        finally:
            link.close()
            self.session = None

    def _pump(self, link, s: Session, addr, up_deadline: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(link.fileno(), selectors.EVENT_READ, "link")
        sel.register(self.sig.rfd, selectors.EVENT_READ, "sig")
        tun_registered = False
        was_up = False
        encrypt = s.encrypt
        receive = s.receive
        mss = 1400
        try:
            while True:
                out = s.take_outgoing()
                if out:
                    link.send_packets(out)
                if self.sig.stop:
                    log.info("stopping: sending exit notification")
                    s.close(time.monotonic())
                    link.send_packets(s.take_outgoing())
                    link.flush()
                    return "stop"
                verdict = self._events(s, addr)
                if verdict is not None:
                    return "up-then-lost" if (verdict == "retry" and was_up) else verdict
                if s.established:
                    if not was_up and s.send_key is not None:
                        mss = mss_for(self.opts.mssfix or 1492, s.send_key.overhead(), link is not None and
                                      isinstance(link, TcpLink))
                    was_up = True
                    if not tun_registered and self.net.tun is not None:
                        sel.register(self.net.tun.fileno(), selectors.EVENT_READ, "tun")
                        tun_registered = True
                now = time.monotonic()
                dl = s.next_deadline()
                if not was_up:
                    if now >= up_deadline:
                        log.warning("no answer from %s:%d within %.0f s (server-poll-timeout)", addr[0], addr[1],
                                    self.opts.server_poll_timeout)
                        return "retry"
                    dl = up_deadline if dl is None else min(dl, up_deadline)
                timeout = None if dl is None else max(0.0, dl - now)
                if link.wants_write:
                    sel.modify(link.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE, "link")
                for key, mask in sel.select(timeout):
                    now = time.monotonic()
                    what = key.data
                    if what == "link":
                        if mask & selectors.EVENT_WRITE:
                            if link.flush():
                                sel.modify(link.fileno(), selectors.EVENT_READ, "link")
                        if mask & selectors.EVENT_READ:
                            try:
                                pkts = link.recv_packets()
                            except (ConnectionError, OSError) as e:
                                log.warning("link to %s:%d lost: %s", addr[0], addr[1], e)
                                return "retry"
                            tun = self.net.tun
                            for p in pkts:
                                try:
                                    pts = receive(p, now)
                                    if pts and tun is not None:
                                        for pt in pts:
                                            if pt[9] == 6 or pt[6] == 6:
                                                clamp_mss(pt, mss)
                                            tun.queue(pt)
                                except Exception:  # noqa: BLE001 - a packet must never take the gateway down
                                    self._internal_error()
                            if tun is not None:
                                tun.flush()      # one burst per wake-up, TCP segments merged
                    elif what == "tun":
                        pkts = self.net.tun.read_packets(BATCH)
                        for p in pkts:
                            if p[9] == 6 or p[6] == 6:
                                clamp_mss(p, mss)
                        if pkts:
                            wire = [w for w in map(encrypt, pkts) if w is not None]
                            link.send_packets(wire)
                            s.note_sent(now)
                    else:
                        self.sig.drain()
                now = time.monotonic()
                dl = s.next_deadline()
                if dl is not None and now >= dl:
                    s.handle_timer(now)
        finally:
            sel.close()

    def _internal_error(self) -> None:
        """Our own bug on one packet: drop it, count it, log the first few with a traceback."""
        n = self.stats["internal_errors"] = self.stats.get("internal_errors", 0) + 1
        if n <= 5 or n % 1000 == 0:
            log.exception("dropped a packet after an internal error (%d so far)", n)

    def _events(self, s: Session, addr) -> str | None:
        while s.events:
            e = s.events.popleft()
            if isinstance(e, ev.HandshakeCompleted):
                log.info("TLS handshake done (key %d): %s %s, server certificate CN=%s", e.key_id, e.tls_version,
                         e.tls_cipher, e.peer_common_name)
            elif isinstance(e, ev.TunnelUp):
                p = e.pushed
                log.info("server pushed: %s", _push_summary(p))
                try:
                    self.net.apply(p, addr[0])
                except Exception as ex:  # noqa: BLE001 - report and stop: we cannot route
                    log.error("cannot configure the tunnel: %s", ex)
                    return "halt"
                log.info("tunnel up: %s, cipher %s, key derivation %s, peer-id %s", self.net.tun.name, e.cipher,
                         e.key_derivation, e.peer_id)
            elif isinstance(e, ev.KeyRenegotiated):
                log.info("data channel key renegotiated (key id %d, %s)", e.key_id, e.cipher)
            elif isinstance(e, ev.AuthFailed):
                log.error("authentication failed: %s", e.message)
            elif isinstance(e, ev.Warning):
                log.warning("%s", e.message)
            elif isinstance(e, ev.SessionClosed):
                if e.restart:
                    log.warning("connection reset: %s", e.reason)
                    return "retry"
                log.error("session ended: %s", e.reason)
                return "halt"
        return None


def _push_summary(p) -> str:
    if p is None:
        return "nothing"
    parts = []
    if p.ifconfig:
        parts.append(f"ifconfig {p.ifconfig[0]} {p.ifconfig[1]}")
    parts.append(f"topology {p.topology}")
    for net, mask, _g, _m in p.routes:
        parts.append(f"route {net} {mask}")
    if p.redirect_gateway is not None:
        parts.append("redirect-gateway " + " ".join(p.redirect_gateway))
    if p.ping:
        parts.append(f"ping {p.ping}")
    if p.ping_restart:
        parts.append(f"ping-restart {p.ping_restart}")
    if p.ignored:
        parts.append("ignored: " + "; ".join(p.ignored))
    if p.filtered:
        parts.append("dropped by pull-filter: " + "; ".join(p.filtered))
    return ", ".join(parts)
