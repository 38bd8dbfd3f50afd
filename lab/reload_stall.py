"""The longest step of the server's loop during a reload at N clients, in memory (the gateway
tests' World, lab/gateway_world.py: one process, a fake network, the real engine and pump): N clients connected, each
with a small client-config-dir file, the config re-read with a change (a pushed route), then the
server's pump stepped until the reload's pass over its clients has logged its line. Printed per
mode: the longest step, the reload's own step (the one that ran the SIGHUP), and the wall time to
the "clients kept" line.

    .venv/bin/python -m lab.reload_stall [--clients 1000] [--rounds 2] [--storm 100 [--storm-every 0.01]]
                                         [--change route|ccd|flip|none]

`--change` (since helper reload42, whose reload restarts a kept client the new config would give
other options, gateway/ops.py `_restart_for_reload`): `route` adds a pushed route (every client
told RESTART: the worst case), `ccd` rewrites every tenth client's ccd file (c5, c15, ...: those
told RESTART; with --storm each reload rewrites them again), `flip` (helper reload44) makes those
same files not parse at odd reloads and parse again at even ones (their clients disconnected at
the first: a reconnect is refused on such a file -- the storm's attack on the loop), `none`
changes `hand-window` only (every client kept: the decision's cost alone). The figures
stop at the pass's line: the restarted clients' reconnections are not in them (run one round of
`route` or `ccd` per process: a client told RESTART is not told again in the next round).

Modes: `inline` runs the reading (config, key material, files, the kept clients' ccd files) in
the loop, as every reload did before helper reload40; `worker` in the reload's worker thread
(gateway/reload_reader.py). Not a test (no timed tests): figures for the README.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from appliance.gateway.server_files import ccd_loader
from lab.gateway_world import World, client_conf, client_up, ipv4_udp, make_pki, server_conf

BATCH = 25


def _connect(pki, n: int, ccd: Path) -> tuple[World, object, dict, str]:
    w = World()
    conf = server_conf(pki).replace("255.255.255.0", "255.255.240.0") + f"client-config-dir {ccd}\n"
    gw, holder = w.add_reloadable_server(conf)
    gw.st.ccd = ccd_loader(str(ccd))        # the World reads no files at start; as server_files does
    for i in range(n):
        (ccd / f"c{i}").write_text(f"# client {i}\npush \"route 198.18.{100 + i % 50}.0 255.255.255.0\"\n")
    for first in range(0, n, BATCH):      # BATCH handshakes at a time, each batch up before the next
        batch = range(first, min(n, first + BATCH))
        for i in batch:
            w.add_client(client_conf(pki, f"c{i}"), ip=f"198.18.{1 + i // 250}.{2 + i % 250}")
        assert w.run(lambda: all(client_up(w, i) for i in batch), max_time=60, max_steps=200_000), f"batch {first} not up"
    return w, gw, holder, conf


def _pki(n: int) -> dict:
    """The gateway tests' PKI with n clients c0..c{n-1}."""
    return make_pki([f"c{i}" for i in range(n)], "Reload stall CA")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(record.getMessage())


def _mode(gw, inline: bool) -> None:
    gw.ops.reload_inline = inline
    reader = gw.ops.reload_reader
    if reader is not None and reader.inline != inline:      # the other mode's worker: a new one
        if not reader.inline:
            gw.pump.unwatch(reader)
            reader.close()
        gw.ops.reload_reader = None


def _change(holder: dict, conf: str, change: str, tag: int, ccd: Path | None, n: int) -> None:
    """The reload's change (module docstring, `--change`)."""
    if change == "route":
        holder["conf"] = conf + f"push \"route 198.18.{200 + tag % 50}.0 255.255.255.0\"\n"
    elif change == "ccd":
        holder["conf"] = conf
        for i in range(5, n, 10):           # (not c0, whose packets the storm times)
            (ccd / f"c{i}").write_text(f"push \"route 198.18.{100 + i % 50}.0 255.255.255.0\"\n"
                                       f"push \"route 198.18.{200 + tag % 50}.0 255.255.255.0\"\n")
    elif change == "flip":
        holder["conf"] = conf
        for i in range(5, n, 10):
            good = f"push \"route 198.18.{100 + i % 50}.0 255.255.255.0\"\n"
            (ccd / f"c{i}").write_text("ifconfig-pushh 198.19.0.9\n" if tag % 2 else good)
    else:
        holder["conf"] = conf + f"hand-window {60 + tag % 5}\n"


def one_reload(w: World, gw, holder: dict, conf: str, inline: bool, tag: int, change: str = "route",
               ccd: Path | None = None, n: int = 0) -> tuple[float, float, float, dict]:
    _mode(gw, inline)
    _change(holder, conf, change, tag, ccd, n)
    lines = _Lines()
    logging.getLogger("vpn-appliance").addHandler(lines)
    fired: list = []
    parts = {"commit": 0.0, "batch": 0.0, "verdicts": 0.0}      # the longest of each, in s

    def timed(name: str, fn):
        def run(*a):
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                parts[name] = max(parts[name], time.perf_counter() - t)
        return run
    ops = gw.ops
    ops._commit_reload = timed("commit", type(ops)._commit_reload.__get__(ops))
    ops._recheck = timed("batch", type(ops)._recheck.__get__(ops))
    if hasattr(type(ops), "_verdicts_in"):     # (since helper reload41: the chains checked in the worker)
        ops._verdicts_in = timed("verdicts", type(ops)._verdicts_in.__get__(ops))
    gw.pump.timers.arm("lab-sighup", w.clock(), lambda: fired.append(gw.ops.reload()))
    longest = first = 0.0
    t0 = time.perf_counter()
    try:
        while not any("clients kept" in x for x in lines.text) and time.perf_counter() - t0 < 120:
            s = time.perf_counter()
            busy = gw.pump.step(block=False)
            took = time.perf_counter() - s
            if fired and not first:
                first = took
            longest = max(longest, took)
            if not busy:
                time.sleep(0.0005)
                w.clock.t += 0.0005
    finally:
        logging.getLogger("vpn-appliance").removeHandler(lines)
        for name in ("_commit_reload", "_recheck", "_verdicts_in"):
            ops.__dict__.pop(name, None)
    return longest, first, time.perf_counter() - t0, parts


def _restarted(gw) -> int:
    return sum(1 for r in gw.d.clients if r.reload_restart)


def storm(w: World, gw, holder: dict, conf: str, inline: bool, count: int, every: float,
          send_every: float = 0.002, change: str = "route", ccd: Path | None = None, n: int = 0) -> dict:
    """`count` reloads asked for `every` s apart (a SIGHUP storm; the file changed each time),
    client0 sending a packet into its tunnel every `send_every` s, until the storm's last pass
    has ended: the longest server step, the packets that reached the server's TUN, the longest
    wait between two of them arriving, and the reloads applied (merged ones are not)."""
    _mode(gw, inline)
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    cli, c0 = w.client_addr(0), w.clients[0]
    reloads0, sent = gw.ops.reloads, []
    fired = 0
    longest = gap = 0.0
    t0 = next_fire = next_pkt = last_in = time.perf_counter()
    seen = len(stun.written)

    def quiet() -> bool:
        return not gw.ops._reload_busy and not gw.pump.timers.armed("reload-recheck")
    while (fired < count or not quiet()) and time.perf_counter() - t0 < 120:
        now = time.perf_counter()
        if fired < count and now >= next_fire:
            fired += 1
            _change(holder, conf, change, fired, ccd, n)
            gw.pump.timers.arm("lab-sighup", w.clock(), gw.ops.reload)
            next_fire += every
        if now >= next_pkt:
            pkt = ipv4_udp(cli, "198.19.0.1", b"storm-%d" % len(sent))
            ctun.inject(pkt)
            sent.append(pkt)
            next_pkt += send_every
        s = time.perf_counter()
        busy = gw.pump.step(block=False)
        longest = max(longest, time.perf_counter() - s)
        busy = c0.pump.step(block=False) or busy
        if len(stun.written) > seen:
            seen, t = len(stun.written), time.perf_counter()
            gap, last_in = max(gap, t - last_in), t
        if not busy:
            time.sleep(0.0005)
            w.clock.t += 0.0005
    got = set(stun.written)
    return {"longest": longest, "sent": len(sent), "got": sum(p in got for p in sent), "gap": gap,
            "reloads": gw.ops.reloads - reloads0, "asked": fired, "wall": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--storm", type=int, default=0, help="then a SIGHUP storm of this many reloads, each mode")
    ap.add_argument("--storm-every", type=float, default=0.01, help="s between the storm's reloads")
    ap.add_argument("--worker-only", action="store_true", help="no inline rounds (a restart is told once)")
    ap.add_argument("--change", choices=("route", "ccd", "flip", "none"), default="route",
                    help="what each reload changes (module docstring)")
    a = ap.parse_args()
    logging.getLogger("vpn-appliance").setLevel(logging.ERROR)      # the clients' retries at start
    pki = _pki(a.clients)
    with tempfile.TemporaryDirectory() as tmp:
        ccd = Path(tmp) / "ccd"
        ccd.mkdir()
        t = time.monotonic()
        w, gw, holder, conf = _connect(pki, a.clients, ccd)
        print(f"{a.clients} clients up in {time.monotonic() - t:.0f} s")
        logging.getLogger("vpn-appliance").setLevel(logging.WARNING)
        tag = 0
        for r in range(a.rounds):
            for inline in (False,) if a.worker_only else (True, False):
                tag += 1
                longest, first, wall, parts = one_reload(w, gw, holder, conf, inline, tag, a.change, ccd, a.clients)
                print(f"round {r + 1} {'inline' if inline else 'worker'}: longest step {longest * 1000:.1f} ms, "
                      f"the SIGHUP's step {first * 1000:.1f} ms (applying, its first batch included: "
                      f"{parts['commit'] * 1000:.1f} ms; longest batch of the pass {parts['batch'] * 1000:.1f} ms, "
                      f"its verdicts applied {parts['verdicts'] * 1000:.1f} ms), "
                      f"pass done in {wall:.2f} s; {_restarted(gw)} clients told RESTART so far, "
                      f"{len(gw.d.clients)} connected")
        logging.getLogger("vpn-appliance").setLevel(logging.ERROR)     # (a line per merged reload)
        for inline in ((False,) if a.worker_only else (True, False)) if a.storm else ():
            r = storm(w, gw, holder, conf, inline, a.storm, a.storm_every, change=a.change, ccd=ccd, n=a.clients)
            print(f"storm {'inline' if inline else 'worker'}: {r['asked']} reloads asked "
                  f"{a.storm_every * 1000:.0f} ms apart, {r['reloads']} applied, in {r['wall']:.2f} s; longest "
                  f"step {r['longest'] * 1000:.1f} ms; client0's packets {r['got']}/{r['sent']} through, "
                  f"longest wait between two {r['gap'] * 1000:.1f} ms; {_restarted(gw)} clients told RESTART, "
                  f"{len(gw.ops._restart_held)} held off, {len(gw.d.clients)} clients connected")
        gw._cleanup()


if __name__ == "__main__":
    main()
