"""An authenticated client against the other clients of our server (helper atk48): what it may
send inside its own tunnel, and the control messages it may legitimately send, at any rate.

The victim is a second client of the same server; after each attack it must keep its tunnel, its
address and its peer-id, and its packets must still reach the server's TUN and come back. What the
attacker sends ends at most its own session, counted (the periodic "dropped packets" line) and
logged at a limited rate. Other attacks of this kind and their tests: README, "Forty-third session
(helper atk48)"."""
from __future__ import annotations

import logging
import re

import pytest

from appliance.gateway.server_files import ccd_loader
from appliance.openvpn.server import LINK_LOCAL_SOURCE, NON_HOST_SOURCE
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_iroute_ipv6 import ipv6_udp
from tests.gateway.test_tunnel import SERVER_TUN, _up, ping_both_ways

SERVER6 = "fd00:77::1"
V6 = "server-ipv6 fd00:77::/64\n"


def _world(pki, tmp_path, ccd: dict[str, str] | None = None, extra: str = "", proto: str = "udp") -> World:
    """Our server (tun, topology subnet unless `extra` says otherwise, client-to-client, IPv4 and
    IPv6) with the attacker (client0) and the victim (client1) up; `ccd`: client-config-dir files
    by client name."""
    w = World()
    w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp", extra=V6 + extra))
    if ccd:
        d = tmp_path / "ccd"
        d.mkdir()
        for name, text in ccd.items():
            (d / name).write_text(text)
        w.server.st.ccd = ccd_loader(str(d))
    cproto = "tcp-client" if proto == "tcp" else "udp"
    w.add_client(client_conf(pki, "client0", proto=cproto))
    w.add_client(client_conf(pki, "client1", proto=cproto))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    return w


def _identity(w: World, i: int) -> tuple:
    """What client i is to the server and to itself: its address, IPv6 address and peer-id."""
    pushed = w.client_nets[i].pushed
    return pushed.ifconfig, pushed.ifconfig_ipv6, w.clients[i].conn.session.peer_id


def _victim_unharmed(w: World, before: tuple, tag: bytes) -> None:
    assert _up(w, 1), "the victim lost its tunnel"
    assert _identity(w, 1) == before, "the victim's address or peer-id changed"
    ping_both_ways(w, 1, tag=tag, tries=3)


# Sources no host sends from, each inside the attacker's iroute (0.0.0.0/0, ::/0: a site's gateway).
NON_HOST4 = ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255"]
NON_HOST6 = ["::", "::1", "ff02::1", "ff05::1:3", "::ffff:127.0.0.1", "::ffff:198.19.0.1"]


def test_a_wide_iroute_passes_no_source_that_no_host_sends_from(pki, tmp_path):
    """client0 routes everything (`iroute 0.0.0.0 0.0.0.0`, `iroute-ipv6 ::/0`, the server's
    `route` to match): as 2.6, which checks a source against its routes alone, a packet from
    client0 with a multicast, broadcast, loopback or unspecified source went into the server's
    TUN and, with client-to-client, to client1 -- a packet from "its own host" or from a group.
    Now none reaches either; the same packets with a source in client0's networks still do, and
    a link-local source is the quiet drop it is for every client (not routed by a ::/0 iroute)."""
    w = _world(pki, tmp_path, {"client0": "iroute 0.0.0.0 0.0.0.0\niroute-ipv6 ::/0\n"},
               extra="route 0.0.0.0 0.0.0.0\nroute-ipv6 ::/0\n")
    before = _identity(w, 1)
    victim4, victim6 = w.client_addr(1), w.client_nets[1].pushed.ifconfig_ipv6[0].split("/")[0]
    att, stun, vtun = w.client_nets[0].tun, w.server_net.tun, w.client_nets[1].tun
    sent = []
    for src in NON_HOST4:
        for dst in (SERVER_TUN, victim4):
            sent.append(ipv4_udp(src, dst, b"nonhost-" + src.encode() + dst.encode()))
    for src in NON_HOST6 + ["fe80::1"]:
        for dst in (SERVER6, victim6):
            sent.append(ipv6_udp(src, dst, b"nonhost-" + src.encode() + dst.encode()))
    # The attacker's own networks, after them: proof that the iroutes work and that everything
    # before had its chance.
    fine = [ipv4_udp("198.51.100.7", SERVER_TUN, b"site4"), ipv4_udp("198.51.100.7", victim4, b"site4c2c"),
            ipv6_udp("2001:db8::7", SERVER6, b"site6"), ipv6_udp("2001:db8::7", victim6, b"site6c2c")]
    for p in sent + fine:
        att.inject(p)
    assert w.run(lambda: all(p in stun.written or p in vtun.written for p in fine), max_time=10), \
        "the attacker's own networks did not pass"
    passed = [p for p in sent if p in stun.written or p in vtun.written]
    assert passed == [], f"{len(passed)} packets from non-host sources passed"
    counters = w.server.d.drop_counters()
    assert counters.get(NON_HOST_SOURCE) == 2 * (len(NON_HOST4) + len(NON_HOST6)), counters
    assert counters.get(LINK_LOCAL_SOURCE) == 2, counters
    _victim_unharmed(w, before, b"after-nonhost")


@pytest.mark.parametrize("proto,topology", [("udp", "subnet"), ("tcp", "net30")])
def test_a_wide_iroute_does_not_take_the_servers_own_address_from_the_other_clients(pki, tmp_path, proto, topology):
    """client0 routes everything (as above), client-to-client on: client1's packets to the
    server's own tunnel addresses (198.19.0.1, fd00:77::1 -- its DNS, the gateway it pings) were
    looked up as any destination, found in client0's iroute, and sent to client0, which could
    answer as the server (2.6 never routes its own address to a client: multi.c's lookup answers
    none for it; Debian's server answered the pings in tests/interop/test_authenticated_client_vs_openvpn.py's setup). They reach the server's TUN and not client0; client1's packets for
    client0's networks still go to client0."""
    w = _world(pki, tmp_path, {"client0": "iroute 0.0.0.0 0.0.0.0\niroute-ipv6 ::/0\n"},
               extra=f"route 0.0.0.0 0.0.0.0\nroute-ipv6 ::/0\ntopology {topology}\n", proto=proto)
    before = _identity(w, 1)
    own6 = w.client_nets[1].pushed.ifconfig_ipv6[0].split("/")[0]
    vtun, stun, atun = w.client_nets[1].tun, w.server_net.tun, w.client_nets[0].tun
    to_server = [ipv4_udp(w.client_addr(1), SERVER_TUN, b"dns?"), ipv6_udp(own6, SERVER6, b"dns6?")]
    to_site = [ipv4_udp(w.client_addr(1), "198.51.100.7", b"site"), ipv6_udp(own6, "2001:db8::7", b"site6")]
    for p in to_server + to_site:
        vtun.inject(p)
    assert w.run(lambda: all(p in atun.written for p in to_site), max_time=10), "client0's networks lost"
    assert w.run(lambda: all(p in stun.written for p in to_server), max_time=10), \
        "the victim's packets for the server did not reach the server"
    assert not any(p in atun.written for p in to_server), "the server's own address was routed to client0"
    # review49a: nor may client0 send AS the server from inside its iroute (_check_sources), the
    # one way left to hold that address since a pushed one refuses the client; its site's pass.
    victim4 = w.client_addr(1)
    forged = [ipv4_udp(SERVER_TUN, victim4, b"as-server"), ipv6_udp(SERVER6, own6, b"as-server6")]
    fine = [ipv4_udp("198.51.100.7", victim4, b"site-c2c"), ipv6_udp("2001:db8::7", own6, b"site6-c2c")]
    for p in forged + fine:
        atun.inject(p)
    assert w.run(lambda: all(p in vtun.written for p in fine), max_time=10), "client0's own networks did not pass"
    assert not any(p in vtun.written or p in stun.written for p in forged), "client0 sent as the server"
    _victim_unharmed(w, before, b"after-server-address")


@pytest.mark.parametrize("how", ["ccd4", "ccd6", "connect4"])
def test_a_client_pushed_the_servers_own_address_is_refused_with_the_reason(pki, tmp_path, monkeypatch, caplog, how):
    """review48a, reneg49: a ccd's or client-connect's `ifconfig-push 198.19.0.1 255.255.255.0`
    (the server's own tunnel address, an operator's slip) made client0 that address's holder:
    with client-to-client, client1's packets to the server went to client0, and client0's from
    198.19.0.1 passed as its own. review48a stopped both on the data path (as 2.6.14, which
    admits the client and answers the address itself); the client then sat connected on a
    tunnel that carried nothing of its own, where `ifconfig-ipv6-push` of the server's IPv6
    address refused it. Now both refuse the client's connect and the log says why; client1,
    on the same server, keeps its tunnel to the server's address."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    line = {"ccd4": f"ifconfig-push {SERVER_TUN} 255.255.255.0", "connect4": f"ifconfig-push {SERVER_TUN} 255.255.255.0",
            "ccd6": f"ifconfig-ipv6-push {SERVER6}/64"}[how]
    extra = V6
    if how == "connect4":
        monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
        cc = tmp_path / "cc.sh"
        cc.write_text(f'#!/bin/sh\n[ "$common_name" = client0 ] && echo "{line}" > "$1"\nexit 0\n')
        cc.chmod(0o755)
        extra += f"script-security 2\nclient-connect {cc}\n"
    w = World()
    w.add_server(server_conf(pki, "udp", extra=extra))
    if how != "connect4":
        d = tmp_path / "ccd"
        d.mkdir()
        (d / "client0").write_text(line + "\n")
        w.server.st.ccd = ccd_loader(str(d))
    caplog.set_level(logging.INFO)
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    said = "is the server's own address"
    assert w.run(lambda: _up(w, 1) and said in caplog.text, max_time=30), caplog.text[-3000:]
    assert not _up(w, 0), "client0 was admitted with the server's own address"
    assert w.client_addr(1) != SERVER_TUN
    ping_both_ways(w, 1, tag=b"after-refusal", tries=3)
    # review49a: the client told AUTH_FAILED (as 2.6 tells a refused connect), its end logged with
    # the reason (a client-connect's was "internal error"), and no address of the pool kept for it
    # (client-connect's path had leased one before the verdict).
    assert w.run(lambda: re.search(r"client0/\S+: disconnected: .*is the server's own address", caplog.text)
                 and "authentication failed" in caplog.text, max_time=10), caplog.text[-3000:]
    assert "disconnected: internal error" not in caplog.text
    assert w.run(lambda: set(w.server.st.pool.leased) == {w.client_addr(1)}, max_time=10), w.server.st.pool.leased


def test_a_lan_numbered_from_240_0_0_0_passes_as_with_2_6(pki, tmp_path):
    """review48a: 240.0.0.0/4 is unicast to Linux (since 2.6.25) and some sites number LANs from
    it; a router client's `iroute 240.1.0.0 255.255.0.0` carried them through 2.6's server and
    must through ours (atk48's non-host check first dropped all of 240/4, not only
    255.255.255.255): to the server's TUN and, with client-to-client, to the other client."""
    w = _world(pki, tmp_path, {"client0": "iroute 240.1.0.0 255.255.0.0\n"}, extra="route 240.1.0.0 255.255.0.0\n")
    stun, vtun = w.server_net.tun, w.client_nets[1].tun
    lan = [ipv4_udp("240.1.0.5", SERVER_TUN, b"lan240"), ipv4_udp("240.1.0.5", w.client_addr(1), b"lan240c2c")]
    for p in lan:
        w.client_nets[0].tun.inject(p)
    assert w.run(lambda: lan[0] in stun.written and lan[1] in vtun.written, max_time=10)
    assert NON_HOST_SOURCE not in w.server.d.drop_counters()


def test_without_an_iroute_non_host_sources_are_refused_as_before(pki, tmp_path):
    """The same sources from a client with no iroute: refused (as every source it does not own
    was), now under their own name; its own address still passes."""
    w = _world(pki, tmp_path)
    before = _identity(w, 1)
    att, stun = w.client_nets[0].tun, w.server_net.tun
    sent = [ipv4_udp(s, SERVER_TUN, b"plain-" + s.encode()) for s in NON_HOST4]
    sent += [ipv6_udp(s, SERVER6, b"plain-" + s.encode()) for s in NON_HOST6]
    own = ipv4_udp(w.client_addr(0), SERVER_TUN, b"own")
    for p in sent + [own]:
        att.inject(p)
    assert w.run(lambda: own in stun.written, max_time=10)
    assert not any(p in stun.written for p in sent)
    assert w.server.d.drop_counters().get(NON_HOST_SOURCE) == len(sent)
    _victim_unharmed(w, before, b"after-plain")


# Control messages a client may send (2.6's check_incoming_control_channel reads EXIT and
# CR_RESPONSE from a client; INFO and ACC are server-to-client or custom: unknown to a server).
FLOODS = {
    "INFO": "INFO,hello",
    "ACC": "ACC,custom,payload",
    "unknown": "NO_SUCH_MESSAGE",
    "large INFO": "INFO," + "A" * 1400,
    "CR_RESPONSE": "CR_RESPONSE,Zm9v",
    "PUSH_REQUEST": "PUSH_REQUEST",
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_a_control_message_flood_costs_the_victim_nothing_and_the_log_little(pki, tmp_path, caplog, kind):
    """client0 sends one control message 400 times, as fast as its control channel takes them
    (each acknowledged: a legitimate sender's traffic). The server reads them all (the attacker
    keeps its tunnel: nothing here is a reason to end it), writes at most a few lines about them
    -- an unknown message is a warning at most 10 times a session, then counted; CR_RESPONSE
    goes to the management client at most 8 times a key; PUSH_REQUEST is answered once -- and
    the victim keeps its tunnel, address and peer-id."""
    caplog.set_level(logging.INFO, logger="vpn-appliance")
    w = _world(pki, tmp_path)
    before = _identity(w, 1)
    att = w.clients[0]
    text = FLOODS[kind]
    lines0, t0 = len(caplog.records), w.clock()
    for i in range(400):
        c = att.conn
        assert c.session.send_control_text(text, w.clock()), "the attacker's control channel closed"
        att._send(c, c.session.take_outgoing())
        if i % 25 == 24:
            w.run_for(0.2)
    w.run_for(3)
    assert _up(w, 0), "the attacker's own session ended (nothing it sent is a reason to)"
    _victim_unharmed(w, before, kind.encode())
    lines = [r.getMessage() for r in caplog.records[lines0:]]
    about = [m for m in lines if "client0" in m]
    drops = [m for m in lines if "dropped packets" in m]
    assert len(about) <= 11, f"{len(about)} lines about one client's flood:\n" + "\n".join(about[:20])
    # (the periodic line of all drops, at most one per DROP_LOG_EVERY = 5 s)
    assert len(drops) <= 1 + (w.clock() - t0) / 5, drops
