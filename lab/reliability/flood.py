"""Floods: our server with many connected clients passing traffic, hit at the same time by
  - bogus hard resets from spoofed sources in 198.18.0.0/15 (a raw socket with IP_HDRINCL, sent from
    the lab's client namespace over its veth to the server),
  - bogus TLS handshakes: a hard reset from a real socket, then, once the server answered, a
    P_CONTROL_V1 carrying a real TLS ClientHello (even ones) or garbage (odd ones), then silence,
  - wrong-password logins at a fixed rate: Debian's openvpn clients with `auth-user-pass` holding a
    wrong password and `auth-retry none` (each exits on AUTH_FAILED).
The server runs without tls-auth/tls-crypt (every bogus packet reaches the protocol: the hardest
case) and with `auth-user-pass-verify FILE passdb`. The legitimate clients are our own client
processes (one namespace each), each sending a paced TCP stream to a sink behind the tunnel.

    python -m lab.reliability.flood --clients 50 --resets 100000 --handshakes 500 --bad-logins-per-s 20

Prints the clients' delivered Mbit/s before and during the flood (sum and the slowest client),
how many clients stayed connected, the server's RSS and fds before and after, and what the floods
sent."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from ..netns import SRV_IP
from ..tools import OPENVPN, OUR_BIN
from .fleet import Fleet, cpu_seconds, proc_stats, rates, sink_totals

SPOOFED_RESETS = r"""
import os, random, socket, struct, sys, time
dst, dport, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = random.Random(8)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
d = socket.inet_aton(dst)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
t0 = time.monotonic(); sent = 0
for i in range(n):
    src = struct.pack("!I", (198 << 24 | 18 << 16) + rng.randrange(1 << 17))    # 198.18.0.0/15
    payload = bytes([7 << 3]) + rng.randbytes(8) + bytes([0]) + struct.pack("!I", 0)
    udp = struct.pack("!HHHH", rng.randrange(1024, 65535), dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    try:
        s.sendto(ip + udp, (dst, 0)); sent += 1
    except OSError:
        pass
    ahead = (i + 1) / n * secs - (time.monotonic() - t0)
    if ahead > 0.002:
        time.sleep(ahead)
print("spoofed resets sent", sent, "in", round(time.monotonic() - t0, 1), "s", flush=True)
"""

BOGUS_HANDSHAKES = r"""
import os, socket, ssl, struct, sys, time
dst, dport, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def client_hello():
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    t = ctx.wrap_bio(i, o)
    try: t.do_handshake()
    except ssl.SSLWantReadError: pass
    return o.read()
answered = sent = 0; t0 = time.monotonic()
for k in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
    sid = os.urandom(8)
    s.sendto(bytes([7 << 3]) + sid + bytes([0]) + struct.pack("!I", 0), (dst, dport)); sent += 1
    try:
        r, _ = s.recvfrom(2048)
    except OSError:
        s.close(); continue
    if len(r) >= 9 and (r[0] >> 3) == 8:
        answered += 1
        ssid = r[1:9]
        mpid = r[-4:]                       # the server reset's own message packet-id (last field)
        body = client_hello()[:1000] if k % 2 == 0 else os.urandom(200)
        pkt = bytes([4 << 3]) + sid + bytes([1]) + mpid + ssid + struct.pack("!I", 1) + body
        s.sendto(pkt, (dst, dport))
    s.close()
    ahead = (k + 1) / n * secs - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
print("bogus handshakes sent", sent, "answered", answered, flush=True)
"""

BAD_LOGINS = r"""
import os, subprocess, sys, time
openvpn, rate, secs, logdir = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
spots = [a.split("=", 1) for a in sys.argv[5:]]        # namespace=profile, used in turn
procs = []; t0 = time.monotonic(); k = 0
while time.monotonic() - t0 < secs:
    if k < (time.monotonic() - t0) * rate:
        ns, cfg = spots[k % len(spots)]
        f = open(os.path.join(logdir, f"badlogin-{k}.log"), "wb")
        procs.append((time.monotonic(), subprocess.Popen(["ip", "netns", "exec", ns, openvpn, "--config", cfg],
                                                         stdout=f, stderr=subprocess.STDOUT)))
        k += 1
    for t, p in procs:
        if p.poll() is None and time.monotonic() - t > 15:
            p.kill()
    time.sleep(0.01)
for t, p in procs:
    try: p.wait(max(0.1, 15 - (time.monotonic() - t)))
    except subprocess.TimeoutExpired: p.kill(); p.wait()
print("bad logins started", k, "from", len(spots), "addresses", flush=True)
"""


def run(nclients: int = 50, resets: int = 100_000, handshakes: int = 500, bad_rate: float = 20.0,
        flood_s: float = 25.0, rate_mbit: float = 1.0, batch: int = 10, before_s: float = 15.0,
        after_s: float = 8.0, settle_s: float = 8.0, out=print) -> dict:
    """`before_s`, `after_s`: how long the streams' rates are measured before the floods and
    after them (the memory is read 10 s after them whatever these say); `settle_s`: how long
    the streams run before that first measure. The short run in the suite takes a few seconds
    of each: it asserts on the rates during the floods only, and on which streams ran before
    them."""
    res: dict = {"clients": nclients}
    with Fleet(nclients, extra_certs=("badlogin",)) as fleet:
        lab = fleet.lab
        pw = subprocess.run([OUR_BIN, "passwd", "good"], input="right-password\n", capture_output=True, text=True,
                            check=True).stdout
        passdb = lab.write("passdb", pw)
        good = lab.write("good.creds", "good\nright-password\n")
        bad = lab.write("bad.creds", "good\nwrong-password\n")
        srv = fleet.start_server(extra=f"auth-user-pass-verify {passdb} passdb\nmax-clients 1024\n",
                                 protection="none")
        pid = srv.p.pid
        # In batches: 50 logins at once overflow the server's password-check queue (32), and the
        # refused ones got a final AUTH_FAILED (now they all get in: tests/interop/test_reliability_logins.py).
        up: dict[int, float] = {}
        for k in range(0, nclients, batch):
            idx = list(range(k, min(nclients, k + batch)))
            for i in idx:
                fleet.start_client(i, extra=f"auth-user-pass {good}\n", protection="none")
            up.update(fleet.wait_all_up(idx, 90))
        res["connected_before"] = len(up)
        out(f"flood: {len(up)}/{nclients} clients up (last after {max(up.values(), default=0):.1f} s)", flush=True)
        life = flood_s + 90
        sink = fleet.sink(life)
        fleet.sender(list(range(nclients)), rate_mbit * 1e6, life)
        time.sleep(settle_s)                            # streams start, slow start over
        a = sink_totals(sink)
        time.sleep(before_s)
        b = sink_totals(sink)
        before = rates(a, b)
        stats0 = proc_stats(pid)
        cpu0 = cpu_seconds(pid)
        log_at = len(srv.log())
        # The floods, at the same time.
        # Wrong-password logins by Debian's openvpn, from every client namespace in turn (each its own
        # source address, so the per-address limit alone does not stop them).
        spots = [f"{fleet.ns[i].name}=" + str(lab.write(f"bad{i}.ovpn", fleet.profile(
            i, extra=f"auth-user-pass {bad}\nauth-retry none\n", protection="none", cert="badlogin")))
            for i in range(nclients)]
        logdir = lab.tmp / "badlogins"
        logdir.mkdir()
        f1 = lab.start(lab.cli, [sys.executable, "-c", SPOOFED_RESETS, SRV_IP, "1194", str(resets), str(flood_s)],
                       "spoofed")
        f2 = lab.start(lab.cli, [sys.executable, "-c", BOGUS_HANDSHAKES, SRV_IP, "1194", str(handshakes),
                                 str(flood_s)], "handshakes")
        f3 = lab.start(lab.srv, [sys.executable, "-c", BAD_LOGINS, OPENVPN, str(bad_rate), str(flood_s), str(logdir),
                                 *spots], "badlogins")
        t_flood = time.monotonic()
        time.sleep(3)
        a = sink_totals(sink)
        time.sleep(max(5.0, flood_s - 5))
        b = sink_totals(sink)
        during = rates(a, b)
        for f in (f1, f2, f3):
            f.wait_for(r"sent|started", flood_s + 60)
        res["flood_wall_s"] = round(time.monotonic() - t_flood, 1)
        res["server_cpu_s_during_flood"] = round(cpu_seconds(pid) - cpu0, 1)
        stats1 = proc_stats(pid)
        time.sleep(10)
        stats2 = proc_stats(pid)
        a = sink_totals(sink)
        time.sleep(after_s)
        after = rates(a, sink_totals(sink))
        log = srv.log()[log_at:]
        legit = {f"c{i}" for i in range(nclients)}
        drops = [m for m in re.findall(r"(c\d+)/\S+: disconnected", log) if m in legit]
        res.update({
            "flood_spoofed": f1.log().strip(), "flood_handshakes": f2.log().strip(), "flood_bad_logins": f3.log().strip(),
            "bad_logins_refused": sum("AUTH_FAILED" in p.read_text(errors="replace") for p in logdir.glob("*.log")),
            "server_badlogin_sessions_ended": len(re.findall(r"badlogin/\S+: disconnected", log)),
            "server_badlogin_reason": (re.findall(r"badlogin/\S+: disconnected: ([^\n]*)", log) or ["-"])[0],
            "badlogin_sample": next((p.read_text(errors="replace")[-400:] for p in sorted(logdir.glob("*.log"))
                                     if "AUTH_FAILED" not in p.read_text(errors="replace")), "-"),
            "legit_disconnects_during": len(drops),
            "clients_alive": sum(1 for p in fleet.clients if p is not None and p.alive()),
            "client_restarts": sum(max(0, p.log().count("tunnel up") - 1) for p in fleet.clients if p is not None),
            "server_alive": srv.alive(),
            "rss_before_mb": round(stats0["rss_kb"] / 1024, 1), "rss_after_flood_mb": round(stats1["rss_kb"] / 1024, 1),
            "rss_10s_later_mb": round(stats2["rss_kb"] / 1024, 1), "fds_before": stats0["fds"], "fds_after": stats2["fds"],
            "mbps_before_sum": round(sum(before.values()), 1), "mbps_during_sum": round(sum(during.values()), 1),
            "mbps_after_sum": round(sum(after.values()), 1),
            "mbps_before_min": round(min(before.values(), default=0), 2),
            "mbps_during_min": round(min([during.get(ip, 0) for ip in before] or [0]), 2),
            "streams_before": len(before), "streams_during": sum(1 for v in during.values() if v > 0),
            "server_log_lines_during": len(log.splitlines()),
            "server_refusals": (re.findall(r"dropped packets: ([^\n]*)", log) or ["-"])[-1],
        })
    out("flood results:")
    for k, v in res.items():
        out(f"  {k}: {v}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--resets", type=int, default=100_000)
    ap.add_argument("--handshakes", type=int, default=500)
    ap.add_argument("--bad-logins-per-s", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=25, help="how long the floods last")
    ap.add_argument("--rate", type=float, default=1.0, help="Mbit/s each client sends")
    a = ap.parse_args(argv)
    r = run(a.clients, a.resets, a.handshakes, a.bad_logins_per_s, a.seconds, a.rate,
            out=lambda *x, **k: print(*x, flush=True))
    ok = r["server_alive"] and r["legit_disconnects_during"] == 0 and r["clients_alive"] == a.clients
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
