"""What OpenVPN's server does for each client's handshake, counted in instructions: Debian's
OpenVPN 2.6 server runs under callgrind in lab.first_packet's lab, and each pair's handshake is
cut at every datagram the server sends (`--dump-before=sendto`), so a list shows the server's
user-space work between its sends: before its reset, before its TLS flight, and so on.

    sudo .venv/bin/python -m lab.server_work [--protection none] [--rounds 2]
                                             [--pairs ours-ovpn,ovpn-ovpn,oursx-ovpn]

Instructions do not move with the machine's load, unlike the server's CPU time that
`lab.first_packet` prints (schedstat), so this tells whether a client asks the server for more
work or whether the same work took longer (README: "Handshake to first packet", fp31). Only
user space is counted: the kernel's share (system calls, packets) is not; count those with
`strace -f -c -p PID` over the same handshakes. Under valgrind the server is ~50x slower: probes
go every 50 ms and the rounds take seconds; the times this prints mean nothing, the counts do.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .first_packet import _ECHO, ECHO_PORT, FirstPacket
from .netns import Lab
from .tools import OPENVPN

_TRIGGER = re.compile(r"^desc: Trigger: (.*)$", re.M)
_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def read_dump(path: Path) -> tuple[str, int]:
    """A callgrind dump's trigger (`Client Request: start-PAIR-N`, `--dump-before=sendto`, ...)
    and its instruction count."""
    text = path.read_text(errors="replace")
    trig, total = _TRIGGER.search(text), _TOTAL.search(text)
    return (trig.group(1) if trig else "", int(total.group(1)) if total else 0)


def handshakes(dumps: list[tuple[str, int]]) -> dict[str, list[int]]:
    """The server's work per handshake from dumps in the order callgrind wrote them: a dump
    triggered by `start-LABEL` closes what came before (idle time, the last client's end), every
    later dump up to the one triggered by `end-LABEL` is one interval of LABEL's handshake, each
    ending where the server sent a datagram (or at the end)."""
    out: dict[str, list[int]] = {}
    label = None
    for trigger, n in dumps:
        m = re.search(r"\b(start|end)-(\S+)", trigger)
        if m and m.group(1) == "start":
            label = m.group(2)
            out[label] = []
            continue
        if label is not None:
            out[label].append(n)
        if m and m.group(1) == "end":
            label = None
    return out


def _dumps(directory: Path, pid: int) -> list[tuple[str, int]]:
    files = sorted(directory.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    return [read_dump(p) for p in files]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protection", default="none")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pairs", default="ours-ovpn,ovpn-ovpn,oursx-ovpn",
                    help="client-server pairs of lab.first_packet whose server is OpenVPN's")
    a = ap.parse_args(argv)
    pairs = a.pairs.split(",")
    if any(not p.endswith("-ovpn") for p in pairs):
        ap.error("only pairs against OpenVPN's server (…-ovpn)")
    lab = Lab()
    try:
        echo = lab.start(lab.srv, [sys.executable, "-c", _ECHO, str(ECHO_PORT)], "fp-echo")
        if not echo.wait_for("echo ready", 20):
            raise RuntimeError("echo service did not start")
        fp = FirstPacket(a.protection, lab)
        plain = fp.servers["ovpn"]           # the same config again, under callgrind
        plain.stop(10)
        lab.procs.remove(plain)
        cfg = lab.tmp / f"fp-ovpn-{a.protection}.conf"
        srv = lab.start(lab.srv, ["valgrind", "--tool=callgrind", "--dump-before=sendto",
                                  f"--callgrind-out-file={lab.tmp}/cg.%p", OPENVPN, "--config", str(cfg)],
                        "cg-server")
        if not srv.wait_for("Initialization Sequence Completed", 180):
            raise RuntimeError(f"OpenVPN under callgrind did not come up:\n{srv.log()[-2000:]}")
        fp.servers["ovpn"] = srv
        time.sleep(1.0)
        for rnd in range(a.rounds):
            for pair in pairs:
                subprocess.run(["callgrind_control", "-d", f"start-{pair}-{rnd}", str(srv.p.pid)],
                               capture_output=True, check=False, timeout=60)
                row = fp.once(pair, 0.05, 60.0)
                time.sleep(0.05)
                subprocess.run(["callgrind_control", "-d", f"end-{pair}-{rnd}", str(srv.p.pid)],
                               capture_output=True, check=False, timeout=60)
                print(f"{pair} round {rnd}: echo {'ok' if row.get('echo') else 'MISSING'}, datagrams "
                      f"{row.get('n_out')} in / {row.get('n_in')} out (the server's view)", flush=True)
                time.sleep(0.5)
        per = handshakes(_dumps(lab.tmp, srv.p.pid))
        fp.close()
    finally:
        lab.close()
    print(f"\nOpenVPN's server, user-space instructions per handshake ({a.protection}), K: total = the "
          "intervals, each ending at a datagram the server sent")
    for pair in pairs:
        runs = [v for k, v in per.items() if k.rsplit("-", 1)[0] == pair]
        if not runs:
            continue
        med = statistics.median(sum(v) for v in runs)
        print(f"{pair:>11}: median {med / 1000:,.0f} K")
        for v in runs:
            print(f"{'':>13}{sum(v) / 1000:>8,.0f} K = " + " + ".join(f"{n // 1000}" for n in v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
