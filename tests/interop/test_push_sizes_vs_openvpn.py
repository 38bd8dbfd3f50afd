"""Control messages near OpenVPN 2.6's 2048-byte read (keymethod.MAX_TEXT_MESSAGE), both ways.

- Our server pushing many options in non-ASCII text: Debian's client must come up (its read of
  control text is 2048 bytes; our pushes were bundled by characters, ~2,400 bytes each).
- Debian's server pushing as much: our client takes every option (its bundles are <= 1024 bytes).
- Debian's client with many `setenv UV_*` (push-peer-info): our server takes its key-method message.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

MOTD = "\u4e2d\u6587" * 35          # 70 characters, 210 bytes of UTF-8 (a line OpenVPN reads: < 256 bytes)
PUSHES = "".join(f'push "setenv-safe MOTD_{i} {MOTD}"\n' for i in range(20))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("pushlab")) as lab:
        yield lab


@pytest.fixture
def procs(lab):
    started: list = []
    yield started
    for p in reversed(started):
        p.stop_promptly(8)   # Proc.stop_promptly: no UDP server exit delay


def test_debian_client_takes_our_pushes_in_chinese(lab, procs):
    procs.append(lab.ours(lab.srv, server_config(lab.pki, extra=PUSHES), "oursrv-cjk", pattern=r"listening on UDP"))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "ovpncli-cjk")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2


def test_our_client_takes_debian_pushes_in_chinese(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=PUSHES), "ovpnsrv-cjk")
    procs.append(srv)
    try:
        cli = lab.ours(lab.cli, client_profile(lab.pki, "udp"), "ourcli-cjk")
    except AssertionError:
        raise AssertionError(srv.log()[-3000:]) from None
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    assert "refused" not in cli.log(), cli.log()[-2000:]


def test_our_server_takes_debian_client_with_much_peer_info(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki), "oursrv-uv", pattern=r"listening on UDP")
    procs.append(srv)
    uv = "push-peer-info\n" + "".join(f"setenv UV_X{i} {'v' * 200}\n" for i in range(40))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=uv), "ovpncli-uv")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
