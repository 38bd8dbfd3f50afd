"""The server's stall at a `crl-verify` change, seen by a live client: pings through its tunnel.

Our server in the lab's namespaces with a 100,000-entry CRL file; Debian's OpenVPN client1
connected and pinging the server's tunnel address every 10 ms (500 pings); 1.5 s in, the file
is replaced by a new one and client2 connects, whose handshake makes the server read it.
Printed per run: the longest round trip (any loop stall delays every reply), the longest in the
first 80 pings (before the change), how many took over 20 ms, and how long after the change
client2's tunnel was up. With `--baseline BIN` another build's `vpn-appliance` runs too,
interleaved round by round.

    python -m lab.crl_live [--rounds 3] [--entries 100000] [--baseline /other/.venv/bin/vpn-appliance] [--reload]

With `--reload`, the change is followed by a SIGHUP to the server instead of client2: the stall
of a reload (the config and the CRL read again, client1 kept), and how long until it is logged.

Not a test (no timed tests): figures for the README (Benchmarks, "crl-verify at 100,000 entries").
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.openvpn.crl import make_crl

from .configs import client_profile, server_config
from .netns import TUN_SERVER_IP, Lab
from .tools import OUR_BIN


def one_run(lab: Lab, ns2, binary: str, tag: str, old: bytes, new: bytes, reload: bool = False) -> str:
    """One run; with `reload`, the change is followed by a SIGHUP (the server re-reads its config
    and CRL, client1 kept) instead of client2's connection."""
    crl = lab.tmp / f"crl-{tag}.pem"
    crl.write_bytes(old)
    cfg = lab.write(f"srv-{tag}.conf", server_config(lab.pki, extra=f"crl-verify {crl}\n"))
    procs = []
    ping = None
    try:
        srv = lab.start(lab.srv, [binary, "run", str(cfg)], f"live-{tag}")
        procs.append(srv)
        if not srv.wait_for("listening on UDP", 60):
            raise RuntimeError(srv.log()[-2000:])
        procs.append(lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"c1-{tag}"))
        if not lab.wait_ping(lab.cli, TUN_SERVER_IP):
            raise RuntimeError("no tunnel for client1")
        ping = subprocess.Popen(["ip", "netns", "exec", lab.cli.name, "ping", "-n", "-i", "0.01", "-c", "500",
                                 TUN_SERVER_IP], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        part = crl.with_suffix(".new")
        part.write_bytes(new)
        os.replace(part, crl)
        changed = time.monotonic()
        if reload:
            at = len(srv.log())
            os.kill(srv.p.pid, signal.SIGHUP)
            if not srv.wait_for(r"reload: config .* re-read", 30, after=at):
                raise RuntimeError("no reload: " + srv.log()[-2000:])
            done = time.monotonic() - changed
            out, _ = ping.communicate(timeout=60)
            rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
            return (f"pings {len(rtts)}/500, longest round trip {max(rtts):.1f} ms (first 80: {max(rtts[:80]):.1f} ms), "
                    f"over 20 ms: {sum(1 for x in rtts if x > 20)}; reload logged {done:.2f} s after the SIGHUP")
        procs.append(lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.6.1", 1194, "udp")]),
                                 f"c2-{tag}", wait=30))
        up2 = time.monotonic() - changed
        out, _ = ping.communicate(timeout=60)
        rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
        return (f"pings {len(rtts)}/500, longest round trip {max(rtts):.1f} ms (first 80: {max(rtts[:80]):.1f} ms), "
                f"over 20 ms: {sum(1 for x in rtts if x > 20)}; client2 up {up2:.2f} s after the change")
    finally:
        if ping is not None and ping.poll() is None:
            ping.kill()
            ping.wait()
        for p in reversed(procs):
            p.stop(8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="another build's vpn-appliance binary")
    ap.add_argument("--reload", action="store_true", help="a SIGHUP after the change, instead of client2")
    a = ap.parse_args(argv)
    bins = ([("before", a.baseline)] if a.baseline else []) + [("now", OUR_BIN)]
    with Lab(clients=["client1", "client2"], tmp=Path(tempfile.mkdtemp(prefix="crllive"))) as lab:
        ns2 = lab.add_client_ns(5)
        d = lab.pki.dir
        ca = (x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()),
              serialization.load_pem_private_key((d / "ca.key").read_bytes(), None))
        serials = list(range(10**6, 10**6 + a.entries))
        old, new = make_crl(*ca, serials), make_crl(*ca, serials + [7])
        for r in range(a.rounds):
            for kind, binary in bins:
                print(f"{kind} round {r}: {one_run(lab, ns2, binary, f'{kind}-{r}', old, new, a.reload)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
