"""The peer info a client profile adds (`setenv IV_GUI_VER`, `setenv IV_SSO`, and with
push-peer-info the setenv UV_* variables, IV_PLAT_VER and IV_SSL), as Debian's OpenVPN 2.6 server
hands it to its client-connect command: OpenVPN's client and ours with the same profile must
deliver the same variables (the server makes blanks `_`; IV_SSL and IV_PLAT_VER by presence: each names its own library and
kernel). Before, ours sent none of them."""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
PROFILE = ('setenv IV_GUI_VER "myapp 2.1"\nsetenv IV_SSO openurl,webauth\nsetenv UV_TEAM red\nsetenv OTHER x\n'
           "push-peer-info\n")
SHOWN = ("IV_GUI_VER", "IV_SSO", "UV_TEAM", "OTHER")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("pinfo")) as lab:
        yield lab


def test_profile_peer_info_reaches_openvpns_server_as_from_openvpns_client(lab, procs):
    out = lab.tmp / "cc"
    script = lab.write("cc.sh", f"#!/bin/sh\nenv > {out}.tmp.$$ && mv {out}.tmp.$$ {out}.$common_name.$$\nexit 0\n")
    script.chmod(0o755)
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"script-security 2\nclient-connect {script}\nduplicate-cn\n")), "pi-srv"))
    seen = {}
    for kind in ("openvpn", "ours"):
        start = lab.ours if kind == "ours" else lab.openvpn
        cli = start(lab.cli, client_profile(lab.pki, "udp", extra=PROFILE), f"pi-{kind}", wait=0)
        procs.append(cli)
        assert cli.wait_for(UP[kind], 30), cli.log()[-3000:]
        end = time.monotonic() + 10
        while not list(lab.tmp.glob("cc.client1.*")) and time.monotonic() < end:
            time.sleep(0.1)
        files = list(lab.tmp.glob("cc.client1.*"))
        assert len(files) == 1, files
        seen[kind] = dict(x.split("=", 1) for x in files[0].read_text().splitlines() if "=" in x)
        files[0].unlink()
        cli.stop(8)
    theirs, ours = seen["openvpn"], seen["ours"]
    assert theirs["IV_GUI_VER"] == "myapp_2.1" and theirs["UV_TEAM"] == "red" and "OTHER" not in theirs
    assert {k: ours.get(k) for k in SHOWN} == {k: theirs.get(k) for k in SHOWN}
    assert "IV_SSL" in theirs and "IV_SSL" in ours and "IV_PLAT_VER" in theirs and "IV_PLAT_VER" in ours
