"""`user nobody` / `group nogroup` enforced on a host, against Debian's OpenVPN 2.6 in namespaces.

What a user checks: after start-up the process runs as nobody:nogroup (/proc/PID/status: every
uid and gid, the supplementary groups, and the capability sets of every thread), and still does
its whole job. Our client: connects, passes traffic, applies the pushed DNS to the namespace's
resolv.conf (or to systemd-resolved, through the root helper), writes its status file, follows
a server restart that pushes a different route (the old route goes, the new one comes: OpenVPN's
own client cannot do that as nobody), and at SIGTERM removes its routes and TUN and restores
resolv.conf byte for byte. Our server: OpenVPN's client connects, gets its ccd address, the
status file is written, the client-connect script runs (as nobody, without capabilities, as
OpenVPN runs it).
"""
from __future__ import annotations

import os
import pwd
import grp
import re
import shlex
import shutil
import signal
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, TUN_SERVER_IP, Lab, readable_python_argv
from lab.tools import OUR_BIN

CAP_NET_ADMIN, CAP_IPC_LOCK = 1 << 12, 1 << 14
NOBODY, NOGROUP = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
USER = "user nobody\ngroup nogroup\n"
ORIGINAL = b"# the namespace's own resolver\nnameserver 198.18.0.53\noptions edns0"
PUSH_DNS = 'push "dhcp-option DNS 198.18.100.1"\npush "dhcp-option DOMAIN vpn.example"\n'
HELPERS = "script-security 2\nup /etc/openvpn/update-resolv-conf\ndown /etc/openvpn/update-resolv-conf\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("privdrop")) as lab:
        etc = Path("/etc/netns") / lab.cli.name          # `ip netns exec` mounts it on /etc/resolv.conf
        etc.mkdir(parents=True)
        # Files the dropped process opens later must be reachable by nobody (pytest's tmp is 0700).
        lab.shared = Path(tempfile.mkdtemp(prefix="vpa-privdrop-"))
        lab.shared.chmod(0o755)
        try:
            lab.resolv = etc / "resolv.conf"
            yield lab
        finally:
            shutil.rmtree(etc, ignore_errors=True)
            shutil.rmtree(lab.shared, ignore_errors=True)


def start_ours(lab, config_text: str, name: str, pattern: str):
    ns = lab.srv if "srv" in name else lab.cli
    return lab.ours(ns, config_text, name, wait=40, pattern=pattern, readable_python=True)


def proc_status(pid: int, task: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/status" if task is None else f"/proc/{pid}/task/{task}/status"
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def assert_dropped(pid: int, cap_eff: int) -> None:
    """Every thread of the process: nobody/nogroup everywhere, exactly the kept capabilities."""
    tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for t in tasks:
        st = proc_status(pid, t)
        assert st["Uid"].split() == [str(NOBODY)] * 4, (t, st["Uid"])
        assert st["Gid"].split() == [str(NOGROUP)] * 4, (t, st["Gid"])
        assert st["Groups"].split() == [str(NOGROUP)], (t, st["Groups"])
        assert int(st["CapEff"], 16) == cap_eff and int(st["CapPrm"], 16) == cap_eff, (t, st["CapEff"], st["CapPrm"])
        assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == 0, (t, st["CapInh"], st["CapAmb"])


def routes(lab) -> str:
    return lab.cli.run("ip -4 route show").stdout


def test_client_as_nobody_connects_follows_a_new_push_and_cleans_up(lab):
    lab.resolv.write_bytes(ORIGINAL)
    text = server_config(lab.pki, extra=PUSH_DNS)
    srv = lab.openvpn(lab.srv, text, "srv")
    status = lab.shared / "client-status.log"         # in a directory nobody may not write
    p = start_ours(lab, client_profile(lab.pki, extra=f"{USER}{HELPERS}status {status} 1\n"), "ours-nobody",
                   "tunnel up")
    try:
        with open(f"/proc/{p.p.pid}/cmdline", "rb") as f:
            assert b"vpn-appliance" in f.read()
        assert "privileges dropped: user nobody" in p.log()
        # CAP_NET_ADMIN kept (addresses, routes), nothing else, in every thread
        assert_dropped(p.p.pid, CAP_NET_ADMIN)
        assert lab.ping(lab.cli, BEHIND_IP, 2) == 2, p.log()[-2000:]
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 300_000) > 0
        assert "198.18.100.0/24 dev tun0" in routes(lab)
        assert p.wait_for("host DNS: /etc/resolv.conf now uses", 20), p.log()[-2000:]
        assert "nameserver 198.18.100.1" in lab.cli.run("cat /etc/resolv.conf").stdout
        assert _wait(lambda: "TUN/TAP write bytes,0\n" not in status.read_text()), status.read_text()

        # The server restarts with another route: the client, still nobody, follows it.
        srv.stop(10)
        srv = lab.openvpn(lab.srv, text.replace("route 198.18.100.0", "route 198.18.101.0"), "srv-new-route")
        assert p.wait_count("tunnel up", 2, 60), p.log()[-3000:]
        r = routes(lab)
        assert "198.18.101.0/24 dev tun0" in r and "198.18.100.0/24" not in r, r
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, p.log()[-2000:]
        assert_dropped(p.p.pid, CAP_NET_ADMIN)
    finally:
        rc = p.stop(20)
        srv.stop(10)
    assert rc == 0, p.log()[-3000:]
    assert "198.18.101.0" not in routes(lab), "the pushed route is removed at exit"
    assert lab.cli.run("ip link show tun0", check=False).returncode != 0, "the TUN device is gone"
    assert lab.resolv.read_bytes() == ORIGINAL, p.log()[-2000:]
    assert "host DNS: /etc/resolv.conf restored" in p.log()
    assert "status file" not in p.log() and status.read_text().startswith("OpenVPN STATISTICS"), p.log()[-2000:]


def test_server_as_nobody_serves_with_ccd_status_file_and_script(lab):
    d = lab.shared
    ccd = d / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("ifconfig-push 198.19.0.77 255.255.255.0\n")
    state = d / "state"                                    # the user's own directory, as an operator sets up
    state.mkdir()
    os.chown(state, NOBODY, NOGROUP)
    script = d / "connect.sh"
    script.write_text('#!/bin/sh\necho "$common_name $(id -u) $(grep CapEff /proc/self/status)" '
                      f'>> {state}/connect.log\n')
    script.chmod(0o755)
    # The status file in a directory nobody may not write (as /var/log/openvpn): kept open from
    # before the drop and written in place, as OpenVPN does. With `mlock` and `nice` too.
    status = d / "status.log"
    conf = server_config(lab.pki, extra=(f"{USER}status {status} 1\nclient-config-dir {ccd}\n"
                                         f"script-security 2\nclient-connect {script}\nmlock\nnice 5\n"))
    srv = start_ours(lab, conf, "ours-srv-nobody", "privileges dropped")
    cli = None
    try:
        assert "capabilities kept: CAP_IPC_LOCK\n" in srv.log(), srv.log()[-2000:]
        assert_dropped(srv.p.pid, CAP_IPC_LOCK)       # mlock's; nothing for the network after start-up
        st = proc_status(srv.p.pid)
        assert int(st["VmLck"].split()[0]) > 10_000, st["VmLck"]          # kB locked: the whole process
        with open(f"/proc/{srv.p.pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[16]) == 5, "nice 5"
        cli = lab.openvpn(lab.cli, client_profile(lab.pki), "ovpn-cli", wait=40)
        assert "inet 198.19.0.77/24" in lab.cli.run("ip -4 -o addr show dev tun0").stdout, "the ccd address"
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, srv.log()[-2000:]
        assert lab.ping(lab.srv, "198.19.0.77", 2) == 2
        assert _wait(lambda: status.exists() and "client1" in status.read_text()), srv.log()[-2000:]
        assert "198.19.0.77" in status.read_text()
        line = (state / "connect.log").read_text().split()
        assert line[:2] == ["client1", str(NOBODY)] and line[-1] == "0000000000000000", line
        assert_dropped(srv.p.pid, CAP_IPC_LOCK)
        assert "status file" not in srv.log(), srv.log()[-2000:]       # no write failed
        # SIGHUP as nobody: the config and keys (root's 0700 tmp) cannot be re-read; a clear
        # error, and the server runs on as it was, still dropped, its client still served.
        os.kill(srv.p.pid, signal.SIGHUP)
        assert srv.wait_for("reload: the new config is not used", 20), srv.log()[-2000:]
        assert "Permission denied" in srv.log().split("reload: the new config", 1)[1], srv.log()[-2000:]
        assert srv.p.poll() is None and lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, srv.log()[-2000:]
        assert_dropped(srv.p.pid, CAP_IPC_LOCK)
    finally:
        if cli is not None:
            cli.stop(10)
        rc = srv.stop(20)
    assert rc == 0, srv.log()[-3000:]


def _gone(pid: int) -> bool:
    """The process ended (a zombie not yet reaped by whoever adopted it counts as ended)."""
    try:
        return proc_status(pid)["State"].startswith(("Z", "X"))
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize("end", ["SIGTERM", "SIGKILL"])
def test_server_as_nobody_removes_its_management_socket_at_exit(lab, end):
    """`management PATH unix` in a root-owned directory (as /run/openvpn): bound as root, the
    socket cannot be unlinked by nobody; OpenVPN 2.6 leaves it behind. Ours is removed at exit by
    the helper kept from before the drop, even when the server is killed."""
    run = lab.shared / f"run-{end}"
    run.mkdir(mode=0o755)
    sock = run / "mgmt.sock"
    srv = start_ours(lab, server_config(lab.pki, extra=f"{USER}management {sock} unix\n"), f"ours-srv-mgmt-{end}",
                     "privileges dropped")
    try:
        assert_dropped(srv.p.pid, 0)
        assert stat.S_ISSOCK(sock.lstat().st_mode) and sock.lstat().st_uid == 0, "made as root, before the drop"
        m = re.search(r"management socket \S+: removed at exit by a helper kept as root \(pid (\d+)\)", srv.log())
        with socket.socket(socket.AF_UNIX) as c:       # still served after the drop
            c.settimeout(20)
            c.connect(str(sock))
            c.sendall(b"pid\n")
            got = b""
            while b"SUCCESS: pid=" not in got or not got.endswith(b"\n"):
                data = c.recv(4096)
                assert data, got
                got += data
        assert f"SUCCESS: pid={srv.p.pid}".encode() in got, got
        if end == "SIGKILL":
            os.kill(srv.p.pid, signal.SIGKILL)
        else:
            assert srv.stop(20) == 0, srv.log()[-3000:]
    finally:
        srv.stop(10)
    assert _wait(lambda: not os.path.lexists(sock), 10), f"{sock} left behind:\n{srv.log()[-2000:]}"
    assert m, srv.log()[-2000:]
    assert _wait(lambda: _gone(int(m.group(1))), 10), "the helper ends with the server"
    assert "not removed" not in srv.log(), srv.log()[-2000:]


def _wait(pred, within: float = 20) -> bool:
    import time
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def test_client_as_nobody_sets_dns_through_systemd_resolved(lab):
    """The real systemd-resolved on a private bus (as tests/interop/test_host_dns.py runs it).
    resolved takes a link's DNS only from root (or via polkit), not from a nobody process holding
    CAP_NET_ADMIN: our client, as nobody, goes through the resolvectl helper it started while
    root (host/resolvectl_helper.py); the link gets the pushed DNS and loses it at exit, and the
    helper ends with the client."""
    from .test_host_dns import BUS_CONF, RESOLVED_ROOT, RESOLVED_SCRIPT
    resolved, resolvectl = RESOLVED_ROOT / "lib/systemd/systemd-resolved", RESOLVED_ROOT / "usr/bin/resolvectl"
    if not (resolved.exists() and resolvectl.exists()):
        pytest.fail(f"{resolved} missing: run `make setup` (it unpacks Debian's systemd-resolved package there)")
    lab.resolv.write_bytes(ORIGINAL)
    d = lab.shared / "resolved"                  # the bus socket: reachable by nobody
    d.mkdir()
    sock = d / "bus"
    (d / "bus.conf").write_text(BUS_CONF.format(sock=sock))
    (d / "passwd").write_text(Path("/etc/passwd").read_text() + "systemd-resolve:x:0:0::/:/usr/sbin/nologin\n")
    prof = lab.write("resolved-nobody.ovpn", client_profile(lab.pki, extra=(
        f"{USER}script-security 2\nup /etc/openvpn/scripts/update-systemd-resolved\n"
        "down /etc/openvpn/scripts/update-systemd-resolved\n")))
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=PUSH_DNS), "srv-resolved")
    env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={sock}", "PATH": f"{resolvectl.parent}:{os.environ['PATH']}"}
    script = RESOLVED_SCRIPT.format(passwd=d / "passwd", conf=d / "bus.conf", sock=sock, resolved=resolved,
                                    ours=shlex.join(readable_python_argv([OUR_BIN])), profile=prof,
                                    rlog=d / "resolved.log")
    p = lab.start(lab.cli, ["unshare", "-m", "--propagation", "private", "sh", "-c", script], "resolved-nobody", env)
    try:
        assert p.wait_for("systemd-resolved link tun0 uses", 40), p.log()[-4000:]
        assert "privileges dropped: user nobody" in p.log()
        pid = int(p.log().split("client pid ", 1)[1].split()[0])
        assert_dropped(pid, CAP_NET_ADMIN)
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(c) for c in f.read().split()]
        helpers = [c for c in kids if b"resolvectl_helper" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(helpers) == 1, kids
        helper = helpers[0]
        assert proc_status(helper)["Uid"].split() == ["0"] * 4, "the helper is root"
        r = lab.cli.run(f"env DBUS_SYSTEM_BUS_ADDRESS=unix:path={sock} {resolvectl} dns tun0", check=False)
        assert "198.18.100.1" in r.stdout, r.stdout + r.stderr + p.log()[-2000:]
        assert "exit" not in p.log().split("uses", 1)[1], p.log()[-2000:]    # no resolvectl call failed
        os.kill(pid, signal.SIGTERM)
        assert p.wait_for("client exit 0", 20), p.log()[-3000:]
        assert "systemd-resolved link tun0 reverted" in p.log()
        assert not os.path.exists(f"/proc/{helper}"), "the helper ended with the client"
        calls = [ln for ln in (d / "resolved.log").read_text().splitlines()
                 if "type=method_call" in ln and "RevertLink" in ln]
        assert calls, "resolved got the revert"
    finally:
        p.stop(10)
        srv.stop(10)

