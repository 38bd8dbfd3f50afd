"""A multi-part push (push-continuation) under a `pull-filter` that matches `push-continuation`,
Debian's OpenVPN 2.6 client, then ours, against a 2.6 server pushing ~70 routes (several
PUSH_REPLY messages).

OpenVPN 2.6 (options.c apply_push_options) filters `push-continuation` as any other option: one
removed by `ignore` makes that message the last, and as its server puts the cipher, peer-id and
ifconfig at the end of its push, the client fails on the first part and restarts, at every
attempt -- a wedge. Ours keeps `push-continuation` out of the filters (it is framing, not an
option: every option in every part is still filtered), so the same profile comes up.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

N_ROUTES = 70            # ~40 bytes each: over three of 2.6's PUSH_REPLY messages
PUSHES = "".join(f'push "route 198.19.128.{i} 255.255.255.255"\n' for i in range(1, N_ROUTES + 1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _routes(lab) -> set[int]:
    out = lab.cli.run("ip route show").stdout
    return {i for i in range(1, N_ROUTES + 1) if f"198.19.128.{i} " in out}


# A whitelist as users write it: what the tunnel needs, the routes wanted, nothing else.
WHITELIST = "".join(f'pull-filter accept "{t}"\n' for t in (
    "ifconfig", "route-gateway", "topology", "cipher", "peer-id", "protocol-flags", "key-derivation",
    "route 198.19.128.")) + 'pull-filter ignore ""\n'


def test_a_whitelist_ending_in_a_catch_all_ignore_takes_every_part_of_the_push(lab, procs):
    """2.6's client filters out `push-continuation 2` and takes the first part as the whole push:
    the cipher and address come in the last part, so it fails ("failed to negotiate cipher") and
    restarts, again at each attempt. Ours reads push-continuation as framing: up, every route."""
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=PUSHES), "srv-pc")
    procs.append(srv)
    profile = client_profile(lab.pki, "udp", extra=WHITELIST)
    theirs = lab.openvpn(lab.cli, profile, "cli-pc-openvpn", wait=0)
    procs.append(theirs)
    assert theirs.wait_for(r"Pushed option removed by filter: 'push-continuation 2'", 30), theirs.log()[-3000:]
    assert theirs.wait_for(r"failed to negotiate cipher", 30), theirs.log()[-3000:]
    assert "Initialization Sequence Completed" not in theirs.log()
    theirs.stop(8)
    ours = lab.ours(lab.cli, profile, "cli-pc-ours", wait=40)
    procs.append(ours)
    assert _routes(lab) == set(range(1, N_ROUTES + 1))
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel"
    ours.stop(8)
