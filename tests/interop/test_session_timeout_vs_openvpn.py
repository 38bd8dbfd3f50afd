"""session-timeout against Debian's OpenVPN 2.6: our client with it ends its run N s into the
connection to Debian's server ("Session timeout, exiting", exit status 0, as OpenVPN's client);
our server with it ends a Debian client's session N s after its tunnel came up and, unlike
OpenVPN's server (which ends the instance without a word, so its client finds out only at
ping-restart), tells it: the client reconnects at once and authenticates again."""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until

UP = "Initialization Sequence Completed"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("sesst")) as lab:
        yield lab


def test_our_client_ends_its_run_at_session_timeout(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp"), "st-ovpn-srv")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", extra="session-timeout 3\n"), "st-our-cli")
    procs.append(cli)
    assert cli.exit_within(15) == 0, "our client outlived its session-timeout:\n" + cli.log()[-2000:]
    assert "Session timeout, exiting" in cli.log()


def test_our_server_ends_each_session_and_the_client_comes_back_at_once(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki, "udp", extra="session-timeout 3\n"), "st-our-srv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "st-ovpn-cli")
    procs.append(cli)
    # Well inside ping-restart (30 s): the client was told, it did not time out.
    assert until(lambda: cli.log().count(UP) >= 2, 15), cli.log()[-2000:]
    assert re.search(r"SIGUSR1\[soft,remote-exit\]", cli.log()), cli.log()[-2000:]
    assert "Session timeout (--session-timeout)" in srv.log()
