"""`make run`: the appliance VM as a router, on the embedded default config.

Builds the image if needed (make does), then: Debian's OpenVPN server in a namespace on the WAN
side (with a host behind it), a LAN host in another, the VM booted under QEMU (KVM if it works,
else TCG) with its serial console shown; the LAN host then pings the host behind the VPN server
through the tunnel. Runs until Ctrl-C, or for --duration seconds (0 = until Ctrl-C).
"""
from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
from pathlib import Path

from .netns import Netns, Proc
from .router_lab import BEHIND, SECRET_NAME, start_far_side
from .vm import OUT, accel, boot, lab_pki, ping, vm_topology


def _follow(proc: Proc, stop: threading.Event) -> None:
    pos = 0
    while not stop.is_set():
        text = proc.log()
        for line in text[pos:].splitlines():
            print("   vm | " + line.replace("\x1b", "").strip(), flush=True)
        pos = len(text)
        time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=0)
    a = ap.parse_args(argv)
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    tmp = Path(tempfile.mkdtemp(prefix="vmlab-"))
    print(f"== appliance VM lab ({accel(OUT)}): WAN 198.18.0.0/24 with Debian's OpenVPN server at 198.18.0.1, "
          "LAN 198.18.50.0/24 with a host at 198.18.50.2", flush=True)
    with vm_topology(tmp) as t:
        def start(ns: Netns, argv: list[str], name: str) -> Proc:
            p = Proc(ns, argv, tmp / f"{name}.log")
            t["procs"].append(p)
            return p
        try:
            start_far_side(t["wan"], tmp, start, lab_pki())   # OpenVPN server (IPv6, pushes DNS), dnsmasq, web
        except AssertionError as e:
            print(e)
            return 1
        print("== OpenVPN server up; booting the appliance (serial console below)", flush=True)
        t0 = time.monotonic()
        q = boot(t, OUT)
        stop = threading.Event()
        threading.Thread(target=_follow, args=(q, stop), daemon=True).start()
        try:
            if not q.wait_for("tunnel up", 180):
                print("== the appliance did not bring the tunnel up", flush=True)
                return 1
            time.sleep(0.5)
            print(f"== tunnel up {time.monotonic() - t0:.1f} s after power-on", flush=True)
            n = ping(t["lan"], "198.18.100.1", 3)
            print(f"== LAN host 198.18.50.2 -> host behind the VPN server {BEHIND}: {n}/3 replies", flush=True)
            r = t["lan"].run(f"busybox nslookup {SECRET_NAME} 198.18.50.1", check=False, timeout=30)
            print(f"== LAN host asks the appliance's DNS forwarder for {SECRET_NAME} (known only behind the VPN):",
                  flush=True)
            for line in (r.stdout + r.stderr).strip().splitlines():
                print("   lan | " + line, flush=True)
            end = time.monotonic() + a.duration if a.duration > 0 else None
            print("== running; " + ("Ctrl-C to stop" if end is None else f"stopping in {a.duration:.0f} s"), flush=True)
            while not stopping["now"] and (end is None or time.monotonic() < end):
                time.sleep(min(2.0, max(0.0, (end or time.monotonic() + 2) - time.monotonic())))
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
        print("== stopping: VM, OpenVPN, namespaces", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
