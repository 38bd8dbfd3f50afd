"""The CPU a whole iperf3 path costs per MB, and what a client's cost would have to be for a target.

Why (issue 11, upl39): on a 2-core machine every process on an upload's path -- the VPN server, the
VPN client, iperf3's two ends, ksoftirqd -- shares the same 2 CPUs, so a pair's rate is bounded by
the SUM of their CPU per MB, not by the client's alone: at most `cpus * 1e6 / total_us_per_mb` MB/s
(the "2-CPU ceiling"), and at most 1e6 / server_us_per_mb MB/s for a single-threaded server. With the
rest of the path fixed, the client cost a target rate needs is what is left of the CPU budget per
MB once the rest is paid; if even a client that costs nothing stays under the target, no work on
the client reaches it on that machine.

Softirq time: this kernel counts it by the tick (CONFIG_IRQ_TIME_ACCOUNTING not set), and a tick
that lands in softirq context is charged BOTH to /proc/stat's softirq column and to the task it
interrupted (its stime). So the softirq share is printed beside the table, inside the processes'
times, never added to them; ksoftirqd's own time is a process of the path like the others.

Pure arithmetic (tests/unit/test_path_cpu.py); lab.bench_tunnel --cpu-map measures the inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

# The processes of one iperf3 run through the tunnel, in the order printed. "VPN client" is the one
# whose cost the bound solves for.
ROLES = ("VPN server", "VPN client", "iperf3 -s", "iperf3 -c", "ksoftirqd")
CLIENT = "VPN client"


def per_mb(cpu_seconds: dict[str, float], mb: float) -> dict[str, float]:
    """CPU seconds per role over a run -> microseconds per MB (1e6 bytes) the receiver got."""
    return {k: v * 1e6 / mb for k, v in cpu_seconds.items()} if mb > 0 else {k: float("nan") for k in cpu_seconds}


def path_total(costs: dict[str, float]) -> float:
    """us per MB of every process of the path (ROLES present in `costs`)."""
    return sum(costs.get(r, 0.0) for r in ROLES)


def ceiling_mbit(total_us_per_mb: float, cpus: int = 2) -> float:
    """The rate (Mbit/s) at which a path costing `total_us_per_mb` fills `cpus` CPUs."""
    return cpus * 1e6 / total_us_per_mb * 8 if total_us_per_mb > 0 else float("inf")


def cpus_used(costs: dict[str, float], mbit: float) -> float:
    """How many CPUs the path kept busy at `mbit`: its us per MB times MB per second."""
    return path_total(costs) * mbit / 8 / 1e6


@dataclass(frozen=True)
class Bound:
    """What `target` x OpenVPN's rate asks of our client, with the rest of our path as measured."""
    goal_mbit: float            # target x the reference pair's rate
    rest_us: float              # our path without our client, us per MB
    budget_us: float            # the whole path's CPU per MB at which `cpus` CPUs carry goal_mbit
    client_needed_us: float     # budget - rest: our client's cost per MB for the goal (< 0: impossible)
    zero_client_mbit: float     # our path's 2-CPU ceiling with a client that costs nothing
    server_alone_mbit: float    # the single-threaded server's ceiling (one full CPU)

    @property
    def possible(self) -> bool:
        """Whether some client cost >= 0 reaches the goal on `cpus` CPUs and the server's one."""
        return self.client_needed_us > 0 and self.server_alone_mbit >= self.goal_mbit


def client_bound(ours: dict[str, float], ref_mbit: float, target: float = 1.5, cpus: int = 2) -> Bound:
    """Solve cpus * 1e6 / (rest + client) >= target * ref rate for the client's us per MB.

    `ours`: our pair's path costs (us per MB per role, as per_mb gives); `ref_mbit`: the reference
    pair's rate (OpenVPN's client), on a machine where the path has the `cpus` CPUs to itself."""
    goal = target * ref_mbit
    rest = path_total(ours) - ours.get(CLIENT, 0.0)
    budget = cpus * 1e6 / (goal / 8) if goal > 0 else float("inf")
    server = ours.get("VPN server", 0.0)
    return Bound(goal_mbit=goal, rest_us=rest, budget_us=budget, client_needed_us=budget - rest,
                 zero_client_mbit=ceiling_mbit(rest, cpus),
                 server_alone_mbit=1e6 / server * 8 if server > 0 else float("inf"))


def table(ref: dict[str, float], ours: dict[str, float], ref_mbit: float, ours_mbit: float,
          target: float = 1.5, cpus: int = 2) -> str:
    """The per-process CPU per MB of both pairs side by side, their 2-CPU ceilings, and the bound."""
    extra = [k for k in ("softirq (inside the above)", "other processes", "idle") if k in ref or k in ours]
    lines = [f"    {'us per MB':<28}{'OpenVPN client':>15}{'our client':>12}"]
    for r in (*ROLES, "path total", *extra):
        a = path_total(ref) if r == "path total" else ref.get(r, float("nan"))
        b = path_total(ours) if r == "path total" else ours.get(r, float("nan"))
        lines.append(f"    {r:<28}{a:>15.0f}{b:>12.0f}")
    lines.append(f"    {f'{cpus}-CPU ceiling, Mbit/s':<28}{ceiling_mbit(path_total(ref), cpus):>15.0f}"
                 f"{ceiling_mbit(path_total(ours), cpus):>12.0f}")
    lines.append(f"    {'measured, Mbit/s':<28}{ref_mbit:>15.1f}{ours_mbit:>12.1f}")
    # what the path had of the machine: below `cpus`, other work (or idle) took the rest, and the
    # "as measured" line below is no statement about this machine's limit
    lines.append(f"    {'CPUs the path used':<28}{cpus_used(ref, ref_mbit):>15.2f}{cpus_used(ours, ours_mbit):>12.2f}")
    for label, rate in (("as measured", ref_mbit), ("at its 2-CPU ceiling", ceiling_mbit(path_total(ref), cpus))):
        b = client_bound(ours, rate, target, cpus)
        lines.append(
            f"    {target}x OpenVPN's client {label} ({b.goal_mbit:.0f} Mbit/s) on {cpus} CPUs: the path may cost "
            f"{b.budget_us:.0f} us/MB; the rest of ours costs {b.rest_us:.0f}, so our client would need "
            f"{b.client_needed_us:.0f} us/MB (now {ours.get(CLIENT, float('nan')):.0f}); a zero-cost client's ceiling "
            f"{b.zero_client_mbit:.0f} Mbit/s, the server's own core {b.server_alone_mbit:.0f}"
            f" -> {'possible' if b.possible else 'NOT possible'}")
    return "\n".join(lines)
