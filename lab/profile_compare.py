"""Which real-world configs Debian's OpenVPN 2.6 accepts, beside `vpn-appliance check`'s verdict:
the table of README's "Thirty-eighth session (helper profiles41)" paragraph.

    sudo .venv/bin/python -m lab.profile_compare [--only NAME ...] [--json out.json]

Every shape of tests/real_profiles.py, every installer of tests/installer_configs.py (server config
and client profile) and every provider profile of tests/unit/test_provider_profiles.py is written
beside a test PKI; then
- ours: `vpn-appliance check FILE` (exit status, its first error line);
- 2.6:  `openvpn --cd DIR --config FILE` in a namespace of its own with only loopback (its remotes
  unreachable, nothing leaves), given a credentials file when the profile asks on the console
  (`auth-user-pass` alone: 2.6 would stop at the prompt, which says nothing about the config). It
  accepts the config when it gets past its start-up (a server: "Initialization Sequence
  Completed"; a client or peer: its link socket) and is still running 1.5 s later; it refuses it
  when it exits first (its "Options error" / fatal line is kept). Warnings it logs on the way
  (Windows-only options ignored, deprecations) are kept too.
Each namespace is deleted and every process in it killed by PID before the next one.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .netns import Netns, Proc
from .tools import OPENVPN, OUR_BIN, require_root_and_tools

STARTED = re.compile(r"Initialization Sequence Completed|link remote:|Attempting to establish TCP connection"
                     r"|UDPv[46] link local|Listening for incoming TCP connection")
REFUSAL = re.compile(r"Options error:.*|.*ERROR:.*|.*Exiting due to fatal error.*|.*Cannot .*")
WARNING = re.compile(r".*(WARNING|DEPRECAT|Unrecognized option|Options warning|ignor).*", re.I)
WAIT_START, WAIT_AFTER = 8.0, 1.5


@dataclass
class Verdict:
    name: str
    kind: str                 # shape / installer-server / installer-client / provider
    ours_ok: bool
    ours_error: str
    openvpn_ok: bool
    openvpn_error: str
    openvpn_warnings: list[str]

    @property
    def row(self) -> str:
        return {(True, True): "both accept", (False, True): "GAP: we refuse, 2.6 accepts",
                (True, False): "we accept, 2.6 refuses", (False, False): "both refuse"}[(self.ours_ok, self.openvpn_ok)]


def ours(path: Path) -> tuple[bool, str]:
    r = subprocess.run([OUR_BIN, "check", str(path)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, cwd=path.parent)
    return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[0]


def _log_files(text: str, d: Path) -> list[Path]:
    out = []
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] in ("log", "log-append"):
            out.append(Path(w[1]) if w[1].startswith("/") else d / w[1])
    return out


def openvpn(path: Path, index: int) -> tuple[bool, str, list[str]]:
    d, text = path.parent, path.read_text()
    extra = []
    if re.search(r"^auth-user-pass\s*$", text, re.M):
        (d / "creds.txt").write_text("alice\ns3cret\n")
        extra = ["--auth-user-pass", str(d / "creds.txt")]
    ns = Netns(f"p41cmp{index}")
    ns.run("ip addr add 198.18.0.1/32 dev lo")           # Nyr's `local`: the server's own address
    log = d / f"{path.name}.openvpn.log"
    log.write_text("")
    p = Proc(ns, [OPENVPN, "--cd", str(d), "--config", str(path), *extra], log)
    try:
        started = p.wait_for(STARTED.pattern, WAIT_START)
        if started and p.alive():
            time.sleep(WAIT_AFTER)
        ok = p.alive() or (p.p.poll() == 0 and started)      # `daemon`: the parent exits 0
        text_out = p.log() + "".join(f.read_text(errors="replace") for f in _log_files(text, d) if f.exists())
        if not ok and "can't ask for" in text_out:
            # static-challenge / a console prompt with no terminal here: the config was taken
            ok = True
            text_out += "\n(stopped at a console prompt: no terminal here)"
    finally:
        p.stop()
        pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True).stdout.split()
        for pid in pids:                                  # a `daemon` child, started by this run
            subprocess.run(["kill", "-9", pid], check=False, capture_output=True)
        ns.delete()
    refusal = "" if ok else next((m.group(0).strip() for m in REFUSAL.finditer(text_out)), text_out[-300:])
    warnings = sorted({re.sub(r"^\S+ \S+ \d+ [\d:]+ \d+ ", "", m.group(0)).strip()
                       for m in WARNING.finditer(text_out)})
    return ok, refusal, warnings


def configs(d: Path) -> list[tuple[str, str, Path]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.installer_configs import INSTALLERS, fill, render, write_pki
    from tests.real_profiles import write_all
    from tests.unit.test_provider_profiles import PROFILES
    out = [(n, "shape", p) for n, p in write_all(d / "shapes").items()]
    for name, inst in INSTALLERS.items():
        r = render(inst, d / f"inst-{name}")
        out += [(name, "installer-server", r.server), (name, "installer-client", r.client)]
    v = write_pki(d / "providers")
    v.update(TLSAUTH=v["TA"], TLSCRYPT=v["TC"], CERTKEY=v["CERT"] + "\n" + v["KEY"])
    for name, text in PROFILES.items():
        p = d / "providers" / f"{name}.ovpn"
        p.write_text(fill(text, v))
        out.append((name, "provider", p))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="names to run (default: all)")
    ap.add_argument("--json", help="write the verdicts here")
    ap.add_argument("--keep", help="write the configs and 2.6's logs here (kept) instead of a temporary directory")
    a = ap.parse_args(argv)
    require_root_and_tools()
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="p41cmp-") as t:
        tmp = a.keep or t
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for i, (name, kind, path) in enumerate(configs(Path(tmp))):
            if a.only and name not in a.only:
                continue
            o_ok, o_err = ours(path)
            v_ok, v_err, warn = openvpn(path, i)
            v = Verdict(name, kind, o_ok, o_err.replace(tmp, "D"), v_ok, v_err.replace(tmp, "D"), warn)
            verdicts.append(v)
            print(f"{kind:17} {name:28} {v.row:30} ours: {v.ours_error[:90]!r} 2.6: {v.openvpn_error[:110]!r}",
                  flush=True)
            for w in warn:
                print(f"{'':47} 2.6 warns: {w[:130]}")
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.row] = counts.get(v.row, 0) + 1
    print("\n" + ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) + f" (of {len(verdicts)})")
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(v) | {"row": v.row} for v in verdicts], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
