"""An IPv6 network behind a client, with Debian's OpenVPN 2.6 client in a namespace and our server:
`route-ipv6` sends it into the server's TUN, the client's ccd `iroute-ipv6` to that client, and
the client's ccd `ifconfig-ipv6-push` gives it its own address. All three used to fail as unknown
directives (the server's config; the ccd file, refusing the client)."""
from __future__ import annotations

import re

from lab.configs import client_profile, server_config
from lab.netns import Lab, wait_local_addresses

BEHIND6 = "2001:db8:200::5"          # in the client's network, on its lo


def test_a_ping6_from_the_server_reaches_the_network_behind_the_client(tmp_path, procs):
    with Lab(clients=["client1"], tmp=tmp_path) as lab:
        ccd = tmp_path / "ccd"
        ccd.mkdir()
        (ccd / "client1").write_text("iroute-ipv6 2001:db8:200::/64\nifconfig-ipv6-push 2001:db8:100::50/64\n")
        cfg = server_config(lab.pki, extra=f"server-ipv6 2001:db8:100::/64\nroute-ipv6 2001:db8:200::/64\n"
                                            f"client-config-dir {ccd}\n")
        srv = lab.ours(lab.srv, cfg, f"ir6srv-{lab.tag}", pattern=r"listening on UDP")
        procs.append(srv)
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"ir6cli-{lab.tag}")
        procs.append(cli)
        lab.cli.run(f"ip -6 addr add {BEHIND6}/128 dev lo")
        wait_local_addresses(lab.cli.name, (BEHIND6,))    # before it, the first echo request is dropped
        assert re.search(r"inet6 2001:db8:100::50/64", lab.cli.run("ip -6 -o addr show dev tun0").stdout), \
            cli.log()[-1500:]
        assert "route-ipv6 2001:db8:200::/64 dev" in srv.log()
        r = lab.srv.run(f"ping -6 -n -q -c 3 -i 0.2 -W 2 {BEHIND6}", check=False, timeout=20)
        assert " 3 received" in r.stdout, r.stdout + srv.log()[-1500:] + cli.log()[-1500:]
        # And a source in nobody's network is refused (the client's kernel sends it as asked).
        lab.cli.run("ip -6 addr add 2001:db8:300::5/128 dev lo")
        wait_local_addresses(lab.cli.name, ("2001:db8:300::5",))   # else "0 received" could be the client's drop
        r = lab.cli.run("ping -6 -n -q -c 2 -i 0.2 -W 1 -I 2001:db8:300::5 2001:db8:100::1", check=False, timeout=20)
        assert " 0 received" in r.stdout, r.stdout
