"""`ipchange` when a point-to-point peer floats, against Debian's OpenVPN 2.6, in namespaces: site
A (tls-server with `float` and an `ipchange` recorder) run by Debian and by ours, site B Debian's
tls-client; once the link is up, nftables in B's namespace rewrites B's source port 1194 to 40555
(and back for the replies), so A sees B's authenticated packets from a new address.

2.6 (socket.h link_socket_set_outgoing_addr, socket.c link_socket_connection_initiated): each
authenticated packet from an address the link may take that is not the current one moves the
link there and runs `ipchange` again, `[AF_INET]IP PORT`, with the context's environment (the
config's setenv-safe, trusted_ip/trusted_port of the new address). Ours moved the link and ran
nothing.
"""
from __future__ import annotations

import time

import pytest

from lab.netns import Lab
from tests.interop.test_p2p_vs_openvpn import A_IP, B_IP, TUN_A, _start, site_a, site_b

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

NEW_PORT = 40555
KEYS = ("script_type", "trusted_ip", "trusted_port", "untrusted_ip", "untrusted_port", "common_name",
        "OPENVPN_SITE")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("p2pfloat37")) as lab:
        yield lab


def _calls(d) -> list[tuple[list[str], dict[str, str]]]:
    out = []
    for f in sorted(p for p in d.iterdir() if not p.name.endswith(".tmp")):
        rec = f.read_text().splitlines()
        env = dict(x.split("=", 1) for x in rec if "=" in x and not x.startswith("arg="))
        out.append(([x[4:] for x in rec if x.startswith("arg=")], {k: env.get(k, "<unset>") for k in KEYS}))
    return out


def _float(lab, on: bool) -> None:
    if on:
        lab.cli.run("nft add table ip p2pfloat37", check=True)
        lab.cli.run("nft 'add chain ip p2pfloat37 out { type filter hook output priority -300; }'", check=True)
        lab.cli.run("nft 'add chain ip p2pfloat37 in { type filter hook prerouting priority -300; }'", check=True)
        lab.cli.run(f"nft add rule ip p2pfloat37 out ip daddr {A_IP} udp sport 1194 udp sport set {NEW_PORT}",
                    check=True)
        lab.cli.run(f"nft add rule ip p2pfloat37 in ip saddr {A_IP} udp dport {NEW_PORT} udp dport set 1194",
                    check=True)
    else:
        lab.cli.run("nft delete table ip p2pfloat37", check=False)


@pytest.mark.parametrize("a_kind", ["openvpn", "ours"])
def test_a_floating_peer_runs_ipchange_again_as_openvpn(lab, procs, a_kind):
    d = lab.tmp / f"ipc-{a_kind}"
    d.mkdir()
    rec = lab.write(f"ipc-{a_kind}.sh", "#!/bin/sh\n" f"f={d}/$(date +%s%N)\n"
                    '{ for a in "$@"; do echo "arg=$a"; done; env; } > $f.tmp\nmv $f.tmp $f\n')
    rec.chmod(0o755)
    a = _start(lab, a_kind, lab.srv, site_a(lab, f"float\nscript-security 2\nipchange {rec}\nsetenv-safe SITE a\n"),
               f"p2pf37-a-{a_kind}", wait=0)
    procs.append(a)
    b = _start(lab, "openvpn", lab.cli, site_b(lab), f"p2pf37-b-{a_kind}")
    procs.append(b)
    try:
        assert lab.wait_ping(lab.cli, TUN_A), (a.log()[-2000:], b.log()[-2000:])
        end = time.monotonic() + 20
        while time.monotonic() < end and not _calls(d):
            time.sleep(0.2)
        _float(lab, True)
        end = time.monotonic() + 30
        while time.monotonic() < end and len(_calls(d)) < 2:
            lab.cli.run(f"ping -c 1 -W 1 {TUN_A}", check=False)
        assert lab.wait_ping(lab.cli, TUN_A), a.log()[-2000:]      # (polled: one may be lost at the move)
        time.sleep(1.0)
        calls = _calls(d)
    finally:
        _float(lab, False)
        b.stop_promptly(8)
        a.stop_promptly(8)
    assert len(calls) == 2, (calls, a.log()[-3000:])
    assert calls[0][0] == [f"[AF_INET]{B_IP} 1194"] and calls[1][0] == [f"[AF_INET]{B_IP} {NEW_PORT}"], calls
    test_a_floating_peer_runs_ipchange_again_as_openvpn.seen[a_kind] = calls      # type: ignore[attr-defined]
    seen = test_a_floating_peer_runs_ipchange_again_as_openvpn.seen              # type: ignore[attr-defined]
    if len(seen) == 2:
        assert seen["ours"] == seen["openvpn"], f"\nOpenVPN: {seen['openvpn']}\nours:    {seen['ours']}"


test_a_floating_peer_runs_ipchange_again_as_openvpn.seen = {}     # type: ignore[attr-defined]
