"""OpenVPN 2.6 directives that were unknown here, proven against Debian's OpenVPN 2.6 in namespaces
(config/d_seldom.py): `redirect-private` gives the same routes as 2.6's client gives (the server's
host route kept on the old default route, no redirect), and `max-packet-size` on both ends (ours
300: its control datagrams measured once at 288 bytes at most, 1238 without it; the
server's 2048) still brings the tunnel up, with traffic through it.

The rest of these directives are notes or refusals, proven by the unit tests; what 2.6 does with
`capath` (a missing CRL only warns, a revoking one refuses) was checked by hand and is refused here."""
from __future__ import annotations

import os
import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, TUN_SERVER_IP, Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab29")) as lab:
        yield lab


def _routes(lab) -> tuple[int, str, bool]:
    """How many host routes to the server the client has, the device the server's packets leave by,
    and whether a default-route half points into tun0. (2.6 writes its host route `via` the old
    default gateway, ours along the path the kernel took before the tunnel -- on-link here, where
    the server is that gateway: the same way out.)"""
    out = lab.cli.run("ip -4 route show").stdout
    host = sum(1 for line in out.splitlines() if line.startswith(f"{SRV_IP} "))
    dev = re.search(r" dev (\S+)", lab.cli.run(f"ip -4 route get {SRV_IP}").stdout).group(1)
    return host, dev, "0.0.0.0/1 dev tun0" in out or "128.0.0.0/1 dev tun0" in out


def test_redirect_private_routes_as_openvpn_and_max_packet_size_both_ends(lab):
    lab.cli.run("ip route replace default via 198.18.0.1")
    started = []
    try:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, extra="max-packet-size 2048\n"), "srv29")
        started.append(srv)
        theirs = lab.openvpn(lab.cli, client_profile(lab.pki, extra="redirect-private\n"), "ovpncli29", wait=30)
        started.append(theirs)
        theirs_now = _routes(lab)
        theirs.stop(5)
        assert theirs_now[0] == 1 and theirs_now[1] != "tun0" and not theirs_now[2], \
            lab.cli.run("ip -4 route show").stdout
        assert _routes(lab)[0] == 0, "OpenVPN's client left its routes behind"

        ours = lab.ours(lab.cli, client_profile(lab.pki, extra="redirect-private\nmax-packet-size 300\n"),
                        "ours29", wait=30)
        started.append(ours)
        assert _routes(lab) == theirs_now, lab.cli.run("ip -4 route show").stdout
        assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 200_000) > 0
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 200_000, reverse=True) > 0
        assert "redirect-private: server" in ours.log()
        ours.stop(8)
        assert _routes(lab)[0] == 0, "our client left its host route behind"
    finally:
        for p in reversed(started):
            p.stop(5)
        lab.cli.run("ip route del default", check=False)


def _route_up_env(d) -> dict[str, str]:
    """The environment the route-up recorder saw (one NAME=VALUE a line)."""
    path = os.path.join(d, "route-up.env")
    end = time.monotonic() + 15
    while time.monotonic() < end and not os.path.exists(path):
        time.sleep(0.1)
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def test_pushed_redirect_private_routes_and_route_up_variable_as_openvpn(lab, tmp_path):
    """A server pushing `redirect-private` (OpenVPN 2.6 ORs it into the client's route flags):
    the server's host route on the old default route, no redirect, and `redirect_gateway=1` in
    route-up's environment (init.c do_route: route.c's redirect ran), for both clients."""
    lab.cli.run("ip route replace default via 198.18.0.1")
    d = tmp_path / "rp"
    d.mkdir()
    os.chmod(d, 0o777)
    rec = d / "rec.sh"
    rec.write_text(f"#!/bin/sh\nenv > {d}/route-up.env\n")
    rec.chmod(0o755)
    extra = f"script-security 2\nroute-up {rec}\n"
    started = []
    try:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, extra='push "redirect-private"\n'), "srv29p")
        started.append(srv)
        theirs = lab.openvpn(lab.cli, client_profile(lab.pki, extra=extra), "ovpncli29p", wait=30)
        started.append(theirs)
        theirs_routes, theirs_env = _routes(lab), _route_up_env(d)
        theirs.stop(5)
        os.unlink(d / "route-up.env")
        assert theirs_routes[0] == 1 and theirs_routes[1] != "tun0" and not theirs_routes[2], theirs_routes
        assert theirs_env.get("redirect_gateway") == "1", theirs_env

        ours = lab.ours(lab.cli, client_profile(lab.pki, extra=extra), "ours29p", wait=30)
        started.append(ours)
        assert _routes(lab) == theirs_routes, lab.cli.run("ip -4 route show").stdout
        assert _route_up_env(d).get("redirect_gateway") == "1"
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
        assert "redirect-private: server" in ours.log()
        ours.stop(8)
        assert _routes(lab)[0] == 0, "our client left its host route behind"
    finally:
        for p in reversed(started):
            p.stop(5)
        lab.cli.run("ip route del default", check=False)


def _skip_transcript(lab, start, sock: str) -> tuple[list[str], bool]:
    """Connect to `sock`, answer three >REMOTE questions with SKIP 0, SKIP 7, SKIP 2147483647;
    the lines seen (>REMOTE, >FATAL, replies) and whether the process then ended."""
    import socket as sk
    proc = start()
    # The path appears at bind(), connections are taken from listen() on (both programs): on a
    # loaded machine a connect in between is refused, so retry until the deadline.
    end = time.monotonic() + 20
    s = sk.socket(sk.AF_UNIX)
    while True:
        try:
            s.connect(sock)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    s.settimeout(0.3)
    seen: list[str] = []

    def read(until: str) -> None:
        buf, stop = "", time.monotonic() + 10
        while time.monotonic() < stop and until not in buf:
            try:
                data = s.recv(4096)
            except sk.timeout:
                continue
            if not data:
                break
            buf += data.decode()
        seen.extend(line for line in buf.splitlines() if line.startswith((">REMOTE", ">FATAL", "SUCCESS", "ERROR")))

    try:
        read(">REMOTE:")
        for n, until in (("0", ">REMOTE:"), ("7", ">REMOTE:"), ("2147483647", ">FATAL:")):
            s.sendall(f"remote SKIP {n}\n".encode())
            read(until)
        return seen, proc.exit_within(10) is not None
    finally:
        s.close()
        proc.stop(5)


def test_management_remote_skip_counts_as_openvpn(lab, tmp_path):
    """`remote SKIP N` to management-query-remote (N modulo the list; N < 1 moves one; the
    second time past the end: >FATAL and exit): our client's transcript is Debian's client's."""
    remotes = [(SRV_IP, 1194, "udp"), ("198.18.0.9", 1195, "udp")]
    out = {}
    for who in ("theirs", "ours"):
        sock = str(tmp_path / f"{who}.sock")
        text = client_profile(lab.pki, remotes=remotes,
                              extra=f"management {sock} unix\nmanagement-query-remote\n")
        start = (lambda t=text: lab.openvpn(lab.cli, t, "ovpnskip29", wait=0)) if who == "theirs" else \
            (lambda t=text: lab.ours(lab.cli, t, "oursskip29", wait=0))
        out[who] = _skip_transcript(lab, start, sock)
    theirs, ours = out["theirs"], out["ours"]
    assert theirs[0][-1] == ">FATAL:No usable connection profiles are present" and theirs[1], theirs
    assert ours == theirs
