"""Every function on one client's path, made to fail in turn: what happens to the gateways.

The guide's promise is that anything a peer causes ends at most its own session, counted and
logged at a limited rate. tests/gateway/test_faults.py shows it at a few hand-picked spots; this
sweep does it for every `appliance.*` function that runs for one client ("the victim", named
client0) while two others (client1, client2) stay up beside it, on the in-memory World of tests/gateway
(the real pump, gateway and engine code; no root, no kernel; a fake clock).

1. Record (sys.settrace, 'call' events in files under appliance/): the functions called *for
   the victim* through its life: handshake and push, data both ways, keepalive, a renegotiation
   started by either side, a restart in place (SIGUSR1), the exit notification; over UDP and
   TCP. A call is the victim's when the nearest frame on the stack that holds a client's object
   (its ClientGateway or Connection, the server's ClientRecord of it, its session, its address
   or TCP StreamKey) holds the victim's -- so the server's generic code called for client1, or
   for nobody, is not counted.
2. Inject: for each such function, the first call of it for the victim after the phase's
   trigger raises (InjectedFault, a RuntimeError subclass; or ValueError/KeyError/IndexError/
   struct.error with --exc). Then what a user checks: neither gateway process ended (a
   ServerGateway/ClientGateway `result`, an exception out of the loop), client1 and client2
   still ping both ways and keep their sessions, addresses and peer-ids, the victim pings again (its session went on, or it was ended and reconnected)
   within 150 s of fake time, the server's books hold only live clients (addresses in the pool,
   peer-ids, the lookup tables), and something counted or logged the fault.

Outcomes: `ok-ended` (the victim's session was ended and it reconnected), `ok-survived` (the
session went on, or the attempt it was making went on; the fault was counted as an internal
error, or dropped as a bad packet), `not-hit` (no call for the
victim after the trigger), and the failures `FATAL` (a gateway ended, or the loop raised),
`COLLATERAL` (a bystander lost its tunnel, session, address or peer-id), `WEDGED` (the victim never pinged again), `SPIN` (a
gateway's loop stays busy with nothing to do: 100% CPU on a host), `LEAK` (the server kept
something of a gone session, or gave back what a live one holds: half-alive), `FLOOD` (with
--repeat N >= 20: one gateway wrote more than 12 log lines naming the N faults), `SILENT` (nothing counted or logged).

    python -m lab.reliability.fault_sweep [--proto udp|tcp|both] [--dev tun|tap|both] [--phase NAME ...]
        [--exc runtime|value|key|index|struct] [--limit N] [--seed S] [--match TEXT] [--repeat N]

`--dev tap`: the server is a layer-2 one (dev tap, client-to-client): the clients' packets are
Ethernet frames from a MAC of their own (our client carries them as its TUN's packets), so the
switch -- its MAC table, learning, broadcast budgets -- is on the victim's path, and the books
checked include the MAC table (no MAC, MAC list, learn-address wait or broadcast budget of a
gone session).

`--repeat N` (on the functions it runs) injects the same fault N times in a row and reports the
number of log lines the N faults cost (they must stay bounded: Faults logs tracebacks for the
first five and then every 1000th).
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import appliance

APPLIANCE_DIR = os.path.dirname(os.path.abspath(appliance.__file__)) + os.sep
PHASES = ("handshake", "data", "keepalive", "reneg-client", "reneg-server", "restart", "exit")
# Code objects not worth a run: comprehensions and lambdas (their enclosing function is swept),
# and the loop's own guards (a fault raised *in* the guard is not a fault on a client's path).
SKIP_NAMES = {"<genexpr>", "<listcomp>", "<dictcomp>", "<setcomp>", "<lambda>", "<module>"}
SKIP_FILES = ("logsetup.py",)


class InjectedFault(RuntimeError):
    """The fault the sweep raises: a type no code catches on purpose."""


EXCEPTIONS: dict[str, Callable[[str], BaseException]] = {
    "runtime": InjectedFault,
    "value": ValueError,
    "key": KeyError,
    "index": IndexError,
    "struct": struct.error,
    # Out of memory midway: Python raises it anywhere; `except Exception` takes it, but code
    # that catches only the errors a peer's bad input raises must not mistake it for one.
    "memory": MemoryError,
}

VICTIM = 1                              # w.clients index of the victim (client0's certificate)
BYSTANDERS = (0, 2)                     # client1 and client2: up beside it, never to be touched


# ---------------------------------------------------------------------------------- the world
def _world_mod():
    from lab import gateway_world
    return gateway_world


@dataclass
class Stage:
    """A World with client1 (index 0) and client2 (index 2) up beside the victim (index 1,
    client0's certificate)."""
    w: object
    proto: str
    pki: dict
    victims: int = 0                       # how many victim gateways were made (their source IPs differ)
    # The counters of victim gateways replaced since (so a count never goes down: see _counters)
    retired: dict[str, int] = field(default_factory=dict)
    made: list[int] = field(default_factory=lambda: [0])   # sessions the server made for the victim (inject)
    dev: str = "tun"

    @property
    def label(self) -> str:
        """The protocol as the table shows it (`udp`, `tcp/tap`)."""
        return self.proto if self.dev == "tun" else f"{self.proto}/{self.dev}"

    @property
    def victim(self):
        return self.w.clients[1]

    def victim_ip(self) -> str:
        return self.w.client_ports[1].ip


def make_pki() -> dict:
    """The gateway tests' PKI (lab/gateway_world.py make_pki), with client0..client2."""
    return _world_mod().make_pki(["client0", "client1", "client2"])


def _proto_names(proto: str) -> tuple[str, str]:
    return ("udp", "udp") if proto == "udp" else ("tcp-server", "tcp-client")


def victim_conf(pki: dict, proto: str) -> str:
    cf = _world_mod()
    extra = "explicit-exit-notify 1\n" if proto == "udp" else ""
    return cf.client_conf(pki, "client0", proto=_proto_names(proto)[1], extra=extra)


def new_stage(pki: dict, proto: str, with_victim: bool = True, dev: str = "tun") -> Stage:
    cf = _world_mod()
    w = cf.World()
    w.sweep_dev = dev                   # (read by pings and the data phase)
    conf = cf.server_conf(pki, _proto_names(proto)[0])
    if dev == "tap":
        conf = conf.replace("dev tun\n", "dev tap\n").replace("topology subnet\n", "")
    w.add_server(conf)
    w.add_client(cf.client_conf(pki, "client1", proto=_proto_names(proto)[1]))
    st = Stage(w, proto, pki, dev=dev)
    if not served(w, 0):
        raise RuntimeError("client1 does not come up")
    add_victim(st)
    if not served(w, VICTIM):
        raise RuntimeError("the victim does not come up")
    w.add_client(cf.client_conf(pki, "client2", proto=_proto_names(proto)[1]), ip="198.18.0.4")
    if not served(w, 2):
        raise RuntimeError("client2 does not come up")
    if not with_victim:
        st.victim.request_stop()
        w.run_for(3)
    return st


def add_victim(st: Stage) -> None:
    """A new victim gateway (index 1) from a new source address: the first, or one after the
    last was stopped (exit phase, or before a handshake phase)."""
    w = st.w
    st.victims += 1
    ip = f"198.18.0.{100 + st.victims}"
    if len(w.clients) > 1:
        old = w.clients.pop(VICTIM)
        w.client_nets.pop(VICTIM)
        w.client_ports.pop(VICTIM)
        for k, v in old.faults.counts.items():
            st.retired[k] = st.retired.get(k, 0) + v
    w.add_client(victim_conf(st.pki, st.proto), ip=ip)
    for books in (w.clients, w.client_nets, w.client_ports):     # appended: into the victim's place
        books.insert(VICTIM, books.pop())


def up(w, i: int) -> bool:
    c = w.clients[i]
    return c.result is None and c.conn is not None and c.conn.was_up and w.client_addr(i) is not None


# dev tap: the host behind the server's TAP device, and each client's MAC (by its index: the
# victim, index 1, keeps its MAC across its reconnects, as a real client's interface does).
HOST_MAC = bytes.fromhex("020000000001")


def client_mac(i: int) -> bytes:
    return bytes((2, 0, 0, 0, 0x0B, i))


def packets(w, i: int, tag: bytes) -> tuple[bytes, bytes]:
    """(client i to the server's side, and back): IPv4/UDP packets, or with dev tap the same in
    Ethernet frames between the client's MAC and the host's behind the TAP."""
    cf = _world_mod()
    cli = w.client_addr(i)
    out = cf.ipv4_udp(cli, "198.19.0.1", b"up-" + tag)
    back = cf.ipv4_udp("198.19.0.1", cli, b"down-" + tag)
    if getattr(w, "sweep_dev", "tun") == "tap":
        ip4 = struct.pack("!H", 0x0800)
        out = HOST_MAC + client_mac(i) + ip4 + out
        back = client_mac(i) + HOST_MAC + ip4 + back
    return out, back


def pings(w, i: int, tag: bytes, tries: int = 3) -> bool:
    """A packet from client i's TUN reaches the server's TUN, and one back (each up to `tries` times)."""
    if w.client_addr(i) is None:
        return False
    stun, ctun = w.server_net.tun, w.client_nets[i].tun
    out, back = packets(w, i, tag)
    for src, dst, pkt in ((ctun, stun, out), (stun, ctun, back)):
        for _ in range(tries):
            src.inject(pkt)
            if w.run(lambda: pkt in dst.written, max_time=2):
                break
        else:
            return False
    return True


_tags = iter(range(1 << 62))


def served(w, i: int, max_time: float = 60.0) -> bool:
    """Client i has its tunnel and pings both ways within `max_time` of fake time: tried again
    every 10 s, as a client whose session the server ended without a word only learns it at its
    ping-restart."""
    end = w.clock.t + max_time
    for _ in range(int(max_time // 10) + 2):        # bounded: a spinning loop does not move the clock
        if w.run(lambda: up(w, i), max_time=max(0.0, end - w.clock.t)) and pings(w, i, b"%d" % next(_tags)):
            return True
        if w.clock.t >= end:
            return False
        w.run_for(min(10.0, end - w.clock.t))
    return False


def spinning(w, seconds: float = 3.0, max_steps: int = 3000) -> str:
    """Which pumps stay busy ('' when the world goes quiet): the fake clock moves only when no
    pump had work, so a loop that never goes idle -- a level-triggered port whose handler does
    not take its input -- keeps it still. On a real host that is 100% CPU."""
    end = w.clock.t + seconds
    counts = [0] * len(w.pumps())
    for _ in range(max_steps):
        if w.clock.t >= end:
            return ""
        busy = False
        for k, p in enumerate(w.pumps()):
            if p.step(block=False):
                counts[k] += 1
                busy = True
        if not busy:
            dls = [d for d in (p.timers.next_deadline() for p in w.pumps()) if d is not None]
            w.clock.t = max(w.clock.t, min([end, *dls]))
    names = ["server"] + [f"clients[{k}]" for k in range(len(counts) - 1)]     # the sweep's victim: clients[1]
    return "busy for ever: " + ", ".join(f"{n} {c} of {max_steps} wake-ups" for n, c in zip(names, counts) if c)


# ---------------------------------------------------------------------------------- attribution
class Attribution:
    """Whether the call running in a frame is for the victim: the innermost frame holding a
    client's object decides (True: the victim's, False: another's or none)."""

    def __init__(self, st: Stage) -> None:
        self.st = st
        self.refresh()

    def refresh(self) -> None:
        from appliance.gateway.client import ClientGateway
        from appliance.openvpn.server_model import ClientRecord
        from appliance.openvpn.session import Session
        self._types = (ClientGateway, ClientRecord, Session)
        w = self.st.w
        vip = self.st.victim_ip()
        self.vip = vip
        self.other_ips = {p.ip for k, p in enumerate(w.client_ports) if k != 1}
        mine: set[int] = set()
        theirs: set[int] = set()
        for k, c in enumerate(w.clients):
            objs = [c, c.conn, c.conn.session if c.conn is not None else None,
                    getattr(c.conn, "link", None), getattr(c.conn, "dp", None)]
            (mine if k == 1 else theirs).update(id(o) for o in objs if o is not None)
        d = self.st.w.server.d
        for rec in list(d.by_addr.values()) + list(d.pending.values()):
            ip = self._ip(rec.addr)
            (mine if ip == vip else theirs).update((id(rec), id(rec.session)))
        self.mine, self.theirs = mine, theirs

    @staticmethod
    def _ip(addr) -> str | None:
        if isinstance(addr, tuple) and addr and isinstance(addr[0], str):
            return addr[0]
        return getattr(addr, "ip", None) if addr is not None and not isinstance(addr, (str, bytes, int)) else None

    def _verdict(self, v) -> bool | None:
        i = id(v)
        if i in self.mine:
            return True
        if i in self.theirs:
            return False
        if isinstance(v, self._types):
            from appliance.openvpn.server_model import ClientRecord
            if isinstance(v, ClientRecord):
                return self._ip(v.addr) == self.vip
            return None             # a session or gateway made since refresh(): undecided here
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
            if v[0] == self.vip:
                return True
            if v[0] in self.other_ips:
                return False
            return None
        ip = getattr(v, "ip", None) if type(v).__name__ == "StreamKey" else None
        if ip is not None:
            return ip == self.vip
        return None

    def for_victim(self, frame, depth: int = 40) -> bool:
        f = frame
        while f is not None and depth > 0:
            for v in f.f_locals.values():
                r = self._verdict(v)
                if r is not None:
                    return r
            f = f.f_back
            depth -= 1
        return False


def _sweepable(code) -> bool:
    fn = code.co_filename
    return (fn.startswith(APPLIANCE_DIR) and code.co_name not in SKIP_NAMES
            and not fn.endswith(SKIP_FILES))


def func_name(code) -> str:
    rel = code.co_filename[len(APPLIANCE_DIR):].removesuffix(".py").replace(os.sep, ".")
    return f"appliance.{rel}:{getattr(code, 'co_qualname', code.co_name)}"


# ---------------------------------------------------------------------------------- phases
def _at_once(pump, fn: Callable[[], None]) -> None:
    """Run `fn` from a timer of `pump` at the current time: a fault it meets goes through the
    loop's guards as a real timer's would, not into the sweep."""
    pump.timers.arm("fault-sweep", pump.clock(), fn)


def phase_trigger(st: Stage, phase: str) -> None:
    """Start the phase for the victim (the handshake: a new victim gateway connects)."""
    w, c = st.w, st.victim
    if phase == "handshake":
        add_victim(st)
    elif phase == "data":
        out, back = packets(w, 1, b"sweep")
        w.client_nets[1].tun.inject(out)
        w.server_net.tun.inject(back)
        if st.dev == "tap":             # a broadcast too: the switch's flooding and its budget (client-to-client)
            w.client_nets[1].tun.inject(b"\xff" * 6 + client_mac(1) + out[12:])
    elif phase == "keepalive":
        pass
    elif phase == "reneg-client":
        def go() -> None:
            if c.conn is not None:
                c.conn.session.renegotiate(w.clock())
                c._after_engine(c.conn)                  # noqa: SLF001 - as its timer would
        _at_once(c.pump, go)
    elif phase == "reneg-server":
        def go_s() -> None:
            d = w.server.d
            rec = next((r for r in d.clients if Attribution._ip(r.addr) == st.victim_ip()), None)
            if rec is not None:
                rec.session.renegotiate(w.clock())
                d.rearm(rec)
                w.server.pump.timers.arm("engine", w.clock(), w.server._on_engine_timer)   # noqa: SLF001
        _at_once(w.server.pump, go_s)
    elif phase == "restart":
        from appliance.gateway.loop import Signals

        def usr1() -> None:
            c.signals = sig = Signals((signal.SIGUSR1,))      # not installed: the handler's effect by hand
            sig.pending.append(signal.SIGUSR1)

            def port_ready() -> None:
                # As the real signal port, level-triggered: readable, and its handler called at
                # every wake-up, while a signal waits untaken (a handler that raised took none).
                if sig.pending:
                    c.pump.timers.arm("fault-sweep-signal", c.clock() + 0.01, port_ready)
                    c._on_signal()                          # noqa: SLF001
            port_ready()
        _at_once(c.pump, usr1)
    elif phase == "exit":
        from appliance.gateway.loop import Signals

        if c.signals is None:
            c.signals = Signals()                           # not installed: the handler's effect by hand
        c.signals.stops += 1                                # SIGTERM came
        # The port level-triggered, as the real one: readable (its handler called at each wake-up)
        # until a call of the handler drained it.
        port = {"readable": True}
        sig, real_drain = c.signals, c.signals.drain

        def drain() -> None:
            real_drain()
            port["readable"] = False
        sig.drain = drain

        def sigterm() -> None:
            if port["readable"]:
                c.pump._again[id(sig)] = sigterm    # noqa: SLF001 - as Pump.again, without a call of ours to fault
                c._on_signal()      # noqa: SLF001 - the signal port's handler (the stop through it, as in a run)
        _at_once(c.pump, sigterm)
    else:
        raise ValueError(phase)


def run_phase(st: Stage, phase: str, triggered: bool = False) -> None:
    if not triggered:
        phase_trigger(st, phase)
    w = st.w
    if phase == "handshake":
        w.run(lambda: up(w, 1), max_time=30)
    elif phase == "data":
        w.run_for(1)
    elif phase == "keepalive":
        w.run_for(11)
    elif phase in ("reneg-client", "reneg-server"):
        w.run_for(5)
    elif phase == "restart":
        w.run_for(0.5)
        w.run(lambda: up(w, 1), max_time=30)
    elif phase == "exit":
        w.run_for(6)                     # explicit-exit-notify 1, and the client's backstop after it


# ---------------------------------------------------------------------------------- recording
def record(st: Stage, phases: tuple[str, ...]) -> dict[object, str]:
    """code object -> the first phase where it ran for the victim."""
    seen: dict[object, str] = {}
    checks: dict[object, int] = {}
    attr = Attribution(st)
    current = {"phase": ""}

    def tracer(frame, event, arg):  # noqa: ANN001
        if event != "call":
            return None
        code = frame.f_code
        if code in seen or not _sweepable(code):
            return None
        n = checks.get(code, 0)
        if n >= 300:
            return None
        checks[code] = n + 1
        if attr.for_victim(frame):
            seen[code] = current["phase"]
        return None

    for phase in phases:
        if phase == "handshake":
            st.victim.request_stop()
            st.w.run_for(3)
        current["phase"] = phase
        phase_trigger(st, phase)            # untraced (see inject)
        attr.refresh()
        old = sys.gettrace()
        sys.settrace(tracer)
        try:
            run_phase(st, phase, triggered=True)
        finally:
            sys.settrace(old)
        if phase == "exit":
            add_victim(st)
        if not all(served(st.w, i) for i in (VICTIM, *BYSTANDERS)):
            raise RuntimeError(f"the world is not healthy after recording {phase}")
    return seen


# ---------------------------------------------------------------------------------- injection
@dataclass
class Outcome:
    function: str
    phase: str
    proto: str
    verdict: str
    detail: str = ""
    hits: int = 0
    log_lines: int = 0
    fault_lines: int = 0                # of those, the tracebacks of our internal errors (not the counters)
    fault_refs: int = 0                 # lines naming the injected fault (its message, or its traceback)


@dataclass
class Injector:
    st: Stage
    code: object
    make_exc: Callable[[str], BaseException]
    left: int = 1                       # faults still to raise
    hits: int = 0
    attr: Attribution | None = None

    def tracer(self, frame, event, arg):  # noqa: ANN001
        if event != "call" or frame.f_code is not self.code or self.left <= 0:
            return None
        if self.attr is None:
            self.attr = Attribution(self.st)
        if not self.attr.for_victim(frame):
            return None
        self.left -= 1
        self.hits += 1
        raise self.make_exc(f"fault injected into {func_name(self.code)}")


class LogCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Which gateway (process) wrote it: the loop on the stack. A handshake phase repeated
        # makes a new victim gateway each time -- a new process, whose own Faults start anew.
        from appliance.gateway.loop import Pump
        f = sys._getframe(1)
        while f is not None and not isinstance(f.f_locals.get("self"), Pump):
            f = f.f_back
        record.sweep_loop = id(f.f_locals["self"]) if f is not None else 0
        self.records.append(record)


def _counters(st: Stage) -> dict[str, int]:
    w = st.w
    out: dict[str, int] = {}
    for role, src in (("server", w.server.faults.counts), ("server", w.server.d.drop_counters()),
                      ("server", w.server.dp.stats), ("client", st.retired),
                      *(("client", c.faults.counts) for c in w.clients)):
        for k, v in src.items():
            out[f"{role}: {k}"] = out.get(f"{role}: {k}", 0) + v
    return out


def bystanders(st: Stage) -> dict[int, tuple]:
    """What each bystander holds, as a user sees it: its gateway's connection count, its tunnel
    address, and on the server its record, session and peer-id (None where it has none)."""
    w, d = st.w, st.w.server.d
    out = {}
    for i in BYSTANDERS:
        ip = w.client_ports[i].ip
        rec = next((r for r in d.by_addr.values() if Attribution._ip(r.addr) == ip), None)
        out[i] = (w.clients[i].connections, w.client_addr(i),
                  None if rec is None else (id(rec), id(rec.session), rec.peer_id, rec.pool_lease))
    return out


def server_books(st: Stage) -> str:
    """What the server holds of sessions that are gone ('' when its books are clean)."""
    d = st.w.server.d
    live = [r for r in list(d.by_addr.values()) + list(d.pending.values())]
    problems = []
    for r in live:
        if not r.alive:
            problems.append(f"dead record in by_addr/pending ({r.common_name})")
    for name in ("by_peer_id", "by_vaddr", "by_vaddr4", "heirs"):
        for r in getattr(d, name).values():
            if not r.alive:
                problems.append(f"dead record in {name}")
                break
    for name in ("iroutes", "iroutes6"):
        if any(not r.alive for _, r in getattr(d, name)):
            problems.append(f"dead record in {name}")
    adm = d.admission
    admitted = {id(r) for r in live if r.admitted}
    if adm.n_established + adm.n_half_open != len(admitted) or set(adm.in_progress) - admitted:
        problems.append(f"admission counts {adm.n_established} established + {adm.n_half_open} in progress, "
                        f"{len(admitted)} live")
    pids = {r.peer_id for r in live} | set(d.stream_peer_ids.values())
    extra = set(d.peer_ids.holders) - pids
    if extra:
        problems.append(f"peer-ids held by nobody: {sorted(extra)}")
    # Half-alive: a live session whose peer-id or address the books gave back (the next client
    # would be given it too), or a peer-id leading to another record.
    for r in live:
        if r.peer_id not in d.peer_ids.holders:
            problems.append(f"a live session's peer-id {r.peer_id} given back")
        held = d.by_peer_id.get(r.peer_id)
        if held is not None and held.alive and held.common_name != r.common_name:
            problems.append(f"peer-id {r.peer_id} leads to another client's session")
    pool = st.w.server.d.st.pool
    if pool is not None:
        leased = {r.pool_lease for r in live if r.pool_lease}
        if set(pool.leased) - leased:
            problems.append(f"addresses leased by nobody: {sorted(set(pool.leased) - leased)}")
        if leased - set(pool.leased):
            problems.append(f"a live session's address given back: {sorted(leased - set(pool.leased))}")
    ips = [Attribution._ip(r.addr) for r in live if r.session.established]
    if len(ips) != len(set(ips)):
        problems.append("two established records for one client")
    dp = st.w.server.dp
    live_ids = {id(r) for r in live}
    macs = getattr(dp, "macs", None)
    if macs is not None:                # dev tap: the switch's books
        if any(not r.alive for r in macs.owner.values()):
            problems.append("a MAC led to a gone session")
        if set(macs.held) - live_ids:
            problems.append(f"MAC lists of gone sessions: {len(set(macs.held) - live_ids)}")
        if any(not r.alive for r in dp.asking.values()):
            problems.append("learn-address wait of a gone session")
    if set(dp.bcast.buckets) - live_ids:
        problems.append("broadcast budget of a gone session")
    if st.proto == "tcp":
        gw = st.w.server
        stale = [k for k in gw.conns if d.record(k) is None and k in gw.established_conns]
        if stale:
            problems.append(f"TCP connections kept without a session: {len(stale)}")
    return "; ".join(problems)


def inject(st: Stage, code, phase: str, make_exc, repeat: int = 1) -> Outcome:
    """Raise in `code` at its first call for the victim after the phase's trigger (`repeat`
    times, each after a fresh trigger), then check what a user checks."""
    d = st.w.server.d
    real_on_create = d.on_create

    def on_create(rec, restarts) -> None:  # noqa: ANN001
        if Attribution._ip(rec.addr) == st.victim_ip():
            st.made[0] += 1
        if real_on_create is not None:
            real_on_create(rec, restarts)
    d.on_create = on_create
    try:
        return _inject(st, code, phase, make_exc, repeat)
    finally:
        d.on_create = real_on_create


def _inject(st: Stage, code, phase: str, make_exc, repeat: int) -> Outcome:
    w = st.w
    name = func_name(code)
    logger = logging.getLogger("vpn-appliance")
    h = LogCount()
    logger.addHandler(h)
    before = _counters(st)
    held = bystanders(st)
    inj = Injector(st, code, make_exc)
    # Sessions the server makes for the victim: beyond the phase's own (a handshake, a restart),
    # the victim's session was ended and it came back.
    made = st.made
    made[0] = 0
    fatal = ""
    conns0 = 0
    unstopped = ""                      # exit: the victim told to stop did not end, or kept the host's routes
    try:
        for k in range(repeat):
            inj.left, inj.attr = 1, None
            old = sys.gettrace()
            if phase == "handshake":
                # The new victim's gateway is made and started outside the fault: a client
                # whose start fails exits before any session (as a config error does); the
                # sweep is about its connection's path, from its first packet on.
                st.victim.request_stop()
                w.run_for(3)
            # The trigger (a timer armed, a packet queued, the new victim's gateway made and
            # started) outside the fault: what the sweep breaks is what runs from there on.
            phase_trigger(st, phase)
            if k == 0:
                conns0 = st.victim.connections + (1 if phase == "handshake" else 0)
            sys.settrace(inj.tracer)
            try:
                run_phase(st, phase, triggered=True)
            finally:
                sys.settrace(old)
            if phase == "exit":
                if st.victim.result is None:
                    unstopped = "the victim, told to stop, still runs 6 s later"
                    st.victim.request_stop()
                    w.run_for(6)
                else:
                    # What run_gateway does at the end (the World steps pumps, it runs no gateway's run()).
                    try:
                        st.victim._cleanup()                    # noqa: SLF001
                    except Exception as e:  # noqa: BLE001 - at the very end: said, the process ends anyway
                        unstopped = f"the victim's clean-up raised {type(e).__name__}: {e}"
                    if not w.client_nets[VICTIM].closed:
                        unstopped = "the victim ended without closing its tunnel (the host's routes and DNS kept)"
                if st.victim.result is not None:
                    add_victim(st)
            if inj.hits == 0:
                break
            if k + 1 < repeat:
                served(w, 1, max_time=150)
    except Exception as e:  # noqa: BLE001 - the loop itself raised: a gateway would have ended
        fatal = f"{_whose_loop(st, e)} loop raised {type(e).__name__}: {e}"
    try:
        return _judge(st, phase, inj, h, before, conns0, fatal, name, held, unstopped)
    finally:
        logger.removeHandler(h)     # only now: a line the fault causes later (a push taken after the phase) counts


# --repeat: N faults in a row (a peer's packet that trips our bug, flooded) may name the fault in
# at most FLOOD_LINES log lines (Faults: tracebacks for the first five, then every 1000th).
FLOOD_AT, FLOOD_LINES = 20, 12


def _names_the_fault(r: logging.LogRecord) -> bool:
    if "fault injected" in r.getMessage():
        return True
    exc = r.exc_info[1] if r.exc_info else None
    while exc is not None:
        if "fault injected" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _most_fault_lines(records: list[logging.LogRecord]) -> int:
    """The most lines naming the fault that one gateway (one process) wrote."""
    per: dict[int, int] = {}
    for r in records:
        if _names_the_fault(r):
            k = getattr(r, "sweep_loop", 0)
            per[k] = per.get(k, 0) + 1
    return max(per.values(), default=0)


def _whose_loop(st: Stage, e: BaseException) -> str:
    """Which gateway's loop an exception came out of ("the server's", "the victim's", ...)."""
    from appliance.gateway.loop import Pump
    tb, pump = e.__traceback__, None
    while tb is not None:
        me = tb.tb_frame.f_locals.get("self")
        if isinstance(me, Pump):
            pump = me
        tb = tb.tb_next
    if pump is st.w.server.pump:
        return "the server's"
    for i, c in enumerate(st.w.clients):
        if pump is c.pump:
            return "the victim's" if i == VICTIM else f"bystander clients[{i}]'s"
    return "a"


def _judge(st: Stage, phase: str, inj: Injector, h: LogCount, before: dict[str, int], conns0: int, fatal: str,
           name: str, held: dict[int, tuple], unstopped: str = "") -> Outcome:
    w, made = st.w, st.made
    n_logs = len(h.records)            # the phase's own lines (the repeat's bound); the checks' come after
    out = Outcome(name, phase, st.label, "", hits=inj.hits, log_lines=n_logs,
                  fault_lines=sum(r.getMessage().startswith("internal error in") for r in h.records),
                  fault_refs=_most_fault_lines(h.records))
    if fatal:
        out.verdict, out.detail = "FATAL", fatal
        return out
    if unstopped:
        out.verdict, out.detail = "WEDGED", unstopped
        return out
    if inj.hits == 0:
        out.verdict = "not-hit"
        return out
    if w.server.result is not None:
        out.verdict, out.detail = "FATAL", f"the server ended (result {w.server.result})"
        return out
    for i in BYSTANDERS:
        if w.clients[i].result is not None:
            out.verdict, out.detail = "FATAL", f"bystander clients[{i}]'s gateway ended"
            return out
    victim_ended = st.victim.result is not None
    if victim_ended:
        out.verdict, out.detail = "FATAL", f"the victim's client gateway exited (result {st.victim.result})"
        add_victim(st)
        return out
    for i in BYSTANDERS:
        if not served(w, i, max_time=10):
            out.verdict, out.detail = "COLLATERAL", f"bystander clients[{i}] no longer pings both ways"
            return out
    now = bystanders(st)
    moved = [f"clients[{i}] {held[i]} -> {now[i]}" for i in BYSTANDERS if now[i] != held[i]]
    if moved:
        out.verdict, out.detail = "COLLATERAL", "a bystander's session, address or peer-id changed: " + "; ".join(moved)
        return out
    if not served(w, 1, max_time=150):
        out.verdict, out.detail = "WEDGED", "the victim does not ping within 150 s"
        return out
    busy = spinning(w)
    if busy:
        out.verdict, out.detail = "SPIN", busy
        return out
    w.run_for(6)                        # the server's 5 s timer: what a bug in a release left is given back
    books = server_books(st)
    if books:
        out.verdict, out.detail = "LEAK", books
        return out
    if inj.hits >= FLOOD_AT and out.fault_refs > FLOOD_LINES:
        out.verdict, out.detail = "FLOOD", f"{out.fault_refs} log lines name {inj.hits} faults"
        return out
    after = _counters(st)
    changed = sorted(k for k in after if after[k] != before.get(k, 0))
    logged = [r for r in h.records if r.levelno >= logging.WARNING]
    if not changed and not logged:
        out.verdict, out.detail = "SILENT", "no counter changed and nothing logged"
        return out
    # Ended: the victim connected again (the exit phase's victim is a new gateway: its session ended anyway).
    ended = phase == "exit" or st.victim.connections > conns0 or made[0] > (1 if phase in ("handshake", "restart") else 0)
    out.verdict = "ok-ended" if ended else "ok-survived"
    out.detail = ", ".join(changed)[:120]
    return out


# ---------------------------------------------------------------------------------- the sweep
def targets_of(pki: dict, proto: str, phases: tuple[str, ...] = PHASES, dev: str = "tun"
               ) -> dict[str, tuple[object, str]]:
    """function name -> (code object, phase) of everything recorded for the victim."""
    seen = record(new_stage(pki, proto, dev=dev), phases)
    return {func_name(c): (c, ph) for c, ph in seen.items()}


def sweep(protos: tuple[str, ...], phases: tuple[str, ...], exc: str = "runtime", limit: int | None = None,
          seed: int = 1, match: str = "", repeat: int = 1, pki: dict | None = None,
          progress: Callable[[Outcome], None] | None = None, devs: tuple[str, ...] = ("tun",)) -> list[Outcome]:
    pki = pki or make_pki()
    make_exc = EXCEPTIONS[exc]
    results: list[Outcome] = []
    for dev, proto in ((d, p) for d in devs for p in protos):
        st = new_stage(pki, proto, dev=dev)
        seen = record(st, phases)
        targets = sorted(seen.items(), key=lambda kv: (PHASES.index(kv[1]), func_name(kv[0])))
        if match:
            targets = [t for t in targets if match in func_name(t[0])]
        if limit is not None and len(targets) > limit:
            targets = sorted(random.Random(seed).sample(targets, limit),
                             key=lambda kv: (PHASES.index(kv[1]), func_name(kv[0])))
        st = new_stage(pki, proto, dev=dev)
        for code, phase in targets:
            if progress is not None:
                print(f"  ... {proto} {phase} {func_name(code)}", end="\r", flush=True)
            try:
                o = inject(st, code, phase, make_exc, repeat)
            except Exception as e:  # noqa: BLE001 - the sweep's own checks broke on a wrecked world
                o = Outcome(func_name(code), phase, st.label, "FATAL", f"checking raised {type(e).__name__}: {e}")
            results.append(o)
            if progress is not None:
                progress(o)
            if not o.verdict.startswith(("ok", "not")):
                st = new_stage(pki, proto, dev=dev)   # a fresh world for the next function
    return results


def table(results: list[Outcome]) -> str:
    lines = [f"{'proto':7} {'phase':12} {'outcome':11} {'logs':>4}  function  (detail)"]
    for o in results:
        lines.append(f"{o.proto:7} {o.phase:12} {o.verdict:11} {o.log_lines:4d}  {o.function}"
                     + (f"  ({o.detail})" if o.detail and not o.verdict.startswith("ok") else ""))
    summary: dict[str, int] = {}
    for o in results:
        summary[o.verdict] = summary.get(o.verdict, 0) + 1
    lines.append("summary: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.items()))
                 + f" (functions swept: {len(results)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.reliability.fault_sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--proto", choices=("udp", "tcp", "both"), default="both")
    ap.add_argument("--dev", choices=("tun", "tap", "both"), default="tun")
    ap.add_argument("--phase", action="append", choices=PHASES)
    ap.add_argument("--exc", choices=tuple(EXCEPTIONS), default="runtime")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of N functions per protocol")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--match", default="", help="only functions whose name contains this")
    ap.add_argument("--repeat", type=int, default=1, help="inject each fault N times (log lines must stay bounded)")
    ap.add_argument("-v", "--verbose", action="store_true", help="each outcome as it comes")
    a = ap.parse_args(argv)
    lg = logging.getLogger("vpn-appliance")
    lg.setLevel(logging.INFO)
    lg.propagate = False                  # counted by inject(), not printed
    for hd in list(lg.handlers):
        lg.removeHandler(hd)
    protos = ("udp", "tcp") if a.proto == "both" else (a.proto,)
    t0 = time.monotonic()
    devs = ("tun", "tap") if a.dev == "both" else (a.dev,)
    res = sweep(protos, tuple(a.phase or PHASES), a.exc, a.limit, a.seed, a.match, a.repeat,
                progress=(lambda o: print(f"  {o.proto} {o.phase} {o.verdict} {o.function}", flush=True))
                if a.verbose else None, devs=devs)
    print(table(res))
    print(f"wall time {time.monotonic() - t0:.0f} s")
    return 1 if any(not o.verdict.startswith(("ok", "not")) for o in res) else 0


if __name__ == "__main__":
    sys.exit(main())
