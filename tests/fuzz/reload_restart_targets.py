"""The reload-restart fuzz target: SIGHUP reloads that restart the clients whose options changed
(reload42, review44b/d: appliance/openvpn/given.py, gateway/ops.py _batch_verdicts/_verdicts_in/
_restart_for_reload, RELOAD_RESTART_HOLDOFF, ClientRecord.reload_pending, clientpush.py
_predecessors_lease), driven against the RULE rather than today's code.

Why a target: ops-reload keeps its one client's ccd file unwritten, so no input reached a reload
that restarts anyone; the rule -- after a reload every client ends up with what a fresh connect
under the config in force gives it, and only the clients whose options changed are restarted, at
most once per hold-off -- has many moving parts (held restarts, restarts in place, a full pool
with duplicate-cn, clients leaving and coming back mid-pass).

World: the gateway suite's in-memory server (lab/gateway_world.py) with a client-config-dir, a
small pool (`ifconfig-pool` of 3 addresses, nopool) and 2-4 clients; with duplicate-cn, clients 0/1
share client0's certificate and 2/3 client1's. Clients 0 and 2 use a fixed `lport` (their restart
is a restart in place), 1 and 3 `nobind` (1 a fixed one too behind the NAT).

Input: byte 0 = the world (2 + byte % 3 clients; bit 2: duplicate-cn; bits 3-4: the first pool;
bit 5 with duplicate-cn: clients 0 and 1, one certificate, behind one host, as two devices behind
one NAT -- review44d's told sessions' addresses, one to each comeback), then steps split at SEP, each `op arg payload`; op % 8:
  0 a ccd file (arg % 4: client0..client2 or DEFAULT): arg bit 2 removes it, else its lines come
    from the payload's bytes (b % 8: ifconfig-push of 3 addresses -- one inside the pool --,
    iroute of 3 networks, push route, `disable`, a comment, push-reset, a line that does not
    parse, a blank line);
  1 the server's config (not applied before a SIGHUP): (arg & 7) % 5 picks push routes (a set of 3),
    keepalive (3 values), ifconfig-pool (3 ranges: restart-only), ccd-exclusive, client-connect
    (none, /bin/true, /bin/true with an argument), from (arg >> 3);
  2 SIGHUP;
  3 time passes: arg % 48 + 0.5 s (one or two cross RELOAD_RESTART_HOLDOFF);
  4 client arg % n stops (explicit-exit-notify: none; it just goes);
  5 client arg % n, if stopped, comes back (a new process, from the same host);
  6 client arg % n restarts by itself (its SIGUSR1: in place for the lport ones);
  7 settle, then the settled oracle.

Oracles (the rule):
- no internal error; the server never stops; the loop's run covers the time asked (steps bounded);
- never two sessions (established, not told to go) on one pool address, nor two live records on
  one peer-id (an address two ccd files push is the operator's sharing: 2.6 does the same);
- a SIGHUP's pass tells no RESTART to a client whose options (its effective ccd file as parsed,
  the push lines, keepalive, client-connect line) the new config leaves as they were at its
  connect (the model's, not given.py's);
- at most one reload restart per client (name, host) per RELOAD_RESTART_HOLDOFF;
- settled (no SIGHUP for more than the hold-off, client actions 15 s back), every connected
  client has what a fresh connect under the config in force gives it: its ccd ifconfig-push
  address (else one of the first pool's, or none when full), its ccd iroutes, the pushed routes
  and keepalive as the client received them -- or, if that config refuses it (a `disable`,
  ccd-exclusive without its file), it is not connected.
  A ccd file that does not parse refuses a new connection and, since reload44, ends a kept
  client at the reload: checked too (`FUZZ_RELOAD_STRICT_BROKEN_CCD=0` turns that check off).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal

from tests.fuzz.scratch import scratch_dir

SEP = b"\xfe\xfd"
MAX_STEPS = 16
SETTLE_AFTER = 15.0                # after a client's action: back up (connect-retry 1 4) by then
# A kept client whose ccd file no longer parses: a fresh connect is refused, so it must not stay
# (reload44 ends it at the reload). "0" turns the check off.
STRICT_BROKEN_CCD = os.environ.get("FUZZ_RELOAD_STRICT_BROKEN_CCD", "1") == "1"

ADDRS = ("198.19.0.11", "198.19.0.50", "198.19.0.51")       # .11 lies in the first pool
NETS = ("198.18.90.0", "198.18.91.0", "198.18.92.0")
ROUTES = ("198.18.80.0", "198.18.81.0", "198.18.82.0")
POOLS = (("198.19.0.10", "198.19.0.12"), ("198.19.0.10", "198.19.0.13"), ("198.19.0.20", "198.19.0.21"))
KEEPALIVES = ((10, 60), (5, 30), (20, 120))
CONNECTS = ("", "/bin/true", '"/bin/true again"')
NAMES = ("client0", "client1", "client2", "DEFAULT")

_PKI: dict = {}


def _pki() -> dict:
    if not _PKI:
        from lab.gateway_world import make_pki
        _PKI.update(make_pki([f"client{i}" for i in range(4)], "reload fuzz CA"))
    return _PKI


def _ccd_line(b: int) -> str:
    k, v = b % 8, (b >> 3) % 3
    return (f"ifconfig-push {ADDRS[v]} 255.255.255.0", f"iroute {NETS[v]} 255.255.255.0",
            f'push "route {ROUTES[v]} 255.255.255.0"', "disable", "# a comment", "push-reset",
            "ifconfig-push 198.19.0", "")[k]


def _pool_set(i: int) -> set[str]:
    lo, hi = (int(ipaddress.IPv4Address(a)) for a in POOLS[i])
    return {str(ipaddress.IPv4Address(n)) for n in range(lo, hi + 1)}


class _Restarts(logging.Handler):
    """The reload restarts made (told RESTART by a pass, or a held one made): (time, CN/IP:PORT,
    the reload's generation)."""

    def __init__(self, clock, ops) -> None:
        super().__init__(logging.WARNING)
        self.clock, self.ops = clock, ops
        self.told: list[tuple[float, str, int]] = []
        self.on_held = None                 # called with a held restart's CN/IP:PORT as it is made
        self.wrong: list[str] = []          # what on_held found (asserted by the target's check)

    def emit(self, record: logging.LogRecord) -> None:
        m = record.getMessage()
        if "told RESTART to reconnect for it" in m:
            # "CN/IP:PORT: why: told RESTART ...": the session, and the (name, host) the hold-off counts
            self.told.append((self.clock.t, m.split(": ", 1)[0], self.ops._recheck_gen))
            if "(held off until now)" in m and self.on_held is not None:
                self.on_held(m.split(": ", 1)[0])


def make_reload_restart():
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    from appliance.gateway.server_files import ccd_loader
    from appliance.openvpn.config.ccd import parse_ccd
    from appliance.openvpn.errors import ConfigError
    from lab.gateway_world import CLIENT_IP, World, client_conf, client_up, server_conf
    from lab.fakes import FakeTunnelNetwork, MemoryPorts
    from appliance.gateway.client import ClientGateway
    from appliance.openvpn.config import parse_config
    holdoff = ops_mod.RELOAD_RESTART_HOLDOFF
    log = logging.getLogger("vpn-appliance")
    d = scratch_dir("fuzz-reload-restart-")
    ccd_dir = os.path.join(d, "ccd")
    base_ip = int(ipaddress.IPv4Address(CLIENT_IP))

    def conf_text(pki, k: dict) -> str:
        lo, hi = POOLS[k["pool"]]
        ping, restart = KEEPALIVES[k["keepalive"]]
        extra = (f"ifconfig-pool {lo} {hi} 255.255.255.0\nclient-config-dir {ccd_dir}\n"
                 + "".join(f"route {n} 255.255.255.0\n" for n in NETS)
                 + "".join(f'push "route {ROUTES[i]} 255.255.255.0"\n' for i in sorted(k["push"]))
                 + ("ccd-exclusive\n" if k["exclusive"] else "")
                 + ("duplicate-cn\n" if k["dup"] else "")
                 + (f"script-security 2\nclient-connect {CONNECTS[k['connect']]}\n" if k["connect"] else ""))
        return server_conf(pki, extra=extra, nopool=True).replace("keepalive 10 60", f"keepalive {ping} {restart}")

    def client_text(pki, i: int, dup: bool, nat: bool) -> str:
        cert = f"client{i // 2}" if dup else f"client{i}"
        text = client_conf(pki, "client0")
        text = text.replace(pki["clients"]["client0"][0], pki["clients"][cert][0]) \
                   .replace(pki["clients"]["client0"][1], pki["clients"][cert][1])
        # (behind the NAT both fixed: the fake net's ephemeral ports would reach 40100 one day)
        return text.replace("nobind\n", f"lport {40100 + i}\n") if i % 2 == 0 or nat and i < 2 else text

    def host(i: int, nat: bool) -> str:
        """Client i's host: 198.18.0.2 + i; with `nat`, clients 0 and 1 (one certificate under
        duplicate-cn) both behind 198.18.0.2, as two devices behind one NAT."""
        return str(ipaddress.IPv4Address(base_ip + (0 if nat and i == 1 else i)))

    def new_client(w, i: int, text: str, nat: bool):
        """Client i as a new process on its host."""
        ip = host(i, nat)
        opts = parse_config(text, "/mem/client.ovpn")
        ports, tnet = MemoryPorts(w.net, ip), FakeTunnelNetwork(w.net)
        c = ClientGateway(opts, ports, tnet, w.clock, _waiter(w), "", "")
        if i < len(w.clients):
            w.clients[i], w.client_nets[i], w.client_ports[i] = c, tnet, ports
        else:
            w.clients.append(c)
            w.client_nets.append(tnet)
            w.client_ports.append(ports)
        c.start()
        return c

    def _waiter(w):
        from lab.fakes import MemoryWaiter
        return MemoryWaiter(w.net)

    def expected(gw, k: dict, cn: str):
        """What a fresh connect of `cn` gets from the files and the config in force now:
        ("refused", why) / ("broken", why) / ("in", CcdOptions or None)."""
        def read(name: str):
            p = os.path.join(ccd_dir, name)
            if not os.path.lexists(p):
                return None
            with open(p, "rb") as f:
                return parse_ccd(f.read().decode("utf-8", "replace"), p)
        try:
            own = read(cn)
            if k["exclusive"] and (own is None or cn == "DEFAULT"):
                return "refused", "ccd-exclusive without its file"
            got = own if own is not None else read("DEFAULT")
        except ConfigError as e:
            return "broken", str(e)
        if got is not None and got.disable:
            return "refused", "disable"
        return "in", got

    def options_of(k: dict, ccd) -> tuple:
        """The model's options of a client given `ccd` under the knobs `k`: what a reload compares."""
        c = None if ccd is None else (ccd.ifconfig_push, tuple(ccd.iroutes), tuple(ccd.push), ccd.push_reset,
                                      tuple(ccd.push_remove), ccd.disable)
        return c, tuple(sorted(k["push"])), k["keepalive"], k["connect"]

    def one(data: bytes) -> None:
        if not data:
            return
        pki = _pki()
        if os.path.lexists(ccd_dir):
            shutil.rmtree(ccd_dir)
        os.mkdir(ccd_dir)
        n = 2 + data[0] % 3
        k = {"push": frozenset(), "keepalive": 0, "pool": (data[0] >> 3) % 3, "exclusive": False,
             "connect": 0, "dup": bool(data[0] & 4)}
        nat = k["dup"] and bool(data[0] & 0x20)
        first_pool = _pool_set(k["pool"])
        pending = dict(k)               # the config file as edited, read at the next SIGHUP
        w = World()
        gw, holder = w.add_reloadable_server(conf_text(pki, k))
        gw.st.ccd = ccd_loader(ccd_dir)
        gw.ops.scripts = ScriptRunner(inline=True)      # client-connect in the caller: the fake clock's order
        # id(record) -> (record, the record its restart in place continues): kept for the input,
        # so no id is reused while the model may look it up.
        lineage: dict[int, tuple] = {}
        created = gw.d.on_create

        def on_create(rec, restarts) -> None:
            lineage[id(rec)] = (rec, restarts if rec.continues else None)
            if created is not None:
                created(rec, restarts)
        gw.d.on_create = on_create
        texts = [client_text(pki, i, k["dup"], nat) for i in range(n)]
        for i in range(n):
            new_client(w, i, texts[i], nat)
        w.run_for(6)
        restarts = _Restarts(w.clock, gw.ops)
        restarts.on_held = lambda tag: held_made(tag)
        log.addHandler(restarts)
        state = {"sighup": None, "action": w.clock.t, "snap": {}}

        def run_for(seconds: float) -> None:
            end = w.clock.t + seconds
            w.run_for(seconds)
            assert w.clock.t >= end - 1e-9, f"the loop's steps ran out {end - w.clock.t:.2f} s short of the time asked"
            check()

        def live():
            return [r for r in gw.d.clients if r.alive]

        def told(r) -> bool:
            return r.session.restart_sent or id(r) in gw.ops.killing

        def snapshot() -> None:
            """Each record first seen past its push (its common name set: it read its ccd file
            in the run just ended, under the files and config as they are now) gets what the
            model gives it now; a restart in place (which keeps the options it was admitted with)
            its predecessor's, found through `lineage` -- several restarts in place may come and
            go within one run, unseen. A reload's survivors get the reload's (sighup)."""
            snap = state["snap"]
            for r in live():
                if id(r) in snap or r.common_name is None:
                    continue
                p = r                       # back to the first record seen, or to the new connection
                while p is not None and p.continues and (p is r or id(p) not in snap):
                    p = lineage.get(id(p), (None, None))[1]
                if p is None:               # (not known: not checked)
                    snap[id(r)] = {"addr": r.addr, "rec": r, "verdict": None, "given": None}
                    continue
                if p is not r and id(p) in snap:
                    snap[id(r)] = dict(snap[id(p)], rec=r)
                    continue
                verdict, ccd = expected(gw, k, r.common_name)
                snap[id(r)] = {"addr": r.addr, "rec": r, "verdict": verdict, "ccd": ccd, "k": dict(k),
                               "given": options_of(k, ccd) if verdict == "in" else None}

        def opts(e: dict):
            """What the config in force (the files at its connect or at the last reload since) gives."""
            return options_of(e["k"], e["ccd"]) if e["verdict"] == "in" else None

        def held_made(tag: str) -> None:
            """A held reload restart made now (the logging handler's call): the last reload must
            have left that client's options changed -- a later reload that left them as they
            were drops it."""
            for e in state["snap"].values():
                r = e["rec"]
                if r.alive and f"{r.common_name}/{r.addr[0]}:{r.addr[1]}" == tag and e["given"] is not None \
                        and e["verdict"] == "in" and e["given"] == opts(e):
                    restarts.wrong.append(f"{tag}: a held restart made, though the last reload gives it what it has")

        def check() -> None:
            errs = gw.d.take_internal_errors()
            assert not errs, f"the server's internal errors: {errs!r}"
            nerr = gw.faults.counts.get("internal error", 0)
            assert not nerr, f"{nerr} internal errors counted by the server's pump"
            assert gw.result is None, f"the server stopped: {gw.result}"
            recs = live()
            pids = [r.peer_id for r in recs]
            assert len(pids) == len(set(pids)), f"two live sessions on one peer-id: {sorted(pids)}"
            on: dict[str, list] = {}
            for r in recs:
                if r.session.established and not told(r) and r.vaddr:
                    static = r.ccd is not None and r.ccd.ifconfig_push and r.ccd.ifconfig_push[0] == r.vaddr
                    if not static:
                        on.setdefault(r.vaddr, []).append(r)
            for a, rs in on.items():
                assert len(rs) == 1, f"two sessions on pool address {a}: {[(x.common_name, x.addr) for x in rs]}"
            # One reload restart per client (name, host) per hold-off: restarts by two reloads
            # (one reload restarts every session of a name and host: two devices behind one NAT).
            by: dict[str, list[tuple[float, int]]] = {}
            for t, who, gen in restarts.told:
                by.setdefault(who.rsplit(":", 1)[0], []).append((t, gen))
            for who, ts in by.items():
                for (a, ga), (b, gb) in zip(ts, ts[1:]):
                    assert ga == gb or b - a >= holdoff - 1e-6, f"{who} restarted by two reloads {b - a:.1f} s apart"
            assert not restarts.wrong, restarts.wrong[0]
            snapshot()

        def sighup() -> None:
            nonlocal k
            new = dict(pending)
            snap = {key: dict(v) for key, v in state["snap"].items()}
            before = [r for r in live() if r.session.established and not told(r) and id(r) in snap]
            holder["conf"] = conf_text(pki, new)
            mark = len(restarts.told)
            was_opts = gw.opts
            gw.ops.on_signal(signal.SIGHUP)     # read and applied at once (World: reload_inline)
            state["sighup"] = w.clock.t
            if gw.opts is was_opts:
                run_for(0.3)
                return                      # refused: the server runs on as it was
            k = new
            # Every record there now is the reload's to judge: what a fresh connect gets now.
            for key, e in state["snap"].items():
                if not e["rec"].alive:
                    continue
                verdict, ccd = expected(gw, k, e["rec"].common_name)
                e.update(verdict=verdict, ccd=ccd, k=dict(k))
            run_for(0.3)
            # Whom this reload told RESTART (at once): none whose options it leaves the same.
            names = {who for _t, who, _g in restarts.told[mark:]}
            for r in before:
                was = snap[id(r)]["given"]
                verdict, ccd = expected(gw, k, r.common_name)
                if was is None or verdict != "in":
                    continue
                if options_of(k, ccd) == was:
                    tag = f"{r.common_name}/{r.addr[0]}:{r.addr[1]}"
                    assert tag not in names, f"{tag} told RESTART by a reload that leaves its options as they were"

        def settle() -> None:
            until = max((state["sighup"] or 0) + holdoff + 12, state["action"] + SETTLE_AFTER, w.clock.t)
            run_for(until - w.clock.t)
            settled_check()

        def settled_check() -> None:
            if gw.ops._reload_busy:
                return
            for r in live():
                if not r.session.established or told(r) or r.common_name is None:
                    continue
                e = state["snap"].get(id(r))
                if e is None or e["verdict"] is None:
                    continue                # (a restart in place of a session the model never saw)
                verdict, ccd, kk = e["verdict"], e.get("ccd"), e.get("k")
                who = f"{r.common_name}/{r.addr[0]}:{r.addr[1]}"
                if verdict == "broken":
                    assert not STRICT_BROKEN_CCD, f"{who} connected though its ccd file does not parse ({ccd})"
                    continue
                assert verdict == "in", f"{who} connected though the config in force refuses it ({ccd})"
                if e["given"] is not None:
                    assert e["given"] == opts(e), f"{who} keeps {e['given']}, the config in force gives {opts(e)}"
                static = ccd.ifconfig_push[0] if ccd is not None and ccd.ifconfig_push else None
                if static is not None:
                    assert r.vaddr == static, f"{who} on {r.vaddr}, its ccd file says {static}"
                else:
                    assert r.vaddr is None or r.vaddr in first_pool, f"{who} on {r.vaddr}, outside the pool"
                want_ir = {ipaddress.IPv4Network(f"{a}/{m}", strict=False)
                           for a, m in (ccd.iroutes if ccd is not None else ())}
                assert set(r.iroutes) == want_ir, f"{who} iroutes {r.iroutes}, its ccd file {sorted(want_ir)}"
                mine = [i for i in range(n) if host(i, nat) == r.addr[0] and client_up(w, i)
                        and w.client_nets[i].pushed is not None and w.client_nets[i].pushed.peer_id == r.peer_id]
                if len(mine) != 1:
                    continue                # no client's push is this session's (it is between two)
                p = w.client_nets[mine[0]].pushed
                routes = set() if ccd is not None and ccd.push_reset else {ROUTES[j] for j in kk["push"]}
                routes |= {ln.split()[1] for ln in (ccd.push if ccd is not None else ()) if ln.startswith("route ")}
                got = {x[0] for x in p.routes}
                assert got == routes, f"{who} was pushed routes {sorted(got)}, the config gives {sorted(routes)}"
                if not (ccd is not None and ccd.push_reset):
                    assert (p.ping, p.ping_restart) == KEEPALIVES[kk["keepalive"]], \
                        f"{who} was pushed ping {p.ping}/{p.ping_restart}, the config gives {KEEPALIVES[kk['keepalive']]}"
                assert p.ifconfig is None or p.ifconfig[0] == r.vaddr, f"{who}: told {p.ifconfig}, holds {r.vaddr}"

        old_level = log.level
        log.setLevel(logging.WARNING)
        try:
            check()
            for step in data[1:].split(SEP)[:MAX_STEPS]:
                if len(step) < 2:
                    continue
                op, arg, payload = step[0] % 8, step[1], step[2:]
                if op == 0:
                    p = os.path.join(ccd_dir, NAMES[arg % 4])
                    if os.path.lexists(p):
                        os.unlink(p)
                    if not arg & 4:
                        with open(p, "w") as f:
                            f.write("".join(_ccd_line(b) + "\n" for b in payload[:6]))
                    run_for(0.1)
                elif op == 1:
                    v, which = arg >> 3, (arg & 7) % 5
                    if which == 0:
                        pending["push"] = frozenset(j for j in range(3) if v >> j & 1)
                    elif which == 1:
                        pending["keepalive"] = v % 3
                    elif which == 2:
                        pending["pool"] = v % 3
                    elif which == 3:
                        pending["exclusive"] = bool(v & 1)
                    else:
                        pending["connect"] = v % 3
                elif op == 2:
                    sighup()
                elif op == 3:
                    run_for(arg % 48 + 0.5)
                elif op in (4, 5, 6):
                    i = arg % n
                    c = w.clients[i]
                    state["action"] = w.clock.t
                    if op == 4:
                        c.request_stop()
                    elif op == 5 and c.result is not None:
                        new_client(w, i, texts[i], nat)
                    elif op == 6:
                        c.user_restart()
                    run_for(0.2)
                else:
                    settle()
            settle()
        finally:
            log.removeHandler(restarts)
            log.setLevel(old_level)
            try:
                gw.ops.close()
            except OSError:
                pass
    return one


def seeds() -> list[bytes]:
    def s(world: int, *steps: bytes) -> bytes:
        return bytes([world]) + SEP.join(steps)

    def ccd(who: int, *lines: int) -> bytes:        # client0..2 / DEFAULT (3), the lines' bytes
        return bytes([0, who]) + bytes(lines)

    def knob(which: int, v: int) -> bytes:          # push, keepalive, pool, ccd-exclusive, client-connect
        return bytes([1, which | v << 3])

    def t(arg: int) -> bytes:                       # arg % 48 + 0.5 s
        return bytes([3, arg])

    hup, settle, drop = b"\x02\x00", b"\x07\x00", bytes([0, 4])

    def stop(i: int) -> bytes:
        return bytes([4, i])

    def back(i: int) -> bytes:
        return bytes([5, i])

    def usr1(i: int) -> bytes:
        return bytes([6, i])

    at50, at51, at11 = 0 | 1 << 3, 0 | 2 << 3, 0            # ifconfig-push .50 / .51 / .11 (in the pool)
    ir90, ir91, push80, disable, comment, reset, broken = 1, 1 | 1 << 3, 2, 3, 4, 5, 6
    return [
        s(0, t(2)),
        s(0, ccd(0, at50), hup, t(5)),                                              # client0 .50
        s(1, ccd(0, at50), ccd(1, comment), hup, t(5)),                             # + a comment for client1
        s(0, ccd(0, ir90), hup, t(5), ccd(0, ir91), hup, settle),                   # held, then made
        s(0, knob(0, 1), hup, settle),                                              # a push line added
        s(0, knob(1, 1), hup, settle),                                              # keepalive
        s(0, knob(2, 2), hup, settle),                                              # the pool: restart only
        s(0, ccd(0, comment), knob(3, 1), hup, settle),                             # ccd-exclusive
        s(0, knob(4, 1), hup, t(2), knob(4, 2), hup, t(2), knob(4, 0), hup, settle),  # client-connect
        s(0, ccd(1, disable), hup, settle),
        s(2, ccd(3, at51), hup, settle),                                            # DEFAULT for everyone
        s(6, knob(0, 7), hup, t(2), stop(1), back(1), settle),
        s(6, knob(0, 1), hup, usr1(0), usr1(1), settle),                            # duplicate-cn, full pool
        s(5, knob(0, 1), hup, t(0), knob(0, 2), hup, t(0), knob(0, 4), hup, settle),   # a storm, 4 on 3
        s(5, knob(0, 1), hup, t(2), knob(0, 2), hup, t(4), knob(0, 4), hup, t(29), knob(0, 1), hup, settle),
        s(0, ccd(0, at50), hup, t(3), ccd(0, at51), hup, usr1(0), t(1), ccd(0, at50), hup, settle),
        s(0, ccd(0, at50), hup, t(3), ccd(0, at51), hup, usr1(0), t(1), usr1(0), ccd(0, ir91), hup, t(10),
          usr1(0), settle),                                                         # held, in place, in place
        s(0, ccd(0, at50), hup, ccd(0, at51), hup, ccd(0, at50), hup, settle),      # a SIGHUP storm
        s(1, ccd(0, broken), hup, settle),                                          # a line that does not parse
        s(0, stop(0), t(2), ccd(0, at50), back(0), t(3), hup, settle),              # a new process, same port
        s(0, stop(0), ccd(0, at50), hup, t(0), back(0), settle),
        s(0, ccd(0, at50), hup, usr1(0), usr1(0), settle),                          # told, then its SIGUSR1s
        s(4, ccd(0, at50), hup, t(3), knob(0, 1), hup, settle),                     # duplicate-cn, one address
        s(2, ccd(3, at50), hup, t(3), ccd(3, at51), hup, t(2), ccd(3, reset), hup, settle),
        s(2, knob(1, 1), hup, knob(1, 2), hup, knob(1, 0), hup, t(31), knob(1, 1), hup, settle),
        s(1, ccd(1, disable), hup, t(2), bytes([0, 1 | 4]), hup, back(1), settle),
        s(0, ccd(0, ir90, push80), hup, stop(0), t(3), back(0), settle),
        s(0, ccd(0, at11), ccd(1, at11), hup, settle),                              # .11 pushed to two: shared
        s(0, ccd(2, 0), drop, hup, settle),
        s(0x25, knob(0, 1), hup, t(2), knob(0, 2), hup, t(31), settle),          # NAT, 4 on 3 addresses
        s(0x26, knob(0, 1), hup, usr1(1), t(2), usr1(0), settle),                   # NAT, 2 clients
        s(0x24, ccd(0, ir90), hup, stop(1), t(1), back(1), t(2), hup, settle),
    ]
