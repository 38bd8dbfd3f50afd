"""The server pump: one TUN, one UDP socket (or a TCP listener with many streams), many clients.

Same shape as gateway.py: batches in, the engine (ServerDispatcher) in the middle, batches out.
Routing decisions use the dispatcher's tables: a TUN packet goes to the client owning its
destination (pool address or iroute); a client's packet for another client is delivered inside
the server when client-to-client is on, and dropped otherwise.
"""
from __future__ import annotations

import logging
import os
import socket
import selectors
import time

from .gateway import BATCH, Signals, fmt_addr
from .openvpn import events as ev
from .openvpn.options import Options
from .openvpn.profile import server_settings
from .openvpn.server import ServerDispatcher
from .tun.mss import clamp_mss, mss_for

log = logging.getLogger("vpn-appliance")


def _ccd_loader(directory: str):
    from .openvpn.options import parse_ccd

    def load(cn: str):
        if not cn or "/" in cn or cn.startswith("."):
            return None
        path = os.path.join(directory, cn)
        try:
            with open(path, encoding="utf-8") as f:
                return parse_ccd(f.read(), path)
        except FileNotFoundError:
            return None
    return load


def drop_counters(d: ServerDispatcher, extra: dict) -> dict[str, int]:
    """Everything refused so far: stateless checks, per-client sessions, routing."""
    out: dict[str, int] = dict(d.stats)
    out.pop("stateless reset answered", None)
    for rec in d.clients:
        for k, v in rec.session.stats.items():
            out[k] = out.get(k, 0) + v
    for k, v in d.retired_stats.items():
        out[k] = out.get(k, 0) + v
    for k, v in extra.items():
        if v:
            out[k] = out.get(k, 0) + v
    return out


class ServerGateway:
    LOG_DROPS_EVERY = 5.0

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        passdb = None
        if opts.auth_user_pass_verify:
            with open(opts.auth_user_pass_verify[0], encoding="utf-8") as f:
                passdb = f.read()
        ccd = _ccd_loader(opts.client_config_dir) if opts.client_config_dir else None
        self.st = server_settings(opts, ccd, passdb)
        self.sig = Signals()
        self.tun = None
        self.drops = {"c2c refused": 0, "no route": 0}
        # AEAD with P_DATA_V2 adds 24 bytes; CBC more. Clamp for the larger so every client fits.
        self.mss = mss_for(opts.mssfix or 1492, 24 if all(c.endswith(("GCM", "POLY1305")) for c in opts.data_ciphers)
                           else 80, opts.proto == "tcp")

    def _open_tun(self) -> None:
        from .router.links import configure_tun
        from .tun.device import TunDevice
        name = self.opts.dev if self.opts.dev not in ("tun", None) else "tun%d"
        self.tun = TunDevice(name, vnet_hdr=True, mtu=self.opts.tun_mtu)
        from .gateway import _mask_to_prefix
        from .router.routes import RouteSet
        pool = self.st.pool
        self.routes = RouteSet()
        if pool is not None:
            if pool.topology == "subnet":
                configure_tun(self.tun.name, pool.server_ip, pool.net.prefixlen, self.opts.tun_mtu)
            else:
                peer = str(pool.net.network_address + 2)
                configure_tun(self.tun.name, pool.server_ip, 32, self.opts.tun_mtu, peer=peer)
                self.routes.add(str(pool.net.network_address), pool.net.prefixlen, dev=self.tun.name)
        if self.st.pool6 is not None:
            from pyroute2 import IPRoute
            with IPRoute() as ipr:
                ipr.addr("add", index=ipr.link_lookup(ifname=self.tun.name)[0], address=self.st.pool6.server_ip,
                         prefixlen=self.st.pool6.net.prefixlen, flags=0x02)   # IFA_F_NODAD
            log.info("TUN %s: IPv6 %s/%d", self.tun.name, self.st.pool6.server_ip, self.st.pool6.net.prefixlen)
        for net, mask, _gw, metric in self.opts.route:
            # Networks behind clients (with iroute in their ccd file) are routed into the TUN.
            self.routes.add(net, _mask_to_prefix(mask), dev=self.tun.name, metric=metric)
            log.info("route %s/%d dev %s", net, _mask_to_prefix(mask), self.tun.name)
        log.info("TUN %s up, server address %s", self.tun.name, pool.server_ip if pool else "-")

    def run(self) -> int:
        self.sig.install()
        self.routes = None
        try:
            self._open_tun()
            if self.st.tcp:
                return self._run_tcp()
            return self._run_udp()
        finally:
            if self.routes is not None:
                self.routes.remove_all()
            if self.tun is not None:
                self.tun.close()
            self.sig.uninstall()

    # ------------------------------------------------------------------ shared
    def _bind_addr(self) -> tuple[str, int]:
        """`proto udp6/tcp6` (or an IPv6 `local`) listens on IPv6 (dual-stack on `::`)."""
        v6 = self.opts.proto_family == "6" or (self.opts.local or "").count(":") > 0
        return (self.opts.local or ("::" if v6 else "0.0.0.0"), self.opts.lport or self.opts.port)

    def _internal_error(self) -> None:
        n = self.drops["internal error"] = self.drops.get("internal error", 0) + 1
        if n <= 5 or n % 1000 == 0:
            log.exception("dropped a packet after an internal error (%d so far)", n)

    def _log_drops(self, d: ServerDispatcher, now: float, final: bool = False) -> None:
        """Rate-limited: at most one line per LOG_DROPS_EVERY seconds, only when counts changed."""
        if not final and now < getattr(self, "_next_drop_log", 0.0):
            return
        self._next_drop_log = now + self.LOG_DROPS_EVERY
        counts = drop_counters(d, self.drops)
        if counts != getattr(self, "_last_drops", {}) or final:
            self._last_drops = counts
            log.info("%s: %s", "final drop counters" if final else "dropped packets",
                     ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")

    def _log_events(self, d: ServerDispatcher, on_closed=None) -> None:
        while d.events:
            rec, e = d.events.popleft()
            who = f"{rec.common_name or rec.session.peer_common_name or '?'}/{_fmt(rec.addr)}"
            if isinstance(e, ev.ClientAuthenticated):
                log.info("%s: authenticated (CN=%s%s%s)", who, e.common_name,
                         f", user {e.username}" if e.username else "",
                         f", tls-crypt-v2 {rec.v2_metadata}" if rec.v2_metadata else "")
            elif isinstance(e, ev.TunnelUp):
                log.info("%s: connected, address %s, cipher %s, peer-id %s", who, rec.vaddr, e.cipher, rec.peer_id)
            elif isinstance(e, ev.KeyRenegotiated):
                log.info("%s: key renegotiated (key id %d)", who, e.key_id)
            elif isinstance(e, ev.ClientFloated):
                log.info("%s: moved from %s to %s (same session, by peer-id)", who, _fmt(e.old_addr),
                         _fmt(e.new_addr))
            elif isinstance(e, ev.SessionClosed):
                log.info("%s: disconnected: %s", who, e.reason)
                if on_closed is not None:
                    on_closed(rec)
            elif isinstance(e, ev.Warning):
                log.warning("%s: %s", who, e.message)

    def _from_clients(self, d: ServerDispatcher, rec, pts, sends: dict) -> None:
        """Inner packets from a client: queued for the TUN (written once per wake-up, merged where
        TCP segments allow), or to another client (client-to-client)."""
        queue = self.tun.queue
        mss = self.mss
        for p in pts:
            if p[9] == 6 or p[6] == 6:
                clamp_mss(p, mss)
            other = d.route_packet(p)
            if other is None:
                queue(p)
            elif self.st.client_to_client and other.session.established:
                w = other.session.encrypt(p)
                if w is not None:
                    sends.setdefault(other.addr, []).append(w)
            else:
                self.drops["c2c refused"] += 1

    def _from_tun(self, d: ServerDispatcher, pkts, sends: dict) -> None:
        route = d.route_packet
        mss = self.mss
        for p in pkts:
            if len(p) < 20:
                continue
            if p[9] == 6 or p[6] == 6:
                clamp_mss(p, mss)
            rec = route(p)
            if rec is None or not rec.session.established:
                self.drops["no route"] += 1
                continue
            w = rec.session.encrypt(p)
            if w is not None:
                sends.setdefault(rec.addr, []).append(w)

    # ------------------------------------------------------------------ UDP
    def _run_udp(self) -> int:
        from .transport.udp import UdpTransport
        addr = self._bind_addr()
        udp = UdpTransport(addr, family=socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
        log.info("listening on UDP %s", fmt_addr(addr))
        now = time.monotonic()
        d = ServerDispatcher(self.st, now)
        sel = selectors.DefaultSelector()
        sel.register(udp.fileno(), selectors.EVENT_READ, "udp")
        sel.register(self.tun.fileno(), selectors.EVENT_READ, "tun")
        sel.register(self.sig.rfd, selectors.EVENT_READ, "sig")
        try:
            while not self.sig.stop:
                timeout = _select_timeout(d)
                sends: dict = {}
                for key, _m in sel.select(timeout):
                    now = time.monotonic()
                    if key.data == "udp":
                        for pkt, src in udp.recv_batch(BATCH):
                            try:
                                rec, pts = d.receive(pkt, src, now)
                                if pts:
                                    self._from_clients(d, rec, pts, sends)
                            except Exception:  # noqa: BLE001 - one packet must never take the server down
                                self._internal_error()
                    elif key.data == "tun":
                        self._from_tun(d, self.tun.read_packets(BATCH), sends)
                    else:
                        self.sig.drain()
                self.tun.flush()
                now = time.monotonic()
                _timers_and_control(d, now, sends)
                for a, ps in sends.items():
                    udp.send_batch(ps, a)
                self._log_events(d)
                self._log_drops(d, now)
            log.info("stopping: notifying %d clients", len(d.clients))
            d.close_all(time.monotonic())
            for p, a in d.take_outgoing():
                udp.send(p, a)
            self._log_events(d)
            self._log_drops(d, time.monotonic(), final=True)
            return 0
        finally:
            sel.close()
            udp.close()

    # ------------------------------------------------------------------ TCP
    def _run_tcp(self) -> int:
        from .transport.link import TcpLink
        from .transport.tcp import TcpListener
        addr = self._bind_addr()
        lst = TcpListener(addr)
        log.info("listening on TCP %s", fmt_addr(addr))
        d = ServerDispatcher(self.st, time.monotonic())
        sel = selectors.DefaultSelector()
        sel.register(lst.fileno(), selectors.EVENT_READ, "listen")
        sel.register(self.tun.fileno(), selectors.EVENT_READ, "tun")
        sel.register(self.sig.rfd, selectors.EVENT_READ, "sig")
        links: dict[int, TcpLink] = {}

        def close_link(key: int) -> None:
            link = links.pop(key, None)
            if link is not None:
                try:
                    sel.unregister(link.fileno())
                except (KeyError, ValueError):
                    pass
                link.close()

        def on_closed(rec) -> None:
            close_link(rec.addr)

        try:
            while not self.sig.stop:
                timeout = _select_timeout(d)
                sends: dict = {}
                for key, mask in sel.select(timeout):
                    now = time.monotonic()
                    if key.data == "listen":
                        try:
                            t, peer = lst.accept()
                        except OSError:
                            continue
                        link = TcpLink(t)
                        k = link.fileno()
                        links[k] = link
                        sel.register(k, selectors.EVENT_READ, ("conn", k))
                        log.info("TCP connection from %s", _fmt(peer))
                    elif key.data == "tun":
                        self._from_tun(d, self.tun.read_packets(BATCH), sends)
                    elif key.data == "sig":
                        self.sig.drain()
                    else:
                        k = key.data[1]
                        link = links.get(k)
                        if link is None:
                            continue
                        if mask & selectors.EVENT_WRITE and link.flush():
                            sel.modify(k, selectors.EVENT_READ, key.data)
                        if not mask & selectors.EVENT_READ:
                            continue
                        try:
                            pkts = link.recv_packets()
                        except Exception as e:  # noqa: BLE001 - EOF, reset or a garbage stream: drop this client only
                            log.info("TCP client %d: %s", k, e or "closed")
                            d.disconnect(k)
                            close_link(k)
                            continue
                        for pkt in pkts:
                            try:
                                rec, pts = d.receive(pkt, k, now)
                                if pts:
                                    self._from_clients(d, rec, pts, sends)
                            except Exception:  # noqa: BLE001
                                self._internal_error()
                self.tun.flush()
                now = time.monotonic()
                _timers_and_control(d, now, sends)
                for a, ps in sends.items():
                    link = links.get(a)
                    if link is not None:
                        link.send_packets(ps)
                        if link.wants_write:
                            sel.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE, ("conn", a))
                self._log_events(d, on_closed)
                self._log_drops(d, now)
            d.close_all(time.monotonic())
            self._log_drops(d, time.monotonic(), final=True)
            for p, a in d.take_outgoing():
                if a in links:
                    links[a].send_packets([p])
                    links[a].flush()
            return 0
        finally:
            for k in list(links):
                close_link(k)
            sel.close()
            lst.close()


def _select_timeout(d: ServerDispatcher) -> float:
    """Wake for the next session deadline, and at least once a second (drop counters, signals)."""
    dl = d.next_deadline()
    return 1.0 if dl is None else min(1.0, max(0.0, dl - time.monotonic()))


def _timers_and_control(d: ServerDispatcher, now: float, sends: dict) -> None:
    """Fire due session timers, then queue every control packet by destination."""
    dl = d.next_deadline()
    if dl is not None and now >= dl:
        d.handle_timer(now)
    for p, a in d.take_outgoing():
        sends.setdefault(a, []).append(p)


def _fmt(addr) -> str:
    return fmt_addr(addr) if isinstance(addr, tuple) else f"tcp#{addr}"

