"""`mtu-disc no|maybe|yes` on our client against Debian's OpenVPN 2.6 server, in namespaces.

What the server side sees: each value's tunnel works; `yes` and `maybe` send the outer datagrams
with DF, `no` without (tcpdump on the server's veth), as 2.6 sets IP_MTU_DISCOVER. Over a path
narrower than the datagram (a route with MTU 1300 to the server), `yes` refuses a big tunnel
packet (EMSGSIZE: dropped and counted in the drop line, as 2.6 logs "write UDPv4: Message too
long" and drops it) while small ones still pass and the client stays up; `no` lets the kernel
fragment it and the big ping is answered.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, SRV_IP, TUN_SERVER_IP, Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("mtudisc")) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "srv")
        yield lab


def _outer_flags(lab) -> str:
    """tcpdump's `flags [..]` of our client's next few datagrams to the server, on the server's veth."""
    dump = lab.start(lab.srv, ["tcpdump", "-l", "-n", "-v", "-i", f"va{lab.tag}", "-c", "3",
                               f"udp and src host {CLI_IP} and dst port 1194"], "dump")
    try:
        assert dump.wait_for("listening on", 20), dump.log()
        lab.ping(lab.cli, TUN_SERVER_IP, count=3, interval=0.2)
        assert dump.wait_count("proto UDP", 3, 15), dump.log()
        return dump.log()
    finally:
        dump.stop(3)


@pytest.mark.parametrize("word,df", [("no", False), ("maybe", True), ("yes", True)])
def test_each_value_tunnels_and_sets_df_as_openvpn_does(lab, word, df):
    ours = lab.ours(lab.cli, client_profile(lab.pki, extra=f"mtu-disc {word}\n"), f"ours-{word}")
    try:
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP), ours.log()[-2000:]
        flags = _outer_flags(lab)
        assert ("flags [DF]" in flags) is df and ("flags [none]" in flags) is not df, flags
    finally:
        ours.stop_promptly(5)


def test_over_a_narrow_path_yes_drops_the_big_packet_and_counts_it_no_fragments_it(lab):
    lab.cli.run(f"ip route add {SRV_IP}/32 dev vb{lab.tag} mtu 1300")
    try:
        yes = lab.ours(lab.cli, client_profile(lab.pki, extra="mtu-disc yes\n"), "ours-narrow-yes")
        try:
            assert lab.wait_ping(lab.cli, TUN_SERVER_IP), yes.log()[-2000:]
            assert lab.ping(lab.cli, TUN_SERVER_IP, count=2, timeout=15) >= 1
            # 1350 + 28 inside fits tun-mtu 1500; outside, with our headers, it is over 1300
            lab.cli.run(f"ping -n -q -c 2 -i 0.2 -W 1 -M do -s 1350 {TUN_SERVER_IP}", check=False, timeout=15)
            assert yes.wait_for(r"dropped packets: .*send EMSGSIZE=\d", 15), yes.log()[-2000:]
            assert yes.alive() and lab.ping(lab.cli, TUN_SERVER_IP, count=2, timeout=15) >= 1, yes.log()[-2000:]
        finally:
            yes.stop_promptly(5)
        no = lab.ours(lab.cli, client_profile(lab.pki, extra="mtu-disc no\n"), "ours-narrow-no")
        try:
            assert lab.wait_ping(lab.cli, TUN_SERVER_IP), no.log()[-2000:]
            big = lab.cli.run(f"ping -n -q -c 3 -i 0.2 -W 2 -M do -s 1350 {TUN_SERVER_IP}", check=False, timeout=20)
            assert " 0 received" not in big.stdout, big.stdout + no.log()[-2000:]
        finally:
            no.stop_promptly(5)
    finally:
        lab.cli.run(f"ip route del {SRV_IP}/32 dev vb{lab.tag}", check=False)
