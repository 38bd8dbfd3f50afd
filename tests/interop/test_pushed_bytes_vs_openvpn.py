"""Pushed values that are not UTF-8, against Debian's OpenVPN 2.6, in namespaces: Debian's server
pushes `setenv-safe MOTD` and `dhcp-option DOMAIN` holding a 0xff and Latin-1 bytes; Debian's
client and ours, each with an `up` script writing what it got, must see the same bytes.

2.6 reads a control message as bytes and keeps every byte from 0x20 up but DEL (CC_PRINT: "ascii
non-control and UTF-8"); setenv_str puts the value into the script's environment as those bytes
(OPENVPN_MOTD, foreign_option_N). Ours decoded the message as UTF-8 with replacement, so each
such byte reached the script as U+FFFD (0xef 0xbf 0xbd).
"""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.tools import OPENVPN

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

PUSHES = (b'push "setenv-safe MOTD caf\xe9-\xff-ok"\n'
          b'push "dhcp-option DOMAIN ex\xffample.org"\n')
WANT = {b"OPENVPN_MOTD": b"caf\xe9-\xff-ok", b"foreign_option_1": b"dhcp-option DOMAIN ex\xffample.org"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("pbytes37")) as lab:
        cfg = lab.tmp / "pbytes37-srv.conf"
        cfg.write_bytes(server_config(lab.pki).encode() + PUSHES)
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(cfg)], "pbytes37-srv")
        assert srv.wait_for("Initialization Sequence Completed", Lab.START_WAIT), srv.log()[-2000:]
        yield lab
        srv.stop_promptly(8)


def _wait(path, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_bytes().endswith(b"END\n"):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("client", ["openvpn", "ours"])
def test_pushed_bytes_reach_the_up_script_as_debians_client_gets_them(lab, procs, client):
    out = lab.tmp / f"pbytes37-{client}.out"
    up = lab.write(f"pbytes37-up-{client}.sh", "#!/bin/sh\n"
                   f"{{ printf 'OPENVPN_MOTD=%s\\n' \"$OPENVPN_MOTD\"; "
                   f"printf 'foreign_option_1=%s\\n' \"$foreign_option_1\"; echo END; }} > {out}\n")
    up.chmod(0o755)
    prof = client_profile(lab.pki, "udp", extra=f"script-security 2\nup {up}\n")
    run = lab.openvpn if client == "openvpn" else lab.ours
    cli = run(lab.cli, prof, f"pbytes37-cli-{client}", wait=0)
    procs.append(cli)
    assert _wait(out, 60), cli.log()[-3000:]
    got = dict(line.split(b"=", 1) for line in out.read_bytes().splitlines()[:-1])
    assert got == WANT, (got, cli.log()[-2000:])
