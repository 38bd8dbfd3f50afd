"""A pushed route covering the VPN server's own address, without redirect-gateway: Debian's
OpenVPN 2.6 client and ours, one after the other, against Debian's 2.6 server. Prints, asserts
nothing:

    sudo .venv/bin/python -m lab.server_route_cover [--seconds 40]

The server listens on 198.18.50.1 (routed: the client reaches it via 198.18.0.1) and pushes
`route 198.18.50.0 255.255.255.0` with `keepalive 1 3`. OpenVPN 2.6 adds a host route to the
server for a pushed route that covers it only when the route is IPv6 (route.c: "overlaps IPv6
remote ..., adding host route to VPN endpoint"); an IPv4 one sends its packets to the server into
its own TUN, where it drops them ("Recursive routing detected", verb 4): the keepalives stop, the
server gives up, ping-restart, the same push again. Ours adds the host route along the pre-tunnel
path for IPv4 too (gateway/tunnel.py `_server_needs_host_route`).

Per client: pings through the tunnel answered of those sent (one every ~0.5 s), its
ping-restarts (Debian's "SIGUSR1[soft,ping-restart]"; ours "reconnecting"), Debian's
"Recursive routing" lines, and the kernel's routes to the server and the pushed network at the end.
Seen (Linux 6.18, OpenVPN 2.6.14, 40 s, three runs): Debian's 2/18, 6/21 and 6/21 answered (4 ping-restarts,
57 recursive-routing lines in a run), ours 77/77, 74/74 and 75/75, no restart, `198.18.50.1 via 198.18.0.1`.
"""
from __future__ import annotations

import argparse
import time

from .configs import client_profile, server_config
from .netns import TUN_SERVER_IP, Lab

SERVER, ROUTER = "198.18.50.1", "198.18.0.1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    with Lab() as lab:
        lab.srv.run(f"ip addr add {SERVER}/32 dev lo")
        lab.cli.run(f"ip route add default via {ROUTER}")
        srv = lab.openvpn(lab.srv, server_config(
            lab.pki, "udp", extra=f'local {SERVER}\npush "route 198.18.50.0 255.255.255.0"\nkeepalive 1 3\n'), "server")
        for kind in ("debian", "ours"):
            prof = client_profile(lab.pki, "udp", remotes=[(SERVER, 1194, "udp")], extra="verb 4\n")
            c = lab.openvpn(lab.cli, prof, "debian") if kind == "debian" else lab.ours(lab.cli, prof, "ours")
            t0, ok, sent = time.monotonic(), 0, 0
            while time.monotonic() - t0 < args.seconds:
                sent += 1
                ok += lab.ping(lab.cli, TUN_SERVER_IP, count=1, timeout=5) == 1
                time.sleep(0.5)
            log = c.log()
            restarts = log.count("SIGUSR1[soft,ping-restart]") if kind == "debian" else log.count("reconnecting")
            routes = " | ".join(lab.cli.run(f"ip -4 route show {r}").stdout.strip() or f"(no route {r})"
                                for r in (SERVER, "198.18.50.0/24"))
            print(f"{kind:7} answered {ok}/{sent} in {args.seconds:.0f} s, ping-restarts {restarts}, "
                  f"recursive-routing lines {log.count('Recursive routing')}, routes: {routes}", flush=True)
            c.stop_promptly(8)
        srv.stop_promptly(8)


if __name__ == "__main__":
    main()
