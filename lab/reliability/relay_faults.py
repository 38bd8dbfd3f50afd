"""The faulty link of soak_faults.py: a userspace relay (this kernel has no netem) whose faults
change while it runs, read from a JSON profile file it polls twice a second.

UDP fronts: every datagram is dropped (`loss`), delayed (`delay` ms + uniform 0..`jitter` ms; order
kept unless `reorder` > 0), sent ahead of the held ones (`reorder`: netem's reorder), sent twice
(`dup`) or with 1-3 bytes changed (`corrupt`: delivered with a valid UDP checksum, so the peer's
HMAC/AEAD must refuse it -- netem's corruption is dropped by the kernel's checksum and tests less);
each client address gets its own upstream socket, replaced by a new one (a new source port, as
a NAT rebinding shows it to the server) after `rebind` s (uniform in that range) -- the server
must float the session, as 2.6 does for a peer-id data packet from a new address.
TCP fronts: each stream chunk delayed by `delay` + jitter (order kept); `tcp_reset` is the mean
lifetime (s) of a connection before the relay drops both halves (a NAT losing its state).
Blackouts and TCP loss are nftables rules (soak_faults.Link), not the relay's: a blackout drops
everything on the wire, both ways, for both transports.

    python relay_faults.py PROFILE.json SEED LISTEN_IP PORT:udp:UP_IP:UP_PORT ...

Prints its counters every 30 s and at SIGTERM (`relay {...}`) and every rebinding (`rebind`)."""
from __future__ import annotations

import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time

IDLE = 120.0              # s: a UDP mapping unused this long is forgotten (a NAT's timeout)
TCP_QUEUE = 4 << 20       # bytes queued one way before the relay stops reading that side


def main() -> None:
    prof_path, seed, lip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    prof: dict = {}
    prof_mtime = 0.0
    n = {k: 0 for k in ("in", "lost", "dup", "corrupt", "reordered", "rebinds", "mappings", "tcp accepted",
                        "tcp resets", "tcp closed")}
    fronts: dict[socket.socket, tuple[str, tuple[str, int]]] = {}
    for spec in sys.argv[4:]:
        port, kind, uip, uport = spec.split(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((lip, int(port)))
        if kind == "tcp":
            s.listen(64)
        else:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setblocking(False)
        fronts[s] = (kind, (uip, int(uport)))
    # UDP: (front, client addr) -> [upstream socket, created, last used, rebind at]; upstream -> key
    maps: dict[tuple, list] = {}
    back: dict[socket.socket, tuple] = {}
    # TCP: socket -> its pair entry; a pair is {a, b, q: {sock: [(t, bytes)]}, out: {sock: bytes}, end}
    pairs: dict[socket.socket, dict] = {}
    heap: list = []
    seq = 0
    last_t: dict = {}
    stop = False

    def on_term(*_a) -> None:
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)

    def when(key) -> float:
        now = time.monotonic()
        t = now + (prof.get("delay", 0) + rng.uniform(0, prof.get("jitter", 0))) / 1000
        if not prof.get("reorder"):
            t = max(t, last_t.get(key, 0.0))
        last_t[key] = max(t, last_t.get(key, 0.0))
        return t

    def push(t: float, out: socket.socket, dst, data: bytes) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, out, dst, data))

    def udp_in(data: bytes, out: socket.socket, dst, key) -> None:
        n["in"] += 1
        if rng.random() < prof.get("loss", 0):
            n["lost"] += 1
            return
        copies = 2 if rng.random() < prof.get("dup", 0) else 1
        n["dup"] += copies - 1
        for _ in range(copies):
            d = data
            if d and rng.random() < prof.get("corrupt", 0):
                b = bytearray(d)
                for _ in range(rng.randint(1, 3)):
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                d = bytes(b)
                n["corrupt"] += 1
            if rng.random() < prof.get("reorder", 0):
                n["reordered"] += 1
                push(time.monotonic(), out, dst, d)
            else:
                push(when(key), out, dst, d)

    def new_upstream(key, up) -> socket.socket:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        u.bind((lip, 0))
        u.connect(up)
        u.setblocking(False)
        back[u] = key
        return u

    def close_pair(p: dict, why: str) -> None:
        for s in (p["a"], p["b"]):
            pairs.pop(s, None)
            try:
                s.close()
            except OSError:
                pass
        n[why] += 1

    last_report = time.monotonic()
    print("relaying", flush=True)
    while not stop:
        now = time.monotonic()
        try:
            st = os.stat(prof_path)
            if st.st_mtime != prof_mtime:
                prof_mtime = st.st_mtime
                prof = json.loads(open(prof_path).read())
        except (OSError, ValueError):
            pass
        rd = list(fronts) + list(back)
        wr = []
        for s, p in pairs.items():
            if p["out"][s]:
                wr.append(s)
            other = p["b"] if s is p["a"] else p["a"]
            if sum(len(d) for _, d in p["q"][other]) + len(p["out"][other]) < TCP_QUEUE:
                rd.append(s)
        wait = 0.2
        if heap:
            wait = min(wait, max(0.0, heap[0][0] - now))
        for p in {id(p): p for p in pairs.values()}.values():
            for q in p["q"].values():
                if q:
                    wait = min(wait, max(0.0, q[0][0] - now))
        try:
            r, w, _ = select.select(rd, wr, [], wait)
        except (OSError, ValueError):
            r, w = [], []
        now = time.monotonic()
        for s in r:
            if s in fronts:
                kind, up = fronts[s]
                if kind == "tcp":
                    try:
                        c, _addr = s.accept()
                        u = socket.create_connection(up, timeout=5)
                    except OSError:
                        continue
                    c.setblocking(False)
                    u.setblocking(False)
                    life = prof.get("tcp_reset", 0)
                    p = {"a": c, "b": u, "q": {c: [], u: []}, "out": {c: b"", u: b""},
                         "end": now + rng.expovariate(1 / life) if life else None}
                    pairs[c] = pairs[u] = p
                    n["tcp accepted"] += 1
                    continue
                for _ in range(64):
                    try:
                        data, addr = s.recvfrom(65535)
                    except (BlockingIOError, OSError):
                        break
                    key = (s, addr)
                    m = maps.get(key)
                    if m is None:
                        m = maps[key] = [new_upstream(key, up), now, now, now + rng.uniform(*prof.get("rebind", (1e9, 1e9)))]
                        n["mappings"] += 1
                    m[2] = now
                    udp_in(data, m[0], None, (key, "up"))
            elif s in back:
                key = back[s]
                for _ in range(64):
                    try:
                        data = s.recv(65535)
                    except (BlockingIOError, OSError):
                        break
                    udp_in(data, key[0], key[1], (key, "down"))
            elif s in pairs:
                p = pairs[s]
                other = p["b"] if s is p["a"] else p["a"]
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    close_pair(p, "tcp closed")
                    continue
                t = now + (prof.get("delay", 0) + rng.uniform(0, prof.get("jitter", 0))) / 1000
                q = p["q"][other]
                q.append((max(t, q[-1][0]) if q else t, data))
        for s in w:
            p = pairs.get(s)
            if p is None or not p["out"][s]:
                continue
            try:
                k = s.send(p["out"][s])
                p["out"][s] = p["out"][s][k:]
            except BlockingIOError:
                pass
            except OSError:
                close_pair(p, "tcp closed")
        now = time.monotonic()
        for p in list({id(p): p for p in pairs.values()}.values()):
            for s, q in p["q"].items():
                while q and q[0][0] <= now:
                    p["out"][s] += q.pop(0)[1]
            if p["end"] is not None and now > p["end"]:
                close_pair(p, "tcp resets")
        while heap and heap[0][0] <= now:
            _, _, out, dst, data = heapq.heappop(heap)
            try:
                out.send(data) if dst is None else out.sendto(data, dst)
            except OSError:
                pass                      # a closed (rebound) upstream, or refused
        for key, m in list(maps.items()):
            if now - m[2] > IDLE:
                back.pop(m[0], None)
                m[0].close()
                del maps[key]
            elif now > m[3]:
                old = m[0]
                m[0] = new_upstream(key, fronts[key[0]][1])
                m[3] = now + rng.uniform(*prof.get("rebind", (1e9, 1e9)))
                # the old port is gone at once: what the server sends there is lost, as behind a NAT
                back.pop(old, None)
                old.close()
                n["rebinds"] += 1
                print(f"rebind {key[1][0]}:{key[1][1]} -> {m[0].getsockname()[1]}", flush=True)
        if now - last_report > 30:
            last_report = now
            print("relay", json.dumps({**n, "live mappings": len(maps), "live tcp": len(pairs) // 2,
                                       "fds": len(os.listdir("/proc/self/fd"))}), flush=True)
    print("relay", json.dumps({**n, "live mappings": len(maps), "live tcp": len(pairs) // 2}), flush=True)


if __name__ == "__main__":
    main()
