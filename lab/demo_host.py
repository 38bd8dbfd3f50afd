"""`make run-host`: a local lab showing the tunnel working, on the embedded default.

Debian's OpenVPN 2.6 server runs in one network namespace (with a host behind it), our client in
another; the client's tunnel comes up and pings reach the host behind the server through it.
Runs until Ctrl-C, or for --duration seconds (0 = until Ctrl-C); removes everything on exit.
"""
from __future__ import annotations

import argparse
import signal
import time

from .configs import client_profile, server_config
from .netns import BEHIND_IP, TUN_SERVER_IP, Lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=0, help="seconds to run; 0 runs until Ctrl-C")
    ap.add_argument("--client", choices=["ours", "openvpn"], default="ours")
    ap.add_argument("--proto", choices=["udp", "tcp"], default="udp")
    a = ap.parse_args(argv)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print("== vpn-appliance lab: namespaces, test PKI, Debian's OpenVPN server, our client", flush=True)
    with Lab() as lab:
        print(f"   server namespace {lab.srv.name} (198.18.0.1, host behind it {BEHIND_IP}),"
              f" client namespace {lab.cli.name} (198.18.0.2)", flush=True)
        lab.openvpn(lab.srv, server_config(lab.pki, a.proto, "AES-256-GCM", "tls-crypt"), "openvpn-server")
        print(f"== OpenVPN server up ({a.proto.upper()}, AES-256-GCM, tls-crypt)", flush=True)
        prof = client_profile(lab.pki, a.proto, None, "tls-crypt", inline=True)
        path = lab.write("client.ovpn", prof)
        if a.client == "ours":
            cli = lab.ours(lab.cli, prof, "vpn-appliance", wait=40)
            print(f"== our client: vpn-appliance run {path}", flush=True)
        else:
            cli = lab.openvpn(lab.cli, prof, "openvpn-client")
        for line in cli.log().splitlines():
            print("   | " + line, flush=True)
        for target, what in ((TUN_SERVER_IP, "the server's tunnel address"), (BEHIND_IP, "the host behind the server")):
            n = lab.ping(lab.cli, target, 3)
            print(f"== ping {target} ({what}) through the tunnel: {n}/3 replies", flush=True)
            if n == 0:
                print("   FAILED", flush=True)
                return 1
        mbps = lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 20_000_000)
        print(f"== 20 MB TCP transfer through the tunnel, every byte checked: {mbps:.0f} Mbit/s", flush=True)
        end = time.monotonic() + a.duration if a.duration > 0 else None
        print("== tunnel up; pinging every 2 s. " + ("Ctrl-C to stop." if end is None else f"Stopping in {a.duration:.0f} s."),
              flush=True)
        try:
            while not stop["now"] and (end is None or time.monotonic() < end):
                ok = lab.ping(lab.cli, BEHIND_IP, 1, timeout=5)
                print(f"   ping {BEHIND_IP}: {'ok' if ok else 'lost'}", flush=True)
                time.sleep(2 if end is None else max(0.0, min(2, end - time.monotonic())))
        except KeyboardInterrupt:
            pass
        print("== stopping: client exit notification, namespaces removed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
