"""What `tls-groups` changes on the wire: our client's ClientHello and control packets against
Debian's OpenVPN 2.6 server, with OpenSSL 4's default groups (a hybrid X25519MLKEM768 key share,
~1.2 KB) and with `tls-groups X25519`; OpenVPN's own client for reference. Prints, asserts nothing.

    sudo .venv/bin/python -m lab.client_hello [--protection tls-crypt] [--rounds 3]

Counted from a capture on the client's veth (UDP payload sizes, the whole handshake until the
tunnel is up: the 2nd client datagram carries the ClientHello; the veth segments our GSO sends,
Lab.segment_on_the_wire, so each datagram is counted, not each sendmsg); the bare TLS ClientHello size
comes from an in-memory TlsEndpoint (no control-channel wrapping).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import time

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab


def _hello_size(groups: str | None) -> int:
    from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context
    s = TlsSettings(None, None, None, False, peer_fingerprints=[b"x" * 32], tls_groups=groups)
    e = TlsEndpoint(build_context(s), s)
    out, _ = e.pump()
    return len(out)


def _capture(lab: Lab, who: str, extra: str, name: str) -> list[tuple[bool, int]]:
    """The handshake's UDP datagrams until the tunnel is up: (from the client?, UDP payload size)."""
    pcap = lab.tmp / f"{name}.pcap"
    cap = subprocess.Popen(["ip", "netns", "exec", lab.cli.name, "tcpdump", "-Z", "root", "--immediate-mode", "-U",
                            "-i", f"vb{lab.tag}", "-n", "-w", str(pcap), "udp port 1194"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        prof = client_profile(lab.pki, extra=extra)
        p = lab.ours(lab.cli, prof, name, wait=60) if who == "ours" else lab.openvpn(lab.cli, prof, name, wait=60)
        time.sleep(0.5)
        p.stop(5)
    finally:
        cap.terminate()
        cap.wait(5)
    out = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True).stdout
    return [(m.group(1) == "1194", int(m.group(2)))
            for m in re.finditer(r"> [\d.]+\.(\d+): UDP, length (\d+)", out)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protection", default="tls-crypt")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"TLS ClientHello (in memory): default groups {_hello_size(None)} B, tls-groups X25519 "
          f"{_hello_size('X25519')} B")
    cases = [("ours", "", "ours, default groups"), ("ours", "tls-groups X25519\n", "ours, tls-groups X25519"),
             ("openvpn", "", "OpenVPN 2.6 client (OpenSSL 3.0)")]
    with Lab() as lab:
        lab.segment_on_the_wire()
        srv = lab.openvpn(lab.srv, server_config(lab.pki, protection=a.protection), "server")
        print(f"server: Debian OpenVPN at {SRV_IP}, {a.protection}; client packets/bytes on the wire (UDP payload)")
        for r in range(a.rounds):
            for who, extra, label in cases:
                d = _capture(lab, who, extra, f"{who}-{r}-{len(extra)}")
                mine = [n for c, n in d if c]
                print(f"  round {r + 1} {label:34s} client: {len(mine)} datagrams {sum(mine)} B, first four "
                      f"{mine[:4]}; server: {len(d) - len(mine)} datagrams")
        srv.stop(5)


if __name__ == "__main__":
    main()
