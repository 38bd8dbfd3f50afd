"""Soak of the thirty-sixth session's long-lived state under churn of many certificates (soak40),
for a long run (not a test):

our `dev tun` server with client-to-client, a client-config-dir and a client-connect script, and
clients connecting and leaving in a loop, each time under the next of `--names` distinct common
names (what an attacker holding many certificates does; each name comes back only after all
the others), most of them Debian's, some ours:

- while up a client sends multicast out of its tunnel (ping 224.0.0.251: the server copies it to
  every other client -- ReplicationBudget, a bucket per sender, handed to its name's next session),
  now and then a flood of 1,500 in ~1 s (past the budget: "broadcast over rate"; half the time it
  then leaves and comes back at once under the same name: no fresh burst), pings the server
  and another client; the server's namespace pings 224.0.0.1 out of its TUN every ~10 s (one copy
  to every client);
- a quarter of the names have a ccd file over 16 KiB (read by the CcdReader's worker thread), a
  quarter a small one; a fifth of the connects get a 70 KB options file from client-connect (parsed
  in the script's worker); a client checks the route its file pushes arrived;
- one in ten leaves by SIGKILL (no exit notification: the server's ping-restart ends it);
- the server is reloaded (SIGHUP: the re-verify pass over kept clients) every 45-90 s, sometimes
  after a large ccd file was rewritten;
- one of our clients stays for the whole run with `redirect-gateway def1` (its ccd file), its WAN
  link taken down for 2 s every 40-80 s: the route keeper puts the server's host route back,
  and the tunnel must answer a ping within 30 s of the link coming back.

Every 30 s: RSS, fds, threads and CPU of the server and the staying client, and SIGUSR2's
`statistics: held ...` line (the budgets and the names kept, ccd reads and answers held, the
dispatcher's and the operations' books). At the end every client leaves and the server must hold
nothing (no client, bucket, ccd answer, address, peer-id) after its 5 s timer ran.

    nice -n 10 python -m lab.reliability.soak_mcast --minutes 25 --out /tmp/soak-mcast
"""
from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import threading
import time
from pathlib import Path

from ..configs import client_profile, server_config
from ..netns import Lab, Netns, Proc
from .soak_base import SoakBase, count_in, held, proc_info, rss_growth, soak_parser, write_out

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
SAMPLE_EVERY = 30.0
SERVER_TUN_IP = "198.19.0.1"
BIG_CCD_ROUTE = "198.18.252.0"        # pushed by the large ccd files (read off the loop)
SMALL_CCD_ROUTE = "198.18.253.0"      # by the small ones
# 1,500 multicast datagrams out of the client's tun in ~1 s (ENOBUFS from a full queue ignored)
FLOOD = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
         "s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'{dev}')\n"
         "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,1)\n"
         "for i in range(1500):\n"
         "  try: s.sendto(b'flood%d' % i,('224.0.0.251',5353))\n"
         "  except OSError: pass\n"
         "  time.sleep(0.0006)\n")
CONNECT_ROUTE = "198.18.251.0"        # by client-connect's 70 KB options file


def _filler(n: int, tag: str) -> str:
    line = f"# {tag} " + "x" * 70 + "\n"
    return line * (n // len(line) + 1)


class Soak(SoakBase):
    def __init__(self, lab: Lab, a, names: list[str]) -> None:
        super().__init__(lab, a)
        self.names = names
        self.next_name = 0
        self.up_ip: dict[int, str] = {}         # slot -> its tunnel address, while up
        self.server: Proc | None = None
        self.keep: Proc | None = None
        self.srv_tun = "tun0"

    def take_name(self) -> int:
        with self.lock:
            i = self.next_name % len(self.names)
            self.next_name += 1
            return i

    # ---- churning clients
    def slot(self, k: int, ns: Netns) -> None:
        rng = random.Random(self.a.seed * 1000 + k)
        kind = "ours" if k < self.a.ours else "openvpn"
        again: int | None = None            # after a flood: the same name back at once, half the time
        while not self.done.is_set():
            if not self.admitted():
                continue
            i = again if again is not None else self.take_name()
            if again is not None:
                self.count("reconnects under the same name right after a flood")
            again = None
            cn = self.names[i]
            conf = client_profile(self.lab.pki, "udp", client=cn, remotes=[(f"198.18.{k + 1}.1", 1194, "udp")],
                                  extra="explicit-exit-notify 1\n")
            with self.connecting():
                p = None
                killed = False
                try:
                    p = (self.lab.ours(ns, conf, f"s{k}", wait=0) if kind == "ours"
                         else self.lab.openvpn(ns, conf, f"s{k}", wait=0))
                    if not p.wait_for(UP[kind], 40):
                        self.count("connect failures")
                        self.note(f"slot {k} ({kind}, {cn}) not up within 40 s: {p.log()[-600:]!r}")
                        continue
                    self.count("connects")
                    self.count(f"connects, {kind} client")
                    self.check_pushes(i, cn, ns)
                    dev, ip = tun_of(ns)
                    if ip:
                        with self.lock:
                            self.up_ip[k] = ip
                    end = time.monotonic() + rng.uniform(*self.a.stay)
                    while time.monotonic() < end and not self.cut.is_set() and dev:
                        if self.traffic(k, ns, dev, rng) and rng.random() < 0.5:
                            again = i
                            break
                        self.cut.wait(rng.uniform(1, 3))
                    killed = again is None and rng.random() < 0.1 and not self.cut.is_set()
                finally:
                    with self.lock:
                        self.up_ip.pop(k, None)
                    if p is not None:
                        if killed and p.alive():
                            os.kill(p.p.pid, signal.SIGKILL)       # no exit notification
                            self.count("left by SIGKILL")
                        p.stop(8)
                        self.forget(p, lab_checks=True)
                        self.keep_log(p, f"s{k}-{cn}")
            self.cut.wait(rng.uniform(0.2, 1.5))

    def check_pushes(self, i: int, cn: str, ns: Netns) -> None:
        """The routes its ccd file and client-connect pushed are in its table."""
        routes = ns.run("ip -4 route show", check=False).stdout
        want = []
        if i % 4 == 0:
            want.append(("large ccd file", BIG_CCD_ROUTE))
        elif i % 4 == 1:
            want.append(("small ccd file", SMALL_CCD_ROUTE))
        if i % 5 == 0:
            want.append(("client-connect's file", CONNECT_ROUTE))
        for what, net in want:
            if f"{net}/24" in routes:
                self.count(f"pushes from a {what} seen")
            else:
                self.count(f"pushes from a {what} MISSING")
                self.note(f"{cn}: the route of its {what} ({net}) is not in its table: {routes!r}")

    def keep_log(self, p: Proc, name: str) -> None:
        text = p.log()
        if re.search(r"Traceback|--- Logging error|CRITICAL", text):
            shutil.copy(p.log_path, self.a.out / f"fault-{name}-{int(time.time())}.log")
            self.count("client logs with faults")
        p.log_path.unlink(missing_ok=True)

    def ping(self, ns: Netns, dst: str, n: int, extra: str = "", timeout: int = 30) -> int:
        r = ns.run(f"ping -n -q -c {n} -i 0.2 -W 2 {extra} {dst}", check=False, timeout=timeout)
        m = re.search(r"(\d+) received", r.stdout)
        return int(m.group(1)) if m else 0

    def traffic(self, k: int, ns: Netns, dev: str, rng: random.Random) -> bool:
        """One round of a client's traffic; True after a multicast flood."""
        if rng.random() < 0.05:
            # (ping cannot: with no replies it slows to ~80 a second, under the budget)
            ns.run(f"python3 -c {shlex.quote(FLOOD.format(dev=dev))}", check=False, timeout=30)
            self.count("multicast floods (1500 in ~1 s)")
            return True
        else:
            ns.run(f"ping -n -q -c 3 -i 0.2 -W 1 -t 1 -I {dev} 224.0.0.251", check=False, timeout=20)
            self.count("multicast pings sent", 3)
        got = self.ping(ns, SERVER_TUN_IP, 2)
        self.count("pings to the server sent", 2)
        self.count("pings to the server answered", got)
        with self.lock:
            others = [ip for j, ip in self.up_ip.items() if j != k]
        if others:
            got = self.ping(ns, rng.choice(others), 2, "-s 600")
            self.count("client-to-client pings sent", 2)
            self.count("client-to-client pings answered", got)
        return False

    # ---- the server's side
    def from_server_tun(self) -> None:
        while not self.done.wait(10):
            if self.server is not None and self.server.alive():
                self.lab.srv.run(f"ping -n -q -c 2 -i 0.2 -W 1 -t 1 -I {self.srv_tun} 224.0.0.1", check=False,
                                 timeout=20)
                self.count("multicast pings from the server's TUN", 2)

    def reloads(self, ccd: Path) -> None:
        rng = random.Random(self.a.seed * 7)
        while not self.done.wait(rng.uniform(45, 90)):
            srv = self.server
            if srv is None or not srv.alive():
                continue
            if rng.random() < 0.5:              # a large file changed meanwhile (read again at its next connect)
                i = rng.randrange(0, len(self.names), 4)
                write_ccd(ccd, self.names[i], i, rng.randrange(17_000, 60_000))
            os.kill(srv.p.pid, signal.SIGHUP)
            self.count("reloads (SIGHUP)")

    # ---- the staying client, its WAN flapping
    def keeper(self, ns: Netns, wan: str) -> None:
        rng = random.Random(self.a.seed * 13)
        while not self.done.wait(rng.uniform(40, 80)):
            p = self.keep
            if p is None or not p.alive():
                break
            ns.run(f"ip link set {wan} down", check=False)
            time.sleep(2)
            ns.run(f"ip link set {wan} up", check=False)
            self.count("WAN flaps of the staying client")
            t = time.monotonic()
            ok = False
            while time.monotonic() - t < 30 and not self.done.is_set():
                if self.ping(ns, SERVER_TUN_IP, 1, timeout=10) == 1:
                    ok = True
                    break
            if ok:
                self.count("staying client answered after a flap")
                with self.lock:
                    self.c["staying client: seconds to answer after flaps"] = \
                        self.c.get("staying client: seconds to answer after flaps", 0) + round(time.monotonic() - t)
            else:
                self.count("staying client NOT answering 30 s after a flap")
                self.note(f"staying client: no answer 30 s after a flap: {p.log()[-1500:]!r}")

    # ---- sampling
    def sample(self, t0: float) -> dict:
        s: dict = {"t": round(time.monotonic() - t0)}
        for name, p in (("server", self.server), ("keep", self.keep)):
            if p is None:
                continue
            info = proc_info(p.p.pid)
            if info:
                if name == "server":
                    info["held"] = held(p)
                s[name] = info
        self.record(s)
        srv, kp = s.get("server", {}), s.get("keep", {})
        h = srv.get("held", {})
        short = {k: h.get(k) for k in ("clients", "broadcast buckets", "buckets kept by name", "ccd reads waiting",
                                       "ccd answers held", "peer-ids", "client infos", "traffic books",
                                       "scripts pending")}
        print(f"  t={s['t']:5d}s srv RSS {srv.get('rss', 0):6.1f} fds {srv.get('fds', 0):3d} "
              f"thr {srv.get('threads', 0):2d} cpu {srv.get('cpu', 0):7.1f} {short} | keep RSS {kp.get('rss', 0):.1f} "
              f"fds {kp.get('fds', 0)} thr {kp.get('threads', 0)} | active {s['active']} "
              + json.dumps(s["counts"], sort_keys=True), flush=True)
        return s


def tun_of(ns: Netns) -> tuple[str | None, str | None]:
    """The namespace's tun device and its IPv4 address (None, None when there is none)."""
    out = ns.run("ip -4 -o addr show", check=False).stdout
    for m in re.finditer(r"^\d+:\s+(\S+)\s+inet (\S+)/", out, re.M):
        if m.group(1).startswith("tun"):
            return m.group(1), m.group(2)
    return None, None


def write_ccd(ccd: Path, cn: str, i: int, big: int = 24_000) -> None:
    """Name i's ccd file: a large one (over the 16 KiB read inline) for i % 4 == 0, a small one
    for i % 4 == 1, none otherwise."""
    if i % 4 == 0:
        (ccd / cn).write_text(_filler(big, cn) + f'push "route {BIG_CCD_ROUTE} 255.255.255.0"\n')
    elif i % 4 == 1:
        (ccd / cn).write_text(f'push "route {SMALL_CCD_ROUTE} 255.255.255.0"\n')


def main(argv: list[str] | None = None) -> int:
    ap = soak_parser(__doc__, phase="the churn", minutes=25, reneg=3600, settle=40.0, seed=40, out="/tmp/soak-mcast")
    ap.add_argument("--names", type=int, default=300, help="distinct client certificates (common names)")
    ap.add_argument("--slots", type=int, default=12, help="clients connected at once")
    ap.add_argument("--ours", type=int, default=2, help="of the slots, ours (the rest Debian's)")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of our server (e.g. PYTHONTRACEMALLOC)")
    a = ap.parse_args(argv)
    if tuple(a.stay) == (10, 45):
        a.stay = (8, 25)
    a.server_env = dict(e.split("=", 1) for e in a.server_env)
    a.out.mkdir(parents=True, exist_ok=True)
    os.chmod(a.out, 0o777)
    names = [f"m{i:04d}" for i in range(a.names)]
    tmp = Path(f"/tmp/soakmc-{os.getpid()}")
    tmp.mkdir()
    summary: dict = {"args": {k: str(v) for k, v in vars(a).items()}}
    t_pki = time.monotonic()
    with Lab(clients=names + ["keep"], tmp=tmp) as lab:
        summary["pki_seconds"] = round(time.monotonic() - t_pki, 1)
        ccd = tmp / "ccd"
        ccd.mkdir()
        for i, cn in enumerate(names):
            write_ccd(ccd, cn, i)
        (ccd / "keep").write_text('push "redirect-gateway def1"\n')
        big = lab.write("connect-big.txt", _filler(70_000, "connect") + f'push "route {CONNECT_ROUTE} 255.255.255.0"\n')
        fifth = lab.write("connect-big-names.txt", "".join(f"{cn}\n" for i, cn in enumerate(names) if i % 5 == 0))
        connect = lab.write("connect.sh", "#!/bin/sh\n"
                            f'if grep -qx "$common_name" {fifth}; then cat {big} > "$1"; '
                            'else echo "# $common_name" > "$1"; fi\nexit 0\n')
        connect.chmod(0o755)
        status = a.out / "status.txt"
        conf = server_config(lab.pki, extra=(f"client-to-client\nscript-security 2\nclient-config-dir {ccd}\n"
                                             f"client-connect {connect}\nstatus {status} 5\nstatus-version 2\n"
                                             f"max-clients 200\nreneg-sec {a.reneg}\n"))
        slots = [lab.add_client_ns(k) for k in range(a.slots)]
        keep_ns = lab.add_client_ns(a.slots)
        wan = f"vc{a.slots}{lab.tag}"
        keep_ns.run(f"ip route add default via 198.18.{a.slots + 1}.1", check=False)   # redirect-gateway's net_gateway
        soak = Soak(lab, a, names)
        soak.server = srv = lab.ours(lab.srv, conf, "msrv", pattern=r"listening on UDP", wait=180,
                                     env=a.server_env or None)
        time.sleep(1)
        dev = re.search(r"^\d+:\s+(tun\S*?)[:@]", lab.srv.run("ip -o link show", check=False).stdout, re.M)
        if dev:
            soak.srv_tun = dev.group(1)
        summary["server_start"] = proc_info(srv.p.pid)
        keep_conf = client_profile(lab.pki, "udp", client="keep", remotes=[(f"198.18.{a.slots + 1}.1", 1194, "udp")],
                                   extra="explicit-exit-notify 1\n")
        soak.keep = lab.ours(keep_ns, keep_conf, "keep", wait=60)
        summary["keep_start"] = proc_info(soak.keep.p.pid)
        t0 = time.monotonic()
        threads = [threading.Thread(target=soak.slot, args=(k, slots[k]), daemon=True) for k in range(a.slots)]
        threads += [threading.Thread(target=soak.from_server_tun, daemon=True),
                    threading.Thread(target=soak.reloads, args=(ccd,), daemon=True),
                    threading.Thread(target=soak.keeper, args=(keep_ns, wan), daemon=True)]
        for t in threads:
            t.start()
        soak.gate.set()
        end = t0 + a.minutes * 60
        warm = None
        last: dict = {}
        try:
            while time.monotonic() < end and srv.alive():
                soak.done.wait(min(SAMPLE_EVERY, max(0.1, end - time.monotonic())))
                try:
                    last = soak.sample(t0)
                except Exception as e:  # noqa: BLE001 - a sampling fault must not end the run
                    soak.note(f"sampling failed: {e!r}")
                    continue
                if warm is None and time.monotonic() > t0 + a.warmup * 60:
                    warm = (last.get("server", {}).get("rss", 0), soak.c.get("connects", 0),
                            last.get("keep", {}).get("rss", 0))
            summary["server_alive_at_end"] = srv.alive()
            soak.all_leave(a.settle)
            summary["server_after_all_left"] = proc_info(srv.p.pid)
            summary["held_after_all_left"] = held(srv)
            summary["keep_after_all_left"] = proc_info(soak.keep.p.pid)
        finally:
            soak.finish(threads)
        if warm:
            res: dict = {}
            rss_growth(res, warm[:2], last.get("server", {}).get("rss", 0), soak.c.get("connects", 0))
            res["server_rss_growth_after_warm_mb"] = round(last.get("server", {}).get("rss", 0) - warm[0], 1)
            res["keep_rss_warm"], res["keep_rss_last"] = warm[2], last.get("keep", {}).get("rss", 0)
            summary["rss"] = res
        srv_samples = [s["server"] for s in soak.samples if "server" in s]
        for key in ("fds", "threads"):
            summary[f"server_{key}_min_max"] = [min((x[key] for x in srv_samples), default=None),
                                                max((x[key] for x in srv_samples), default=None)]
        for key in ("broadcast buckets", "buckets kept by name", "ccd answers held", "ccd reads waiting"):
            summary[f"server_held_max_{key}"] = max((x.get("held", {}).get(key, 0) for x in srv_samples), default=None)
        keep_samples = [s["keep"] for s in soak.samples if "keep" in s]
        for key in ("fds", "threads"):
            summary[f"keep_{key}_min_max"] = [min((x[key] for x in keep_samples), default=None),
                                              max((x[key] for x in keep_samples), default=None)]
        soak.keep.stop(10)
        shutil.copy(soak.keep.log_path, a.out / "keep.log")
        srv.stop(15)
        shutil.copy(srv.log_path, a.out / "server.log")
        summary["server_faults_in_log"] = count_in(srv.log_path, re.compile(r"Traceback|--- Logging error|CRITICAL|"
                                                                            r"internal error"))
        summary["server_reloads_logged"] = count_in(srv.log_path, re.compile(r"reload", re.I))
        summary["over_rate_lines"] = count_in(srv.log_path, re.compile(r"broadcast over rate"))
        summary["keep_routes_added_again_lines"] = count_in(soak.keep.log_path, re.compile(r"gone from the kernel.*added again"))
        summary["counts"] = soak.c
        summary["events"] = soak.events
        summary["minutes"] = round((time.monotonic() - t0) / 60, 1)
    write_out(a.out, summary, soak.samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
