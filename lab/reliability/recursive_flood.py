"""A local sender flooding the VPN server's own address through the TUN (atk41): what the
recursive-routing drop (gateway/recursive_routing.py) costs our client, against Debian's
OpenVPN 2.6 server in namespaces.

Policy routing sends UDP to the server's address port 9999 into tun0 (the transport, port 1194,
keeps its host route), so every flood packet reaches the client's TUN with the server's address
as destination -- what a link flap does to every packet to that address, for as long as the
flood lasts. A ping through the tunnel runs meanwhile (its worst RTT: how long the loop was held),
then the same with `allow-recursive-routing` (sealed and sent instead: the cost we save).

    sudo .venv/bin/python -m lab.reliability.recursive_flood [seconds]
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

SERVER, ROUTER = "198.18.50.1", "198.18.0.1"
_FLOOD = ("import socket,sys,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setblocking(False);"
          "b=b'x'*int(sys.argv[3]);n=0;e=time.monotonic()+float(sys.argv[2])\n"
          "while time.monotonic()<e:\n"
          " for _ in range(256):\n"
          "  try: s.sendto(b,(sys.argv[1],9999)); n+=1\n"
          "  except OSError: pass\n"
          "print(n)")


def _cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _our_pid(lab: Lab, proc) -> int:
    """The python process of ours under `ip netns exec` (the Popen's pid is ip's, which execs)."""
    return proc.p.pid


def run(seconds: float, allow: bool, size: int) -> dict:
    with Lab() as lab:
        lab.srv.run(f"ip addr add {SERVER}/32 dev lo")
        lab.cli.run(f"ip route add default via {ROUTER}")
        server = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=f'local {SERVER}\npush "redirect-gateway def1"\n'),
                             "server")
        extra = "allow-recursive-routing\n" if allow else ""
        client = lab.ours(lab.cli, client_profile(lab.pki, "udp", remotes=[(SERVER, 1194, "udp")], extra=extra), "ours")
        try:
            assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=30), client.log()[-3000:]
            lab.cli.run(f"ip route add default dev tun0 table 141 && "
                        f"ip rule add to {SERVER} ipproto udp dport 9999 table 141 pref 100")
            pid = _our_pid(lab, client)
            tx0 = int(lab.cli.run("cat /sys/class/net/tun0/statistics/tx_packets").stdout)
            cpu0, t0 = _cpu(pid), time.monotonic()
            ping = subprocess.Popen(["ip", "netns", "exec", lab.cli.name, "ping", "-n", "-q", "-i", "0.01",
                                     "-w", str(int(seconds)), "-W", "1", TUN_SERVER_IP],
                                    stdout=subprocess.PIPE, text=True)
            sent = int(lab.cli.run(f"{sys.executable} -c \"{_FLOOD}\" {SERVER} {seconds} {size}",
                                   timeout=seconds + 30).stdout)
            out, _ = ping.communicate(timeout=seconds + 30)
            cpu, wall = _cpu(pid) - cpu0, time.monotonic() - t0
            tx = int(lab.cli.run("cat /sys/class/net/tun0/statistics/tx_packets").stdout) - tx0
            m = re.search(r"(\d+) packets transmitted, (\d+) received.*?= [\d.]+/([\d.]+)/([\d.]+)", out, re.S)
            time.sleep(31)          # the held drops' summary line
            lines = [ln for ln in client.log().splitlines() if "recursive routing" in ln]
            alive = client.alive() and "tunnel up" in client.log()
            return {"allow": allow, "size": size, "sent": sent, "into_tun": tx, "cpu_s": round(cpu, 2),
                    "wall_s": round(wall, 1), "ping": m.groups() if m else out, "log_lines": len(lines),
                    "last_line": lines[-1][-160:] if lines else "", "alive": alive,
                    "reconnects": client.log().count("tunnel up") - 1}
        finally:
            client.stop_promptly(8)
            server.stop_promptly(8)


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    for allow in (False, True):
        for size in (64, 1400):
            print(run(secs, allow, size), flush=True)
