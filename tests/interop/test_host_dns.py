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
            lab.openvpn(lab.srv, server_config(lab.pki, extra=PUSH), "srv")
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
