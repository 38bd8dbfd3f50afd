"""Figures for the LAN DNS forwarder in the router lab (root; prints, asserts nothing):

    .venv/bin/python -m lab.dns_bench [--queries 2000] [--window 32]

From the LAN host: latency of sequential UDP queries and throughput with `window` queries in
flight, asking the appliance's forwarder (198.18.50.1) and, for comparison, dnsmasq behind the VPN
directly (198.19.0.1, reached through the tunnel by NAT); then the SERVFAIL latency with the
OpenVPN server stopped. Each query asks for the name only the VPN side knows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .router_lab import LAN_APP, SECRET_NAME, TUN_SRV, RouterLab, client_profile, server_config
from .tools import REPO

CLIENT = r'''
import json, random, selectors, socket, struct, sys, time
sys.path.insert(0, REPO)
from appliance.lan.dns_wire import encode_query
server, n, window = SERVER, N, WINDOW
def seq(k):
    lat = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect((server, 53))
    rcodes = {}
    for i in range(k):
        q = encode_query(random.randrange(65536), NAME); t = time.perf_counter(); s.send(q)
        try:
            a = s.recv(4096)
            rcodes[a[3] & 15] = rcodes.get(a[3] & 15, 0) + 1
        except OSError:
            rcodes["timeout"] = rcodes.get("timeout", 0) + 1
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {"p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[int(len(lat) * 0.99)], "rcodes": rcodes}
def burst(k, w):
    sel = selectors.DefaultSelector(); socks = []
    for _ in range(w):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False); s.connect((server, 53))
        sel.register(s, selectors.EVENT_READ); socks.append(s)
    sent = got = lost = 0; t0 = time.perf_counter(); last = {}
    for s in socks:
        s.send(encode_query(random.randrange(65536), NAME)); sent += 1; last[s] = time.perf_counter()
    while got + lost < k:
        ev = sel.select(0.5)
        now = time.perf_counter()
        done = [k_.fileobj for k_, _ in ev]
        for s in done:
            try: s.recv(4096); got += 1
            except OSError: lost += 1
        for s in socks:
            if s not in done and now - last[s] > 3: done.append(s); lost += 1
        for s in done:
            if sent < k: s.send(encode_query(random.randrange(65536), NAME)); sent += 1; last[s] = time.perf_counter()
    return {"qps": got / (time.perf_counter() - t0), "answered": got, "lost": lost}
out = {"seq": seq(min(n, 500))}
if window: out["burst"] = burst(n, window)
print(json.dumps(out))
'''


def run_client(lab: RouterLab, server: str, n: int, window: int) -> dict:
    code = (CLIENT.replace("REPO", repr(str(REPO))).replace("SERVER", repr(server)).replace("NAME", repr(SECRET_NAME))
            .replace("WINDOW", str(window)).replace(" N,", f" {n},"))
    r = subprocess.run(["ip", "netns", "exec", lab.lan.name, sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=600)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--window", type=int, default=32)
    a = ap.parse_args()
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add 198.18.50.10/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP}")
        srv = lab.openvpn_server(server_config(lab.pki, extra="explicit-exit-notify 1\n"))
        lab.dns_server()
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)), pattern="DNS forwarder: LAN queries go to")
        for name, server in (("forwarder", LAN_APP), ("direct (NAT)", TUN_SRV)):
            r = run_client(lab, server, a.queries, a.window)
            b = r.get("burst", {})
            print(f"{name:14s} sequential p50 {r['seq']['p50_ms']:.2f} ms p99 {r['seq']['p99_ms']:.2f} ms "
                  f"rcodes {r['seq']['rcodes']}; {a.window} in flight: {b.get('qps', 0):.0f} q/s "
                  f"({b.get('answered')} answered, {b.get('lost')} lost)")
        srv.stop(10)
        app.wait_for(r"DNS forwarder: answering SERVFAIL \(tunnel down\)", 30)
        r = run_client(lab, LAN_APP, 200, 0)
        print(f"tunnel down    SERVFAIL p50 {r['seq']['p50_ms']:.2f} ms p99 {r['seq']['p99_ms']:.2f} ms "
              f"rcodes {r['seq']['rcodes']}")
        print("appliance:", "; ".join(l.split(" INFO ", 1)[-1] for l in app.log().splitlines()
                                       if "DNS forwarder" in l)[-600:])


if __name__ == "__main__":
    main()
