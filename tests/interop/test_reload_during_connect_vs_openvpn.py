"""A SIGHUP whose ccd file says `disable`, while Debian's OpenVPN 2.6 client is half-way through
its connect to our server (atk41): its handshake done and verified, our client-connect script
still running, its client-config-dir file read as it was before the edit.

OpenVPN 2.6's SIGHUP restarts the server and every client connects again, through the file as
it is now: this client is refused (a 2.6 server without explicit-exit-notify tells it nothing:
its PUSH_REQUESTs go unanswered until its own hand-window ends, then it reconnects). Ours keeps clients over a reload and has its pass check their
files; the pass checked established clients only, so this one went on to be let in after the
reload that disabled it ("2 clients kept") -- a `disable` that silently did not apply."""
from __future__ import annotations

import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("hupconnect")) as lab:
        yield lab


def test_a_client_connecting_through_a_sighup_that_disables_it_is_refused(lab, procs):
    started, go, ccd = lab.tmp / "started", lab.tmp / "go", lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text('push "route 198.18.77.0 255.255.255.0"\n')
    # The script holds client1's connect until the test lets it go (at most 20 s).
    script = lab.write("hold.sh", f"#!/bin/sh\ntouch {started}\ni=0\n"
                                  f"while [ ! -e {go} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\nexit 0\n")
    script.chmod(0o755)
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=f"script-security 2\nclient-connect {script}\n"
                                                         f"client-config-dir {ccd}\n"),
                   "hupc-srv", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "hupc-cli", wait=0)
    procs.append(cli)
    assert until(started.exists, within=30), (cli.log()[-2000:], srv.log()[-2000:])
    (ccd / "client1").write_text("disable\n")
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"reload: config .* re-read", 30, after=mark), srv.log()[-2000:]
    go.touch()
    assert srv.wait_for(r"'client1' says disable: disconnected", 30, after=mark), srv.log()[mark:][-3000:]
    # Told RESTART over its control channel, as 2.6's SIGHUP tells every client with
    # explicit-exit-notify (before: nothing, and it waited ~60 s for a push reply): it reconnects
    # at once and meets the file as it is now -- AUTH_FAILED, as at 2.6's reconnect.
    assert cli.wait_for("server-pushed-connection-reset", 20), cli.log()[-2000:]
    assert cli.wait_for("AUTH_FAILED", 30), cli.log()[-2000:]
    assert "PUSH_REPLY" not in cli.log() and "Initialization Sequence Completed" not in cli.log(), cli.log()[-2000:]
    assert srv.alive() and "Traceback" not in srv.log()
