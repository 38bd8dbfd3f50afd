"""Branch coverage of appliance/ by the fuzz corpora: every input of every target run once.

    PYTHONPATH=. .venv/bin/python -m tests.fuzz.measure [--targets a,b] [--work] [--json OUT]
                                                         [--show MODULE ...]

Why: a fuzzer only explores what its targets can reach; the corpus a target has kept is the
record of what it reached. Running that corpus once under coverage.py (branch coverage) shows,
per module, which branches no target ever took -- where a new target, a mode byte or a seed is
worth more than more hours of the same. The inputs are the committed seeds (`seeds/<target>/`)
and, with --work, the growing corpus of earlier runs (`work/corpus/<target>/`). Exceptions that
escape a target are counted, not raised (the crasher replay tests own those).

--mutations N adds N deterministic mutations of each target's inputs (the short run's mutator,
seeded by the target's name; --budget S stops a target's after S seconds): what a target reaches
a little past its seeds, without atheris (fuzz48). --save-data keeps the run's coverage data and
--add-data counts earlier runs' with this one's, so a new target's gain is measured without
running every other target again (`--targets - --add-data A B` only reports).

With --pick TARGET it chooses seeds instead: every input of TARGET's work corpus (smallest
first) that takes an arc of appliance/ neither the committed seeds nor an input picked before it
took; --save copies those into seeds/TARGET/ (so a campaign leaves only inputs that add coverage).

Prints one line per module of appliance/ that any target touched: statements, branches, branches
not taken (missing + partial exits), the percentage; then the totals. --show prints a module's
missing branch arcs (line -> line) for reading against the source.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# The modules that take bytes or text from a peer (the tunnel's other end, a LAN host, a DNS or
# DHCP server) or a local management client: the ones this measurement is about.
PEER_FACING = (
    "appliance/openvpn/session.py", "appliance/openvpn/server.py", "appliance/openvpn/keymethod.py",
    "appliance/openvpn/packet.py", "appliance/openvpn/wrapping.py", "appliance/openvpn/reliable.py",
    "appliance/openvpn/control.py", "appliance/openvpn/tls.py", "appliance/openvpn/datachannel.py",
    "appliance/openvpn/datapath.py", "appliance/openvpn/framing.py", "appliance/openvpn/keyfiles.py",
    "appliance/openvpn/compression.py", "appliance/openvpn/compstub.py", "appliance/openvpn/fragment.py",
    "appliance/openvpn/mss.py", "appliance/openvpn/clientnat.py", "appliance/openvpn/l2switch.py",
    "appliance/openvpn/ethernet.py", "appliance/openvpn/p2p.py", "appliance/openvpn/clientpush.py",
    "appliance/openvpn/cookie.py", "appliance/openvpn/replay.py", "appliance/openvpn/keystate.py",
    "appliance/openvpn/pushedsignal.py", "appliance/openvpn/admission.py", "appliance/openvpn/authtoken.py",
    "appliance/openvpn/dhcprouter.py", "appliance/openvpn/iroutes.py",
    "appliance/transport/p2p_link.py", "appliance/gateway/management.py", "appliance/gateway/ops.py",
    "appliance/gateway/p2p_server.py",
    "appliance/lan/dhcp_codec.py", "appliance/lan/dhcp_server.py", "appliance/lan/dhcp_pool.py",
    "appliance/lan/dns_core.py", "appliance/lan/dns_wire.py", "appliance/lan/icmpv6.py", "appliance/lan/ra.py",
    "appliance/lan/pushed_dns.py", "appliance/boot/dhcp_client.py", "appliance/openvpn/profile_push.py",
    # fuzz35: today's peer-facing additions.
    "appliance/openvpn/v2keycache.py", "appliance/openvpn/peerids.py", "appliance/lan/dns_local.py",
    # fuzz37: port-share (the sniffing in the server's pump, the relays, the verdict), the pool file.
    "appliance/gateway/server.py", "appliance/gateway/portshare.py", "appliance/openvpn/portshare.py",
    "appliance/openvpn/poolfile.py",
    # fuzz38: the rtnetlink hint (the kernel's bytes), the rebinding check (a VPN resolver's).
    "appliance/tun/route_watch.py", "appliance/tun/nl_hints.py", "appliance/lan/dns_rebind.py",
    # fuzz48: the rest that reads a peer's, a proxy's, the kernel's or a management client's bytes.
    "appliance/openvpn/httpproxy.py", "appliance/openvpn/socksproxy.py", "appliance/openvpn/refusals.py",
    "appliance/openvpn/gentoken.py", "appliance/openvpn/occstring.py", "appliance/openvpn/catoi.py",
    "appliance/openvpn/layer2.py", "appliance/openvpn/mac.py", "appliance/openvpn/dername.py",
    "appliance/openvpn/x509track.py", "appliance/transport/tcp.py", "appliance/transport/udp.py",
    "appliance/transport/link.py", "appliance/tun/rtnl.py", "appliance/tun/addr_watch.py",
    "appliance/lan/dns_forwarder.py", "appliance/gateway/mgmt_line.py", "appliance/gateway/mgmt_auth.py",
    "appliance/gateway/mgmt_throttle.py", "appliance/gateway/refused_streams.py", "appliance/gateway/client.py",
    "appliance/gateway/tunnel.py", "appliance/gateway/crresponse.py",
)


def inputs_of(name: str, work: bool) -> list[Path]:
    from tests.fuzz.run import SEEDS, WORK
    dirs = [SEEDS / name] + ([WORK / "corpus" / name] if work else [])
    return sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all; `-`: none, only --add-data)")
    ap.add_argument("--work", action="store_true", help="also the work/ corpora of earlier runs")
    ap.add_argument("--all", action="store_true", help="every module touched, not only the peer-facing ones")
    ap.add_argument("--json", type=Path, help="write the per-module figures here")
    ap.add_argument("--mutations", type=int, default=0,
                    help="also N deterministic mutations of each target's inputs (test_fuzz_short's _mutate)")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="with --mutations: at most this many seconds of mutations per target (0: no limit)")
    ap.add_argument("--save-data", type=Path, help="keep the coverage data here (to be added to a later run)")
    ap.add_argument("--add-data", type=Path, nargs="*", default=[],
                    help="coverage data of earlier runs (--save-data) counted with this one's")
    ap.add_argument("--show", nargs="*", default=[], help="modules (path suffixes) whose missing arcs to print")
    ap.add_argument("--pick", help="a target: choose the work-corpus inputs that add arcs to its seeds'")
    ap.add_argument("--save", action="store_true", help="with --pick: copy them into seeds/TARGET/")
    a = ap.parse_args()
    if a.pick:
        return pick(a.pick, a.save)

    import coverage
    cov = coverage.Coverage(branch=True, source=[str(ROOT / "appliance")],
                            data_file=str(a.save_data) if a.save_data else None)
    cov.start()
    from tests.fuzz.targets import TARGETS
    names = ([] if a.targets == "-" else [n for n in a.targets.split(",") if n]
             or [n for n in TARGETS if n != "selftest"])
    per_target = {}
    for n in names:
        t0 = time.monotonic()
        files = inputs_of(n, a.work)
        one = TARGETS[n].make()
        escaped = 0
        seeds = [f.read_bytes() for f in files]
        for b in seeds:
            try:
                one(b)
            except Exception:  # noqa: BLE001 - counted; the replay tests own findings
                escaped += 1
        mutated = 0
        if a.mutations and seeds:
            # The short run's mutator, seeded by the target's name: the same inputs every time, so
            # a before/after comparison differs only by the code and the targets.
            import random

            from tests.fuzz.test_fuzz_short import _mutate
            rng = random.Random(f"measure/{n}")
            t1 = time.monotonic()
            while mutated < a.mutations and not (a.budget and time.monotonic() - t1 > a.budget):
                mutated += 1
                try:
                    one(_mutate(rng.choice(seeds), rng, seeds, TARGETS[n].max_len))
                except Exception:  # noqa: BLE001
                    escaped += 1
        per_target[n] = {"inputs": len(files), "mutations": mutated, "escaped": escaped,
                         "s": round(time.monotonic() - t0, 1)}
        print(f"  {n:22s} {len(files):6d} inputs + {mutated:5d} mutations {per_target[n]['s']:6.1f} s  "
              f"escaped {escaped}", file=sys.stderr, flush=True)
    cov.stop()
    if a.save_data:
        cov.save()
    for extra in a.add_data:
        old = coverage.CoverageData(basename=str(extra))
        old.read()
        cov.get_data().update(old)

    rows = []
    for path in sorted(cov.get_data().measured_files()):
        rel = str(Path(path).relative_to(ROOT))
        if not a.all and rel not in PEER_FACING:
            continue
        an = cov._analyze(path)                    # coverage's Analysis (numbers + arcs)
        nums = an.numbers
        not_taken = nums.n_missing_branches
        rows.append({"module": rel, "statements": nums.n_statements, "missing_statements": nums.n_missing,
                     "branches": nums.n_branches, "branches_not_taken": not_taken,
                     "branch_pct": round(100.0 * (nums.n_branches - not_taken) / nums.n_branches, 1)
                     if nums.n_branches else 100.0})
        if any(rel.endswith(s) for s in a.show):
            print(f"\n== {rel}: missing arcs")
            for src, dsts in sorted(an.missing_branch_arcs().items()):
                print(f"  {src} -> {', '.join(map(str, dsts))}")
    rows.sort(key=lambda r: -r["branches_not_taken"])
    print(f"\n{'module':42s} {'stmts':>6s} {'miss':>6s} {'branches':>8s} {'not taken':>9s} {'taken %':>7s}")
    for r in rows:
        print(f"{r['module']:42s} {r['statements']:6d} {r['missing_statements']:6d} {r['branches']:8d} "
              f"{r['branches_not_taken']:9d} {r['branch_pct']:7.1f}")
    tb = sum(r["branches"] for r in rows)
    tn = sum(r["branches_not_taken"] for r in rows)
    print(f"{'TOTAL':42s} {sum(r['statements'] for r in rows):6d} {sum(r['missing_statements'] for r in rows):6d} "
          f"{tb:8d} {tn:9d} {100.0 * (tb - tn) / tb if tb else 100.0:7.1f}")
    if a.json:
        a.json.write_text(json.dumps({"targets": per_target, "modules": rows}, indent=1))
    return 0


def pick(name: str, save: bool) -> int:
    """Greedy: the seeds' arcs first, then each work-corpus input in size order is kept if it adds
    an arc. One coverage context per input (coverage.py's own bookkeeping, no tracer of ours)."""
    import coverage
    from tests.fuzz.run import SEEDS, WORK
    cov = coverage.Coverage(branch=True, source=[str(ROOT / "appliance")], data_file=None)
    cov.start()
    from tests.fuzz.targets import TARGETS
    one = TARGETS[name].make()
    seeds = inputs_of(name, False)
    # Read at once: a running fuzzer replaces corpus files by shorter ones as it goes.
    work = []
    for p in (WORK / "corpus" / name).iterdir() if (WORK / "corpus" / name).is_dir() else ():
        try:
            work.append((p.name, p.read_bytes()))
        except FileNotFoundError:
            pass
    work.sort(key=lambda w: (len(w[1]), w[0]))
    cov.switch_context("seeds")
    for f in seeds:
        try:
            one(f.read_bytes())
        except Exception:  # noqa: BLE001
            pass
    for i, (_n, b) in enumerate(work):
        cov.switch_context(f"w{i}")
        try:
            one(b)
        except Exception:  # noqa: BLE001
            pass
    cov.stop()
    data = cov.get_data()
    files = list(data.measured_files())

    def arcs(ctx: str) -> set:
        data.set_query_contexts([f"^{ctx}$"])
        return {(fn, arc) for fn in files for arc in (data.arcs(fn) or ())}
    have = arcs("seeds")
    base = len(have)
    kept = []
    for i, w in enumerate(work):
        new = arcs(f"w{i}") - have
        if new:
            kept.append((w, len(new)))
            have |= new
    print(f"{name}: seeds {len(seeds)} ({base} arcs), work corpus {len(work)}: {len(kept)} add arcs "
          f"(+{len(have) - base})")
    for (fname, b), n in kept:
        print(f"  {fname}  {len(b)} bytes  +{n} arcs")
        if save:
            (SEEDS / name / fname).write_bytes(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
