"""Soak of the server's operations features together, for a long run (not a test):

our `dev tun` server (topology subnet, client-config-dir, crl-verify, a management unix socket
with management-client-auth, a status file rewritten every 3 s, auth-user-pass-verify +
auth-gen-token, ifconfig-pool-persist, reneg-sec small) with Debian's clients and a few of ours
connecting, renegotiating and leaving in a loop, while a driver

- reloads the server (SIGHUP) every ~60 s, each time changing the pushed route of a third of the
  clients' ccd files (c0, c3, ...), keeping another third's ccd files as they were (c1, c4, ...),
  alternating status-version 2/3, and every `--push-change-every` reloads the config's push.
  Our server restarts (RESTART) the kept clients whose options the new config changes, as 2.6's
  SIGHUP restarts every client, and keeps the others untouched (reload42; a client restarted by a
  reload not again within 30 s). So: a client whose options changed must be back within
  RESTART_BACK s of the SIGHUP with them (the new ccd route in its own routing table; Debian's
  client: the new push in its PUSH_REPLY line); one whose options did not change must still be
  connected with the same connection and address 8 s after it; the revoked one aside;
- replaces the CRL (write, rename) every ~90 s, revoking or unrevoking client `rv`, a Debian client
  that keeps trying: while revoked it must not get in, and a reload must drop it;
- speaks to the management socket every few seconds (status, load-stats, kill, client-kill,
  bytecount, log, hold release, signal SIGUSR2, ...), sometimes hanging up mid-command, and answers
  every login on a second connection (client-auth-nt, deferred by up to 1.5 s);
- compares the management `status`, the status file and the clients actually up (their own logs
  and tun addresses), and the addresses given to each name (ifconfig-pool-persist);
- (`--churn N`, our server's phase) has N of Debian's clients restart in place: a fixed `lport`,
  told to restart (SIGUSR1, which sends no exit notification) every 1-6 s while up, so each new session
  comes from the address and port of the one it replaces. Each must be back within 45 s with the
  same tunnel address, and the management `status` row must keep its client ID, peer-id and
  connected-since across the restart (as 2.6's instance for that address takes the new reset).

- (`--proto tcp`) the same over TCP (the in-place restarters aside: a TCP client has no fixed port);
- (`--status-poll S`) polls the management `status 2` every S s, each reply's time kept;
- (`--conn-client`) keeps one of our clients up with a profile of two `<connection>` blocks, the
  first unreachable (a port nothing listens on, `server-poll-timeout 4`), and restarts it
  (SIGUSR1) every 15-40 s: each time it must be back within 60 s, its RSS and fds sampled too.

- (`--reneg-refuse LO HI`, helper soak47) every LO-HI s one connected client is marked for refusal:
  the server's password check (auth-user-pass-verify, with `auth-gen-token 0 external-auth` so the
  renegotiation's token goes to it) says no at that client's next check -- its renegotiation, a
  refusal mid-session, which over UDP leaves a refusal remnant (refusals.py). The client ends (told
  AUTH_FAILED) and starts again as a new login; (`--reload-on-refusal P`) with probability P a
  refusal seen in the server's log is followed 0.3-1 s later by a SIGHUP, the remnant count
  read (SIGUSR2) just before it.

`--reload-every LO HI` sets the SIGHUPs' spacing (50-70 s by default). With the server's
PYTHONPATH on lab/reliability/loopwatch and LOOPWATCH set (`--server-env`), each sample also
says the longest loop step since the last one; each also counts the server's log lines.

Every 30 s: the server's RSS, fds, threads, CPU, and SIGUSR2's `statistics: held` line. Then the
same with Debian's server in our server's place (without management-client-auth: it serves one
management client at a time), under the same checks -- there a finding is one of the clients'
(ours among them) -- and for the RSS growth per 1000 connections to compare.

    nice -n 10 python -m lab.reliability.soak_ops --minutes 30 --openvpn-minutes 10 --out /tmp/soak-ops
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

from appliance.openvpn.crl import make_crl

from ..configs import client_profile, server_config
from ..netns import Lab, Netns, Proc
from ..pki import ca_pair, client_serial
from ..tools import OPENVPN, OUR_BIN
from .soak_base import SoakBase, count_in, held, proc_info, rss_growth, soak_parser, write_out

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
DOWN = {"ours": re.compile(r"restarting the connection|link to .* lost|restarting in"),
        "openvpn": re.compile(r"process restarting")}
SAMPLE_EVERY = 30.0
REPLY_LIMIT = 10.0          # a management reply slower than this is a finding (blocked)
RESTART_PORT = 40000        # the in-place restarters' lport (each client has its own namespace)
RESTART_BACK = 45.0         # a client restarted by a reload: back within this (30 s hold-off + reconnect)
LOST_S = 3                  # --reneg-refuse over UDP: the refusal's control packets lost this long
# P_CONTROL_V1 (opcode 4: the first byte's top 5 bits; plain under tls-auth/tls-crypt) from the
# server to an address:port in `lost` (the verify script adds the refused one, with a timeout)
LOSE_NFT = """table inet soak47 {
  set lost { type ipv4_addr . inet_service; flags timeout; }
  chain out {
    type filter hook output priority 0; policy accept;
    udp sport 1194 @th,64,5 4 ip daddr . udp dport @lost counter drop
  }
}
"""
VARIANT_ROUTE = re.compile(r"^198\.18\.(2[0-4]\d)\.0/24 ", re.M)   # the changing ccd route (ours: 200-249)


class Mgmt:
    """One management connection (unix socket): commands and their replies, async lines set aside."""

    def __init__(self, path: Path, timeout: float = REPLY_LIMIT) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(str(path))
        self.buf = b""
        self.greeting = self.line()

    def line(self) -> str:
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.decode(errors="replace").rstrip("\r")

    def command(self, cmd: str, multi: bool) -> list[str]:
        """Send `cmd`; the reply's lines (to END for `multi`, else the SUCCESS/ERROR line)."""
        self.s.sendall(cmd.encode() + b"\n")
        out: list[str] = []
        while True:
            ln = self.line()
            if ln.startswith(">"):
                continue
            out.append(ln)
            if multi and ln == "END":
                return out
            if ln.startswith(("SUCCESS:", "ERROR:")) and (not multi or len(out) == 1 and ln.startswith("ERROR:")):
                return out

    def close(self) -> None:
        try:
            self.s.close()
        except OSError:
            pass


def parse_status(lines: list[str]) -> dict[str, dict]:
    """CLIENT_LIST rows of status-version 2 or 3 (comma or tab): CN -> real, virtual, since, cid."""
    out = {}
    for ln in lines:
        f = ln.split("\t") if "\t" in ln else ln.split(",")
        if f[0] == "CLIENT_LIST" and len(f) >= 12:
            out[f[1]] = {"real": f[2], "virt": f[3], "since": f[8], "cid": f[10], "peer": f[11]}
    return out


class Soak(SoakBase):
    def __init__(self, lab: Lab, a) -> None:
        super().__init__(lab, a)
        self.ns: list[Netns] = []
        self.kind = "ours"
        self.server: Proc | None = None
        self.conf_path = lab.tmp / "server.conf"
        self.ccd = lab.tmp / "ccd"
        self.ccd.mkdir()
        self.crl = lab.tmp / "crl.pem"
        self.sock = lab.tmp / "mgmt.sock"
        self.status_file = lab.tmp / "status.txt"
        self.ipp = lab.tmp / "ipp.txt"
        # the clients' own view: CN -> {"up": bool, "t": last change, "virt": addr}
        self.up: dict[str, dict] = {}
        self.addrs: dict[str, set[str]] = {}      # CN -> every address it was given (pool persist)
        self.intended: dict[str, float] = {}     # CN -> last time the driver or the client itself ended it
        self.revoked = False
        self.revoked_at = 0.0
        self.rv_gone_noted = False
        self.reload_now = threading.Event()
        self.reload_why = "a revoking CRL swap"  # what set reload_now (counted under it)
        self.variant = 0
        self.mgmt_lock = threading.Lock()        # Debian's server serves one management client at a time
        self.apart = {"rv", "cb"}                # clients with checks of their own (revoked; <connection> blocks)
        self.conn_proc: Proc | None = None       # the <connection>-block client (--conn-client)
        self.status_ms: list[float] = []         # --status-poll: each reply's time
        self.log_lines = 0                       # the server's log lines at the last sample
        self.loopwatch_at = 0                    # how far LOOPWATCH was read
        self.killed_at: dict[str, float] = {}    # CN -> the driver's last kill / client-kill of it
        self.reload_restart_at: dict[str, float] = {}   # CN -> the last SIGHUP that changed its options
        self.procs: dict[str, Proc] = {}         # CN -> its running client (a reload restart's check reads its log)
        self.push_variant = 0                    # the config's own push (all clients' options)
        self.deny_dir = lab.tmp / "deny"         # --reneg-refuse: deny-CN here, the verify script's no
        self.deny_dir.mkdir()
        self.denied: dict[str, float] = {}       # CN -> when it was marked for refusal
        self.remnants_max = 0                    # the most refusal remnants read at once

    # ---- bookkeeping
    def finding(self, key: str, text: str) -> None:
        self.count(f"FINDING {key}")
        if self.c.get(f"FINDING {key}", 0) <= 5:
            self.note(f"FINDING {key}: {text}")

    def set_up(self, cn: str, up: bool, virt: str = "") -> None:
        with self.lock:
            self.up[cn] = {"up": up, "t": time.monotonic(), "virt": virt}
            if up and virt:
                self.addrs.setdefault(cn, set()).add(virt)

    # ---- configs
    def server_conf(self, kind: str) -> str:
        v = self.variant
        extra = (f"client-config-dir {self.ccd}\ncrl-verify {self.crl}\nmanagement {self.sock} unix\n"
                 f"status {self.status_file} 3\nstatus-version {2 + v % 2}\nscript-security 2\n"
                 f"auth-user-pass-verify {self.lab.tmp / 'verify.sh'} via-file\n"
                 f"auth-gen-token 0{' external-auth' if self.a.reneg_refuse else ''}\n"
                 f"ifconfig-pool-persist {self.ipp} 5\nmax-clients 100\nreneg-sec {self.a.reneg}\nhand-window {self.a.reneg // 2}\n"
                 f"push \"dhcp-option DOMAIN soak{self.push_variant}.example\"\n")
        if kind == "ours":
            extra += "management-client-auth\n"
        return server_config(self.lab.pki, self.a.proto, extra=extra)

    def write_ccd(self) -> set[str]:
        """The clients' ccd files for this variant: c0, c3, ... a route of its own (198.18.200-249:
        it changes at every reload), c1, c4, ... one that stays (198.18.199.0); the others none.
        The names whose ccd options this changed."""
        v = self.variant
        changed = set()
        for i in range(self.a.clients):
            if i % 3 == 0:
                (self.ccd / f"c{i}").write_text(f'push "route {self.variant_route(v)} 255.255.255.0"\n')
                changed.add(f"c{i}")
            elif i % 3 == 1:
                (self.ccd / f"c{i}").write_text('push "route 198.18.199.0 255.255.255.0"\n')
        return changed

    @staticmethod
    def variant_route(v: int) -> str:
        return f"198.18.{200 + v % 50}.0"

    def write_crl(self, revoke: bool) -> None:
        ca = ca_pair(self.lab.pki)
        tmp = self.crl.with_suffix(".new")
        tmp.write_bytes(make_crl(*ca, [client_serial(self.lab.pki, "rv")] if revoke else []))
        os.replace(tmp, self.crl)

    def client_conf(self, i: int, cn: str, hand: int = 60, in_place: bool = False) -> str:
        """A churning client's profile; `in_place`: one restarting from its own address and port
        (a fixed lport; 2.6 sends its exit notification at SIGTERM, not at SIGUSR1, so the server
        learns of such a restart from the new reset only)."""
        proto = self.a.proto
        conf = client_profile(self.lab.pki, proto, client=cn, remotes=[(f"198.18.{i + 1}.1", 1194, proto)],
                              extra=(f"auth-user-pass {self.lab.tmp / 'creds.txt'}\n"
                                     + ("explicit-exit-notify 1\n" if proto == "udp" else "")
                                     + f"connect-retry 1 4\nhand-window {hand}\n"))
        return conf.replace("nobind\n", f"lport {RESTART_PORT}\n") if in_place else conf

    def restarts_in_place(self, i: int) -> bool:
        """Whether client `i` is one of the `--churn` Debian clients restarting in place (the
        first after ours), which only our server's phase exercises: Debian's 2.6.14 never lets
        such a restart in (its instance defers the new session's PUSH_REQUEST)."""
        return self.a.ours <= i < self.a.ours + self.a.churn

    def restart_in_place(self, p: Proc, cn: str, ups: int) -> int:
        """SIGUSR1 to a connected in-place client; waits for it to be up again (45 s at most) and
        compares its management `status` row and tunnel address before and after. The up count
        it has reached."""
        ns = self.ns[int(cn[1:])]
        t_sent = time.monotonic()
        before = (self.mgmt_status() or {}).get(cn)
        with self.lock:
            addr0 = self.up.get(cn, {}).get("virt", "")
            self.intended[cn] = time.monotonic() + 45
        self.set_up(cn, False)
        # Back means up after this SIGUSR1's own line: counting up lines alone went wrong once the
        # client had restarted by itself meanwhile (the driver's `kill`: remote-exit), every later
        # restart then taken as back at once, before its tun0 had an address.
        mark = len(p.log())
        # Any SIGUSR1 line: 2.6 keeps a pending soft signal's text when a hard one overrides it, so
        # the driver's SIGUSR1 in the same second as its own `kill` (server-pushed RESTART) is
        # logged "SIGUSR1[hard,server-pushed-connection-reset]" (soak35: one false "not back").
        back = re.compile(r"SIGUSR1\[[^\]\n]*\] received[^\n]*\n(?:.*\n)*?.*" + UP["openvpn"])
        p.p.send_signal(signal.SIGUSR1)
        self.count(f"in-place restarts ({self.kind})")
        end = time.monotonic() + 45
        resend = time.monotonic() + 5
        while time.monotonic() < end and not self.cut.is_set() and not back.search(p.log(), mark):
            if time.monotonic() > resend and "SIGUSR1[" not in p.log()[mark:]:
                # 2.6 ignores SIGUSR1 while (re)initialising (pre_init_signal_catch: SIG_IGN):
                # one sent then is lost without a line (once in soak34's second churn run)
                p.p.send_signal(signal.SIGUSR1)
                self.count("in-place SIGUSR1 re-sent (the client ignored it)")
                resend = time.monotonic() + 5
            time.sleep(0.3)
        nu = p.log().count(UP["openvpn"])
        if not back.search(p.log(), mark):
            with self.lock:
                killed = self.killed_at.get(cn, -1e9) > t_sent
            if killed:
                # the driver's `kill CN` during the new session's handshake (soak47, UDP: once in
                # 20 minutes): nothing can be said to a client without keys -- 2.6's `kill` tells
                # none at all -- so Debian's client waits out its handshake (~50 s), past 45
                self.count("in-place restarts not back after the driver's kill in their handshake")
            elif not self.cut.is_set():
                self.finding("in-place restart not back", f"{cn} not up 45 s after SIGUSR1 (server {self.kind}): "
                             f"{p.log()[-1200:]!r}")
            return ups
        m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
        addr = m.group(1) if m else ""
        self.set_up(cn, True, addr)
        with self.lock:
            self.intended[cn] = time.monotonic()
        self.count(f"in-place restarts back ({self.kind})")
        if not addr:        # gone again already (the driver's kill or client-kill)
            self.count("in-place restarts with no tun address to compare")
            with open(self.a.out / f"in-place-no-addr-{cn}-{int(time.time())}.log", "w") as f:
                f.write(p.log()[-6000:])
        elif addr0 and addr != addr0:
            self.finding("in-place restart moved", f"{cn}: {addr0} before, {addr} after")
        after = (self.mgmt_status() or {}).get(cn)
        with self.lock:
            killed = self.killed_at.get(cn, -1e9) > t_sent
            reloaded = self.reload_restart_at.get(cn, -1e9) > t_sent - RESTART_BACK
        if killed:      # the driver's kill or client-kill meanwhile: a new client ID is right (soak41)
            self.count("in-place restarts across the driver's kill (not compared)")
        elif reloaded:  # a reload's RESTART for new options meanwhile: a new connection (reload42)
            self.count("in-place restarts across a reload's restart (not compared)")
        elif before is None or after is None:
            self.count("in-place restarts without a row to compare")
        elif (after["cid"], after["peer"], after["since"]) != (before["cid"], before["peer"], before["since"]):
            self.finding("in-place restart renumbered", f"{cn}: row {before} before, {after} after")
        else:
            self.count(f"in-place restarts keeping CID, peer-id, since ({self.kind})")
        return nu

    # ---- churning clients
    def client(self, i: int) -> None:
        rng = random.Random(self.a.seed * 1000 + i)
        ns, cn = self.ns[i], f"c{i}"
        kind = "ours" if i < self.a.ours else "openvpn"
        in_place = self.restarts_in_place(i)
        conf = self.client_conf(i, cn, in_place=in_place)
        while not self.done.is_set():
            if not self.admitted():
                continue
            with self.connecting():
                p = None
                try:
                    p = (self.lab.start(ns, [OUR_BIN, "run", str(self.lab.write(f"{cn}.ovpn", conf))], cn)
                         if kind == "ours" else
                         self.lab.start(ns, [OPENVPN, "--config", str(self.lab.write(f"{cn}.conf", conf))], cn))
                    if not p.wait_for(UP[kind], 45):
                        self.count(f"connect failures ({self.kind})")
                        self.note(f"{cn} ({kind}) not up within 45 s against {self.kind}: {p.log()[-800:]!r}")
                        continue
                    self.count(f"connects ({self.kind})")
                    self.count(f"connects, {kind} client ({self.kind})")
                    with self.lock:
                        self.procs[cn] = p
                    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
                    self.set_up(cn, True, m.group(1) if m else "")
                    # A restart before the first up (the driver's client-kill of a login still
                    # waiting, a TCP connection closed before it) is no drop: counted from here
                    # (soak41: two false "mgmt status vs clients", the client taken as down for good)
                    text = p.log()
                    ups, downs = text.count(UP[kind]), len(DOWN[kind].findall(text))
                    end = time.monotonic() + rng.uniform(*self.a.stay)
                    while time.monotonic() < end and not self.cut.is_set():
                        if not p.alive():
                            # refused at its renegotiation (--reneg-refuse): AUTH_FAILED ends it
                            with self.lock:
                                marked = cn in self.denied
                            self.count("clients ended while up (marked for refusal)" if marked
                                       else "clients ended while up (unmarked)")
                            if not marked:
                                self.finding("client ended", f"{cn} ({kind}) ended unmarked: {p.log()[-1200:]!r}")
                            elif re.search(r"AUTH_FAILED", p.log()):
                                self.count(f"clients told AUTH_FAILED mid-session ({kind} client)")
                            break
                        r = ns.run("ping -n -q -c 2 -i 0.3 -W 2 198.19.0.1", check=False, timeout=20)
                        got = re.search(r"(\d+) received", r.stdout)
                        self.count("pings sent", 2)
                        self.count("pings answered", int(got.group(1)) if got else 0)
                        text = p.log()
                        nd, nu = len(DOWN[kind].findall(text)), text.count(UP[kind])
                        if nd > downs:
                            downs = nd
                            self.set_up(cn, False)
                            self.count(f"drops seen by clients ({self.kind})")
                            with self.lock:
                                why = time.monotonic() - self.intended.get(cn, -1e9) < 30
                            if not why:
                                self.finding("unintended drop", f"{cn} ({kind}, server {self.kind}) dropped: "
                                             f"{text[-1200:]!r}")
                        if nu > ups:
                            ups = nu
                            m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
                            self.set_up(cn, True, m.group(1) if m else "")
                        if in_place and self.kind == "ours":
                            self.cut.wait(rng.uniform(1, 6))
                            if not self.cut.is_set() and time.monotonic() < end:
                                ups = self.restart_in_place(p, cn, ups)
                                downs = len(DOWN[kind].findall(p.log()))
                            continue
                        self.cut.wait(rng.uniform(2, 5))
                finally:
                    if p is not None:
                        with self.lock:
                            self.intended[cn] = time.monotonic()
                            self.denied.pop(cn, None)
                            if self.procs.get(cn) is p:
                                del self.procs[cn]
                        (self.deny_dir / f"deny-{cn}").unlink(missing_ok=True)
                        self.set_up(cn, False)
                        p.stop(8)
                        self.forget(p, lab_checks=False)
                        text = p.log()
                        if re.search(r"Traceback|--- Logging error|CRITICAL", text):
                            shutil.copy(p.log_path, self.a.out / f"fault-{cn}-{int(time.time())}.log")
                            self.count("client logs with faults")
                        p.log_path.unlink(missing_ok=True)
            self.cut.wait(rng.uniform(1, 4))

    # ---- the revoked-and-unrevoked client, trying all the time (Debian's)
    def rv_client(self, ns: Netns) -> None:
        conf = self.client_conf(45, "rv", hand=15)
        while not self.done.is_set():
            if not self.gate.wait(1) or self.done.is_set():
                continue
            p = self.lab.start(ns, [OPENVPN, "--config", str(self.lab.write("rv.conf", conf))], "rv")
            ups = 0
            try:
                while self.gate.is_set() and not self.done.is_set():
                    time.sleep(1)
                    text = p.log()
                    nu = text.count(UP["openvpn"])
                    if nu > ups:
                        ups = nu
                        self.count(f"rv admissions ({self.kind})")
                        with self.lock:
                            rev, since = self.revoked, time.monotonic() - self.revoked_at
                        # the CRL is checked at each handshake: give a handshake begun just before the swap 20 s
                        if rev and since > 20:
                            self.finding("revoked admitted", f"rv came up {since:.0f} s after its revocation "
                                         f"(server {self.kind})")
            finally:
                p.stop(8)
                with open(self.a.out / "rv.log", "a") as f:
                    f.write(p.log())
                self.forget(p, lab_checks=False)
                p.log_path.unlink(missing_ok=True)

    # ---- management
    def mgmt_auth(self) -> None:
        """Answers every >CLIENT:CONNECT/REAUTH with client-auth-nt after 0-1.5 s (our server only)."""
        rng = random.Random(self.a.seed + 5)
        while not self.done.is_set():
            if self.kind != "ours" or self.server is None or not self.server.alive():
                time.sleep(0.5)
                continue
            try:
                m = Mgmt(self.sock, timeout=2)
            except OSError:
                time.sleep(0.5)
                continue
            due: list[tuple[float, str]] = []
            try:
                while not self.done.is_set() and self.kind == "ours":
                    now = time.monotonic()
                    for t, cmd in [d for d in due if d[0] <= now]:
                        due.remove((t, cmd))
                        m.s.sendall(cmd.encode() + b"\n")
                        self.count("mgmt client-auth-nt sent")
                    try:
                        ln = m.line()
                    except socket.timeout:
                        continue
                    mm = re.match(r">CLIENT:(CONNECT|REAUTH),(\d+),(\d+)", ln)
                    if mm:
                        self.count(f"mgmt >CLIENT:{mm.group(1)}")
                        due.append((time.monotonic() + rng.uniform(0, 1.5),
                                    f"client-auth-nt {mm.group(2)} {mm.group(3)}"))
                    elif ln.startswith("ERROR:"):
                        self.count("mgmt client-auth errors")
                        self.note(f"client-auth answer: {ln}")
            except (OSError, ConnectionError) as e:
                if self.server is not None and self.server.alive() and not self.done.is_set():
                    self.note(f"auth connection lost: {e!r}")
            finally:
                m.close()

    def mgmt_poker(self) -> None:
        rng = random.Random(self.a.seed + 7)
        cmds = [("status 2", True), ("status 3", True), ("status", True), ("load-stats", False),
                ("version", True), ("pid", False), ("bytecount 2", False), ("bytecount 0", False),
                ("log on", False), ("log off", False), ("log 20", True), ("state", True),
                ("hold release", False), ("signal SIGUSR2", False), ("help", True), ("verb", False),
                ("kill", False), ("client-kill", False), ("echo all", True)]
        while not self.done.is_set():
            self.done.wait(rng.uniform(1, 4))
            if self.server is None or not self.server.alive() or not self.gate.is_set():
                continue
            cmd, multi = rng.choice(cmds)
            if cmd in ("kill", "client-kill") and rng.random() > 0.3:
                continue
            with self.mgmt_lock:
                try:
                    m = Mgmt(self.sock)
                except OSError as e:
                    self.finding("mgmt connect", f"{e!r}")
                    continue
                try:
                    if cmd in ("kill", "client-kill"):
                        st = parse_status(m.command("status 2", True))
                        victims = [cn for cn in st if cn.startswith("c")]
                        if not victims:
                            continue
                        cn = rng.choice(victims)
                        # 2.6's `kill` closes the instance without a word to the client (ours sends
                        # the exit notification), which learns of it at its ping-restart, 30 s
                        # pushed: up in its own view until then (soak35: two false findings)
                        silent = cmd == "kill" and self.kind == "openvpn"
                        with self.lock:
                            self.intended[cn] = time.monotonic() + (35 if silent else 0)
                            self.killed_at[cn] = time.monotonic()
                        cmd = f"kill {cn}" if cmd == "kill" else f"client-kill {st[cn]['cid']}"
                    if rng.random() < 0.15:             # hang up mid-command
                        part = cmd.encode()[:rng.randint(0, len(cmd))]
                        m.s.sendall(part if rng.random() < 0.5 else cmd.encode() + b"\n")
                        self.count("mgmt hang-ups mid-command")
                        continue
                    t = time.monotonic()
                    reply = m.command(cmd, multi)
                    took = time.monotonic() - t
                    self.count("mgmt commands answered")
                    if cmd.startswith(("kill", "client-kill")):
                        self.count(f"mgmt {cmd.split()[0]}")
                        if not reply[-1].startswith("SUCCESS"):
                            self.note(f"{cmd}: {reply}")
                    if took > 3:
                        self.finding("mgmt slow", f"{cmd!r} took {took:.1f} s")
                except socket.timeout:
                    self.finding("mgmt blocked", f"{cmd!r}: no reply within {REPLY_LIMIT} s")
                except (OSError, ConnectionError) as e:
                    if self.server.alive():
                        self.finding("mgmt error", f"{cmd!r}: {e!r}")
                finally:
                    m.close()

    def mgmt_status(self) -> dict[str, dict] | None:
        with self.mgmt_lock:
            try:
                m = Mgmt(self.sock)
                try:
                    return parse_status(m.command("status 2", True))
                finally:
                    m.close()
            except (OSError, ConnectionError) as e:
                self.finding("mgmt status", f"{e!r}")
                return None

    # ---- checks: status file, management status, the clients' view
    def check_status(self) -> None:
        st = self.mgmt_status()
        if st is None:
            return
        now = time.monotonic()
        try:
            text = self.status_file.read_text()
            age = time.time() - self.status_file.stat().st_mtime
        except OSError:
            text, age = "", 0
        filed = parse_status(text.splitlines())
        self.count("status checks")
        if age > 10:
            self.finding("status file stale", f"written {age:.0f} s ago (every 3 s asked)")
        with self.lock:
            up = {cn: dict(v) for cn, v in self.up.items()
                  if now - self.intended.get(cn, -1e9) > 15}     # not just killed by the driver
        # Both servers: Debian's SIGHUP restarts every client, but the reloader marks them all as
        # ended by the driver for 20 s then (`intended`), so a client still missing or misplaced
        # after that is a finding against Debian's server too -- there, of the clients' side
        settled = {cn for cn, v in up.items() if now - v["t"] > 8}
        real = {cn for cn in settled if up[cn]["up"]}
        for cn in sorted(settled - self.apart):
            if (cn in st) != (cn in real):
                self.finding("mgmt status vs clients", f"{cn}: up per client {cn in real}, in status {cn in st}")
            elif cn in st and up[cn]["virt"] and st[cn]["virt"] != up[cn]["virt"]:
                self.finding("mgmt status address", f"{cn}: {st[cn]['virt']} in status, {up[cn]['virt']} on tun0")
        for cn in sorted(settled - self.apart):
            if now - up[cn]["t"] > 8 + age and (cn in filed) != (cn in st):
                self.finding("status file vs mgmt", f"{cn}: in file {cn in filed}, in mgmt {cn in st} "
                             f"(file {age:.1f} s old)")
        with self.lock:
            unknown = set(st) - set(self.up) - self.apart - {"UNDEF"}     # UNDEF: 2.6's row of a handshake under way
        if unknown:
            self.finding("status unknown names", f"{sorted(unknown)}")
        with self.lock:
            rev, since = self.revoked, now - self.revoked_at
        if rev and "rv" not in st and not self.rv_gone_noted:
            self.rv_gone_noted = True
            self.note(f"rv not connected {since:.0f} s after its revocation (server {self.kind})")
        if not rev:
            self.rv_gone_noted = False
        if rev and "rv" in st and since > self.a.reneg + 30:
            self.finding("revoked stays", f"rv still connected {since:.0f} s after its revocation")

    # ---- reloads and CRL swaps
    def reloader(self) -> None:
        rng = random.Random(self.a.seed + 11)
        while not self.done.is_set():
            asked = self.reload_now.wait(rng.uniform(*self.a.reload_every))
            self.reload_now.clear()
            if self.done.is_set() or self.server is None or not self.server.alive() or not self.gate.is_set():
                continue
            if asked:
                self.count(f"reloads right after {self.reload_why} ({self.kind})")
            before = self.mgmt_status() or {}
            self.variant += 1
            every = self.a.push_change_every
            push_changed = every > 0 and self.variant % every == 0
            if push_changed:
                self.push_variant += 1
                self.count(f"reloads changing the config's push ({self.kind})")
            ccd_changed = self.write_ccd()
            self.conf_path.write_text(self.server_conf(self.kind))
            t = time.monotonic()
            with self.lock:
                # whose options this reload changes: a restart of theirs is the server's doing
                changed = set(self.up) | set(before) if push_changed else set(ccd_changed)
                if self.kind == "openvpn":             # 2.6's SIGHUP restarts every client
                    for cn in self.up:
                        self.intended[cn] = t + 20
                else:
                    for cn in changed:
                        self.intended[cn] = t + RESTART_BACK
                        self.reload_restart_at[cn] = t
                marks = {cn: (p, len(p.log())) for cn, p in self.procs.items()
                         if cn in changed and cn in before and cn not in self.apart}
                rev = self.revoked                      # as the SIGHUP finds it
            os.kill(self.server.p.pid, signal.SIGHUP)
            self.count(f"reloads ({self.kind})")
            if self.kind == "ours" and marks:
                threading.Thread(target=self.check_reload_restarts, daemon=True,
                                 args=(marks, t, self.variant, self.push_variant, push_changed)).start()
            self.done.wait(8)
            after = self.mgmt_status() or {}
            with self.lock:
                rev = rev and self.revoked
                intended = {cn for cn, ts in self.intended.items() if ts > t - 15}
            if rev and "rv" in after and after["rv"]["since"] == before.get("rv", {}).get("since"):
                self.finding("revoked kept at reload", "rv still connected 8 s after a reload")
            if rev and "rv" in before and "rv" not in after:
                self.count(f"revoked client dropped at reload ({self.kind})")
            if self.kind == "ours":
                # A client whose options this reload did not change must be kept untouched (its
                # connection, its address). UNDEF: a handshake under way (listed since status33),
                # a name by the next status (soak34's run: one such row taken for a dropped client)
                same = [cn for cn in before if cn not in ("rv", "UNDEF") and cn not in changed]
                lost = [cn for cn in same if cn not in intended
                        and (cn not in after or after[cn]["since"] != before[cn]["since"])]
                # The same connection (same since) with another address; a row whose handshake
                # is under way has no address yet (status rows for those since status33): skipped.
                moved = [cn for cn in before if cn in after and after[cn]["since"] == before[cn]["since"]
                         and before[cn]["virt"] and after[cn]["virt"] and after[cn]["virt"] != before[cn]["virt"]]
                self.count("clients kept across reloads (options unchanged)", len([cn for cn in same if cn in after]))
                if lost:
                    self.finding("reload dropped", f"{lost} (of {len(same)} with unchanged options) gone or "
                                 "reconnected after a reload")
                if moved:
                    self.finding("reload moved", f"{moved} got another address at a reload")

    def check_reload_restarts(self, marks: dict[str, tuple[Proc, int]], t: float, v: int, pv: int,
                              push_changed: bool) -> None:
        """The clients whose options a reload changed (connected before it): each must restart
        (the server's RESTART: a restart line in its log after the SIGHUP) and be up again within
        RESTART_BACK s -- 30 s of hold-off for one a reload restarted just before -- with the new
        options: the ccd route of variant `v` or a later one in its routing table (ccd-changed
        clients), Debian's client's PUSH_REPLY naming push variant `pv` or later (push change)."""
        todo = dict(marks)
        while todo and time.monotonic() < t + RESTART_BACK and not self.cut.is_set():
            time.sleep(0.5)
            for cn, (p, mark) in list(todo.items()):
                with self.lock:
                    current = self.procs.get(cn)
                    killed = self.killed_at.get(cn, -1e9) > t
                if current is not p or killed:   # the client left (its stay over) or the driver killed it
                    del todo[cn]
                    self.count("reload restarts not checked (client left or killed meanwhile)")
                    continue
                kind = "ours" if int(cn[1:]) < self.a.ours else "openvpn"
                text = p.log()[mark:]
                down = DOWN[kind].search(text)
                if down is None or UP[kind] not in text[down.end():]:
                    continue
                del todo[cn]
                took = time.monotonic() - t
                self.count(f"reload restarts back ({kind} client{', in place' if self.restarts_in_place(int(cn[1:])) else ''})")
                with self.lock:
                    k = "reload restarts back (ms max)"
                    self.c[k] = max(self.c.get(k, 0), int(took * 1000))
                    if took > 30:
                        self.c["reload restarts back after the 30 s hold-off"] = \
                            self.c.get("reload restarts back after the 30 s hold-off", 0) + 1
                self.check_new_options(cn, kind, text[down.end():], v, pv, push_changed)
        for cn, (p, _mark) in todo.items():
            if self.cut.is_set() or not p.alive():
                self.count("reload restarts not checked (run cut or client ended)")
            elif DOWN["ours" if int(cn[1:]) < self.a.ours else "openvpn"].search(p.log()[_mark:]):
                self.finding("reload restart not back", f"{cn} restarted at a reload, not up "
                             f"{RESTART_BACK:.0f} s after it: {p.log()[-1200:]!r}")
            else:
                self.finding("reload restart missing", f"{cn}: options changed at a reload, not restarted "
                             f"{RESTART_BACK:.0f} s after it: {p.log()[-800:]!r}")

    def check_new_options(self, cn: str, kind: str, text: str, v: int, pv: int, push_changed: bool) -> None:
        """After a reload's restart: the client has the options of the reload's config or a later one."""
        i = int(cn[1:])
        if i % 3 == 0:
            ok = {self.variant_route(w) for w in range(v, self.variant + 1)}
            end = time.monotonic() + 10
            routes: list[str] = []
            while time.monotonic() < end:
                r = self.ns[i].run("ip -4 route show", check=False)
                routes = [f"198.18.{o}.0" for o in VARIANT_ROUTE.findall(r.stdout)]
                if routes:
                    break
                time.sleep(0.5)
            if len(routes) == 1 and routes[0] in ok:
                self.count(f"reload restarts with the new ccd route ({kind} client)")
            elif not routes and self.procs.get(cn) is None:
                self.count("reload restarts not checked (client left or killed meanwhile)")
            else:
                self.finding("reload restart old options", f"{cn}: routes {routes} after its restart, "
                             f"{sorted(ok)} expected (variant {v})")
        if push_changed and kind == "openvpn":
            m = re.search(r"PUSH_REPLY,[^\n]*", text)
            got = re.search(r"DOMAIN soak(\d+)\.example", m.group(0)) if m else None
            if got and int(got.group(1)) >= pv:
                self.count("reload restarts with the new push (Debian's client's PUSH_REPLY)")
            else:
                self.finding("reload restart old push", f"{cn}: {m.group(0) if m else 'no PUSH_REPLY'!r}, "
                             f"soak{pv} expected")

    # ---- --reneg-refuse: refusals mid-session, and reloads while their remnants live
    def refuser(self) -> None:
        """Marks one connected client (not the in-place restarters, not rv/cb) every LO-HI s: the
        verify script says no at its next check, its renegotiation (reneg-sec) in the main."""
        rng = random.Random(self.a.seed + 19)
        while not self.done.wait(rng.uniform(*self.a.reneg_refuse)):
            if self.kind != "ours" or not self.gate.is_set():
                continue
            now = time.monotonic()
            with self.lock:
                cands = [cn for cn, v in self.up.items() if v["up"] and cn not in self.apart
                         and cn not in self.denied and cn in self.procs and now - v["t"] > 5
                         and not self.restarts_in_place(int(cn[1:]))]
                if not cands:
                    continue
                cn = rng.choice(sorted(cands))
                self.denied[cn] = now
                # its end is the driver's doing: until its next renegotiation and the client's exit
                self.intended[cn] = now + 2 * self.a.reneg + 30
            (self.deny_dir / f"deny-{cn}").write_text("")
            self.count("clients marked for refusal at renegotiation")

    def refusal_watcher(self) -> None:
        """Reads the server's log for refusals at renegotiation; after one, with probability
        --reload-on-refusal, reads the remnant count (SIGUSR2) and sends SIGHUP (reload_now)."""
        rng = random.Random(self.a.seed + 23)
        at, srv = 0, None
        while not self.done.wait(0.3):
            if self.server is not srv:
                at, srv = 0, self.server
            if srv is None or self.kind != "ours" or not srv.alive():
                continue
            try:
                with open(srv.log_path, "rb") as f:
                    f.seek(at)
                    chunk = f.read()
            except OSError:
                continue
            cut = chunk.rfind(b"\n") + 1
            at += cut
            lines = [ln for ln in chunk[:cut].decode(errors="replace").splitlines() if "on renegotiation" in ln]
            if not lines:
                continue
            self.count("refusals at renegotiation (server log)", len(lines))
            if rng.random() >= self.a.reload_on_refusal:
                continue
            self.done.wait(rng.uniform(0.3, 1.0))
            h = held(srv)
            n = h.get("refusal remnants", 0)
            with self.lock:
                self.remnants_max = max(self.remnants_max, n)
                self.c["refusal remnants at a refusal's SIGHUP (max)"] = self.remnants_max
            self.count("SIGHUPs right after a refusal at renegotiation")
            if n:
                self.count("SIGHUPs while a refusal remnant lives")
            self.reload_why = "a refusal at renegotiation"
            self.reload_now.set()

    def crl_swapper(self) -> None:
        rng = random.Random(self.a.seed + 13)
        while not self.done.wait(rng.uniform(80, 100)):
            if not self.gate.is_set():
                continue
            with self.lock:
                self.revoked = not self.revoked
                self.revoked_at = time.monotonic()
                rev = self.revoked
            self.write_crl(rev)
            self.count("CRL swaps")
            if rev and rng.random() < 0.5:             # an operator's "new CRL, then reload": rv is kicked
                self.done.wait(2)
                self.reload_why = "a revoking CRL swap"
                self.reload_now.set()
            self.count("CRL swaps revoking" if rev else "CRL swaps unrevoking")

    # ---- --status-poll: the management `status 2`, as a monitoring system polls it
    def status_poller(self) -> None:
        while not self.done.wait(self.a.status_poll):
            if self.server is None or not self.server.alive() or not self.gate.is_set():
                continue
            with self.mgmt_lock:
                t = time.monotonic()
                try:
                    m = Mgmt(self.sock)
                    try:
                        st = parse_status(m.command("status 2", True))
                    finally:
                        m.close()
                except socket.timeout:
                    self.finding("status poll blocked", f"no reply within {REPLY_LIMIT} s")
                    continue
                except (OSError, ConnectionError) as e:
                    if self.server is not None and self.server.alive():
                        self.finding("status poll", f"{e!r}")
                    continue
                took = time.monotonic() - t
            self.count("status polls answered")
            with self.lock:
                self.status_ms.append(took * 1000)
            if took > 3:
                self.finding("status poll slow", f"`status 2` took {took:.1f} s ({len(st)} rows)")

    # ---- --conn-client: ours, two <connection> blocks, the first unreachable, restarted by SIGUSR1
    def conn_client_conf(self, index: int) -> str:
        ip = f"198.18.{index + 1}.1"
        base = client_profile(self.lab.pki, self.a.proto, client="cb")
        return ("".join(ln for ln in base.splitlines(keepends=True) if not ln.startswith(("remote ", "proto ")))
                + f"auth-user-pass {self.lab.tmp / 'creds.txt'}\nconnect-retry 1 4\n"
                f"<connection>\nremote {ip} 1195 udp\nserver-poll-timeout 4\nexplicit-exit-notify 1\n</connection>\n"
                f"<connection>\nremote {ip} 1194 {self.a.proto}\n"
                + ("explicit-exit-notify 1\n" if self.a.proto == "udp" else "") + "</connection>\n")

    def conn_client(self, ns: Netns, index: int) -> None:
        rng = random.Random(self.a.seed + 17)
        conf = self.lab.write("cb.ovpn", self.conn_client_conf(index))
        while not self.done.is_set():
            if not self.gate.wait(1) or self.done.is_set():
                continue
            p = self.lab.start(ns, [OUR_BIN, "run", str(conf)], "cb")
            self.conn_proc = p
            try:
                t = time.monotonic()
                if not p.wait_for(UP["ours"], 60):
                    if not self.cut.is_set():
                        self.finding("conn-block client not up", f"not up 60 s after start: {p.log()[-1500:]!r}")
                    continue
                self.count("conn-block client starts up")
                if ":1195" in p.log():
                    self.count("conn-block starts through the first block")
                self.note(f"conn-block client up in {time.monotonic() - t:.1f} s (pid {p.p.pid})")
                # In turn: SIGUSR1 (2.6 keeps the block that was up: init.c's no_advance), the
                # server's RESTART by `client-kill` (clears it: the next block, round to the
                # unreachable first), a new start (both blocks from the first)
                for n in range(10 ** 9):
                    if self.cut.wait(rng.uniform(15, 40)) or not self.gate.is_set() or self.done.is_set():
                        break
                    how = ("SIGUSR1", "client-kill", "new start")[n % 3]
                    with self.lock:     # a reload's check then takes its absence as the driver's doing
                        self.intended["cb"] = time.monotonic() + 60
                    if how == "new start":
                        self.count("conn-block new starts")
                        break
                    mark = len(p.log())
                    t = time.monotonic()
                    if how == "SIGUSR1":
                        p.p.send_signal(signal.SIGUSR1)
                    else:
                        st = self.mgmt_status() or {}
                        if "cb" not in st:
                            self.note("conn-block client not in status for client-kill")
                            continue
                        with self.mgmt_lock:
                            try:
                                m = Mgmt(self.sock)
                                try:
                                    m.command(f"client-kill {st['cb']['cid']}", False)
                                finally:
                                    m.close()
                            except (OSError, ConnectionError) as e:
                                self.finding("conn-block client-kill", repr(e))
                                continue
                    self.count(f"conn-block restarts by {how}")
                    while (time.monotonic() - t < 60 and not self.cut.is_set()
                           and UP["ours"] not in p.log()[mark:]):
                        time.sleep(0.3)
                    after = p.log()[mark:]
                    if UP["ours"] not in after:
                        if not self.cut.is_set():
                            self.finding("conn-block restart not back", f"60 s after {how}: {after[-1500:]!r}")
                        break
                    took = time.monotonic() - t
                    with self.lock:
                        self.intended["cb"] = time.monotonic()
                        k = f"conn-block back after {how} (ms max)"
                        self.c[k] = max(self.c.get(k, 0), int(took * 1000))
                    self.count(f"conn-block back after {how}")
                    if ":1195" in after:
                        self.count(f"conn-block through the first block after {how}")
                    r = ns.run("ping -n -q -c 3 -i 0.3 -W 2 198.19.0.1", check=False, timeout=20)
                    got = re.search(r"(\d+) received", r.stdout)
                    self.count("conn-block pings sent", 3)
                    self.count("conn-block pings answered", int(got.group(1)) if got else 0)
            finally:
                self.conn_proc = None
                p.stop(8)
                with open(self.a.out / "cb.log", "a") as f:
                    f.write(p.log())
                self.forget(p, lab_checks=False)
                p.log_path.unlink(missing_ok=True)

    # ---- sampling
    def sample(self, t0: float) -> dict:
        s: dict = {"t": round(time.monotonic() - t0), "phase": self.kind}
        if self.server is not None:
            s["server"] = proc_info(self.server.p.pid)
            if self.kind == "ours" and s["server"]:
                s["server"]["held"] = held(self.server)
            try:
                with open(self.server.log_path, "rb") as f:
                    n = sum(1 for _ in f)
            except OSError:
                n = self.log_lines
            s["log_lines"] = n - self.log_lines
            self.log_lines = n
        lw = self.a.server_env.get("LOOPWATCH")
        if lw and os.path.exists(lw):
            with open(lw) as f:
                f.seek(self.loopwatch_at)
                rows = [json.loads(x) for x in f.read().splitlines() if x.strip()]
                self.loopwatch_at = f.tell()
            if rows:
                top = max(rows, key=lambda r: r["max_ms"])
                s["loop_max_ms"], s["loop_max_cpu_ms"] = top["max_ms"], top.get("max_cpu_ms")
                s["loop_over_20_50_100_500ms"] = [sum(r["over_20_50_100_500ms"][i] for r in rows) for i in range(4)]
        if self.conn_proc is not None:
            s["conn_client"] = proc_info(self.conn_proc.p.pid)
        with self.lock:
            ms, self.status_ms = self.status_ms, []
        if ms:
            s["status_poll_ms_max"] = round(max(ms), 1)
            s["status_polls"] = len(ms)
        self.record(s)
        srv = s.get("server", {})
        print(f"  t={s['t']:5d}s {self.kind:7s} RSS {srv.get('rss', 0):6.1f} fds {srv.get('fds', 0):3d} "
              f"thr {srv.get('threads', 0):2d} cpu {srv.get('cpu', 0):7.1f} held {srv.get('held', {})} "
              f"log+{s.get('log_lines', 0)} loop {s.get('loop_max_ms')} ms (cpu {s.get('loop_max_cpu_ms')}) "
              f"{s.get('loop_over_20_50_100_500ms')} "
              f"status {s.get('status_polls', 0)}x max {s.get('status_poll_ms_max')} ms cb {s.get('conn_client')} "
              f"| active {s['active']} " + json.dumps(s["counts"], sort_keys=True), flush=True)
        return s

    def phase(self, kind: str, minutes: float, t0: float) -> dict:
        self.kind = kind
        self.conf_path.write_text(self.server_conf(kind))
        argv = ([OUR_BIN, "run", str(self.conf_path)] if kind == "ours"
                else [OPENVPN, "--config", str(self.conf_path)])
        self.server = srv = self.lab.start(self.lab.srv, argv, f"srv-{kind}",
                                           env=(self.a.server_env or None) if kind == "ours" else None)
        if not srv.wait_for(r"listening on (UDP|TCP)" if kind == "ours" else "Initialization Sequence Completed", 180):
            raise RuntimeError(f"server {kind} did not start: {srv.log()[-2000:]}")
        time.sleep(1)
        res: dict = {"kind": kind, "start": proc_info(srv.p.pid)}
        self.note(f"phase {kind}: server pid {srv.p.pid} {res['start']}")
        before = dict(self.c)
        self.gate.set()
        end = time.monotonic() + minutes * 60
        warm = None
        last_sample = time.monotonic()
        samples = []
        while time.monotonic() < end and srv.alive():
            self.done.wait(min(10, max(0.1, end - time.monotonic())))
            try:
                self.check_status()
            except Exception as e:  # noqa: BLE001 - a check's fault must not end the run
                self.note(f"status check failed: {e!r}")
            if time.monotonic() - last_sample >= SAMPLE_EVERY:
                last_sample = time.monotonic()
                s = self.sample(t0)
                samples.append(s)
                if warm is None and time.monotonic() > end - minutes * 60 + self.a.warmup * 60:
                    warm = (s.get("server", {}).get("rss", 0), self.c.get(f"connects ({kind})", 0))
        res["alive_at_end"] = srv.alive()
        if not srv.alive():
            self.finding("server exited", srv.log()[-3000:])
        self.all_leave(self.a.settle)
        res["end"] = proc_info(srv.p.pid)
        if kind == "ours" and srv.alive():
            res["held_after_all_left"] = held(srv)
        st = self.mgmt_status() if srv.alive() else None
        res["status_after_all_left"] = sorted(st) if st is not None else None
        res["connects"] = self.c.get(f"connects ({kind})", 0) - before.get(f"connects ({kind})", 0)
        if warm and samples:
            rss_growth(res, warm, samples[-1].get("server", {}).get("rss", 0), self.c.get(f"connects ({kind})", 0))
        res["renegotiations_logged"] = (count_in(srv.log_path, re.compile(r"key renegotiated")) if kind == "ours"
                                        else count_in(srv.log_path, re.compile(r"TLS: soft reset")))
        srv.stop(10)
        self.forget(srv, lab_checks=False)
        shutil.copy(srv.log_path, self.a.out / f"srv-{kind}.log")
        res["faults_in_log"] = count_in(srv.log_path, re.compile(r"Traceback|--- Logging error|CRITICAL|internal error"))
        self.server = None
        self.log_lines = 0
        self.note(f"phase {kind} done: {json.dumps(res)}")
        return res


def main(argv: list[str] | None = None) -> int:
    ap = soak_parser(__doc__, phase="phase", minutes=30, reneg=30, settle=10.0, seed=32, out="/tmp/soak-ops")
    ap.add_argument("--clients", type=int, default=34)
    ap.add_argument("--ours", type=int, default=4, help="of them ours")
    ap.add_argument("--churn", type=int, default=4,
                    help="of them Debian's restarting in place (fixed lport, SIGUSR1 every 1-6 s; our server's phase)")
    ap.add_argument("--proto", choices=("udp", "tcp"), default="udp")
    ap.add_argument("--reload-every", type=float, nargs=2, default=(50, 70), metavar=("LO", "HI"),
                    help="seconds between SIGHUPs, drawn between LO and HI")
    ap.add_argument("--push-change-every", type=int, default=4, metavar="K",
                    help="every K-th SIGHUP also changes the config's push (every client restarted; 0: never)")
    ap.add_argument("--status-poll", type=float, default=0, help="poll the management `status 2` every S s (0: not)")
    ap.add_argument("--conn-client", action="store_true",
                    help="one of our clients with two <connection> blocks (the first unreachable), restarted by SIGUSR1")
    ap.add_argument("--reneg-refuse", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="every LO-HI s a connected client is refused at its next renegotiation (our server's phase)")
    ap.add_argument("--reload-on-refusal", type=float, default=0.0, metavar="P",
                    help="with --reneg-refuse: a SIGHUP right after a refusal seen, with probability P")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of our server (e.g. PYTHONPATH to a sitecustomize that samples its heap)")
    a = ap.parse_args(argv)
    a.server_env = dict(e.split("=", 1) for e in a.server_env)
    if a.proto == "tcp":
        a.churn = 0             # in-place restarts need a fixed source port: UDP's
    a.out.mkdir(parents=True, exist_ok=True)
    certs = [f"c{i}" for i in range(a.clients)] + ["rv", "cb"]
    tmp = Path(f"/tmp/soakops-{os.getpid()}")
    tmp.mkdir()
    summary: dict = {"args": {k: str(v) for k, v in vars(a).items()}}
    with Lab(clients=certs, tmp=tmp) as lab:
        lab.write("creds.txt", "soakuser\nsoakpass\n").chmod(0o600)
        # --reneg-refuse: a marked name is refused once (its renegotiation's token, external-auth);
        # over UDP the server's control packets to it are dropped for LOST_S s from the verdict on
        # (nftables, the server's namespace), so the refusal's AUTH_FAILED is lost and its remnant
        # lives, resending, until that loss is over
        lose = (f'nft add element inet soak47 lost "{{ $untrusted_ip . $untrusted_port timeout {LOST_S}s }}"\n'
                if a.proto == "udp" else "")
        v = lab.write("verify.sh", f'#!/bin/sh\nd={lab.tmp / "deny"}\n'
                      'if [ -e "$d/deny-$common_name" ]; then rm -f "$d/deny-$common_name"\n'
                      f'{lose}  exit 1\nfi\n'
                      '[ "$(sed -n 2p "$1")" = soakpass ] && exit 0\n'
                      '[ "$session_state" = Authenticated ] && exit 0\nexit 1\n')
        v.chmod(0o755)
        if a.reneg_refuse and a.proto == "udp":
            lab.srv.run("nft -f - <<'EOF'\n" + LOSE_NFT + "EOF")
        soak = Soak(lab, a)
        soak.write_ccd()
        soak.write_crl(False)
        for i in range(a.clients):
            soak.ns.append(lab.add_client_ns(i))
        rv_ns = lab.add_client_ns(45)
        t0 = time.monotonic()
        threads = [threading.Thread(target=soak.client, args=(i,), daemon=True) for i in range(a.clients)]
        threads += [threading.Thread(target=soak.rv_client, args=(rv_ns,), daemon=True)]
        threads += [threading.Thread(target=f, daemon=True)
                    for f in (soak.mgmt_auth, soak.mgmt_poker, soak.reloader, soak.crl_swapper)]
        if a.status_poll > 0:
            threads.append(threading.Thread(target=soak.status_poller, daemon=True))
        if a.reneg_refuse:
            threads += [threading.Thread(target=f, daemon=True) for f in (soak.refuser, soak.refusal_watcher)]
        if a.conn_client:
            threads.append(threading.Thread(target=soak.conn_client, args=(lab.add_client_ns(46), 46), daemon=True))
        for t in threads:
            t.start()
        try:
            summary["ours"] = soak.phase("ours", a.minutes, t0)
            if a.openvpn_minutes > 0:
                summary["openvpn"] = soak.phase("openvpn", a.openvpn_minutes, t0)
        finally:
            soak.finish(threads)
        summary["counts"] = soak.c
        summary["events"] = soak.events
        summary["addresses_per_name"] = {cn: sorted(s) for cn, s in soak.addrs.items() if len(s) > 1}
        summary["minutes"] = round((time.monotonic() - t0) / 60, 1)
    write_out(a.out, summary, soak.samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
