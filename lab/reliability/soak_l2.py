"""Soak of the thirtieth session's features, all at once, for a long run (not a test):

- our layer-2 server (`dev tap`, `server`, client-to-client, a learn-address command, `comp-lzo
  yes`, reneg-sec small) with Debian's tap clients and some of ours connecting and leaving in a
  loop; while up each pings the server's TAP address (compressible payload), another client
  (switched by us), the broadcast address; every third Debian client compresses for real
  (`allow-compression yes`); one of our tap clients stays connected for the whole phase;
- two p2p TLS links, ours (tls-server) with Debian's tls-client and ours with ours (`float`, the
  tls-client `nobind`: a new port at every restart), either end restarted every 15-35 s,
  reneg-sec small, pings across;
- two of our clients against Debian's tun server with reconnect scripts (up/down/route-up/ipchange,
  the down-root plugin line; one with `user nobody` + persist-tun + up-restart, one without
  persist-tun and with client-nat), each told to reconnect (SIGUSR1) every 3-8 s.

Every 30 s: RSS, open fds, CPU seconds and threads of each long-lived process of ours, plus what
each holds (SIGUSR2's `statistics: held ...` line: learned MACs, learn-address queues, scripts
pending). Then the tap phase is repeated with Debian's server in our server's place (same config,
same clients) to compare the RSS growth per 1000 connections. At the end of each tap phase every
client leaves and the server must hold nothing (no client, MAC, queue or script; the learn-address
command's own view empty: each `add` got its `delete`).

    nice -n 10 python -m lab.reliability.soak_l2 --minutes 36 --openvpn-minutes 10 --out /tmp/soak

Prints samples as it goes, and a summary (also `--out`/summary.json, with the logs).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from ..configs import client_profile, server_config
from ..netns import Lab, Netns, Proc
from .soak_base import SoakBase, count_in, held, proc_info, rss_growth, soak_parser, write_out

TAP_SERVER_IP = "198.19.0.1"
PLUGIN = "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-down-root.so"
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
SAMPLE_EVERY = 30.0


# ---------------------------------------------------------------- configs
def tap_server_conf(lab: Lab, learn: Path, status: Path, reneg: int) -> str:
    text = server_config(lab.pki, extra=(f"client-to-client\nscript-security 2\nlearn-address {learn}\n"
                                         f"status {status} 10\nstatus-version 2\nreneg-sec {reneg}\n"
                                         "comp-lzo yes\nmax-clients 100\n"))
    text = text.replace("dev tun\n", "dev tap0\n").replace("topology subnet\n", "")
    return text.replace("keepalive 5 30", "keepalive 5 30")


def tap_client_conf(lab: Lab, cert: str, server_ip: str, compress: bool) -> str:
    prof = client_profile(lab.pki, "udp", client=cert, remotes=[(server_ip, 1194, "udp")],
                          extra="explicit-exit-notify 1\ncomp-lzo yes\n" + ("allow-compression yes\n" if compress else ""))
    return prof.replace("dev tun\n", "dev tap\n")


def p2p_conf(lab: Lab, side: str, n: int, cert: str, reneg: int, extra: str = "") -> str:
    """Link n (0, 1): site A (tls-server) on the server namespace's port 1300+n, tun 198.19.3n.1;
    site B (tls-client) dials it."""
    p = lab.pki
    a, b = f"198.19.{30 + n}.1", f"198.19.{30 + n}.2"
    head = (f"dev tun3{n}\nproto udp\nkeepalive 1 5\nreneg-sec {reneg}\nverb 3\nca {p.ca}\n")
    if side == "a":
        return head + (f"port {1300 + n}\nifconfig {a} {b}\ntls-server\ndh none\n"
                       f"cert {p.server_cert}\nkey {p.server_key}\n{extra}")
    c, k = p.clients[cert]
    return head + (f"remote {P2P_SERVER[n]} {1300 + n}\nifconfig {b} {a}\ntls-client\nremote-cert-tls server\n"
                   f"cert {c}\nkey {k}\n{extra}")


P2P_SERVER: dict[int, str] = {}


# ---------------------------------------------------------------- the run
class Soak(SoakBase):
    def __init__(self, lab: Lab, a) -> None:
        super().__init__(lab, a)                # gate, cut, active: the tap clients
        self.rng = random.Random(a.seed)
        self.tap_ip: dict[int, str] = {}        # tap client index -> its address, while up
        self.tmp = lab.tmp
        self.tap_ns: list[Netns] = []
        self.server: Proc | None = None
        self.server_kind = "ours"
        self.long: dict[str, Proc] = {}         # long-lived processes of ours, sampled

    # ---- tap clients
    def tap_client(self, i: int) -> None:
        rng = random.Random(self.a.seed * 1000 + i)
        ns = self.tap_ns[i]
        n_ours = self.a.ours_tap
        kind = "ours" if i < n_ours else "openvpn"
        compress = kind == "openvpn" and i % 3 == 0
        stays = i == 0                           # ours, connected for the whole phase
        conf = tap_client_conf(self.lab, f"t{i}", f"198.18.{i + 1}.1", compress)
        while not self.done.is_set():
            if not self.admitted():
                continue
            with self.connecting():
                p = None
                try:
                    name = f"tap{i}"
                    p = (self.lab.ours(ns, conf, name, wait=0) if kind == "ours"
                         else self.lab.openvpn(ns, conf, name, wait=0))
                    if stays:
                        self.long["tapcli0"] = p
                    if not p.wait_for(UP[kind], 40):
                        self.count(f"tap connect failures ({self.server_kind})")
                        self.note(f"tap{i} ({kind}) not up within 40 s against {self.server_kind}: "
                                  f"{p.log()[-600:]!r}")
                        continue
                    self.count(f"tap connects ({self.server_kind})")
                    self.count(f"tap connects, {kind} client ({self.server_kind})")
                    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tap0", check=False).stdout)
                    if m:
                        with self.lock:
                            self.tap_ip[i] = m.group(1)
                    end = time.monotonic() + (10 ** 6 if stays else rng.uniform(*self.a.stay))
                    while time.monotonic() < end and not self.cut.is_set():
                        self.traffic(i, ns, rng)
                        self.cut.wait(rng.uniform(3, 6))
                finally:
                    with self.lock:
                        self.tap_ip.pop(i, None)
                    if p is not None:
                        p.stop(8)
                        self.forget(p, lab_checks=True)
                        with self.lock:
                            if self.long.get("tapcli0") is p:
                                del self.long["tapcli0"]
                        self.keep_log(p, f"tap{i}")
            self.cut.wait(rng.uniform(1, 4))

    def keep_log(self, p: Proc, name: str) -> None:
        """A client's log is removed, unless it shows a fault (then it is kept for the report)."""
        text = p.log()
        if re.search(r"Traceback|--- Logging error|ERROR|CRITICAL", text):
            shutil.copy(p.log_path, self.a.out / f"fault-{name}-{int(time.time())}.log")
            self.count("client logs with faults")
        p.log_path.unlink(missing_ok=True)

    def ping(self, ns: Netns, dst: str, n: int, extra: str = "") -> int:
        r = ns.run(f"ping -n -q -c {n} -i 0.2 -W 2 {extra} {dst}", check=False, timeout=30)
        m = re.search(r"(\d+) received", r.stdout)
        return int(m.group(1)) if m else 0

    def traffic(self, i: int, ns: Netns, rng: random.Random) -> None:
        got = self.ping(ns, TAP_SERVER_IP, 3, "-s 1200 -p ff")
        self.count("pings to the server sent", 3)
        self.count("pings to the server answered", got)
        with self.lock:
            others = [(j, ip) for j, ip in self.tap_ip.items() if j != i]
        if others:
            j, ip = rng.choice(others)
            got = self.ping(ns, ip, 2, "-s 600")
            self.count("client-to-client pings sent", 2)
            self.count("client-to-client pings answered", got)
        ns.run("ping -n -q -b -c 2 -i 0.2 -W 1 198.19.0.255", check=False, timeout=20)
        self.count("broadcast pings sent", 2)

    # ---- p2p links
    def p2p_link(self, n: int, a_kind: str, b_kind: str, a_ns: Netns, b_ns: Netns) -> None:
        rng = random.Random(self.a.seed * 77 + n)
        b_cert = f"p{n}"
        a_conf = p2p_conf(self.lab, "a", n, "", self.a.reneg,
                          extra=(f"remote {b_ns_ip(n)}\nfloat\n" if n == 1 else ""))
        b_conf = p2p_conf(self.lab, "b", n, b_cert, self.a.reneg, extra="nobind\n")

        def start(side: str) -> Proc:
            kind, ns, conf = (a_kind, a_ns, a_conf) if side == "a" else (b_kind, b_ns, b_conf)
            name = f"p2p{n}{side}"
            p = self.lab.ours(ns, conf, name, wait=0) if kind == "ours" else self.lab.openvpn(ns, conf, name, wait=0)
            if kind == "ours":
                self.long[name] = p
            return p

        procs = {"a": start("a"), "b": start("b")}
        kinds = {"a": a_kind, "b": b_kind}
        tun_peer = f"198.19.{30 + n}.1"
        try:
            while not self.done.is_set():
                # both up (the count of UP lines past what it was)
                t0 = time.monotonic()
                ok = False
                while time.monotonic() - t0 < 45 and not self.done.is_set():
                    if self.ping(b_ns, tun_peer, 1) == 1:
                        ok = True
                        break
                    time.sleep(0.5)
                if self.done.is_set():
                    break
                if ok:
                    self.count(f"p2p{n} links up")
                    with self.lock:
                        self.c.setdefault(f"p2p{n} seconds to link", 0)
                        self.c[f"p2p{n} seconds to link"] += round(time.monotonic() - t0)
                else:
                    self.count(f"p2p{n} link not up within 45 s")
                    self.note(f"p2p{n}: no ping across within 45 s; a: {procs['a'].log()[-800:]!r} "
                              f"b: {procs['b'].log()[-800:]!r}")
                live = time.monotonic() + rng.uniform(15, 35)
                while time.monotonic() < live and not self.done.is_set():
                    got = self.ping(b_ns, tun_peer, 3, "-s 1000")
                    self.count(f"p2p{n} pings sent", 3)
                    self.count(f"p2p{n} pings answered", got)
                    self.done.wait(2)
                side = "b" if rng.random() < 0.65 else "a"
                old = procs[side]
                old.stop(8)
                self.forget(old, lab_checks=True)
                if kinds[side] == "ours":
                    self.fold_log(old, f"p2p{n}{side}")
                self.count(f"p2p{n} restarts of {side} ({kinds[side]})")
                self.done.wait(rng.uniform(0.5, 2))
                procs[side] = start(side)
        finally:
            for side in ("a", "b"):
                self.fold_log(procs[side], f"p2p{n}{side}", stop=True)

    def fold_log(self, p: Proc, name: str, stop: bool = False) -> None:
        """A restarted process of ours: its counts kept (renegotiations), its log appended to one file."""
        if stop:
            p.stop(8)
        text = p.log()
        self.count(f"{name} renegotiations", len(re.findall(r"key renegotiated", text)))
        with open(self.a.out / f"{name}.log", "a") as f:
            f.write(f"\n===== pid {p.p.pid}\n{text}")
        p.log_path.unlink(missing_ok=True)         # (a later process may be given the same name)
        if re.search(r"Traceback|--- Logging error|CRITICAL", text):
            self.count(f"{name} logs with faults")

    # ---- reconnecting clients
    def reconnecting(self, n: int, ns: Netns) -> None:
        rng = random.Random(self.a.seed * 91 + n)
        ev = self.a.out / f"r{n}-events"
        ev.touch()
        ev.chmod(0o666)
        s = self.lab.write(f"r{n}-script.sh", f'#!/bin/sh\necho "$script_type $*" >> {ev}\nexit 0\n')
        s.chmod(0o755)
        dr = self.lab.write(f"r{n}-downroot.sh", f'#!/bin/sh\necho "down-root uid=$(id -u) $*" >> {ev}\nexit 0\n')
        dr.chmod(0o755)
        extra = (f"script-security 2\nup {s}\ndown {s}\nroute-up {s}\nipchange {s}\n"
                 f"plugin {PLUGIN} \"{dr}\"\nreneg-sec {self.a.reneg}\n")
        if n == 0:
            extra += "user nobody\ngroup nogroup\npersist-tun\npersist-key\nup-restart\n"
        else:
            extra += "client-nat dnat 198.18.200.1 255.255.255.255 198.19.8.1\nroute 198.18.200.1 255.255.255.255\n"
        prof = client_profile(self.lab.pki, "udp", client=f"r{n}", remotes=[(f"198.18.{41 + n}.1", 1195, "udp")],
                              extra=extra)
        name = f"r{n}"
        p = self.lab.ours(ns, prof, name, wait=60, readable_python=(n == 0))
        self.long[name] = p
        dst = "198.18.200.1" if n == 1 else "198.19.8.1"
        ups = 1
        try:
            while not self.done.is_set():
                self.done.wait(rng.uniform(3, 8))
                if self.done.is_set() or not p.alive():
                    break
                os.kill(p.p.pid, signal.SIGUSR1)
                self.count(f"r{n} reconnects asked")
                ups += 1
                if not p.wait_count("tunnel up", ups, 40):
                    self.count(f"r{n} reconnects not up within 40 s")
                    ups = p.log().count("tunnel up")
                    continue
                got = self.ping(ns, dst, 2)
                self.count(f"r{n} pings sent", 2)
                self.count(f"r{n} pings answered", got)
            if not p.alive():
                self.note(f"r{n} exited: {p.log()[-2000:]!r}")
        finally:
            p.stop(15)
            shutil.copy(p.log_path, self.a.out / f"r{n}.log")

    # ---- sampling
    def sample(self, t0: float) -> dict:
        s: dict = {"t": round(time.monotonic() - t0), "phase": self.server_kind}
        procs = dict(self.long)
        if self.server is not None:
            procs["server"] = self.server
        for name, p in procs.items():
            info = proc_info(p.p.pid)
            if not info:
                continue
            ours = name != "server" or self.server_kind == "ours"
            if ours and name in ("server", "r0", "r1", "tapcli0"):
                info["held"] = held(p)
            s[name] = info
        self.record(s)
        srv = s.get("server", {})
        r0, r1 = s.get("r0", {}), s.get("r1", {})
        print(f"  t={s['t']:5d}s {self.server_kind:7s} srv RSS {srv.get('rss', 0):6.1f} fds {srv.get('fds', 0):3d} "
              f"thr {srv.get('threads', 0):2d} cpu {srv.get('cpu', 0):7.1f} held {srv.get('held', {})} | "
              f"r0 {r0.get('rss', 0):.1f}/{r0.get('fds', 0)}/{r0.get('threads', 0)} {r0.get('held', {})} "
              f"r1 {r1.get('rss', 0):.1f}/{r1.get('fds', 0)}/{r1.get('threads', 0)} | "
              + " ".join(f"{k} {v.get('rss', 0):.1f}/{v.get('fds', 0)}" for k, v in s.items()
                         if k.startswith(("p2p", "tapcli")) and isinstance(v, dict))
              + f" | active {s['active']} " + json.dumps(s["counts"], sort_keys=True), flush=True)
        return s

    # ---- phases
    def tap_phase(self, kind: str, minutes: float, t0: float) -> dict:
        learn_dir = self.a.out / f"learned-{kind}"
        learn_dir.mkdir(exist_ok=True)
        learn_log = self.a.out / f"learn-{kind}.log"
        script = self.lab.write(f"learn-{kind}.sh", "#!/bin/sh\n"
                                f'echo "$1 $2 $3" >> {learn_log}\n'
                                f'case "$1" in add|update) touch "{learn_dir}/$2";; delete) rm -f "{learn_dir}/$2";; esac\n'
                                "exit 0\n")
        script.chmod(0o755)
        status = self.a.out / f"status-{kind}.txt"
        conf = tap_server_conf(self.lab, script, status, self.a.reneg)
        self.server_kind = kind
        if kind == "ours":
            self.server = self.lab.ours(self.lab.srv, conf, "tapsrv-ours", pattern=r"listening on UDP", wait=180,
                                        env=self.a.server_env or None)
        else:
            self.server = self.lab.openvpn(self.lab.srv, conf, "tapsrv-openvpn")
        srv = self.server
        time.sleep(1)
        res: dict = {"kind": kind, "start": proc_info(srv.p.pid)}
        self.note(f"tap phase {kind}: server pid {srv.p.pid} {res['start']}")
        before = dict(self.c)
        self.gate.set()
        end = time.monotonic() + minutes * 60
        phase_samples = []
        warm = None
        while time.monotonic() < end and srv.alive():
            self.done.wait(min(SAMPLE_EVERY, max(0.1, end - time.monotonic())))
            try:
                s = self.sample(t0)
            except Exception as e:  # noqa: BLE001 - a sampling fault must not end the run
                self.note(f"sampling failed: {e!r}")
                continue
            phase_samples.append(s)
            conns = self.c.get(f"tap connects ({kind})", 0)
            if warm is None and time.monotonic() > end - minutes * 60 + self.a.warmup * 60:
                warm = (s.get("server", {}).get("rss", 0), conns)
        res["alive_at_end"] = srv.alive()
        self.all_leave(self.a.settle)                   # exit notify; keepalive 30 s at worst
        res["end"] = proc_info(srv.p.pid)
        if kind == "ours":
            res["held_after_all_left"] = held(srv)
        res["learned_files_left"] = sorted(x.name for x in learn_dir.iterdir())
        res["connects"] = self.c.get(f"tap connects ({kind})", 0) - before.get(f"tap connects ({kind})", 0)
        res["connect_failures"] = self.c.get(f"tap connect failures ({kind})", 0)
        if warm:
            last = phase_samples[-1].get("server", {}).get("rss", 0)
            rss_growth(res, warm, last, res["connects"])
            res["rss_growth_after_warm_mb"] = round(last - warm[0], 1)
        log_path = srv.log_path
        res["renegotiations_logged"] = count_in(log_path, re.compile(r"key renegotiated")) \
            if kind == "ours" else count_in(log_path, re.compile(r"Control Channel: TLS"))
        res["learn_calls"] = count_in(learn_log, re.compile(r"^(add|update|delete) "))
        res["learn_deletes"] = count_in(learn_log, re.compile(r"^delete "))
        srv.stop(10)
        self.forget(srv, lab_checks=True)
        shutil.copy(log_path, self.a.out / f"tapsrv-{kind}.log")
        res["faults_in_log"] = count_in(log_path, re.compile(r"Traceback|--- Logging error|CRITICAL|internal error"))
        self.server = None
        self.note(f"tap phase {kind} done: {json.dumps(res)}")
        return res


def b_ns_ip(n: int) -> str:
    return f"198.18.{51 + 2 * n}.2"


def main(argv: list[str] | None = None) -> int:
    ap = soak_parser(__doc__, phase="tap phase", minutes=38, reneg=10, settle=35.0, seed=31, out="/tmp/soak-l2")
    ap.add_argument("--tap-clients", type=int, default=28)
    ap.add_argument("--ours-tap", type=int, default=4, help="of them ours (the first: stays connected)")
    ap.add_argument("--parts", default="tap,p2p,scripts", help="which of tap,p2p,scripts run (the tap part always)")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of our tap server (e.g. PYTHONTRACEMALLOC, MALLOC_ARENA_MAX)")
    a = ap.parse_args(argv)
    a.server_env = dict(e.split("=", 1) for e in a.server_env)
    parts = set(a.parts.split(","))
    a.out.mkdir(parents=True, exist_ok=True)
    os.chmod(a.out, 0o777)
    n = a.tap_clients
    certs = [f"t{i}" for i in range(n)] + ["p0", "p1", "r0", "r1"]
    tmp = Path(f"/tmp/soakl2-{os.getpid()}")
    tmp.mkdir()
    os.chmod(tmp, 0o755)                         # `user nobody` must reach its profile
    summary: dict = {"args": {k: str(v) for k, v in vars(a).items()}}
    with Lab(clients=certs, tmp=tmp) as lab:
        soak = Soak(lab, a)
        for i in range(n):
            soak.tap_ns.append(lab.add_client_ns(i))
        r_ns = [lab.add_client_ns(40), lab.add_client_ns(41)]
        p2p_b = [lab.add_client_ns(50), lab.add_client_ns(52)]
        for k in (0, 1):
            P2P_SERVER[k] = f"198.18.{51 + 2 * k}.1"
        # Debian's tun server for the reconnecting clients, beside the tap server in its namespace
        if "scripts" in parts:
            rconf = server_config(lab.pki, extra="dev tun8\n", port=1195).replace("dev tun\n", "")
            rconf = rconf.replace("server 198.19.0.0 255.255.255.0", "server 198.19.8.0 255.255.255.0")
            lab.openvpn(lab.srv, rconf, "rsrv")
        t0 = time.monotonic()
        threads = [threading.Thread(target=soak.tap_client, args=(i,), daemon=True) for i in range(n)]
        if "scripts" in parts:
            threads += [threading.Thread(target=soak.reconnecting, args=(k, r_ns[k]), daemon=True) for k in (0, 1)]
        if "p2p" in parts:
            threads += [threading.Thread(target=soak.p2p_link, args=(0, "ours", "openvpn", lab.srv, p2p_b[0]),
                                         daemon=True),
                        threading.Thread(target=soak.p2p_link, args=(1, "ours", "ours", lab.srv, p2p_b[1]),
                                         daemon=True)]
        for t in threads:
            t.start()
        long_start = {}
        try:
            time.sleep(20)
            for k, p in list(soak.long.items()):
                long_start[k] = proc_info(p.p.pid)
            summary["ours"] = soak.tap_phase("ours", a.minutes, t0)
            if a.openvpn_minutes > 0:
                summary["openvpn"] = soak.tap_phase("openvpn", a.openvpn_minutes, t0)
            last = soak.sample(t0)
        finally:
            soak.finish(threads)
        summary["long_lived_start"] = long_start
        summary["long_lived_last_sample"] = {k: v for k, v in last.items() if isinstance(v, dict) and k != "counts"}
        summary["counts"] = soak.c
        summary["events"] = soak.events
        summary["minutes"] = round((time.monotonic() - t0) / 60, 1)
        for n_ in (0, 1):
            ev = a.out / f"r{n_}-events"
            words = [ln.split()[0] for ln in ev.read_text().splitlines() if ln.strip()] if ev.exists() else []
            summary[f"r{n_}_scripts"] = {w: words.count(w) for w in sorted(set(words))}
    write_out(a.out, summary, soak.samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
