"""Debian's systemd units for OpenVPN 2.6 with `vpn-appliance` in place of `/usr/sbin/openvpn`:
the same ExecStart words (openvpn-server@.service: `--status FILE --status-version 2
--suppress-timestamps --config NAME.conf` in WorkingDirectory; openvpn-client@.service:
`--suppress-timestamps --nobind --config NAME.conf`), and the same `Type=notify` messages on
$NOTIFY_SOCKET as Debian's binary sends (READY=1 with its status and MAINPID before connecting,
`STATUS=Initialization Sequence Completed` once up) -- without READY=1 systemd would kill the service
at its start timeout. Each program runs the same way in turn and their messages are compared; the
server's status file (version 2, from the command line) lists the client; a SIGHUP reloads the
command line's config file (appliance/host/sdnotify.py, appliance/openvpn/config/cmdline.py)."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import OPENVPN, OUR_BIN, TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("sdunit")) as lab:
        yield lab


class Notify:
    """A $NOTIFY_SOCKET: what systemd would receive."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[str] = []

    def until(self, text: str, within: float) -> bool:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if any(text in m for m in self.got):
                return True
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return any(text in m for m in self.got)

    def meaningful(self, pid: int) -> list[str]:
        """The messages but systemd's READY=0 probe (libsystemd's way to ask "under systemd?"),
        MAINPID checked against the process and then left out of the comparison."""
        out = []
        for m in self.got:
            if m == "READY=0":
                continue
            fields = m.split("\n")
            for f in fields:
                if f.startswith("MAINPID="):
                    assert int(f.split("=", 1)[1]) == pid, (m, pid)
            out.append("\n".join(f for f in fields if not f.startswith("MAINPID=")))
        return out

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


def _unit(lab, ns, workdir, words: list[str], sock: Notify, name: str):
    """ExecStart in WorkingDirectory with NOTIFY_SOCKET set, as systemd runs it (exec: same PID)."""
    cmd = f"cd {shlex.quote(str(workdir))} && exec {' '.join(map(shlex.quote, words))}"
    return lab.start(ns, ["sh", "-c", cmd], name, env={**os.environ, "NOTIFY_SOCKET": sock.path,
                                                       "VPN_APPLIANCE_SYSLOG_SOCKET": str(workdir / "no-syslog")})


def test_debian_units_exec_lines_and_notifications_as_openvpn(lab):
    d = lab.tmp / "etc-openvpn"
    (d / "server").mkdir(parents=True)
    (d / "client").mkdir()
    (d / "server" / "lab.conf").write_text(server_config(lab.pki))
    (d / "client" / "lab.conf").write_text(client_profile(lab.pki))
    results: dict[tuple[str, str], list[str]] = {}
    procs = []
    try:
        for role in ("server", "client", "legacy"):
            for prog, binary in (("openvpn", OPENVPN), ("ours", OUR_BIN)):
                if role == "legacy":
                    # openvpn@.service: `daemon` under systemd stays in the foreground (READY=0 probe in
                    # 2.6, $NOTIFY_SOCKET here), its PID in writepid; the log to syslog as ovpn-NAME.
                    pidfile = d / f"legacy-{prog}.pid"
                    words = [binary, "--daemon", "ovpn-lab", "--status", str(d / f"legacy-{prog}.status"), "10",
                             "--cd", str(d / "server"), "--config", str(d / "server" / "lab.conf"),
                             "--writepid", str(pidfile)]
                    ns = lab.srv
                elif role == "server":
                    status = d / f"status-{prog}.log"
                    # (the unit's words; the status interval 1 s instead of its default 60, to read it soon)
                    words = [binary, "--status", str(status), "1", "--status-version", "2", "--suppress-timestamps",
                             "--config", "lab.conf"]
                    ns = lab.srv
                else:
                    words = [binary, "--suppress-timestamps", "--nobind", "--config", "lab.conf"]
                    ns = lab.cli
                    srv = lab.openvpn(lab.srv, server_config(lab.pki), f"sd-peer-{prog}")
                    procs.append(srv)
                sock = Notify(d / f"notify-{role}-{prog}")
                try:
                    p = _unit(lab, ns, d if role == "legacy" else d / role, words, sock, f"sd-{role}-{prog}")
                    procs.append(p)
                    assert sock.until("STATUS=Initialization Sequence Completed", 60), (sock.got, p.log()[-3000:])
                    results[(role, prog)] = sock.meaningful(p.p.pid)
                    if role == "client":
                        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, p.log()[-2000:]
                    elif role == "legacy":
                        assert p.alive() and int(pidfile.read_text()) == p.p.pid, (pidfile.read_text(), p.p.pid)
                    else:
                        cli = lab.openvpn(lab.cli, client_profile(lab.pki), f"sd-cli-{prog}", wait=30)
                        procs.append(cli)
                        deadline = time.monotonic() + 30
                        while time.monotonic() < deadline and "client1" not in (status.read_text()
                                                                                 if status.exists() else ""):
                            time.sleep(0.2)
                        text = status.read_text()
                        assert text.startswith("TITLE,") and "\nHEADER,CLIENT_LIST," in text, text
                        assert "\nCLIENT_LIST,client1," in text, text
                        if prog == "ours":
                            # A reload reads the command line's file again (not a file named "<command line>").
                            p.p.send_signal(signal.SIGHUP)
                            assert p.wait_for(r"reload: config .* re-read", 20), p.log()[-2000:]
                        cli.stop(5)
                    p.stop(8)
                    if role == "client":
                        srv.stop(5)
                finally:
                    sock.close()
    finally:
        for p in reversed(procs):
            p.stop(5)
    for role in ("server", "client", "legacy"):
        assert results[(role, "ours")] == results[(role, "openvpn")], (role, results)
        assert results[(role, "ours")][0] == "READY=1\nSTATUS=Pre-connection initialization successful"
