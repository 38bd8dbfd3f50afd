"""A client-connect script's options file past 64 KiB, against Debian's OpenVPN 2.6, in
namespaces: the same server config run by OpenVPN and by us, Debian's client connecting.

OpenVPN 2.6 reads the whole file (options.c read_config_file: no size limit), so a line after
70 KB of comments applies: `ifconfig-push` gives the client its address, `disable` refuses it.
Ours read the first 64 KiB only and ignored the rest, silently: the client got a pool address,
and a client the script disabled came up (gateway/scripts.py now reads up to 1 MiB).
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.tools import OPENVPN, OUR_BIN

PADDING = b"# " + b"x" * 100 + b"\n"
LINES = {"ifconfig-push": b"ifconfig-push 198.19.0.77 255.255.255.0\n", "disable": b"disable\n"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("ccbig")) as lab:
        yield lab


def _tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else ""


@pytest.mark.parametrize("server", ["openvpn", "ours"])
@pytest.mark.parametrize("last", ["ifconfig-push", "disable"])
def test_a_line_after_64_kib_of_client_connect_output_applies(lab, procs, server, last):
    tag = f"{last}-{server}"
    options = lab.tmp / f"options-{tag}"
    options.write_bytes(PADDING * 700 + LINES[last])          # ~71 KB, then the line
    script = lab.write(f"connect-{tag}.sh", f'#!/bin/sh\ncat {options} > "$1"\n')
    script.chmod(0o755)
    cfg = lab.write(f"ccsrv-{tag}.conf", server_config(lab.pki, extra=f"script-security 2\nclient-connect {script}\n"))
    argv = [OPENVPN, "--config", str(cfg)] if server == "openvpn" else [OUR_BIN, "run", str(cfg)]
    srv = lab.start(lab.srv, argv, f"ccsrv-{tag}")
    procs.append(srv)
    assert srv.wait_for("Initialization Sequence Completed" if server == "openvpn" else r"listening on UDP", 60), \
        srv.log()[-2000:]
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"cccli-{tag}", wait=0)
    procs.append(cli)
    if last == "ifconfig-push":
        assert cli.wait_for("Initialization Sequence Completed", 60), srv.log()[-2000:]
        assert _tun_ip(lab.cli) == "198.19.0.77", srv.log()[-2000:]
    else:
        # Refused: Debian's client is told AUTH_FAILED (and, without auth-retry, stops).
        assert cli.wait_for("AUTH_FAILED", 60), (cli.log()[-2000:], srv.log()[-2000:])
        assert "Initialization Sequence Completed" not in cli.log()
