"""What the long soak runs (soak_l2.py, soak_ops.py) share: reading a process from /proc and its
log, and the driver's bookkeeping -- counters, the event log, samples, and the events its client
threads obey (`gate`: may connect, `cut`: leave now, `done`: the run is over). One place, so that
both runs count, leave, wait and write their summary the same way."""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..netns import Lab, Proc
from .fleet import cpu_seconds


# ---------------------------------------------------------------- reading processes
def proc_info(pid: int) -> dict:
    """RSS (MB), open fds, threads, CPU seconds of a live process ({} when gone)."""
    try:
        st = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return {}
    m, t = re.search(r"VmRSS:\s+(\d+)", st), re.search(r"Threads:\s+(\d+)", st)
    if m is None or t is None:                  # a process exited, not yet reaped
        return {}
    rss, threads = int(m.group(1)) / 1024, int(t.group(1))
    return {"rss": round(rss, 1), "fds": fds, "threads": threads, "cpu": round(cpu_seconds(pid), 1)}


def tail(path: Path, n: int = 200_000) -> str:
    """The last `n` bytes of a log (the server's grows to many MB: never read whole in a loop)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def count_in(path: Path, rx: re.Pattern) -> int:
    """Matches of `rx` in a whole log, read in chunks (line-wise)."""
    n = 0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if rx.search(line):
                    n += 1
    except FileNotFoundError:
        pass
    return n


def held(p: Proc) -> dict:
    """SIGUSR2, then the `statistics: held ...` line it printed (our server and client)."""
    before = p.log_path.stat().st_size if p.log_path.exists() else 0
    try:
        os.kill(p.p.pid, signal.SIGUSR2)
    except ProcessLookupError:
        return {}
    end = time.monotonic() + 5
    while time.monotonic() < end:
        time.sleep(0.2)
        try:
            with open(p.log_path, "rb") as f:
                f.seek(before)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return {}
        m = re.search(r"statistics: held (.*)", text)
        if m:
            return {k.strip(): int(v) for k, v in re.findall(r"([A-Za-z -]+?) (\d+)(?:,|$)", m.group(1).strip())}
    return {}


def rss_growth(res: dict, warm: tuple[float, int], last: float, connects: int) -> None:
    """Into a phase's result: the server's RSS after the warm-up and at the last sample, and its
    growth per 1000 connections since the warm-up (`warm`: RSS and connections then; `connects`:
    connections by the end; None when there were none since)."""
    n = connects - warm[1]
    res["rss_warm"], res["connects_warm"], res["rss_last_sample"] = warm[0], warm[1], last
    res["rss_growth_per_1000_connections_mb"] = round((last - warm[0]) * 1000 / n, 2) if n > 0 else None


def write_out(out: Path, summary: dict, samples: list[dict]) -> None:
    """The run's samples and summary into `out`, and the summary printed."""
    (out / "samples.json").write_text(json.dumps(samples))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("summary:", json.dumps(summary, indent=1), flush=True)


def soak_parser(doc: str, *, phase: str, minutes: float, reneg: int, settle: float, seed: int,
                out: str) -> argparse.ArgumentParser:
    """The options every soak run takes, with its own defaults (a run adds its own after):
    how long each server's phase lasts, reneg-sec, how long a client stays, the warm-up before
    the RSS reference, the settling after all left, the seed and the output folder."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=minutes, help=f"{phase} with our server")
    ap.add_argument("--openvpn-minutes", type=float, default=10, help=f"{phase} with Debian's server (0: none)")
    ap.add_argument("--reneg", type=int, default=reneg)
    ap.add_argument("--stay", type=float, nargs=2, default=(10, 45))
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes of each phase before the RSS reference")
    ap.add_argument("--settle", type=float, default=settle)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--out", type=Path, default=Path(out))
    return ap


# ---------------------------------------------------------------- the driver's bookkeeping
class SoakBase:
    """Counters and events of a soak driver, shared by its threads under `lock`."""

    def __init__(self, lab: Lab, a) -> None:
        self.lab, self.a = lab, a
        self.lock = threading.Lock()
        self.done = threading.Event()           # the run is over
        self.gate = threading.Event()           # clients may connect
        self.cut = threading.Event()            # clients: leave now
        self.active = 0                         # clients connected or connecting
        self.c: dict[str, int] = {}             # counters
        self.events: list[str] = []
        self.samples: list[dict] = []

    def count(self, k: str, n: int = 1) -> None:
        with self.lock:
            self.c[k] = self.c.get(k, 0) + n

    def note(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        with self.lock:
            self.events.append(line)
        print(line, flush=True)

    # ---- churning clients
    def admitted(self) -> bool:
        """Waits up to 1 s for the gate: whether a churning client may connect now."""
        return self.gate.wait(1) and not self.done.is_set()

    @contextmanager
    def connecting(self) -> Iterator[None]:
        """One client's connection, counted in `active` (what all_leave waits for) until it ends."""
        with self.lock:
            self.active += 1
        try:
            yield
        finally:
            with self.lock:
                self.active -= 1

    def forget(self, p: Proc, lab_checks: bool) -> None:
        """A stopped process out of the lab's lists (thousands come and go); `lab_checks`: left
        for the lab's check at close when its log shows a logging error."""
        with self.lock:
            if p in self.lab.procs:
                self.lab.procs.remove(p)
            if p in self.lab.ours_procs and not (lab_checks and "--- Logging error ---" in p.log()):
                self.lab.ours_procs.remove(p)

    def all_leave(self, settle: float) -> None:
        """The end of a phase: the gate shut, every client told to leave and waited for (60 s at
        most), then `settle` s for the server to notice."""
        self.gate.clear()
        self.cut.set()
        t_leave = time.monotonic()
        while self.active and time.monotonic() - t_leave < 60:
            time.sleep(0.5)
        self.cut.clear()
        time.sleep(settle)

    def record(self, s: dict) -> dict:
        """A sample, with the counters and active clients as of now, kept for samples.json."""
        with self.lock:
            s["counts"] = dict(self.c)
            s["active"] = self.active
        self.samples.append(s)
        return s

    def finish(self, threads: list[threading.Thread]) -> None:
        """The run over: every thread woken and joined (60 s each at most)."""
        self.done.set()
        self.gate.set()
        self.cut.set()
        for t in threads:
            t.join(60)
