"""`make bench`, end to end: iperf3 (one TCP stream) through the tunnel in namespaces.

Pairs measured in one run, alternating, so machine noise hits both alike:
  client: our client ⇄ OpenVPN server   vs   OpenVPN client ⇄ OpenVPN server
  server: our client ⇄ our server       vs   OpenVPN client ⇄ OpenVPN server
Prints Mbit/s for each round, the medians and the ratio ours/OpenVPN. `--reverse` measures the
other direction (the server sends), which exercises the opposite halves of both programs.
"""
from __future__ import annotations

import argparse
import statistics

from .configs import client_profile, server_config
from .netns import TUN_SERVER_IP, Lab


def _measure(lab: Lab, server_kind: str, client_kind: str, proto: str, cipher: str, seconds: int,
             reverse: bool = False) -> float:
    scfg = server_config(lab.pki, proto, cipher, "tls-crypt")
    ccfg = client_profile(lab.pki, proto, cipher, "tls-crypt")
    if server_kind == "ours":
        srv = lab.ours(lab.srv, scfg, "bench-srv", pattern=r"listening on")
    else:
        srv = lab.openvpn(lab.srv, scfg, "bench-srv")
    try:
        cli = lab.ours(lab.cli, ccfg, "bench-cli") if client_kind == "ours" else lab.openvpn(lab.cli, ccfg, "bench-cli")
        try:
            if not lab.wait_ping(lab.cli, TUN_SERVER_IP, 15):
                raise RuntimeError("tunnel does not carry pings")
            return lab.iperf(lab.srv, TUN_SERVER_IP, lab.cli, seconds, extra="-R" if reverse else "")
        finally:
            cli.stop(8)
    finally:
        srv.stop(8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--proto", default="udp", choices=["udp", "tcp"])
    ap.add_argument("--cipher", default="AES-256-GCM")
    ap.add_argument("--only", choices=["client", "server"], default=None)
    ap.add_argument("--reverse", action="store_true", help="server sends, client receives (iperf3 -R)")
    a = ap.parse_args(argv)
    pairs = []
    if a.only in (None, "client"):
        pairs.append(("client", ("openvpn", "ours"), ("openvpn", "openvpn")))
    if a.only in (None, "server"):
        pairs.append(("server", ("ours", "ours"), ("openvpn", "openvpn")))
    way = "server -> client (download)" if a.reverse else "client -> server (upload)"
    print(f"end-to-end: iperf3 TCP, 1 stream, {way}, {a.seconds} s, {a.proto.upper()} {a.cipher} tls-crypt, "
          f"{a.rounds} alternating rounds")
    with Lab() as lab:
        results: dict[tuple, list[float]] = {}
        for _ in range(a.rounds):
            for _name, ours, ref in pairs:
                for server_kind, client_kind in (ref, ours):
                    key = (server_kind, client_kind)
                    if key in results and len(results[key]) > _:
                        continue
                    v = _measure(lab, server_kind, client_kind, a.proto, a.cipher, a.seconds, a.reverse)
                    results.setdefault(key, []).append(v)
                    print(f"  {client_kind:>7} client -> {server_kind:>7} server: {v:8.1f} Mbit/s", flush=True)
        print()
        for name, ours, ref in pairs:
            o, r = statistics.median(results[(ours[0], ours[1])]), statistics.median(results[(ref[0], ref[1])])
            what = "our client  vs OpenVPN client (OpenVPN server)" if name == "client" else \
                "our client+server vs OpenVPN client+server"
            print(f"{what}: {o:8.1f} vs {r:8.1f} Mbit/s  ratio {o / r if r else float('nan'):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
