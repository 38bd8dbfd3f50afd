"""atk42: one certificate connecting, saying EXIT and connecting again, in memory (the real server
gateway and clients on lab/gateway_world's fake network and clock).

Why: since exit41 a client's EXIT holds its session 5 s (EXIT_HOLD); a client that leaves and comes
back at once, or many sessions of one certificate, could leave two live sessions on one address or
peer-id, or books that grow. Each newcomer connects inside the previous one's hold. Prints, per
case (duplicate-cn off/on; a new address each time, or the same address and port: a restart), the
invariant breaches seen at every step, the server's books once every hold is over, and the longest
step of the server's pump (wall time: on a loaded machine it includes waiting for a CPU).

    .venv/bin/python -m lab.reliability.exit_storm [N]
"""
from __future__ import annotations

import sys
import time

from lab.gateway_world import World, client_conf, client_up, make_pki, server_conf


def storm(pki: dict, n: int, dup: bool, same_addr: bool) -> str:
    w = World()
    w.add_server(server_conf(pki, extra="duplicate-cn\n" if dup else ""))
    d, ops, pump = w.server.d, w.server.ops, w.server.pump
    longest = [0.0]
    step = pump.step

    def timed(block: bool = False) -> bool:
        t = time.perf_counter()
        r = step(block=block)
        longest[0] = max(longest[0], time.perf_counter() - t)
        return r
    pump.step = timed
    breaches: list = []

    def books_sound() -> bool:
        live = [r for r in d.clients if r.alive]
        for key in ("vaddr", "peer_id"):
            vals = [getattr(r, key) for r in live]
            if len(vals) != len(set(vals)):
                breaches.append((key, vals))
        breaches.extend(("dead record", k) for k, r in (*d.by_addr.items(), *d.by_peer_id.items()) if not r.alive)
        return False
    ups = 0
    for i in range(n):
        conf = client_conf(pki, "client0", extra="explicit-exit-notify 1\n")
        if same_addr:
            conf = conf.replace("nobind\n", "lport 40000\n")
        w.add_client(conf, ip="198.18.0.2" if same_addr else f"198.18.{1 + i // 200}.{2 + i % 200}")
        ups += w.run(lambda: books_sound() or client_up(w, i), max_time=30)
        w.clients[i].request_stop()
        w.run(books_sound, max_time=0.3)
    w.run(books_sound, max_time=8)
    left = {k: len(v) for k, v in (("clients", d.clients), ("by_addr", d.by_addr), ("pending", d.pending),
                                   ("heirs", d.heirs), ("by_peer_id", d.by_peer_id), ("by_vaddr", d.by_vaddr),
                                   ("mgmt rows", ops.info), ("client-kills", ops.killing)) if v}
    return (f"duplicate-cn {'on ' if dup else 'off'}, {'same address' if same_addr else 'new address '}: "
            f"{ups}/{n} up, breaches {len(breaches)} {breaches[:3]}, left {left or 'nothing'}, "
            f"longest server step {longest[0] * 1000:.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    pki = make_pki(["client0"])
    for dup in (False, True):
        for same in (False, True):
            print(storm(pki, n, dup, same), flush=True)


if __name__ == "__main__":
    main()
