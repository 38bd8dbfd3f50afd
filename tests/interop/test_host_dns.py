"""Pushed DNS applied to a host's /etc/resolv.conf, for real: our client in a namespace against
Debian's OpenVPN server pushing `dhcp-option DNS/DOMAIN/DOMAIN-SEARCH` (dnsmasq behind it, on
the pushed address, knows one name), with a profile as server
install scripts write them (`up`/`down` /etc/openvpn/update-resolv-conf).

The client namespace gets its own /etc/resolv.conf the way `ip netns exec` provides one:
/etc/netns/<ns>/resolv.conf, bind-mounted over /etc/resolv.conf for processes started in it. So
this also runs the bind-mount path (rename over it fails with EBUSY: written in place). The
host's real /etc/resolv.conf is never written: the test checks its bytes are unchanged.

systemd-resolved is not run here (CI has no systemd as PID 1, and installing it rewrites the
host's resolv.conf): tests/unit/test_host_dns.py checks the resolvectl command lines.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, Lab
from lab.tools import OUR_BIN

ORIGINAL = b"# the namespace's own resolver\nnameserver 198.18.0.53\nsearch lan.example\noptions edns0 timeout:2"
PUSH = ('push "dhcp-option DNS 198.18.100.1"\npush "dhcp-option DNS6 2001:db8:100::53"\n'
        'push "dhcp-option DOMAIN vpn.example"\npush "dhcp-option DOMAIN-SEARCH corp.example"\n')
HELPERS = ("script-security 2\nup /etc/openvpn/update-resolv-conf\ndown-pre\n"
           "down /etc/openvpn/update-resolv-conf\n")
NAME, NAME_IP = "secret.vpn.example", "198.18.100.7"     # only the VPN side's DNS knows it
APPLIED = "host DNS: /etc/resolv.conf now uses"


def _host_resolv() -> tuple[bool, bytes]:
    p = Path("/etc/resolv.conf")
    return p.is_symlink(), (p.read_bytes() if p.exists() else b"")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if Path("/etc/resolv.conf").is_symlink():
        pytest.fail("/etc/resolv.conf is a symlink on this host: `ip netns exec` would mount over its target; "
                    "this test needs a plain file to keep the host's resolver out of reach")
    host_before = _host_resolv()
    with Lab(tmp=tmp_path_factory.mktemp("hostdns")) as lab:
        etc = Path("/etc/netns") / lab.cli.name
        etc.mkdir(parents=True)
        try:
            lab.resolv = etc / "resolv.conf"
            lab.server_text = server_config(lab.pki, extra=PUSH)
            lab.server = lab.openvpn(lab.srv, lab.server_text, "srv")
            dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
            lab.start(lab.srv, [dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
                                f"--listen-address={BEHIND_IP}", f"--address=/{NAME}/{NAME_IP}", "--pid-file=",
                                "--user=root", "--log-facility=-"], "dnsmasq")
            lab.profile = lab.write("client.ovpn", client_profile(lab.pki, extra=HELPERS))
            yield lab
        finally:
            shutil.rmtree(etc, ignore_errors=True)
    assert _host_resolv() == host_before, "the host's own /etc/resolv.conf changed"


def _start(lab, name: str):
    lab.resolv.parent.mkdir(exist_ok=True)
    p = lab.start(lab.cli, [OUR_BIN, "run", str(lab.profile)], name)
    assert p.wait_for(APPLIED, 30), p.log()[-3000:]
    return p


def test_resolv_conf_while_up_and_exactly_restored_on_sigterm(lab):
    lab.resolv.write_bytes(ORIGINAL)
    p = _start(lab, "ours-term")
    seen = lab.cli.run("cat /etc/resolv.conf").stdout          # what a program in the namespace reads
    assert seen == lab.resolv.read_text()
    lines = [ln for ln in seen.splitlines() if not ln.startswith("#")]
    assert lines == ["nameserver 198.18.100.1", "nameserver 2001:db8:100::53",
                     "search vpn.example corp.example", "options edns0 timeout:2"]
    # glibc in the namespace resolves through the tunnel, with the pushed search list
    for name in (NAME, "secret"):
        r = lab.cli.run(f"getent ahostsv4 {name}", check=False, timeout=30)
        assert r.stdout.split()[:1] == [NAME_IP], (name, r.stdout, r.stderr)
    assert p.stop(20) == 0
    assert lab.resolv.read_bytes() == ORIGINAL, "restored byte for byte (no final newline either)"
    assert "host DNS: /etc/resolv.conf restored" in p.log()


def test_route_nopull_keeps_the_pushed_dns_off_the_host(lab):
    # As OpenVPN 2.6 (route-nopull refuses pushed routes and DHCP/DNS options alike): a profile
    # that keeps the server's routes out got the server's DNS servers and search domains in the
    # host's resolv.conf all the same.
    lab.resolv.write_bytes(ORIGINAL)
    prof = lab.write("client-nopull.ovpn", client_profile(lab.pki, extra=HELPERS + "route-nopull\n"))
    p = lab.start(lab.cli, [OUR_BIN, "run", str(prof)], "ours-nopull")
    assert p.wait_for("host DNS: (the server pushed no DNS|/etc/resolv.conf now uses)", 30), p.log()[-3000:]
    assert "the server pushed no DNS" in p.log(), p.log()[-3000:]
    assert lab.resolv.read_bytes() == ORIGINAL
    assert "dhcp-option DNS 198.18.100.1 (route-nopull)" in p.log()
    assert p.stop(20) == 0
    assert lab.resolv.read_bytes() == ORIGINAL


def test_route_delay_sets_the_pushed_dns_at_tunnel_up_before_the_routes(lab):
    # As OpenVPN 2.6 (init.c do_open_tun): the up script -- update-resolv-conf, reading
    # foreign_option_N -- runs at tunnel-up, before route-delay's timer; only the routes,
    # route-up and "Initialization Sequence Completed" wait (Debian's client, run in this lab:
    # up with foreign_option_1 and no route yet, the route and route-up N s later).
    lab.resolv.write_bytes(ORIGINAL)
    prof = lab.write("client-delay.ovpn", client_profile(lab.pki, extra=HELPERS + "route-delay 20\n"))
    p = lab.start(lab.cli, [OUR_BIN, "run", str(prof)], "ours-delay")
    assert p.wait_for(APPLIED, 30), p.log()[-3000:]
    assert b"nameserver 198.18.100.1" in lab.resolv.read_bytes()
    net = BEHIND_IP.rsplit(".", 1)[0] + ".0/24"         # server_config's pushed route
    assert lab.cli.run(f"ip route show {net}", check=False).stdout.strip() == "", "the routes did not wait"
    assert "route-delay 20 s over" not in p.log()
    assert p.stop(20) == 0
    assert lab.resolv.read_bytes() == ORIGINAL


def _wait_file(path: Path, pred, within: float = 30) -> bytes:
    end = time.monotonic() + within
    while True:
        data = path.read_bytes()
        if pred(data) or time.monotonic() > end:
            return data
        time.sleep(0.1)


def test_tunnel_down_restores_and_the_next_tunnel_applies_again(lab):
    """The server restarts (it tells its clients): while the tunnel is down the host has its own
    resolver back; when it comes back, the pushed DNS again."""
    lab.resolv.write_bytes(ORIGINAL)
    p = _start(lab, "ours-reconnect")
    lab.server.stop()
    assert _wait_file(lab.resolv, lambda b: b == ORIGINAL) == ORIGINAL, p.log()[-3000:]
    lab.server = lab.openvpn(lab.srv, lab.server_text, "srv-again")
    assert b"nameserver 198.18.100.1" in _wait_file(lab.resolv, lambda b: b"nameserver 198.18.100.1" in b, 60), \
        p.log()[-3000:]
    assert p.stop(20) == 0
    assert lab.resolv.read_bytes() == ORIGINAL


def test_killed_run_is_repaired_by_the_next_start(lab):
    lab.resolv.write_bytes(ORIGINAL)
    p = _start(lab, "ours-kill")
    os.killpg(p.p.pid, signal.SIGKILL)
    p.p.wait(10)
    left = lab.resolv.read_text()
    assert "nameserver 198.18.100.1" in left, "SIGKILL leaves the pushed DNS in place"
    q = _start(lab, "ours-again")
    assert "did not finish; original restored" in q.log()
    assert "nameserver 198.18.100.1" in lab.resolv.read_text()          # and applied again
    assert q.stop(20) == 0
    assert lab.resolv.read_bytes() == ORIGINAL


# ------------------------------------------------------------------ systemd-resolved, the real one
RESOLVED_ROOT = Path(__file__).resolve().parents[2] / "build" / "systemd-resolved" / "root"
BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>
"""
# In a private mount namespace (inside the client's network namespace): a tmpfs on /run (so
# /run/systemd/resolve is resolved's and ours, not the host's), a passwd naming the user resolved
# drops to, a private system bus, resolved, then our client in the background; SIGTERM to the
# client (pid printed) ends it, then resolved and the bus are stopped by their pids.
RESOLVED_SCRIPT = """
set -e
mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/resolve
mount --bind {passwd} /etc/passwd
dbus-daemon --config-file={conf} --nofork --nopidfile & D=$!
i=0; while [ ! -S {sock} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
SYSTEMD_LOG_LEVEL=debug {resolved} >{rlog} 2>&1 & R=$!
i=0; until resolvectl status >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done
{ours} run {profile} & C=$!
echo "client pid $C"
set +e
wait $C; echo "client exit $?"
kill $R; wait $R; kill $D; wait $D
"""


def test_systemd_resolved_gets_the_link_settings_and_loses_them_at_exit(lab):
    """The real systemd-resolved (Debian's binary, unpacked by `make setup`) on a private D-Bus:
    our client finds it, gives the TUN link the pushed servers and domains through resolvectl,
    names resolve through it and the tunnel, and SIGTERM reverts the link."""
    resolved, resolvectl = RESOLVED_ROOT / "lib/systemd/systemd-resolved", RESOLVED_ROOT / "usr/bin/resolvectl"
    if not (resolved.exists() and resolvectl.exists()):
        pytest.fail(f"{resolved} missing: run `make setup` (it unpacks Debian's systemd-resolved package there)")
    lab.resolv.write_bytes(ORIGINAL)
    d = lab.tmp / "resolved"
    d.mkdir()
    sock = d / "bus"
    (d / "bus.conf").write_text(BUS_CONF.format(sock=sock))
    (d / "passwd").write_text(Path("/etc/passwd").read_text() + "systemd-resolve:x:0:0::/:/usr/sbin/nologin\n")
    prof = lab.write("resolved.ovpn", client_profile(lab.pki, extra=(
        "script-security 2\nup /etc/openvpn/scripts/update-systemd-resolved\nup-restart\n"
        "down /etc/openvpn/scripts/update-systemd-resolved\ndown-pre\n")))
    env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={sock}", "PATH": f"{resolvectl.parent}:{os.environ['PATH']}"}
    script = RESOLVED_SCRIPT.format(passwd=d / "passwd", conf=d / "bus.conf", sock=sock, resolved=resolved,
                                    ours=OUR_BIN, profile=prof, rlog=d / "resolved.log")
    p = lab.start(lab.cli, ["unshare", "-m", "--propagation", "private", "sh", "-c", script], "resolved", env)
    assert p.wait_for("systemd-resolved link tun0 uses", 40), p.log()[-4000:]

    def rctl(*args: str) -> str:
        r = lab.cli.run(f"env DBUS_SYSTEM_BUS_ADDRESS=unix:path={sock} {resolvectl} {' '.join(args)}", check=False)
        return r.stdout + r.stderr
    assert "198.18.100.1" in rctl("dns", "tun0") and "2001:db8:100::53" in rctl("dns", "tun0")
    assert rctl("domain", "tun0").split(":", 1)[1].split() == ["vpn.example", "corp.example"]
    assert "-DefaultRoute" in rctl("status", "tun0"), "split tunnel: only the pushed domains go to its servers"
    out = rctl("query", "--legend=no", NAME)
    assert NAME_IP in out, out                                   # asked through the tunnel's DNS server
    assert lab.resolv.read_bytes() == ORIGINAL, "with resolved running, resolv.conf is not touched"

    pid = int(p.log().split("client pid ", 1)[1].split()[0])
    os.kill(pid, signal.SIGTERM)
    assert p.wait_for("client exit 0", 20), p.log()[-3000:]
    assert "systemd-resolved link tun0 reverted" in p.log()
    # resolved's own record of the calls it got (its debug log), in order
    calls = [ln.split("member=", 1)[1].split()[0].rstrip(",;") for ln in (d / "resolved.log").read_text().splitlines()
             if "type=method_call" in ln and "member=" in ln and ("SetLink" in ln or "RevertLink" in ln)]
    assert calls[-1] == "RevertLink" and {"SetLinkDomains", "SetLinkDefaultRoute"} <= set(calls), calls
    assert p.stop(10) is not None
