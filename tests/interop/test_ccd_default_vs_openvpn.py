"""client-config-dir/DEFAULT, with Debian's OpenVPN 2.6 clients, against OpenVPN 2.6's server and
ours (the same config and files): a client without a file of its own gets DEFAULT, so a DEFAULT
saying `disable` lets only clients with their own file in. Ours ignored DEFAULT (everyone got in).
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("ccddeflab")) as lab:
        yield lab


def _start_server(lab, procs, server: str, cfg: str, name: str) -> None:
    procs.append(lab.udp_server(server, cfg, f"{name}-{len(lab.procs)}"))


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_default_file_saying_disable_admits_only_clients_with_their_own(lab, procs, server):
    ccd = lab.tmp / f"ccd-{server}"
    ccd.mkdir()
    (ccd / "DEFAULT").write_text("disable\n")
    (ccd / "client1").write_text("ifconfig-push 198.19.0.71 255.255.255.0\n")
    _start_server(lab, procs, server, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"), "defsrv")
    good = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"defgood-{len(lab.procs)}")
    procs.append(good)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
    ns = getattr(lab, "c2", None) or lab.add_client_ns(4)
    lab.c2 = ns
    bad = lab.openvpn(ns, client_profile(lab.pki, "udp", client="client2", remotes=[("198.18.5.1", 1194, "udp")]),
                      f"defbad-{len(lab.procs)}", wait=0)
    procs.append(bad)
    assert bad.wait_for("AUTH_FAILED", 30), bad.log()[-2000:]
    assert "Initialization Sequence Completed" not in bad.log(), f"{server}'s server let a client without a file in"


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_push_remove_takes_out_the_same_options(lab, procs, server):
    """ccd `push-remove` (tests/gateway/test_ccd_push_remove.py) beside OpenVPN 2.6's own reading:
    `push-remove route` takes out the server's route and route-gateway pushed before it, a later
    `push "route ..."` stays, `push-remove dhcp-option` takes the pushed DNS server -- in the
    PUSH_REPLY Debian's client logs, from either server."""
    ccd = lab.tmp / f"ccd-pr-{server}"
    ccd.mkdir()
    (ccd / "client1").write_text('push-remove route\npush "route 198.18.79.0 255.255.255.0"\npush-remove dhcp-option\n')
    _start_server(lab, procs, server,
                  server_config(lab.pki, extra=f'client-config-dir {ccd}\npush "dhcp-option DNS 198.18.0.53"\n'), "prsrv")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"prcli-{len(lab.procs)}")
    procs.append(cli)
    reply = next((ln for ln in cli.log().splitlines() if "PUSH_REPLY" in ln), "")
    opts = reply.split("PUSH_REPLY", 1)[1].split(",") if reply else []
    assert "route 198.18.79.0 255.255.255.0" in opts, (server, reply)
    assert not any(o.startswith(("route-gateway", "dhcp-option")) for o in opts), (server, reply)
    assert [o for o in opts if o.startswith("route ")] == ["route 198.18.79.0 255.255.255.0"], (server, reply)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_push_remove_ifconfig_holds_against_a_client_connect_ifconfig_push(lab, procs, server):
    """ccd `push-remove ifconfig` then a client-connect script's `ifconfig-push`: no IPv4 address
    is pushed (OpenVPN's block is a flag no later ifconfig-push clears); `push-remove ifconfig-ipv6`
    then the script's `ifconfig-ipv6-push`: that address is pushed (that line lifts the block)."""
    ccd = lab.tmp / f"ccd-blk-{server}"
    ccd.mkdir()
    (ccd / "client1").write_text("push-remove ifconfig\npush-remove ifconfig-ipv6\n")
    cc = lab.write(f"cc-blk-{server}.sh", "#!/bin/sh\nprintf 'ifconfig-push 198.19.0.72 255.255.255.0\\n"
                   "ifconfig-ipv6-push 2001:db8:100::72/64\\n' > \"$1\"\n")
    cc.chmod(0o755)
    _start_server(lab, procs, server, server_config(lab.pki, extra=(
        f"client-config-dir {ccd}\nserver-ipv6 2001:db8:100::/64\nscript-security 2\nclient-connect {cc}\n")), "blksrv")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"blkcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("PUSH_REPLY", 30), cli.log()[-2000:]
    reply = next((ln for ln in cli.log().splitlines() if "PUSH_REPLY" in ln), "")
    opts = reply.split("PUSH_REPLY", 1)[1].split(",")
    assert not any(o.startswith("ifconfig ") for o in opts), (server, reply)
    assert "ifconfig-ipv6 2001:db8:100::72/64 2001:db8:100::1" in opts, (server, reply)


@pytest.mark.parametrize("source", ["ccd", "client-connect"])
@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_push_reset_takes_the_servers_topology_and_route_gateway_too(lab, procs, server, source):
    """`push-reset` in a ccd file or a client-connect script's output: OpenVPN 2.6 empties the
    instance's push list (push.c push_reset), and `server`'s topology and route-gateway and
    keepalive's ping lines are in it (helper.c): only what it adds at the reply (ifconfig, peer-id,
    cipher, protocol-flags, tun-mtu) and the later `push` lines go out. Ours kept the topology and
    route-gateway."""
    text = 'push-reset\npush "route 198.18.79.0 255.255.255.0"\n'
    tag = f"{server}-{source}"
    if source == "ccd":
        ccd = lab.tmp / f"ccd-rst-{tag}"
        ccd.mkdir()
        (ccd / "client1").write_text(text)
        extra = f"client-config-dir {ccd}\n"
    else:
        cc = lab.write(f"cc-rst-{tag}.sh", "#!/bin/sh\ncat > \"$1\" <<'EOF'\n" + text + "EOF\n")
        cc.chmod(0o755)
        extra = f"script-security 2\nclient-connect {cc}\n"
    _start_server(lab, procs, server, server_config(lab.pki, extra=extra), "rstsrv")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"rstcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("PUSH_REPLY", 30), cli.log()[-2000:]
    reply = next((ln for ln in cli.log().splitlines() if "PUSH_REPLY" in ln), "")
    opts = reply.split("PUSH_REPLY", 1)[1].split("'")[0].split(",")
    assert not any(o.startswith(("topology", "route-gateway", "ping")) for o in opts), (server, reply)
    assert [o for o in opts if o.startswith("route ")] == ["route 198.18.79.0 255.255.255.0"], (server, reply)
    assert any(o.startswith("ifconfig 198.19.0.") for o in opts) and any(o.startswith("cipher ") for o in opts), \
        (server, reply)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_push_reset_takes_back_the_files_own_earlier_push(lab, procs, server):
    """`push-reset` empties the push list as it stands at that line (push.c push_reset), the
    ccd file's own earlier `push` included: only the later route goes out. Ours pushed both
    (review38)."""
    ccd = lab.tmp / f"ccd-rst-{server}"
    ccd.mkdir()
    (ccd / "client1").write_text('push "route 198.18.55.0 255.255.255.0"\npush-reset\npush "topology subnet"\n'
                                 'push "route 198.18.66.0 255.255.255.0"\n')
    _start_server(lab, procs, server, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"), "rstsrv")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"rstcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("PUSH_REPLY", 30), cli.log()[-2000:]
    reply = next((ln for ln in cli.log().splitlines() if "PUSH_REPLY" in ln), "")
    opts = reply.split("PUSH_REPLY", 1)[1].split(",")
    assert [o for o in opts if o.startswith("route ")] == ["route 198.18.66.0 255.255.255.0"], (server, reply)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_1_mib_ccd_file_applies_to_the_end(lab, procs, server):
    """A ccd file of ~1 MiB (ours reads one over 16 KiB in a worker, its client waiting:
    gateway/server_files.py CcdReader): its last lines apply, the address and the route, from
    either server; the client pings through the tunnel."""
    ccd = lab.tmp / f"ccd-big-{server}"
    ccd.mkdir()
    filler = b'push-remove "nothing-matches-this"\n'
    (ccd / "client1").write_bytes(filler * (1024 * 1024 // len(filler) - 4)
                                  + b'ifconfig-push 198.19.0.73 255.255.255.0\npush "route 198.18.78.0 255.255.255.0"\n')
    _start_server(lab, procs, server, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"), "bigsrv")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"bigcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 30), cli.log()[-2000:]
    reply = next((ln for ln in cli.log().splitlines() if "PUSH_REPLY" in ln), "")
    opts = reply.split("PUSH_REPLY", 1)[1].split("'")[0].split(",")
    assert "ifconfig 198.19.0.73 255.255.255.0" in opts and "route 198.18.78.0 255.255.255.0" in opts, (server, reply)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
