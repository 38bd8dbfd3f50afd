"""Router mode after a LAN link flap, against Debian's OpenVPN server (lab/router_lab.py): what a
LAN user sees once the appliance's LAN NIC went down and up (`ip link set LAN down; up`: a
switch's reboot, a hypervisor's NIC reconnect).

An administrative link down removes the NIC's IPv6 addresses (keep_addr_on_down 0, the kernel's
default) and every route out of it; the IPv4 address stays. Before, the LAN's static IPv6
address (`address6`) stayed gone: LAN hosts lost IPv6 through the router (the answers had no
route back) until a restart. Now router/lan_routes.py puts it back, then `[lan] routes`.

One lab and one appliance for the module (tunnel up, `address6`, `[lan] routes` in both
families); a LAN host with static addresses that doubles as the router for the networks behind
it (addresses on its lo). Three tests: one flap and IPv6 to the VPN side works again; one flap
and `[lan] routes` (IPv4 and IPv6) are back and carry traffic; a link flapping ~50 times a second
for 5 s (hostile) costs the appliance a bounded CPU time and log, and everything is back after it.
"""
from __future__ import annotations

import sys
import time

import pytest

from lab.router_lab import BEHIND, BEHIND6, LAN6_APP, LAN_APP, RouterLab, client_profile, server_config

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

LAN_HOST, LAN6_HOST = "198.18.50.10", "fd18:50::10"
BEHIND_LAN, BEHIND_LAN6 = "198.18.60.1", "fd18:60::1"      # behind the LAN host, as a LAN router
ROUTES = f'routes = ["198.18.60.0/24 via {LAN_HOST}", "fd18:60::/64 via {LAN6_HOST}"]\n'
BOUND = 30.0            # s: a flap's aftermath repaired within this (seconds in practice)
STORM_SECONDS, STORM_GAP = 5.0, 0.01        # down + up, then 10 ms: ~50 flaps a second
STORM_CPU_SHARE = 0.5   # of the storm's wall time: a spinning keeper would take all of a core
STORM_LOG_LINES = 60    # lines the appliance may log during the storm (about 10 in practice)

FLAPPER = """
import sys, time
from pyroute2 import IPRoute
n, end = 0, time.monotonic() + float(sys.argv[2])
with IPRoute() as ipr:
    idx = ipr.link_lookup(ifname=sys.argv[1])[0]
    while time.monotonic() < end and n < 1000:
        ipr.link("set", index=idx, state="down")
        ipr.link("set", index=idx, state="up")
        n += 1
        time.sleep(float(sys.argv[3]))
print(n)
"""


def until(pred, within: float, step: float = 0.3) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add {LAN_HOST}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP} && "
                    f"ip -6 addr add {LAN6_HOST}/64 dev {lab.lan_host_if} nodad && "
                    f"ip -6 route add default via {LAN6_APP} && "
                    f"ip addr add {BEHIND_LAN}/32 dev lo && ip -6 addr add {BEHIND_LAN6}/128 dev lo")
        lab.openvpn_server(server_config(lab.pki, push_dns=False))
        lab.appliance(lab.appliance_toml(client_profile(lab.pki), lan_extra=f'address6 = "{LAN6_APP}/64"\n' + ROUTES))
        yield lab


def app_proc(lab: RouterLab):
    return lab.ours_procs[0]


def ping(lab: RouterLab, dst: str, src: str | None = None) -> bool:
    six = "-6 " if ":" in dst else ""
    via = f"-I {src} " if src else ""
    return lab.lan.run(f"ping {six}{via}-c 1 -W 1 {dst}", check=False, timeout=10).returncode == 0


def lan_state(lab: RouterLab) -> str:
    return lab.app.run(f"ip -6 addr show dev {lab.lan_if} scope global; ip -4 route show 198.18.60.0/24; "
                       "ip -6 route show fd18:60::/64", check=False).stdout


def all_back(lab: RouterLab) -> bool:
    s = lan_state(lab)
    return f"{LAN6_APP}/64" in s and f"via {LAN_HOST}" in s and f"via {LAN6_HOST}" in s


def flap(lab: RouterLab) -> None:
    lab.app.run(f"ip link set {lab.lan_if} down; sleep 0.5; ip link set {lab.lan_if} up")


def test_after_a_lan_flap_the_lan_reaches_the_vpn_side_over_ipv6_again(lab):
    app = app_proc(lab)
    assert until(lambda: ping(lab, BEHIND6), BOUND), "IPv6 through the tunnel before the flap\n" + app.log()[-3000:]
    before = app.log().count("added again")
    flap(lab)
    t0 = time.monotonic()
    assert until(lambda: ping(lab, BEHIND6), BOUND, step=0.1), \
        "no IPv6 from the LAN through the tunnel after the flap\n" + lan_state(lab) + app.log()[-3000:]
    print(f"IPv6 from the LAN through the tunnel again {time.monotonic() - t0:.1f} s after the link's up")
    assert f"{LAN6_APP}/64" in lan_state(lab)
    assert until(lambda: ping(lab, BEHIND), BOUND), "IPv4 too\n" + lan_state(lab) + app.log()[-3000:]
    assert app.log().count("added again") > before and app.alive(), app.log()[-3000:]


def test_after_a_lan_flap_the_lan_routes_come_back_and_carry_traffic(lab):
    app = app_proc(lab)
    assert until(lambda: ping(lab, BEHIND, BEHIND_LAN) and ping(lab, BEHIND6, BEHIND_LAN6), BOUND), app.log()[-3000:]
    flap(lab)
    assert until(lambda: all_back(lab), BOUND), lan_state(lab) + app.log()[-3000:]
    # the networks behind the LAN router reach the VPN side again (the answers find the way back)
    assert until(lambda: ping(lab, BEHIND, BEHIND_LAN), BOUND), lan_state(lab) + app.log()[-3000:]
    assert until(lambda: ping(lab, BEHIND6, BEHIND_LAN6), BOUND), lan_state(lab) + app.log()[-3000:]


def _cpu_seconds(pid: int) -> float:
    """User + system time of the whole process (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0      # utime, stime (clock ticks: USER_HZ 100)


def test_a_lan_link_flapping_50_times_a_second_costs_bounded_cpu_and_log_and_all_comes_back(lab):
    app = app_proc(lab)
    assert until(lambda: all_back(lab), BOUND), lan_state(lab)
    script = lab.write("flapper.py", FLAPPER)
    lines0, cpu0, t0 = len(app.log().splitlines()), _cpu_seconds(app.p.pid), time.monotonic()
    r = lab.app.run(f"{sys.executable} {script} {lab.lan_if} {STORM_SECONDS} {STORM_GAP}", timeout=60)
    wall = time.monotonic() - t0
    cpu, lines = _cpu_seconds(app.p.pid) - cpu0, len(app.log().splitlines()) - lines0
    flaps = int(r.stdout.strip())
    print(f"storm: {flaps} flaps in {wall:.1f} s; the appliance used {cpu:.2f} s of CPU and logged {lines} lines")
    assert flaps >= 20, r.stdout            # a storm, not a few flaps
    assert cpu < STORM_CPU_SHARE * wall, f"{cpu:.2f} s CPU in {wall:.1f} s\n" + app.log()[-3000:]
    assert lines < STORM_LOG_LINES, app.log()[-5000:]
    # after the storm: the address and routes are back, and traffic flows again
    assert until(lambda: all_back(lab), BOUND), lan_state(lab) + app.log()[-3000:]
    assert until(lambda: ping(lab, BEHIND6) and ping(lab, BEHIND6, BEHIND_LAN6), BOUND), app.log()[-3000:]
    assert until(lambda: ping(lab, BEHIND, BEHIND_LAN), BOUND), app.log()[-3000:]
    # and the keepers are idle again: no CPU to speak of over a quiet second
    cpu1 = _cpu_seconds(app.p.pid)
    time.sleep(2)
    assert _cpu_seconds(app.p.pid) - cpu1 < 1.0
    assert app.alive(), app.log()[-3000:]
