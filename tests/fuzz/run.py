"""Coverage-guided fuzzing (atheris/libFuzzer) of every target in targets.py, one process at a time.

    python -m tests.fuzz.run --duration 600            # all targets, the time split by Target.weight
    python -m tests.fuzz.run --targets data,dhcp --duration 60
    python -m tests.fuzz.run --runs 2000               # a fixed number of inputs per target

Each target runs in its own child process (`--child NAME`) under atheris, with the `appliance`
package instrumented for coverage, the committed seeds (tests/fuzz/seeds/<target>) and a working
corpus that grows across runs (tests/fuzz/work/corpus/<target>, not committed). The child catches
every exception that escapes the target itself (the target already let through only what its
contract allows), so one finding does not end the run: it keeps the shortest input per distinct
traceback in tests/fuzz/crashers/<target>/ with a .txt beside it, and goes on. A hang is an input
that runs longer than --timeout seconds: libFuzzer stops the child and writes it out; it is moved
to the crashers directory as hang-*, counted, and the target is restarted for its remaining time.

Printed per target: inputs executed, seconds, exec/s, uncaught exceptions (inputs whose exception
escaped), distinct ones, hangs; then the totals. A JSON summary goes to tests/fuzz/work/last-run.json.
Exit status 0 only with no uncaught exception and no hang.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = Path(os.environ.get("FUZZ_SEEDS_DIR", HERE / "seeds"))
CRASHERS = Path(os.environ.get("FUZZ_CRASHERS_DIR", HERE / "crashers"))
WORK = Path(os.environ.get("FUZZ_WORK_DIR", HERE / "work"))


# ------------------------------------------------------------------ shared with the replay tests
def signature(exc: BaseException) -> tuple[str, str]:
    """(short id, one-line summary) of an exception: its type and where in appliance/ it came from.

    The message is left out of the id (it often quotes the fuzzed bytes) but kept in the summary."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/appliance/" in f.filename] or frames[-1:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours[-3:]))
    key = f"{type(exc).__name__}|{where}"
    msg = str(exc).splitlines()[0][:160] if str(exc) else ""
    return hashlib.sha1(key.encode()).hexdigest()[:10], f"{type(exc).__name__}: {msg} at {where}"


def crasher_files(target: str) -> list[Path]:
    d = CRASHERS / target
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix != ".txt")


# ------------------------------------------------------------------ child: one target under atheris
# Imported inside atheris.instrument_imports, so their code reports coverage: the targets and every
# module a target imports lazily (an import after that block is not instrumented: its coverage is
# invisible to the fuzzer, which then runs blind). test_fuzz_short.py checks that running every
# target's seeds imports no module of appliance/ beyond what these bring in.
INSTRUMENTED = (
    "tests.fuzz.targets",
    "appliance.openvpn.server", "appliance.openvpn.config", "appliance.config.schema", "appliance.boot",
    "appliance.lan.ra",
    "appliance.tun.offload",                 # the native target: the GRO/GSO Python twins
    "appliance.openvpn.datapath", "appliance.openvpn.clientnat", "appliance.openvpn.compression",
    "appliance.openvpn.ethernet", "appliance.openvpn.mss", "appliance.openvpn.l2switch", "appliance.openvpn.p2p",
    "appliance.transport.p2p_link", "appliance.gateway.p2p_server", "appliance.openvpn.dhcprouter",
    "appliance.openvpn.profile_push",
    # fuzz33: fragment, switch-vlan and client-push.
    "appliance.openvpn.fragment", "appliance.openvpn.clientpush", "appliance.openvpn.addresspool",
    "appliance.openvpn.config.ccd",
    # The dhcp, dhcp-server and dns targets' modules (fuzz32: not named before, so those three ran
    # blind -- libFuzzer printed no `cov:` for them and kept no corpus).
    "appliance.boot.dhcp_client", "appliance.lan.dhcp_codec", "appliance.lan.dhcp_server", "appliance.lan.dns_core",
    "appliance.lan.dns_wire",
    # The management target's world (a gateway server and client) and icmpv6's pump: management.py
    # and ops.py ran uninstrumented too.
    "appliance.gateway.management", "appliance.gateway.ops", "appliance.gateway.server", "appliance.gateway.client",
    "appliance.gateway.loop", "appliance.gateway.observers", "appliance.openvpn.config.client_scripts",
    "appliance.transport.tcp", "appliance.transport.udp",
    # fuzz34: management-auth's login waiting for the management client.
    "appliance.gateway.mgmt_auth",
    # fuzz35: peer-ids, v2-keycache, wan-dhcp (dhcp_client is above), dns's local answers.
    "appliance.openvpn.peerids", "appliance.openvpn.v2keycache", "appliance.transport.sockfilter",
    "appliance.lan.dns_local",
    # fuzz36: tls-config's start-up check, wan-dhcp-loop's client (dhcp_client is above).
    "appliance.openvpn.settings", "appliance.openvpn.crl", "appliance.openvpn.tls",
    # fuzz37: port-share's relays and verdict, ifconfig-pool-persist's file.
    "appliance.gateway.portshare", "appliance.openvpn.portshare", "appliance.openvpn.poolfile",
    # wan38: the scripts' environments.
    "appliance.gateway.script_env", "appliance.gateway.updown_env", "appliance.gateway.scripts",
    "appliance.openvpn.safeenv",
    # fuzz38: the route keeper's rtnetlink hint.
    "appliance.tun.route_watch", "appliance.tun.nl_hints",
    # fuzz40: the route keeper and RouteSet, the WAN/LAN relink, the ccd reader, dh files.
    "appliance.gateway.route_keeper", "appliance.router.routes", "appliance.router.static_wan",
    "appliance.router.lan_routes", "appliance.gateway.server_files", "appliance.openvpn.dhparams",
    # fuzz42: <connection> blocks, the MSS clamp, catoi (env-filter's level).
    "appliance.openvpn.config.connection_entry", "appliance.openvpn.mss", "appliance.openvpn.catoi",
    # fuzz48: the LAN DNS forwarder's sockets, the pushed network's routes and addresses, rtnetlink.
    "appliance.lan.dns_forwarder", "appliance.gateway.tunnel", "appliance.router.links", "appliance.tun.rtnl",
    # fuzz49: client-control's profile with a management interface.
    "appliance.gateway.client_mgmt", "appliance.gateway.client_status",
)


def child(name: str, seconds: float, runs: int | None, stats_path: Path, timeout: int) -> None:
    import atheris

    # The runner's self-test (its target touches no appliance code) instruments the targets module
    # alone -- still ~40 modules of appliance/ through atheris -- not all of INSTRUMENTED: ~2 s of
    # CPU, not ~10, in the suite's test_fuzz_short. Every `make fuzz` child instruments them all.
    with atheris.instrument_imports(include=["appliance"]):
        for m in (INSTRUMENTED[:1] if name == "selftest" else INSTRUMENTED):
            importlib.import_module(m)
    from tests.fuzz.targets import TARGETS
    t = TARGETS[name]
    one = t.make()
    out = CRASHERS / name
    st = {"target": name, "execs": 0, "exceptions": 0, "signatures": {}}
    if stats_path.exists():      # a restart after a hang: keep counting
        st = json.loads(stats_path.read_text())
    next_flush = [time.monotonic() + 1.0]
    stored_len: dict[str, int] = {}

    def flush() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st))
        tmp.replace(stats_path)

    def record(e: BaseException, data: bytes) -> None:
        sid, summary = signature(e)
        st["exceptions"] += 1
        sig = st["signatures"].setdefault(sid, {"summary": summary, "count": 0})
        sig["count"] += 1
        if sig["count"] == 1:
            print(f"\n=== finding in {name}: {summary}", file=sys.stderr)
            traceback.print_exception(e, file=sys.stderr)
        # Keep the shortest input per signature (libFuzzer does not minimise what it never sees).
        if len(data) < stored_len.get(sid, 1 << 30):
            out.mkdir(parents=True, exist_ok=True)
            for old in out.glob(f"{sid}-*"):
                old.unlink()
            base = out / f"{sid}-{hashlib.sha1(data).hexdigest()[:12]}"
            base.write_bytes(data)
            base.with_suffix(".txt").write_text(
                summary + "\n\n" + "".join(traceback.format_exception(e)))
            stored_len[sid] = len(data)
        flush()

    def test_one_input(data: bytes) -> None:
        st["execs"] += 1
        try:
            one(data)
        except Exception as e:          # anything the contract did not allow
            record(e, data)
        now = time.monotonic()
        if now > next_flush[0]:
            next_flush[0] = now + 1.0
            flush()

    corpus = WORK / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    hangs = WORK / "hangs" / name
    hangs.mkdir(parents=True, exist_ok=True)
    seeds = [str(_seeds_without_hangs(name))] if (SEEDS / name).is_dir() else []
    args = [sys.argv[0], str(corpus), *seeds, f"-timeout={timeout}", f"-max_len={t.max_len}",
            "-print_final_stats=1", f"-artifact_prefix={hangs}/", "-rss_limit_mb=4096"]
    args.append(f"-runs={runs}" if runs is not None else f"-max_total_time={max(1, int(seconds))}")
    dictionary = HERE / "dicts" / f"{name}.dict"
    if dictionary.exists():
        args.append(f"-dict={dictionary}")
    flush()
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


def _seeds_without_hangs(name: str) -> Path:
    """The target's seed directory, minus seeds that hung in an earlier child of this run: libFuzzer
    runs every seed first, so a restarted child would otherwise hang on the same seed again and
    again, and the rest of the target's time would find nothing else."""
    hung = {f.read_bytes() for f in (WORK / "hung" / name).glob("*")} if (WORK / "hung" / name).is_dir() else set()
    if not hung:
        return SEEDS / name
    out = WORK / "seeds-filtered" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for f in (SEEDS / name).iterdir():
        if f.is_file() and f.read_bytes() not in hung:
            shutil.copyfile(f, out / f.name)
    return out


# ------------------------------------------------------------------ parent
def _run_target(name: str, seconds: float, runs: int | None, timeout: int, log) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    stats_path = WORK / f"stats-{name}.json"
    stats_path.unlink(missing_ok=True)
    hangs_dir = WORK / "hangs" / name
    hung_dir = WORK / "hung" / name               # inputs that hung in this run (see _seeds_without_hangs)
    shutil.rmtree(hung_dir, ignore_errors=True)
    hang_count = 0
    crashes: list[str] = []
    start = time.monotonic()
    end = start + seconds
    inputs = 0
    while True:
        before = json.loads(stats_path.read_text())["execs"] if stats_path.exists() else 0
        left = end - time.monotonic()
        cmd = [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--stats", str(stats_path),
               "--timeout", str(timeout)]
        cmd += ["--runs", str(runs)] if runs is not None else ["--seconds", str(max(1, int(left)))]
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace")
        log.write(p.stdout)
        log.flush()
        # libFuzzer's own count when the child finished normally; the child's last flush otherwise.
        units = re.findall(r"stat::number_of_executed_units: (\d+)", p.stdout)
        after = json.loads(stats_path.read_text())["execs"] if stats_path.exists() else before
        inputs += max(int(units[-1]), after - before) if units else after - before
        timed_out = "libFuzzer: timeout" in p.stdout
        if timed_out:
            hang_count += 1
            for f in hangs_dir.glob("timeout-*"):
                hung_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, hung_dir / f.name)
                dest = CRASHERS / name / f"hang-{f.name[len('timeout-'):][:12]}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                f.replace(dest)
                m = re.search(r"=== Timeout.*?(?=SUMMARY|\Z)", p.stdout, re.S)
                dest.with_suffix(".txt").write_text(f"hang: more than {timeout} s on this input\n\n"
                                                    + (m.group(0) if m else ""))
        elif p.returncode != 0:
            # The child died some other way (a signal, out of memory): keep libFuzzer's artifact.
            tail = "\n".join(p.stdout.splitlines()[-15:])
            crashes.append(tail)
            for f in hangs_dir.glob("*-*"):
                dest = CRASHERS / name / f"crash-{f.name.split('-', 1)[1][:12]}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                f.replace(dest)
                dest.with_suffix(".txt").write_text(f"child process died (exit {p.returncode}):\n{tail}\n")
        if runs is not None or not (timed_out or p.returncode != 0) or end - time.monotonic() < 2 \
                or len(crashes) >= 3:
            break
    elapsed = time.monotonic() - start
    st = json.loads(stats_path.read_text()) if stats_path.exists() else {"execs": 0, "exceptions": 0,
                                                                         "signatures": {}}
    return {"target": name, "inputs": inputs,
            "seconds": round(elapsed, 1), "exec_per_s": round(inputs / elapsed) if elapsed else 0,
            "uncaught_exceptions": st["exceptions"], "distinct": len(st["signatures"]),
            "signatures": st["signatures"], "hangs": hang_count, "child_crashes": len(crashes)}


def main() -> int:
    ap = argparse.ArgumentParser(description="coverage-guided fuzzing of every peer-bytes decoder")
    ap.add_argument("--duration", type=float, default=600,
                    help="total seconds, split across targets by their weight")
    ap.add_argument("--runs", type=int, default=None, help="inputs per target instead of a duration")
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds on one input before it is a hang")
    ap.add_argument("--log", type=Path, default=WORK / "fuzz.log", help="libFuzzer output of every child")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.seconds, a.runs, a.stats, a.timeout)
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.fuzz.targets import TARGETS
    names = [n for n in a.targets.split(",") if n] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    if not all((SEEDS / n).is_dir() for n in names if n != "selftest"):
        from tests.fuzz.make_corpus import generate
        generate()
    weights = {n: TARGETS[n].weight for n in names}
    shares = {n: a.duration * w / sum(weights.values()) for n, w in weights.items()}
    WORK.mkdir(parents=True, exist_ok=True)
    a.log.parent.mkdir(parents=True, exist_ok=True)
    how = f"{a.runs} inputs each" if a.runs is not None else \
        f"{a.duration:.0f} s in all, split by weight ({min(shares.values()):.0f}-{max(shares.values()):.0f} s each)"
    print(f"fuzzing {len(names)} targets, one at a time, {how}; libFuzzer output in {a.log}", flush=True)
    results = []
    t0 = time.time()
    with open(a.log, "a") as log:
        log.write(f"\n===== run started {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
        for n in names:
            r = _run_target(n, shares[n], a.runs, a.timeout, log)
            results.append(r)
            print(f"{n:20s} {r['inputs']:>11,d} inputs {r['seconds']:>7.0f} s {r['exec_per_s']:>8,d}/s  "
                  f"uncaught exceptions {r['uncaught_exceptions']} ({r['distinct']} distinct)  "
                  f"hangs {r['hangs']}" + (f"  child crashes {r['child_crashes']}" if r["child_crashes"] else ""),
                  flush=True)
            for sid, s in r["signatures"].items():
                print(f"    {sid}: x{s['count']} {s['summary']}", flush=True)
    total = sum(r["inputs"] for r in results)
    secs = sum(r["seconds"] for r in results)
    exc = sum(r["uncaught_exceptions"] for r in results)
    distinct = sum(r["distinct"] for r in results)
    hangs = sum(r["hangs"] for r in results)
    crashes = sum(r["child_crashes"] for r in results)
    print(f"{'TOTAL':20s} {total:>11,d} inputs {secs:>7.0f} s {round(total / secs) if secs else 0:>8,d}/s  "
          f"uncaught exceptions {exc} ({distinct} distinct)  hangs {hangs}"
          + (f"  child crashes {crashes}" if crashes else ""), flush=True)
    summary = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), "duration_s": round(secs, 1),
               "total_inputs": total, "uncaught_exceptions": exc, "distinct": distinct, "hangs": hangs,
               "child_crashes": crashes, "targets": results}
    (WORK / "last-run.json").write_text(json.dumps(summary, indent=1))
    return 0 if exc == 0 and hangs == 0 and crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
