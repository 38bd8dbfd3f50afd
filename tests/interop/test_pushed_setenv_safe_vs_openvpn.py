"""A pushed `setenv-safe NAME VALUE` against Debian's OpenVPN 2.6, in namespaces: Debian's server
pushes several (a name with `-` and `.`, a quoted value with spaces, one name twice, a name over
55 bytes, one the profile sets too), and Debian's client and ours, each with up, route-up and down
scripts writing their OPENVPN_* variables, must see the same: OpenVPN sets OPENVPN_NAME with all
but letters, digits and `_` dropped from the name, the newest value, nothing for the long name,
the pushed value over the profile's. Ours logged the push's setenv-safe as ignored before.
"""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

PUSHES = ('push "setenv-safe MOTD hello"\npush "setenv-safe my-var.x 1"\n'
          "push \"setenv-safe Q 'a b  c'\"\npush \"setenv-safe MOTD again\"\n"
          f'push "setenv-safe {"N" * 56} v"\npush "setenv-safe KEEP theirs"\n')
WANT = {"OPENVPN_MOTD": "again", "OPENVPN_myvarx": "1", "OPENVPN_Q": "a b  c", "OPENVPN_KEEP": "theirs",
        "OPENVPN_OWN": "o"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("senv36")) as lab:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=PUSHES), "senv36-srv", wait=60)
        yield lab
        srv.stop_promptly(8)


def _read(path, timeout: float = 20) -> dict[str, str] | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().endswith("END\n"):
            lines = path.read_text().splitlines()[:-1]
            return dict(line.split("=", 1) for line in lines)
        time.sleep(0.1)
    return None


def test_both_clients_scripts_see_the_pushed_setenv_safe_variables_as_openvpn_sets_them(lab, procs):
    seen: dict[str, dict] = {}
    for client in ("openvpn", "ours"):
        out = lab.tmp / f"env-{client}"
        script = lab.write(f"dump-{client}.sh", "#!/bin/sh\n"
                           f"{{ env | grep '^OPENVPN_' | sort; echo END; }} > {out}.$script_type\n")
        script.chmod(0o755)
        prof = client_profile(lab.pki, "udp", extra=f"script-security 2\nup {script}\nroute-up {script}\n"
                              f"down {script}\nsetenv-safe KEEP mine\nsetenv-safe OWN o\n")
        if client == "openvpn":
            cli = lab.openvpn(lab.cli, prof, f"senv36-cli-{client}", wait=0)
        else:
            cli = lab.ours(lab.cli, prof, f"senv36-cli-{client}", wait=0)
        procs.append(cli)
        assert _read(lab.tmp / f"env-{client}.route-up", 60) is not None, cli.log()[-3000:]
        cli.stop(15)
        for kind in ("up", "route-up", "down"):
            seen[f"{client} {kind}"] = _read(lab.tmp / f"env-{client}.{kind}") or {}
    assert all(v == WANT for v in seen.values()), seen
