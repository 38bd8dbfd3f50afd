"""Soak under network faults and churn together, over time (not a test):

four servers side by side, each behind a faulty link (relay_faults.py, a userspace relay: this
kernel has no netem), with clients churning through it:

  ours, UDP   3 of our clients, 3 of Debian's      ours, TCP     2 of ours, 2 of Debian's
  Debian's, UDP   2 of our clients                 Debian's, TCP 2 of ours

The first client of each group (one of ours) stays for the whole run (its RSS and fds sampled);
the others connect, pass checked transfers, stay 40-200 s, leave (SIGTERM) and come back. Every
server renegotiates every `--reneg` s. The link changes every 45-75 s: loss 0-20 %, reordering,
duplication and corruption (UDP; each datagram's own draw), 0-200 ms delay with jitter (both
transports), every fourth change an MTU drop (1280 on every client's veth) and every fifth a 20 s
blackout (nftables: everything dropped both ways). UDP clients float: the relay gives each
client a new source port every 40-120 s (a NAT rebinding, as the server sees it); TCP
connections are cut by the relay now and then (a NAT losing its state: the client reconnects).

Checks: every transfer's bytes (SHA-256 of a known pattern, both directions); after each
blackout, every client up before it passes a ping to its server within `BACK_WITHIN` s of the
link's return (ping-restart 30 + connect-retry-max 10 + a handshake under the faults); after
all left, nothing held (our servers' SIGUSR2 `statistics: held`: clients, transport and tunnel
addresses, peer-ids, pool leases all 0; Debian's status file without a CLIENT_LIST row); the
RSS and fds of every long-lived process sampled every 30 s (flat after the warm-up); each server
log's lines per minute (rate-limited logging of the bad packets); no Traceback or logging error
in any log of ours.

    nice -n 10 python -m lab.reliability.soak_faults --minutes 30 --out /tmp/soak-faults
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..configs import client_profile, server_config
from ..netns import SRV_IP, Lab, Netns, Proc, _pattern_digest
from ..tools import OPENVPN, OUR_BIN
from .soak_base import SoakBase, count_in, held, proc_info, soak_parser, write_out

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
DOWN = {"ours": re.compile(r"restarting the connection|link to .* lost|restarting in"),
        "openvpn": re.compile(r"process restarting")}
FAULT = re.compile(r"Traceback|--- Logging error|CRITICAL|internal error")
SAMPLE_EVERY = 30.0
BLACKOUT_S = 20.0
MTU_LOW = 1280
BACK_WITHIN = 30 + 10 + 20      # ping-restart + connect-retry-max + a handshake under faults
RELAY = Path(__file__).with_name("relay_faults.py")
TRANSFER_WAIT = 150             # s without progress before a transfer's end gives up

RECEIVER = f"""
import socket, sys, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout({TRANSFER_WAIT})
print("listening", flush=True)
c, _ = s.accept(); c.settimeout({TRANSFER_WAIT}); h = hashlib.sha256(); n = 0; want = int(sys.argv[3])
try:
    while n < want:
        d = c.recv(262144)
        if not d: break
        h.update(d); n += len(d)
except OSError as e:
    print("error", e, flush=True)
print("ok" if n == want else "short", h.hexdigest(), n, flush=True)
"""
SENDER = ("import socket,sys;c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=%d);"
          "n=int(sys.argv[3]);b=bytes(range(256))*4096;"
          "[c.sendall(b[:min(len(b),n-i)]) for i in range(0,n,len(b))];c.close()" % TRANSFER_WAIT)


@dataclass
class Group:
    """One server and its clients behind one relay port."""
    name: str
    server: str                 # "ours" | "openvpn"
    proto: str
    port: int                   # the server's
    relay: int                  # the relay's front (the clients' remote)
    net: int                    # 198.19.<net>.0/24, the server 198.19.<net>.1
    clients: list[str]          # kinds, the first stays for the whole run
    first: int = 0              # index of its first client namespace
    proc: Proc | None = None
    status: Path | None = None
    lines: dict = field(default_factory=lambda: {"offset": 0, "n": 0, "per_min": []})

    @property
    def tun_ip(self) -> str:
        return f"198.19.{self.net}.1"


def groups() -> list[Group]:
    gs = [Group("ours-udp", "ours", "udp", 1194, 1195, 0, ["ours", "ours", "ours", "openvpn", "openvpn", "openvpn"]),
          Group("ours-tcp", "ours", "tcp", 1294, 1295, 1, ["ours", "ours", "openvpn", "openvpn"]),
          Group("debian-udp", "openvpn", "udp", 1394, 1395, 2, ["ours", "ours"]),
          Group("debian-tcp", "openvpn", "tcp", 1494, 1495, 3, ["ours", "ours"])]
    i = 0
    for g in gs:
        g.first = i
        i += len(g.clients)
    return gs


def random_profile(rng: random.Random, k: int) -> dict:
    """The link for the k-th minute: every field drawn, some switched off half the time."""
    delay = rng.choice([0, rng.uniform(0, 200)])
    return {"loss": round(rng.uniform(0, 0.20), 3),
            "reorder": round(rng.uniform(0, 0.25), 3) if rng.random() < 0.5 else 0,
            "dup": round(rng.uniform(0, 0.05), 3) if rng.random() < 0.5 else 0,
            "corrupt": round(rng.uniform(0, 0.03), 3) if rng.random() < 0.5 else 0,
            "delay": round(delay), "jitter": round(rng.uniform(0, min(delay, 60))),
            "rebind": [40, 120], "tcp_reset": 400,
            "mtu": MTU_LOW if k % 4 == 2 else 1500, "blackout": k % 5 == 4}


class Link:
    """The faults: the relay's profile file, nftables (TCP loss, blackouts), the veths' MTU."""

    def __init__(self, lab: Lab, gs: list[Group], cns: list[Netns], tmp: Path) -> None:
        self.lab, self.gs, self.cns = lab, gs, cns
        self.profile_path = tmp / "profile.json"
        self.profile: dict = {}
        self.mtu = 1500
        for i, ns in enumerate(cns):        # one packet per skb both ways: nft's draws per packet
            lab.srv.run(f"ip link set dev vs{i}{lab.tag} gso_max_segs 1")
            ns.run(f"ip link set dev vc{i}{lab.tag} gso_max_segs 1")

    def write_profile(self, prof: dict) -> None:
        tmp = self.profile_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(prof))
        tmp.rename(self.profile_path)

    def _nft(self, ns: Netns, rules: list[str]) -> None:
        text = ("table inet faults\nflush table inet faults\ntable inet faults {\n chain in {\n"
                "  type filter hook input priority 0; policy accept;\n" + "".join(f"  {r}\n" for r in rules) + " }\n}\n")
        ns.run(f"nft -f - <<'EOF'\n{text}EOF")

    def apply(self, prof: dict, blackout: bool = False) -> None:
        self.profile = prof
        self.write_profile({**prof, "blackout": blackout})
        relays = ", ".join(str(g.relay) for g in self.gs)
        tcp = ", ".join(str(g.relay) for g in self.gs if g.proto == "tcp")
        per_mille = int(prof.get("loss", 0) * 1000)
        srv = ['iifname "vs*" tcp dport { %s } numgen random mod 1000 < %d counter drop' % (tcp, per_mille)]
        cli = ['tcp sport { %s } numgen random mod 1000 < %d counter drop' % (tcp, per_mille)]
        if blackout:
            srv.append('iifname "vs*" meta l4proto { tcp, udp } th dport { %s } counter drop' % relays)
            cli.append('meta l4proto { tcp, udp } th sport { %s } counter drop' % relays)
        self._nft(self.lab.srv, srv)
        for ns in self.cns:
            self._nft(ns, cli)
        mtu = prof.get("mtu", 1500)
        if mtu != self.mtu:
            for i, ns in enumerate(self.cns):
                self.lab.srv.run(f"ip link set dev vs{i}{self.lab.tag} mtu {mtu}")
                ns.run(f"ip link set dev vc{i}{self.lab.tag} mtu {mtu}")
            self.mtu = mtu

    def clean(self) -> None:
        self.apply({"loss": 0, "mtu": 1500})


class Soak(SoakBase):
    def __init__(self, lab: Lab, a, gs: list[Group], cns: list[Netns]) -> None:
        super().__init__(lab, a)
        self.gs, self.cns = gs, cns
        self.link = Link(lab, gs, cns, lab.tmp)
        self.hold = threading.Event()              # a blackout's check under way: nobody leaves
        self.procs: dict[int, Proc | None] = {}     # client index -> its current process
        self.up_count: dict[int, tuple[int, int]] = {}
        self.back_times: list[float] = []
        self.transfer_fail_why: Counter = Counter()
        self.relay: Proc | None = None

    def finding(self, key: str, text: str) -> None:
        self.count(f"FINDING {key}")
        if self.c.get(f"FINDING {key}", 0) <= 5:
            self.note(f"FINDING {key}: {text}")

    def group_of(self, i: int) -> Group:
        return next(g for g in self.gs if g.first <= i < g.first + len(g.clients))

    # ---- configs
    def server_conf(self, g: Group) -> str:
        g.status = self.lab.tmp / f"status-{g.name}.txt"
        text = server_config(self.lab.pki, g.proto, port=g.port, reneg_sec=self.a.reneg,
                             extra=f"status {g.status} 5\nstatus-version 2\nmax-clients 50\n")
        return text.replace("server 198.19.0.0 ", f"server 198.19.{g.net}.0 ")

    def client_conf(self, g: Group, cn: str) -> str:
        extra = "connect-retry 1 10\n" + ("explicit-exit-notify 1\n" if g.proto == "udp" else "")
        return client_profile(self.lab.pki, g.proto, client=cn, remotes=[(SRV_IP, g.relay, g.proto)], extra=extra)

    # ---- a client slot
    def is_up(self, i: int) -> bool:
        """Up in its own log: its last `up` line after its last drop."""
        p = self.procs.get(i)
        if p is None or not p.alive():
            return False
        kind = self.group_of(i).clients[i - self.group_of(i).first]
        text = p.log()
        downs = [m.start() for m in DOWN[kind].finditer(text)]
        return text.rfind(UP[kind]) > (downs[-1] if downs else -1)

    def checked_transfer(self, i: int, g: Group, nbytes: int, reverse: bool) -> tuple[bool, str]:
        """`nbytes` of a known pattern over TCP through the tunnel, client to server or back:
        (right, why not). Lab.tcp_transfer's sender gives up after 30 s without progress, less
        than a blackout plus TCP's backoff after it (the first smoke run: 16 of 19 failures were
        that timeout): here both ends wait TRANSFER_WAIT s."""
        cns, port = self.cns[i], 6000 + i
        recv_ns, send_ns = (cns, self.lab.srv) if reverse else (self.lab.srv, cns)
        ip = self.lab._tun_ip(cns) if reverse else g.tun_ip
        recv = self.lab.start(recv_ns, [sys.executable, "-c", RECEIVER, ip, str(port), str(nbytes)], f"recv-{port}")
        try:
            if not recv.wait_for("listening", 30):
                return False, f"receiver on {ip}:{port} never listened: {recv.log()[-300:]!r}"
            try:
                r = send_ns.run(f"{sys.executable} -c '{SENDER}' {ip} {port} {nbytes}", check=False,
                                timeout=TRANSFER_WAIT + 30)
            except subprocess.TimeoutExpired:
                return False, f"sender to {ip}:{port} still running after {TRANSFER_WAIT + 30} s"
            if r.returncode != 0:
                return False, f"sender to {ip}:{port} exited {r.returncode}: {r.stderr.strip().splitlines()[-1:]!r}"
            # The sender is done once its last bytes are in its socket's buffer: those may take a
            # while under 20 % loss (run 1: two 512 kB transfers past a 60 s wait, bytes still coming)
            if not recv.wait_for(r"(?m)^(ok|short|error) ", TRANSFER_WAIT + 10):
                return False, f"receiver gave no verdict: {recv.log()[-300:]!r}"
            m = re.search(r"^(ok|short) (\S+) (\d+)", recv.log(), re.M)
            if m and m.group(1) == "ok" and m.group(2) != _pattern_digest(nbytes):
                return False, f"WRONG BYTES: {recv.log()[-300:]!r}"
            return bool(m and m.group(1) == "ok"), f"receiver: {recv.log()[-200:]!r}"
        finally:
            recv.stop(3)
            self.forget(recv, lab_checks=False)
            recv.log_path.unlink(missing_ok=True)

    def transfer(self, i: int, g: Group, rng: random.Random) -> None:
        nbytes = rng.choice([65_536, 262_144, 524_288])
        ok, why = self.checked_transfer(i, g, nbytes, bool(rng.getrandbits(1)))
        self.count("transfers")
        if ok:
            self.count("transfers right")
            self.count(f"bytes checked ({g.name})", nbytes)
            return
        if why.startswith("WRONG BYTES"):               # every byte arrived, not the right ones
            self.finding("transfer bytes wrong", f"c{i} ({g.name}): {why}")
            return
        self.count("transfers failed (short or timed out)")
        self.count(f"transfers failed ({g.name})")
        self.transfer_fail_why[re.sub(r"[0-9.]+", "N", why)[:90]] += 1
        if self.c.get("transfers failed (short or timed out)", 0) <= 10:
            self.note(f"c{i} ({g.name}) transfer failed: {why[:300]}")

    def client(self, i: int) -> None:
        g = self.group_of(i)
        kind = g.clients[i - g.first]
        stays = i == g.first
        rng = random.Random(self.a.seed * 1000 + i)
        ns, cn = self.cns[i], f"c{i}"
        conf = self.client_conf(g, cn)
        while not self.done.is_set():
            if not self.admitted():
                continue
            with self.connecting():
                p = None
                try:
                    argv = ([OUR_BIN, "run", str(self.lab.write(f"{cn}.ovpn", conf))] if kind == "ours"
                            else [OPENVPN, "--config", str(self.lab.write(f"{cn}.conf", conf))])
                    p = self.lab.start(ns, argv, cn)
                    self.procs[i] = p
                    if not p.wait_for(UP[kind], 150):
                        self.count(f"connect failures ({g.name})")
                        self.note(f"{cn} ({kind}, {g.name}) not up within 150 s: {p.log()[-600:]!r}")
                        continue
                    self.count(f"connects ({g.name})")
                    end = time.monotonic() + (1e9 if stays else rng.uniform(*self.a.stay))
                    while not self.cut.is_set() and (time.monotonic() < end or self.hold.is_set()):
                        if not p.alive():
                            self.finding("client exited", f"{cn} ({kind}, {g.name}): {p.log()[-1500:]!r}")
                            break
                        if self.is_up(i):
                            self.transfer(i, g, rng)
                        self.cut.wait(rng.uniform(2, 6))
                finally:
                    self.procs[i] = None
                    if p is not None:
                        p.stop(8)
                        self.forget(p, lab_checks=False)
                        text = p.log()
                        ups, downs = text.count(UP[kind]), len(DOWN[kind].findall(text))
                        self.count(f"client restarts seen in its log ({g.name})", downs)
                        self.count(f"client ups ({g.name})", ups)
                        if FAULT.search(text):
                            shutil.copy(p.log_path, self.a.out / f"fault-{cn}-{int(time.time())}.log")
                            self.finding("client log fault", f"{cn} ({kind}): {FAULT.search(text).group(0)}")
                        if stays:
                            shutil.copy(p.log_path, self.a.out / f"stayer-{cn}.log")
                        p.log_path.unlink(missing_ok=True)
            self.cut.wait(rng.uniform(1, 4))

    # ---- the link's changes and the blackouts' checks
    def back_after_blackout(self, i: int, t_end: float, results: dict) -> None:
        g = self.group_of(i)
        while time.monotonic() - t_end < BACK_WITHIN + 30:
            r = self.cns[i].run(f"ping -n -q -c 1 -W 1 {g.tun_ip}", check=False, timeout=10)
            if " 1 received" in r.stdout:
                results[i] = time.monotonic() - t_end
                return
            time.sleep(0.5)
        results[i] = None

    def link_changer(self) -> None:
        rng = random.Random(self.a.seed + 7)
        k = 0
        while not self.done.wait(rng.uniform(*self.a.change)):
            if not self.gate.is_set():
                continue
            prof = random_profile(rng, k)
            k += 1
            self.count("link changes")
            self.note(f"link: {json.dumps(prof)}")
            if prof.pop("blackout"):
                self.blackout(prof)
            else:
                self.link.apply(prof)
                if prof["mtu"] != 1500:
                    self.count("MTU drops")

    def blackout(self, prof: dict) -> None:
        self.hold.set()
        try:
            up = [i for i in range(len(self.cns)) if self.is_up(i)]
            self.link.apply(prof, blackout=True)
            self.count("blackouts")
            self.done.wait(BLACKOUT_S)
            self.link.apply(prof)
            t_end = time.monotonic()
            res: dict[int, float | None] = {}
            ts = [threading.Thread(target=self.back_after_blackout, args=(i, t_end, res), daemon=True) for i in up]
            for t in ts:
                t.start()
            for t in ts:
                t.join(BACK_WITHIN + 60)
            back = {i: v for i, v in res.items() if v is not None}
            with self.lock:
                self.back_times += list(back.values())
            late = {f"c{i}": (round(v, 1) if v is not None else None) for i, v in res.items()
                    if v is None or v > BACK_WITHIN}
            self.count("clients checked after blackouts", len(up))
            self.count("clients back after blackouts", len(back) - len([v for v in late.values() if v]))
            self.note(f"blackout over: {len(up)} up before, back in "
                      f"{sorted(round(v, 1) for v in back.values())} s")
            if late:
                self.finding("not back after blackout", f"{late} (bound {BACK_WITHIN} s)")
        finally:
            self.hold.clear()

    # ---- sampling
    def log_lines(self, g: Group) -> int:
        """New lines in the server's log since the last call."""
        assert g.proc is not None
        try:
            with open(g.proc.log_path, "rb") as f:
                f.seek(g.lines["offset"])
                data = f.read()
        except FileNotFoundError:
            return 0
        g.lines["offset"] += len(data)
        n = data.count(b"\n")
        g.lines["n"] += n
        return n

    def sample(self, t0: float) -> dict:
        s: dict = {"t": round(time.monotonic() - t0)}
        for g in self.gs:
            assert g.proc is not None
            info = proc_info(g.proc.p.pid)
            if g.server == "ours" and info:
                info["held"] = held(g.proc)
            info["log_lines"] = self.log_lines(g)
            s[g.name] = info
            stayer = self.procs.get(g.first)
            s[f"{g.name} stayer"] = proc_info(stayer.p.pid) if stayer is not None else {}
        if self.relay is not None:
            s["relay"] = proc_info(self.relay.p.pid)
        self.record(s)
        short = {k: (v.get("rss"), v.get("fds"), v.get("log_lines")) for k, v in s.items() if isinstance(v, dict) and k != "counts"}
        print(f"  t={s['t']:5d}s (rss, fds, log lines) {short} | active {s['active']} "
              + json.dumps(s["counts"], sort_keys=True), flush=True)
        return s

    def run(self, t0: float) -> dict:
        specs = [f"{g.relay}:{g.proto}:{SRV_IP}:{g.port}" for g in self.gs]
        self.link.apply({"loss": 0, "mtu": 1500, "rebind": [40, 120], "tcp_reset": 400})
        self.relay = self.lab.start(self.lab.srv, [sys.executable, str(RELAY), str(self.link.profile_path),
                                                   str(self.a.seed), SRV_IP, *specs], "relay")
        if not self.relay.wait_for("relaying", 30):
            raise RuntimeError(self.relay.log())
        for g in self.gs:
            conf = self.server_conf(g)
            env = {k: v.replace("{name}", g.name) for k, v in self.a.server_env.items()} or None
            g.proc = (self.lab.ours(self.lab.srv, conf, f"srv-{g.name}", pattern=r"listening on", env=env)
                      if g.server == "ours" else self.lab.openvpn(self.lab.srv, conf, f"srv-{g.name}"))
        res: dict = {"start": {g.name: proc_info(g.proc.p.pid) for g in self.gs if g.proc}}
        self.note(f"servers up: {res['start']}")
        self.gate.set()
        end = time.monotonic() + self.a.minutes * 60
        last = time.monotonic()
        while time.monotonic() < end:
            self.done.wait(min(5, max(0.1, end - time.monotonic())))
            if time.monotonic() - last >= SAMPLE_EVERY:
                last = time.monotonic()
                self.sample(t0)
            for g in self.gs:
                if g.proc is not None and not g.proc.alive():
                    self.finding("server exited", f"{g.name}: {g.proc.log()[-2000:]}")
                    raise RuntimeError(f"server {g.name} exited")
        # the end: a clean link, everyone leaves, the servers settle, nothing may be left
        while self.hold.is_set():
            time.sleep(1)
        self.gate.clear()
        self.link.clean()
        self.all_leave(self.a.settle)
        self.sample(t0)
        res["after_all_left"] = {}
        for g in self.gs:
            assert g.proc is not None and g.status is not None
            if g.server == "ours":
                h = held(g.proc)
                res["after_all_left"][g.name] = h
                if not h or any(v for v in h.values()):
                    self.finding("held after all left", f"{g.name}: {h}")
            else:
                rows = [ln for ln in g.status.read_text().splitlines() if ln.startswith(("CLIENT_LIST", "ROUTING_TABLE"))]
                res["after_all_left"][g.name] = {"CLIENT_LIST and ROUTING_TABLE rows": len(rows)}
                if rows:
                    self.finding("held after all left", f"{g.name}: {rows}")
        return res

    def finish_servers(self, res: dict) -> None:
        res["servers"] = {}
        for g in self.gs:
            if g.proc is None:
                continue
            g.proc.stop(10)
            self.forget(g.proc, lab_checks=False)
            shutil.copy(g.proc.log_path, self.a.out / f"srv-{g.name}.log")
            lp = g.proc.log_path
            pats: Counter = Counter()
            with open(lp, errors="replace") as f:
                for line in f:
                    pats[re.sub(r"\d+", "N", line.split(" ", 2)[-1] if g.server == "ours" else line[25:])[:80]] += 1
            res["servers"][g.name] = {
                "log_lines": sum(pats.values()),
                "faults_in_log": count_in(lp, FAULT),
                "renegotiations": count_in(lp, re.compile(r"key renegotiated" if g.server == "ours" else r"TLS: soft reset")),
                "floats": count_in(lp, re.compile(r"moved from .* by peer-id|float", re.I)),
                "top_lines": pats.most_common(8)}
        if self.relay is not None:
            self.relay.stop(5)
            self.forget(self.relay, lab_checks=False)
            relays = re.findall(r"^relay (\{.*\})$", self.relay.log(), re.M)
            res["relay"] = json.loads(relays[-1]) if relays else {}
            shutil.copy(self.relay.log_path, self.a.out / "relay.log")


def flat_after_warmup(samples: list[dict], warm_s: float) -> dict:
    """Per long-lived process: RSS (MB) at the first sample after the warm-up, at the last sample
    before everyone left, the largest between, and the fds' range then; per server the most log
    lines in one sample period (30 s) after the first minute."""
    out: dict = {}
    run = [s for s in samples if s.get("active")]
    after = [s for s in run if s["t"] >= warm_s]
    if not after:
        return out
    for k in after[0]:
        if k in ("t", "counts", "active") or not isinstance(after[0][k], dict):
            continue
        rss = [s[k]["rss"] for s in after if s.get(k, {}).get("rss")]
        fds = [s[k]["fds"] for s in after if s.get(k, {}).get("fds")]
        if rss:
            out[k] = {"rss_warm": rss[0], "rss_last": rss[-1], "rss_max": max(rss), "fds": [min(fds), max(fds)]}
        lines = [s[k]["log_lines"] for s in run if s["t"] >= 60 and "log_lines" in s.get(k, {})]
        if lines:
            out.setdefault(k, {})["log_lines_max_per_30s"] = max(lines)
            out[k]["log_lines_mean_per_30s"] = round(sum(lines) / len(lines), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = soak_parser(__doc__, phase="the run", minutes=30, reneg=60, settle=75.0, seed=37, out="/tmp/soak-faults")
    ap.set_defaults(stay=(40, 200))
    ap.add_argument("--change", type=float, nargs=2, default=(45, 75), help="s between the link's changes")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of our servers, {name} replaced by the server's (e.g. heapwatch's "
                         "PYTHONPATH=lab/reliability/heapwatch HEAPWATCH=/tmp/hw-{name}.jsonl)")
    a = ap.parse_args(argv)
    a.server_env = dict(e.split("=", 1) for e in a.server_env)
    a.out.mkdir(parents=True, exist_ok=True)
    gs = groups()
    n = sum(len(g.clients) for g in gs)
    tmp = Path(f"/tmp/soakfaults-{os.getpid()}")
    tmp.mkdir()
    summary: dict = {"args": {k: str(v) for k, v in vars(a).items()}}
    with Lab(clients=[f"c{i}" for i in range(n)], tmp=tmp) as lab:
        cns = [lab.add_client_ns(i) for i in range(n)]
        soak = Soak(lab, a, gs, cns)
        t0 = time.monotonic()
        threads = [threading.Thread(target=soak.client, args=(i,), daemon=True) for i in range(n)]
        threads.append(threading.Thread(target=soak.link_changer, daemon=True))
        res: dict = {}
        try:
            for t in threads:
                t.start()
            res = soak.run(t0)
        except Exception as e:  # noqa: BLE001 - the summary is still written
            soak.note(f"run ended: {e!r}")
            res["error"] = repr(e)
        finally:
            soak.finish(threads)
            soak.finish_servers(res)
        summary.update(res)
        summary["counts"] = soak.c
        summary["back_after_blackout_s"] = sorted(round(v, 1) for v in soak.back_times)
        summary["transfer_failures"] = soak.transfer_fail_why.most_common(10)
        summary["flat_after_warmup"] = flat_after_warmup(soak.samples, a.warmup * 60)
        summary["events"] = soak.events
        summary["minutes"] = round((time.monotonic() - t0) / 60, 1)
    write_out(a.out, summary, soak.samples)
    return 0 if not any(k.startswith("FINDING") for k in soak.c) else 1


if __name__ == "__main__":
    raise SystemExit(main())
