"""The route keeper's decisions (fuzz40): which routes go back after a link flap, and when.

`route-keeper`: the client's RouteKeeper (gateway/route_keeper.py) on a fake pump and clock, its
watch port a fake RouteWatch, its restore the real RouteSet.restore (router/routes.py) on a fake
kernel. The routes it holds are those a push could have added (a malicious server chooses
them): host and network routes, IPv4 and IPv6, on-link or via a gateway, out of the tunnel, a
NIC or a NIC that is gone, unreachable ones (block-ipv6). The input is a script: hints (the
watch says changed or not, more pending, or fails with OSError), time passing, the kernel
flushing a NIC's routes, the link going down (adds say ENETDOWN) and up, the NIC renumbered
(its addresses from the input: any prefix length, none), someone else's route put in (EEXIST),
a NIC vanishing (ENODEV).

Oracles, per restore: each route of ours tried exactly once in order, but those forgotten; a
route is forgotten exactly when it is on-link (no gateway), unicast, out of a NIC other than the
tunnel, and no address of that NIC (same family) has a network holding its destination --
computed here with ipaddress, apart from `_on_link`; what remains is the rest in order; the
kernel holds every route said to be back; a failure is an add that said anything but EEXIST.
Per keeper: no check closer than Pacing.MIN_GAP to the last; a hint is followed by a check
within SETTLE (or by MIN_GAP after the last one), a failed check by one within RETRY_MAX; after
the watch failed, no check and no timer. The log lines follow the rules merged after fuzz40
(flap40, atk40, the lead's one limiter): a failed check's "not added again yet" line is an INFO
exactly when LOG_EVERY passed since the last such line, but the PERSIST-th failed check in a row
says one WARNING whatever the rate; the "added again" lines and their summary are said exactly
as a model of logpace.NoteLimit written here (_RefLimit: 3 at once, then one per 30 s, a float
sum of 30 s counting as 30 s) says, and every check that put routes back is said, counted in a
later line ("N more times") or still held.
Nothing escapes either.

`wan-lan-relink` (make_relink's docstring): on a clock of the input's, the LAN keeper's lines
against a model of NoteLimit written here.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import re

TUN = 10
NICS = (2, 3, 4)            # 4 can vanish
EPS = 1e-9
BACK_LINE = "route(s) of the tunnel gone from the kernel"

_DSTS4 = ("198.18.0.1", "198.18.0.0", "198.18.1.77", "198.19.255.255", "10.0.0.1", "0.0.0.0", "128.0.0.0",
          "255.255.255.255", "198.18.0.255")
_DSTS6 = ("2001:db8::1", "2001:db8::", "2001:db8:1::5", "::", "8000::", "fe80::1", "::ffff:198.18.0.1", "ff02::1")
_GWS4 = ("198.18.0.254", "198.18.1.1")
_GWS6 = ("2001:db8::fe", "fe80::fe")


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise EOFError
        b = self.data[self.at]
        self.at += 1
        return b

    def left(self) -> bool:
        return self.at < len(self.data)


class _Kernel:
    """The routes the kernel holds, NIC addresses and link states; the Rtnl calls restore makes."""

    def __init__(self) -> None:
        self.routes: set[tuple] = set()
        self.addrs: dict[int, list[tuple[int, str, int, int]]] = {n: [] for n in NICS}
        self.down: set[int] = set()
        self.gone: set[int] = set()
        self.calls: list[dict] = []

    @staticmethod
    def key(spec: dict) -> tuple:
        return spec["dst"], spec["prefixlen"], spec.get("priority")

    def route_add(self, **spec) -> None:
        from appliance.tun.rtnl import NetlinkError
        self.calls.append(spec)
        oif = spec.get("oif")
        if oif is not None and (oif in self.gone):
            raise NetlinkError(errno.ENODEV, "No such device")
        if oif is not None and oif in self.down:
            raise NetlinkError(errno.ENETDOWN, "Network is down")
        k = self.key(spec)
        if k in self.routes:
            raise NetlinkError(errno.EEXIST, "File exists")
        self.routes.add(k)

    def addrs_of(self, family: int, index: int | None = None):
        import socket
        if index in self.gone:
            return []
        out = []
        for n, lst in self.addrs.items():
            if index is not None and n != index:
                continue
            out += [a for a in lst if a[0] == family]
        return out

    def flush(self, oif: int) -> None:
        # Which of the routes is whose is not kept here: flush drops those this NIC carried,
        # remembered by the specs the test added.
        self.routes = {k for k in self.routes if self._oif.get(k) != oif}

    _oif: dict = {}


class _FakeNl:
    def __init__(self, k: _Kernel) -> None:
        self.k = k

    def route_add(self, **spec) -> None:
        self.k.route_add(**spec)

    def addrs(self, family: int = 0, index: int | None = None):
        return self.k.addrs_of(family, index)

    def close(self) -> None:
        pass


class _Timers:
    def __init__(self) -> None:
        self.armed_: dict[object, tuple[float, object]] = {}

    def arm(self, key, at: float, fn) -> None:
        self.armed_[key] = (at, fn)

    def cancel(self, key) -> None:
        self.armed_.pop(key, None)

    def armed(self, key) -> bool:
        return key in self.armed_


class _Pump:
    def __init__(self) -> None:
        self.timers = _Timers()
        self.watched: dict[int, object] = {}
        self.again_: dict[int, object] = {}

    def watch(self, port, handler) -> None:
        self.watched[id(port)] = handler

    def unwatch(self, port) -> None:
        self.watched.pop(id(port), None)
        self.again_.pop(id(port), None)

    def again(self, port, handler) -> None:
        self.again_[id(port)] = handler


class _Watch:
    def __init__(self) -> None:
        self.has_pending = False
        self.next: tuple[bool, bool, bool] = (False, False, False)     # changed, pending, fails
        self.closed = False

    def fileno(self) -> int:
        return 99

    def changed(self, limit: int = 16) -> bool:
        seen, pending, fails = self.next
        if fails:
            raise OSError(errno.ENOBUFS, "No buffer space available")
        self.has_pending = pending
        return seen

    def close(self) -> None:
        self.closed = True


class _Logs(logging.Handler):
    def __init__(self, clock=None) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []
        self.levels: list[int] = []
        self.clock = clock
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())
        self.levels.append(record.levelno)
        self.times.append(self.clock() if self.clock else 0.0)


def _spec(s: _Stream) -> dict:
    from appliance.tun.rtnl import RTN_UNICAST, RTN_UNREACHABLE
    b = s.byte()
    v6 = bool(b & 1)
    dsts, gws = (_DSTS6, _GWS6) if v6 else (_DSTS4, _GWS4)
    dst = dsts[s.byte() % len(dsts)]
    plen = s.byte() % (129 if v6 else 33)
    gw = gws[(b >> 1) & 1] if b & 4 else None
    oif = (None, TUN, *NICS)[(b >> 3) % 5]
    unreachable = bool(b & 0x80) and v6
    if unreachable:
        oif, gw = None, None
    return {"dst": dst, "prefixlen": plen, "oif": oif, "gateway": gw, "priority": (s.byte() % 3) or None,
            "rtype": RTN_UNREACHABLE if unreachable else RTN_UNICAST}


def _addresses(s: _Stream) -> list[tuple[int, str, int, int]]:
    import socket
    out = []
    for _ in range(s.byte() % 4):
        b = s.byte()
        if b & 1:
            a = ("2001:db8::10", "2001:db8:1::10", "fe80::2", "2001:db9::1")[(b >> 1) % 4]
            out.append((socket.AF_INET6, a, s.byte() % 129, 0))
        else:
            a = ("198.18.0.10", "198.18.1.10", "10.9.9.9", "198.19.0.1")[(b >> 1) % 4]
            out.append((socket.AF_INET, a, s.byte() % 33, 0))
    return out


def _on_link_ref(k: _Kernel, spec: dict) -> bool:
    ip = ipaddress.ip_address(spec["dst"])
    for fam, a, plen, _ in k.addrs.get(spec["oif"], []) if spec["oif"] not in k.gone else []:
        net = ipaddress.ip_network(f"{a}/{plen}", strict=False)
        if net.version == ip.version and ip in net:
            return True
    return False


def make_route_keeper():
    from appliance.gateway.route_keeper import Pacing, RouteKeeper
    from appliance.router.routes import RouteSet
    from appliance.tun.rtnl import RTN_UNICAST

    logger = logging.getLogger("vpn-appliance")

    def one(data: bytes) -> None:
        s = _Stream(data)
        k = _Kernel()
        oifs: dict = {}
        k._oif = oifs
        rs = RouteSet(nl=_FakeNl(k))
        try:
            for _ in range(s.byte() % 9):
                spec = _spec(s)
                # As RouteSet.add: the kernel takes it (or says EEXIST: not ours).
                key = _Kernel.key(spec)
                if key not in k.routes:
                    k.routes.add(key)
                    oifs[key] = spec["oif"]
                    rs.added.append(spec)
            for n in NICS:
                k.addrs[n] = _addresses(s)
        except EOFError:
            pass
        now = [0.0]
        pump, watch, logs = _Pump(), _Watch(), _Logs(lambda: now[0])
        checks: list[tuple[float, bool]] = []       # (time, failed)
        restore_fails = [False]
        n_back = [0]                                # checks that put routes back

        def restore():
            if restore_fails[0]:
                raise OSError(errno.EMFILE, "Too many open files")
            before = list(rs.added)
            k.calls.clear()
            back, failed = rs.restore(TUN)
            forgotten = [sp for sp in before if not any(sp is x for x in rs.added)]
            for sp in before:
                want_forget = (sp.get("gateway") is None and sp.get("oif") is not None and sp["oif"] != TUN
                               and sp.get("rtype", RTN_UNICAST) == RTN_UNICAST and not _on_link_ref(k, sp))
                got = any(sp is x for x in forgotten)
                assert got == want_forget, f"forgotten={got}, should be {want_forget}: {sp} addrs {k.addrs}"
            kept = [sp for sp in before if not any(sp is x for x in forgotten)]
            assert [id(x) for x in rs.added] == [id(x) for x in kept], "the kept routes changed order"
            assert len(k.calls) == len(kept) and all(a == b for a, b in zip(k.calls, kept)), \
                "each kept route tried exactly once, in order"
            for sp in back:
                assert _Kernel.key(sp) in k.routes, "said back, not in the kernel"
            assert len(back) + len(failed) <= len(kept)
            for sp, why in failed:
                assert "File exists" not in why
            for sp in back:
                oifs[_Kernel.key(sp)] = sp["oif"]
            n_back[0] += bool(back)
            return back, failed

        logger.addHandler(logs)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            keeper = RouteKeeper(pump, lambda: now[0], watch, restore)
            orig_check = keeper._check

            def check_spy():
                n = len(logs.records)
                t = now[0]
                backs_before = n_back[0]
                if checks:
                    assert t - checks[-1][0] >= Pacing.MIN_GAP - EPS, f"checks {t - checks[-1][0]:.3f} s apart"
                orig_check()
                said = [(lv, r) for lv, r in zip(logs.levels[n:], logs.records[n:]) if "not added again yet" in r]
                failed = bool(said) or keeper.pacing.due is not None
                # The failure's line (flap40, as merged): INFO at most once per LOG_EVERY -- and said
                # whenever that long passed since the last --, but one WARNING per run of failures,
                # at the PERSIST-th check in a row that failed, whatever the rate limit.
                run[0] = run[0] + 1 if failed else 0
                assert len(said) <= 1, "a failure said twice in one check"
                if failed and run[0] == Pacing.PERSIST:
                    assert [lv for lv, _r in said] == [logging.WARNING], f"no WARNING at the {Pacing.PERSIST}th failure"
                    assert f"after {Pacing.PERSIST} tries" in said[0][1]
                elif failed:
                    gap = t - last_said[0]
                    want = gap >= Pacing.LOG_EVERY - EPS
                    # (exactly LOG_EVERY apart, as far as the time steps' float sums tell: either)
                    if abs(gap - Pacing.LOG_EVERY) > EPS:
                        assert [lv for lv, _r in said] == ([logging.INFO] if want else []), \
                            f"INFO {'held' if want else 'said'} {gap:.2f} s after the last failure line"
                    assert [lv for lv, _r in said] in ([], [logging.INFO])
                else:
                    assert not said
                if said:
                    last_said[0] = t
                again = [r for r in logs.records[n:] if r.startswith(BACK_LINE)]
                if n_back[0] > backs_before:
                    want = back_lim.due(t)
                    assert len(again) == int(want is not None), "'added again' not as the limiter says"
                    if want:
                        assert again[0].endswith(f"({want} more time{'s' if want != 1 else ''} since the last such line)")
                else:
                    assert not again, "'added again' with nothing put back"
                checks.append((t, failed))

            def say_spy():
                n = len(logs.records)
                orig_say()
                lines = [r for r in logs.records[n:] if r.startswith(BACK_LINE)]
                want = back_lim.summary(now[0])
                assert len(lines) == int(bool(want)), "'added again' summary not as the limiter says"
                if want:
                    assert f" and added again {want} more time{'s' if want != 1 else ''} since" in lines[0]
            orig_say = keeper._say_held
            keeper._say_held = say_spy
            back_lim = _RefLimit()
            keeper._check = check_spy
            run = [0]                            # failed checks in a row
            last_said = [float("-inf")]          # the last failure line (INFO or WARNING)
            hint_due: float | None = None        # a check must run by then
            hint_at = 0.0                        # ...after this hint
            fail_logs: list[float] = []
            closed = False

            def fire_due() -> None:
                for _ in range(4):
                    due = [(key, fn) for key, (at, fn) in list(pump.timers.armed_.items()) if at <= now[0] + EPS]
                    if not due:
                        return
                    for key, fn in due:
                        pump.timers.armed_.pop(key, None)
                        fn()

            def advance(dt: float) -> None:
                # Time passes timer by timer, as the pump would fire them.
                end = now[0] + dt
                for _ in range(64):
                    nxt = min((at for at, _fn in pump.timers.armed_.values()), default=None)
                    if nxt is None or nxt > end:
                        break
                    now[0] = max(now[0], nxt)
                    fire_due()
                now[0] = end
                fire_due()

            while s.left():
                op = s.byte()
                kind = op & 7
                arg = op >> 3
                n_logs = len(logs.records)
                if kind == 0:           # a hint
                    watch.next = (bool(arg & 1), bool(arg & 2), arg == 31)
                    before_checks = len(checks)
                    handler = pump.watched.get(id(watch))
                    if handler is not None:
                        handler()
                        if pump.again_.pop(id(watch), None) is not None:
                            assert watch.has_pending
                    if arg == 31:
                        closed, hint_due = True, None       # the keeper stops: ping-restart's job then
                    elif arg & 1 and not closed:
                        last = checks[-1][0] if checks else float("-inf")
                        by = max(now[0] + Pacing.SETTLE, last + Pacing.MIN_GAP)
                        hint_due = by if hint_due is None else min(hint_due, by)
                        hint_at = now[0] if hint_due == by else hint_at
                    assert len(checks) == before_checks, "a check ran inside the hint"
                elif kind == 1:         # time
                    advance((arg + 1) * (0.05 if op & 0x80 else 0.5))
                elif kind == 2:         # flush a NIC's routes (and the tunnel's)
                    k.flush((TUN, *NICS)[arg % 4])
                elif kind == 3:         # link down / up
                    n = NICS[arg % 3]
                    (k.down.discard if n in k.down else k.down.add)(n)
                    if n not in k.down:
                        k.flush(n)
                elif kind == 4:         # renumbered
                    try:
                        k.addrs[NICS[arg % 3]] = _addresses(s)
                    except EOFError:
                        break
                    k.flush(NICS[arg % 3])
                elif kind == 5:         # someone else's route for one of ours' destination
                    if rs.added:
                        sp = rs.added[arg % len(rs.added)]
                        k.routes.add(_Kernel.key(sp))
                        oifs[_Kernel.key(sp)] = None
                elif kind == 6:         # the NIC vanishes / comes back (empty)
                    (k.gone.discard if 4 in k.gone else k.gone.add)(4)
                    k.addrs[4] = [] if 4 in k.gone else k.addrs[4]
                else:                   # restore itself fails (the netlink socket)
                    restore_fails[0] = not restore_fails[0]
                fail_logs += [(t, lv) for t, lv, r in zip(logs.times[n_logs:], logs.levels[n_logs:],
                                                          logs.records[n_logs:]) if "not added again yet" in r]
                # A hinted check ran by its time (the fake pump fires what is due at once).
                if hint_due is not None and now[0] >= hint_due + EPS:
                    assert any(hint_at - EPS <= t <= hint_due + EPS for t, _f in checks), \
                        f"hinted, no check by {hint_due:.3f} (now {now[0]:.3f})"
                    hint_due = None
                if checks and checks[-1][1] and not closed:
                    assert pump.timers.armed(RouteKeeper.KEY), "a failed check left no retry armed"
                    at = pump.timers.armed_[RouteKeeper.KEY][0]
                    assert at <= checks[-1][0] + Pacing.RETRY_MAX + Pacing.MIN_GAP + EPS, "retry too late"
                if closed:
                    assert not pump.timers.armed_ and id(watch) not in pump.watched and watch.closed
            # Apart from the one WARNING of a run, failure lines at least LOG_EVERY apart.
            infos = [t for t, lv in fail_logs if lv == logging.INFO]
            warns = [t for t, lv in fail_logs if lv == logging.WARNING]
            for a, b in zip(infos, infos[1:]):
                assert b - a >= Pacing.LOG_EVERY - EPS, f"a failure said twice within {b - a:.2f} s"
            assert len(warns) <= max(1, sum(1 for i, (_t, f) in enumerate(checks)
                                            if f and (i == 0 or not checks[i - 1][1]))), "a WARNING per run of failures"
            # "added again" through the one limiter (logpace.NoteLimit): every check that put
            # routes back is said, or held and counted in a later line, or still held.
            lines = [r for r in logs.records if r.startswith(BACK_LINE)]
            put_back = sum(1 for r in lines if re.search(r" added again( \(\d+ more times? since the last such line\))?$", r))
            counted = sum(int(m) for r in lines for m in re.findall(r"(\d+) more times? since the last such line", r))
            assert put_back + sum(1 for r in lines if " and added again " in r) == len(lines), lines
            assert put_back + counted + keeper.notes.held == n_back[0], \
                f"'added again': {put_back} said + {counted} counted + {keeper.notes.held} held != {n_back[0]}"
        finally:
            logger.removeHandler(logs)
            logger.setLevel(old_level)
    return one


class _RefLimit:
    """logpace.NoteLimit's rule, written apart: up to 3 lines at once, one more per 30 s; what was
    held is said with the next line, or alone by summary() once a line may be said again.

    "Once 30 s have passed" to within EPS of a line's share (fuzzfix41): refilled from float time
    steps, the share after exactly 30 s comes out at 0.9999999999999999 (three 10 s steps of the
    LAN keeper's clock; the route keeper's summary timer at the time NoteLimit.next_summary names,
    30.2 s after a storm began). review41 (e9843396) made the product say the line then, as
    README's "one per 30 s" and "once a storm is over, a line of its own" promise; a model
    comparing with 1.0 exactly held it, and failed on main."""

    def __init__(self) -> None:
        self.burst, self.every = 3, 30.0             # README: "3 at once, then one per 30 s"
        self.tokens, self.at, self.held = float(self.burst), None, 0

    def due(self, now: float) -> int | None:
        if self.at is not None:
            self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.at) / self.every)
        self.at = now if self.at is None else max(self.at, now)
        if self.tokens < 1.0 - EPS:
            self.held += 1
            return None
        self.tokens -= 1.0
        held, self.held = self.held, 0
        return held

    def summary(self, now: float) -> int:
        if not self.held:
            return 0
        held = self.due(now)
        if held is None:            # not yet: due() counted this ask as one more held
            self.held -= 1
            return 0
        return held


def make_relink():
    """`wan-lan-relink`: router/static_wan.py `missing` and router/lan_routes.py's keeper
    (keep_on_link's reapply): an address the NIC lost is added again, none it holds; gateways only
    when the link came back or an address was missing, and only for a family without a default
    route; [lan] routes restored exactly when the link came back or the last try failed. The log
    as merged after fuzz40 (flap40 and the one limiter, logpace.NoteLimit): the "not back yet"
    INFO at most once per change of the failed list, said exactly when the limiter (modelled here:
    BURST at once, then one per LOG_EVERY of the input's clock) lets it, with the count held; one
    WARNING at the PERSIST-th try in a row with a route failed; "added again" through its own
    limiter, naming what came back; no other line."""
    from appliance.router import lan_routes, static_wan

    def one(data: bytes) -> None:
        s = _Stream(data)
        try:
            pool = [ipaddress.ip_interface(x) for x in ("198.18.0.10/24", "198.18.0.10/25", "198.18.5.1/30",
                                                         "2001:db8::10/64", "2001:db8::10/128", "10.0.0.1/8")]
            gpool = [ipaddress.ip_address(x) for x in ("198.18.0.1", "2001:db8::1", "198.18.5.2", "fe80::1")]
            b = s.byte()
            addresses = [pool[i] for i in range(6) if b >> i & 1]
            b = s.byte()
            gateways = [gpool[i] for i in range(4) if b >> i & 1]
            b = s.byte()
            have = {(str(pool[i].ip), pool[i].network.prefixlen) for i in range(6) if b >> i & 1}
            if b & 0x40:
                have.add(("198.18.0.10", 16))
            b = s.byte()
            defaults = {v for i, v in ((0, 4), (1, 6)) if b >> i & 1}
            link_back = bool(b & 4)
        except EOFError:
            return
        addrs, gws = static_wan.missing(addresses, have, gateways, defaults, link_back)
        assert addrs == [a for a in addresses if (str(a.ip), a.network.prefixlen) not in have]
        if addrs or link_back:
            assert gws == [g for g in gateways if g.version not in defaults]
        else:
            assert gws == []

        # [lan] routes: a fake RouteSet whose restore says what the input says.
        class Routes:
            calls = 0
            answer: tuple = ([], [])

            def restore(self):
                Routes.calls += 1
                return Routes.answer

        now = [0.0]
        keeper = lan_routes.LanRouteKeeper("lan0", Routes(), clock=lambda: now[0])
        logs = _Logs()
        # The one limiter (logpace.NoteLimit, merged after fuzz40) as its docstring says it:
        # BURST at once, then one per `every` s, the ones held counted into the next line.
        fail_lim, back_lim = _RefLimit(), _RefLimit()
        tries = 0                                   # due tries in a row with a route failed
        logger = logging.getLogger("vpn-appliance")
        logger.addHandler(logs)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            last_failed: list[str] = []
            while s.left():
                op = s.byte()
                link = bool(op & 1)
                failed = [({"dst": f"198.18.{i}.0", "prefixlen": 24}, "Network is down")
                          for i in range((op >> 1) & 3)]
                back = [{"dst": f"10.{i}.0.0", "prefixlen": 16} for i in range((op >> 3) & 3)]
                now[0] += (0.0, 1.0, 10.0, 30.0)[(op >> 5) & 3]
                if op & 0x80:
                    keeper.stop.set()
                Routes.answer = (back, failed)
                due = not keeper.stop.is_set() and (link or bool(keeper.failed))
                calls, n = Routes.calls, len(logs.records)
                got = keeper.reapply(link)
                assert Routes.calls - calls == int(due), "restore called when not due, or not when due"
                if due:
                    assert got == bool(back)
                    names = [f"{sp['dst']}/{sp['prefixlen']}" for sp, _ in failed]
                    new = logs.records[n:]
                    # "not back yet": INFO once per change of the failed list, through the limiter
                    said = [r for r in new if "not back yet" in r]
                    want = fail_lim.due(now[0]) if failed and names != last_failed else None
                    assert len(said) == int(want is not None), "not-back warning"
                    if said and want:
                        assert f"({want} more time(s) since the last such line)" in said[0], said[0]
                    elif said:
                        assert "more time" not in said[0]
                    # ...and one WARNING at the PERSIST-th try in a row with a failure (flap40)
                    tries = tries + 1 if failed else 0
                    still = [r for r in new if f"still not back after {lan_routes.PERSIST} tries" in r]
                    assert len(still) == int(tries == lan_routes.PERSIST), "still-not-back warning"
                    # "added again" (what restore put back) through its own limiter
                    again = [r for r in new if "added again" in r]
                    want = back_lim.due(now[0]) if back else None
                    assert len(again) == int(want is not None), "added-again line"
                    if again:
                        assert again[0].endswith(f"({want} more time{'s' if want != 1 else ''} since the last such line)"
                                                 if want else ", ".join(f"{sp['dst']}/{sp['prefixlen']}" for sp in back))
                    assert len(new) == len(said) + len(still) + len(again)
                    assert keeper.failed == names
                    last_failed = names
                else:
                    assert got is False and len(logs.records) == n
        finally:
            logger.removeHandler(logs)
            logger.setLevel(old_level)
    return one


def seeds_route_keeper() -> list[bytes]:
    def sp(v6: int, dst: int, plen: int, gw: int, oif: int, prio: int = 0, unreach: int = 0) -> bytes:
        return bytes((v6 | gw << 1 | (4 if gw >= 0 else 0) | oif << 3 | unreach << 7, dst, plen, prio))

    host_onlink = sp(0, 0, 32, 0, 2)[:0] + bytes((0 | 2 << 3, 0, 32, 0))      # 198.18.0.1/32 on-link eth2
    via = bytes((4 | 2 << 3, 4, 8, 0))                                             # 10.0.0.1/8 via 198.18.0.254 eth2
    half = bytes((1 << 3, 5, 1, 0))                                                # 0/1 via tun
    half2 = bytes((1 << 3, 6, 1, 0))
    v6 = bytes((1 | 3 << 3, 0, 128, 0))                                            # 2001:db8::1/128 on-link eth3
    unreach = bytes((1 | 0x80, 3, 1, 0))
    addrs_eth2 = bytes((1, 0 << 1, 24))                                           # 198.18.0.10/24
    addrs_eth3 = bytes((1, 1, 64))                                                 # 2001:db8::10/64
    none = b"\x00"
    setup = bytes((6,)) + host_onlink + via + half + half2 + v6 + unreach + addrs_eth2 + addrs_eth3 + none
    hint = bytes((0 | 1 << 3,))
    t = bytes((1 | 2 << 3,))
    return [
        setup + hint + t + bytes((2 | 1 << 3,)) + hint + t + t,                   # eth2 flushed, hint, back
        setup + bytes((3 | 0 << 3,)) + bytes((2 | 1 << 3,)) + hint + t * 3 + bytes((3 | 0 << 3,)) + hint + t * 8,
        setup + bytes((4 | 0 << 3, 1, 2, 24)) + hint + t * 2,                      # renumbered: 198.18.1.10/24
        setup + bytes((5 | 2 << 3,)) + bytes((2 | 0 << 3,)) + hint + t,            # someone else's route
        setup + bytes((6,)) + bytes((2 | 3 << 3,)) + hint + t * 4 + bytes((6,)) + t * 20,
        setup + bytes((7,)) + hint + t * 4 + bytes((7,)) + t * 40 + bytes((0 | 31 << 3,)) + t,
        setup + bytes((0 | 3 << 3,)) * 3 + bytes((1 | 0x80,)) * 10 + hint * 4 + t,
        # restore failing for ~75 s (INFO lines 30 s apart, the WARNING at the PERSIST-th), then back
        setup + bytes((7,)) + hint + t * 50 + bytes((7,)) + t * 25,
        # ...twice: a WARNING for each run of failures
        setup + (bytes((7,)) + hint + t * 50 + bytes((7,)) + hint + t * 25) * 2,
        # a flush storm: "added again" past the limiter's burst, held, then counted in a summary
        setup + (bytes((2 | 1 << 3,)) + hint + t) * 8 + t * 30,
    ]


def seeds_relink() -> list[bytes]:
    return [bytes((0x3F, 0x0F, 0x01, 0x04, 0x01, 0x03, 0x00, 0x02, 0x0B, 0x81, 0x01)),
            bytes((0x09, 0x03, 0x09, 0x03, 0x00, 0x01, 0x06, 0x06, 0x00)),
            bytes((0x21, 0x05, 0x60, 0x02, 0x07, 0x05, 0x03)),
            # a storm: the failed list changing at every try (past the limiter's burst), time
            # passing (one line per 30 s), PERSIST tries failed in a row, then all back
            bytes((0x21, 0x05, 0x60, 0x02)) + bytes((0x03, 0x0D, 0x05, 0x0B, 0x03, 0x2D, 0x65, 0x0B, 0x43, 0x19, 0x79, 0x09))]
