"""TCP through a tunnel whose profile says `link-mtu N` alone, over a path of N: Debian's OpenVPN
2.6 client and ours in turn, against Debian's server or ours. Why: such a profile clamps no MSS
(2.6 leaves `mssfix = 0` there; ours since helper mss41), so a user may ask whether TCP still
passes when the path is that small.

    python -m lab.link_mtu_tcp [--server openvpn|ours] [--mtu 1200]

Printed per client: its TUN's MTU (a 2.6 server pushes its tun-mtu 1500; ours pushes none, so the
TUN keeps link-mtu's figure), then a 2 MB transfer each way (Mbit/s at the receiver, every byte
checked; 0.0 with the reason on failure). Traffic stays inside the lab's two namespaces.
"""
from __future__ import annotations

import argparse
import json
import tempfile

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", choices=("openvpn", "ours"), default="openvpn")
    ap.add_argument("--mtu", type=int, default=1200, help="the veth's MTU and the profile's link-mtu")
    a = ap.parse_args()
    with Lab(clients=["client1"], tmp=tempfile.mkdtemp(prefix="link-mtu-tcp-")) as lab:
        lab.srv.run(f"ip link set va{lab.tag} mtu {a.mtu}")
        lab.cli.run(f"ip link set vb{lab.tag} mtu {a.mtu}")
        srv = lab.udp_server(a.server, server_config(lab.pki), "srv")
        try:
            for kind in ("openvpn", "ours"):
                prof = client_profile(lab.pki, extra=f"link-mtu {a.mtu}\n")
                start = lab.openvpn if kind == "openvpn" else lab.ours
                p = start(lab.cli, prof, f"client-{kind}")
                try:
                    mtu = json.loads(lab.cli.run("ip -j link show dev tun0").stdout)[0]["mtu"]
                    up = lab.tcp_transfer_why(lab.srv, TUN_SERVER_IP, lab.cli)
                    down = lab.tcp_transfer_why(lab.srv, TUN_SERVER_IP, lab.cli, reverse=True, port=5202)
                    print(f"server {a.server}, client {kind}: tun0 MTU {mtu}; up {up[0]:.1f} Mbit/s {up[1]}; "
                          f"down {down[0]:.1f} Mbit/s {down[1]}", flush=True)
                finally:
                    p.stop(5)
        finally:
            srv.stop(5)


if __name__ == "__main__":
    main()
