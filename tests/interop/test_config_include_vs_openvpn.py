"""A split server config, as users keep one: a common file (with an inline <ca> block) and an
instance file that `cd`s to their directory and reads it with `config common.conf`. Debian's
OpenVPN 2.6 server comes up on it; ours does, and Debian's client connects to ours through it.
Before, ours refused `config` as an unknown directive."""
from __future__ import annotations

import re
from pathlib import Path

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, Lab


def test_a_split_server_config_runs_in_openvpn_and_ours(tmp_path, procs):
    with Lab(tmp=tmp_path) as lab:
        common = server_config(lab.pki, "udp").replace("port 1194\n", "")
        ca = re.search(r"^ca (\S+)$", common, re.M)
        common = common.replace(ca.group(0), f"<ca>\n{Path(ca.group(1)).read_text().strip()}\n</ca>")
        lab.write("common.conf", common)
        inst = f"cd {lab.tmp}\nconfig common.conf\nport 1194\n"
        theirs = lab.openvpn(lab.srv, inst, "inc-ovpn")        # waits for its Initialization Sequence Completed
        procs.append(theirs)
        theirs.stop()
        srv = lab.ours(lab.srv, inst, "inc-ours", pattern=r"listening on UDP")
        procs.append(srv)
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "inc-cli")
        procs.append(cli)
        assert lab.wait_ping(lab.cli, BEHIND_IP), srv.log()[-2000:] + cli.log()[-2000:]
