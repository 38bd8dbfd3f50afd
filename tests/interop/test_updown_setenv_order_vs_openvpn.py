"""The client's variables from `setenv`, `setenv-safe` and the push, against Debian's OpenVPN 2.6,
in namespaces: Debian's server pushes dhcp-options and setenv-safe lines interleaved (a name twice,
one the profile sets too); Debian's client and ours, each with a profile holding plain `setenv`
lines whose names have `-` and `.`, an `up` script and management-up-down, must show the same
names and values to the script and the same >UPDOWN:UP lines in the same order.

2.6 (env_set.c setenv_str, options.c): every variable goes into one list, newest first, set as
the config and then the push are read -- a name set again is deleted and added anew, so it moves
to the front; setenv's name keeps only letters, digits and `_` (CC_NAME), as setenv-safe's does.
Ours listed the push's setenv-safe variables all before its foreign options, a pushed name over
the profile's kept the profile's place, and `setenv my-var.x` set `my-var.x`.
"""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

from tests.interop.test_ops_vs_openvpn import Mgmt

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

PUSHES = ('push "dhcp-option DNS 198.18.5.5"\npush "setenv-safe A 1"\npush "dhcp-option DOMAIN example.org"\n'
          'push "setenv-safe KEEP theirs"\npush "setenv-safe A 2"\npush "dhcp-option DOMAIN-SEARCH b.example"\n')
PROFILE = "setenv-safe KEEP mine\nsetenv-safe OWN o\nsetenv my-var.x v1\nsetenv Plain v2\n"


def _ours_or_theirs(name: str) -> bool:
    return name.startswith(("OPENVPN_", "foreign_option_")) or name in ("myvarx", "my-var.x", "Plain")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("senvord37")) as lab:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=PUSHES), "senvord37-srv")
        yield lab
        srv.stop_promptly(8)


def _run(lab: Lab, client: str) -> tuple[list[str], dict[str, str]]:
    out = lab.tmp / f"senvord37-{client}.env"
    up = lab.write(f"senvord37-up-{client}.sh", f"#!/bin/sh\n{{ env; echo END; }} > {out}.tmp && mv {out}.tmp {out}\n")
    up.chmod(0o755)
    sock = lab.tmp / f"senvord37-{client}.sock"
    prof = client_profile(lab.pki, "udp", extra=PROFILE + f"script-security 2\nup {up}\nmanagement {sock} unix\n"
                          "management-hold\nmanagement-up-down\n")
    run = lab.openvpn if client == "openvpn" else lab.ours
    cli = run(lab.cli, prof, f"senvord37-cli-{client}", wait=0)
    m = Mgmt(str(sock), cli)
    try:
        m.lines(0.3)
        m.cmd("hold release")
        end = time.monotonic() + 60
        while time.monotonic() < end and ">UPDOWN:ENV,END" not in m.notes:
            m.lines(0.2)
        end = time.monotonic() + 20
        while time.monotonic() < end and not out.exists():
            time.sleep(0.1)
        assert out.exists(), cli.log()[-3000:]
        lines: list[str] = []
        inside = False
        for n in m.notes:
            if n == ">UPDOWN:UP":
                inside = True
            elif n == ">UPDOWN:ENV,END":
                break
            elif inside and n.startswith(">UPDOWN:ENV,") and _ours_or_theirs(n[12:].split("=", 1)[0]):
                lines.append(n[12:])
        env = dict(x.split("=", 1) for x in out.read_text().splitlines() if "=" in x)
        return lines, {k: v for k, v in env.items() if _ours_or_theirs(k)}
    finally:
        m.close()
        cli.stop_promptly(8)


def test_the_variables_and_their_updown_order_are_openvpns(lab):
    t_lines, t_env = _run(lab, "openvpn")
    o_lines, o_env = _run(lab, "ours")
    assert t_env.get("myvarx") == "v1" and t_env.get("OPENVPN_KEEP") == "theirs", t_env
    assert o_env == t_env, f"\nOpenVPN: {t_env}\nours:    {o_env}"
    assert t_lines, t_lines
    assert o_lines == t_lines, f"\nOpenVPN: {t_lines}\nours:    {o_lines}"
