"""Per-client options in Latin-1 against Debian's OpenVPN 2.6, in namespaces: the same server
config run by OpenVPN and by us, Debian's client with an `up` script that writes what the server
pushed it (`setenv-safe MOTD` is its `OPENVPN_MOTD`) and its tunnel address.

OpenVPN 2.6 reads a client-config-dir file, a client-connect script's options file and its own
config as bytes: a Latin-1 comment changes nothing, `push "setenv-safe MOTD caf\\xe9"` reaches the
client as those bytes. Ours refused the client of such a ccd file (not UTF-8) and pushed a
script's or the config's `caf\\xe9` as `caf\\xef\\xbf\\xbd` (decoded with replacement).
"""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.tools import OPENVPN, OUR_BIN

OPTIONS = (b"# Caf\xe9 du coin: Latin-1, not UTF-8\n"
           b"ifconfig-push 198.19.0.77 255.255.255.0\n"
           b"push \"setenv-safe MOTD caf\xe9-cr\xe8me\"\n")
WANT_ADDR, WANT_MOTD = "198.19.0.77", b"caf\xe9-cr\xe8me"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("ccdbytes")) as lab:
        yield lab


def _tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else ""


@pytest.mark.parametrize("server", ["openvpn", "ours"])
@pytest.mark.parametrize("source", ["ccd", "client-connect", "config"])
def test_latin1_client_options_reach_debians_client_as_their_bytes(lab, procs, server, source):
    tag = f"{source}-{server}"
    extra_bytes = b""
    if source == "config":                  # the push in the server's own config (no ifconfig-push there)
        extra_bytes = OPTIONS.replace(b"ifconfig-push", b"# ifconfig-push")
        extra = ""
    elif source == "ccd":
        ccd = lab.tmp / f"ccd-{tag}"
        ccd.mkdir()
        (ccd / "client1").write_bytes(OPTIONS)
        extra = f"client-config-dir {ccd}\n"
    else:
        options = lab.tmp / f"options-{tag}"
        options.write_bytes(OPTIONS)
        script = lab.write(f"connect-{tag}.sh", f'#!/bin/sh\ncat {options} > "$1"\n')
        script.chmod(0o755)
        extra = f"script-security 2\nclient-connect {script}\n"
    cfg = lab.tmp / f"cbsrv-{tag}.conf"
    cfg.write_bytes(server_config(lab.pki, extra=extra).encode() + extra_bytes)
    argv = [OPENVPN, "--config", str(cfg)] if server == "openvpn" else [OUR_BIN, "run", str(cfg)]
    srv = lab.start(lab.srv, argv, f"cbsrv-{tag}")
    assert srv.wait_for("Initialization Sequence Completed" if server == "openvpn" else r"listening on UDP", 60), \
        srv.log()[-2000:]
    procs.append(srv)
    seen = lab.tmp / f"up-{tag}.out"
    up = lab.write(f"up-{tag}.sh", f"#!/bin/sh\nprintf '%s' \"$OPENVPN_MOTD\" > {seen}\n")
    up.chmod(0o755)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"script-security 2\nup {up}\n"),
                      f"cbcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), srv.log()[-2000:]
    end = time.monotonic() + 10
    while not seen.exists() and time.monotonic() < end:
        time.sleep(0.1)
    if source != "config":
        assert _tun_ip(lab.cli) == WANT_ADDR, srv.log()[-2000:]
    assert seen.read_bytes() == WANT_MOTD, cli.log()[-3000:]
