"""The layer-2 server (dev tap) on the real server pump, against our client on in-memory ports:
frames switched by MAC between the client and the TAP device, learn-address run for MACs as
OpenVPN 2.6 runs it (add MAC@0 CN before the MAC's frames pass, delete when the client leaves),
and the status routing table listing the client's MACs. (Our client carries the frames as its
TUN's packets: it reads nothing in them; Debian's tap clients: tests/interop.)"""
from __future__ import annotations

import stat
import struct

import pytest

from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from appliance.openvpn.l2switch import SwitchDataPath
from appliance.openvpn.session import EXIT_HOLD
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

CLIENT_MAC, HOST_MAC = bytes.fromhex("020000000a01"), bytes.fromhex("020000000001")


def frame(dst: bytes, src: bytes, tag: bytes) -> bytes:
    return dst + src + struct.pack("!H", 0x88B5) + tag.ljust(46, b".")     # (a local experimental ethertype)


@pytest.fixture
def inline(monkeypatch):
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(time_limit=10.0, inline=True))


def tap_conf(pki, extra: str = "") -> str:
    return server_conf(pki, extra=extra).replace("dev tun\n", "dev tap\n").replace("topology subnet\n", "")


def test_frames_both_ways_and_learn_address_for_macs(pki, tmp_path, inline):
    log = tmp_path / "calls.log"
    la = tmp_path / "la.sh"
    la.write_text(f'#!/bin/sh\necho "$script_type $*" >> {log}\nexit 0\n')
    la.chmod(la.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(tap_conf(pki, f"script-security 2\nlearn-address {la}\n"))
    assert isinstance(gw.dp, SwitchDataPath) and gw.st.layer2
    w.add_client(client_conf(pki, "client0", extra="explicit-exit-notify 1\n"))
    assert w.run(lambda: _up(w), max_time=30)
    assert not log.exists()                          # 2.6 learns no pool address on a tap server
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    first = frame(b"\xff" * 6, CLIENT_MAC, b"first")
    ctun.inject(first)                               # waits for learn-address's yes (dropped)
    assert w.run(lambda: log.exists(), max_time=5)
    assert log.read_text().splitlines() == ["learn-address add 02:00:00:00:0a:01@0 client0"]
    assert first not in stun.written
    again = frame(b"\xff" * 6, CLIENT_MAC, b"again")
    ctun.inject(again)
    assert w.run(lambda: again in stun.written, max_time=2)
    back = frame(CLIENT_MAC, HOST_MAC, b"back")
    stray = frame(bytes.fromhex("020000000a02"), HOST_MAC, b"stray")     # unknown unicast: nowhere
    stun.inject(back)
    stun.inject(stray)
    assert w.run(lambda: back in ctun.written, max_time=2)
    w.run_for(1)
    assert stray not in ctun.written
    rows = gw.ops.status_lines(2)
    assert any(r.startswith("ROUTING_TABLE,02:00:00:00:0a:01@0,client0,") for r in rows), rows
    w.clients[0].request_stop()
    w.run_for(5 + EXIT_HOLD)                # (the server holds a client's EXIT, as 2.6)
    assert log.read_text().splitlines()[1:] == ["learn-address delete 02:00:00:00:0a:01@0"]
    assert not gw.dp.macs.owner


def test_a_client_sending_from_the_taps_own_mac_is_dropped(pki, monkeypatch):
    """The server's TAP MAC (read from the device at start) is never a client's: with
    client-to-client a client holding it would receive the other clients' frames to the server."""
    from lab.fakes import FakeServerNet
    from appliance.openvpn.l2switch import SERVER_SIDE
    monkeypatch.setattr(FakeServerNet, "mac", HOST_MAC)
    w = World()
    gw = w.add_server(tap_conf(pki, "client-to-client\n"))
    assert gw.dp.server_mac == HOST_MAC
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w), max_time=30)
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    forged = frame(b"\xff" * 6, HOST_MAC, b"forged")
    ctun.inject(forged)
    mine = frame(b"\xff" * 6, CLIENT_MAC, b"mine")
    ctun.inject(mine)
    assert w.run(lambda: mine in stun.written, max_time=2)
    assert forged not in stun.written and HOST_MAC not in gw.dp.macs.owner
    assert gw.dp.stats[SERVER_SIDE] == 1


def test_a_reload_lowering_max_routes_per_client_bounds_the_macs_from_then_on(pki):
    """As `route`s to tun clients (read at each push), the MAC quota of a tap server follows a
    reload: the switch kept the value of the start, so a lowered bound was silently not applied."""
    w = World()
    conf = tap_conf(pki)
    gw = w.add_server(conf)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w), max_time=30)
    stun, ctun = w.server_net.tun, w.client_nets[0].tun

    def macs_from(base: int) -> None:
        last = None
        for i in range(5):
            last = frame(b"\xff" * 6, bytes([2, 0, 0, 0, 0x0b, base + i]), b"mac%d" % (base + i))
            ctun.inject(last)
        assert w.run(lambda: last in stun.written, max_time=2)

    macs_from(0)
    assert len(gw.dp.macs.macs_of(gw.d.clients[0])) == 5
    gw.ops.reload_source = lambda: conf + "max-routes-per-client 2\n"
    assert gw.ops.reload()
    macs_from(5)                                      # a client holding more: down to the quota at its next
    assert len(gw.dp.macs.macs_of(gw.d.clients[0])) == 2


def test_vlan_tagging_a_ccd_vlan_pvid_tags_the_clients_frames_on_the_tap(pki, tmp_path):
    """vlan-tagging on the real server pump: client0's ccd puts it on VLAN 5, so its frames reach
    the TAP device tagged 5 and a frame tagged 5 from the TAP reaches it untagged (2.6's vlan.c);
    client1, on the server's VLAN, sends untagged."""
    from tests.gateway.test_inner_address_ownership import _ccd
    w = World()
    w.add_server(tap_conf(pki, "vlan-tagging\n"))
    _ccd(w, tmp_path, {"client0": "vlan-pvid 5\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    stun = w.server_net.tun
    w.client_nets[0].tun.inject(frame(b"\xff" * 6, CLIENT_MAC, b"zero"))
    other = bytes.fromhex("020000000a02")
    w.client_nets[1].tun.inject(frame(b"\xff" * 6, other, b"one"))
    assert w.run(lambda: frame(b"\xff" * 6, other, b"one") in stun.written, max_time=2)
    assert any(bytes(p)[12:16] == struct.pack("!HH", 0x8100, 5) and bytes(p)[6:12] == CLIENT_MAC
               for p in stun.written), stun.written
    stun.inject(b"\xff" * 6 + HOST_MAC + struct.pack("!HH", 0x8100, 5) + frame(b"", b"", b"back"))
    back = frame(b"\xff" * 6, HOST_MAC, b"back")
    assert w.run(lambda: back in w.client_nets[0].tun.written, max_time=2)
    w.run_for(0.5)
    assert back not in w.client_nets[1].tun.written          # VLAN 5's broadcast: not client1's


def test_sigusr2_logs_what_the_server_holds(pki, tmp_path, inline, caplog):
    """SIGUSR2's statistics name what grows with the clients' churn (learned MACs, learn-address's
    queues, scripts pending, the clients' transport and tunnel addresses, peer-ids and pool
    leases): a soak samples them (lab/reliability/soak_l2.py), and after every
    client left each is back to nothing."""
    import logging
    import signal
    log = tmp_path / "calls.log"
    la = tmp_path / "la.sh"
    la.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexit 0\n')
    la.chmod(la.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(tap_conf(pki, f"script-security 2\nlearn-address {la}\nclient-to-client\n"))
    w.add_client(client_conf(pki, "client0", extra="explicit-exit-notify 1\n"))
    assert w.run(lambda: _up(w), max_time=30)
    ctun = w.client_nets[0].tun
    ctun.inject(frame(b"\xff" * 6, CLIENT_MAC, b"first"))
    assert w.run(lambda: CLIENT_MAC in gw.dp.macs.owner, max_time=5)
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        gw.ops.on_signal(signal.SIGUSR2)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("statistics: held"))
    assert "clients 1, MACs 1, MAC holders 1," in line and "learn-address learned 1" in line, line
    # the dispatcher's tables a departure must empty (soak37 checks them after faults and churn)
    assert ("transport addresses 1, pending 0, peer-ids 1, heirs 0, tunnel addresses 1, pool leased 1"
            in line), line
    w.clients[0].request_stop()
    w.run_for(5 + EXIT_HOLD)                # (the server holds a client's EXIT, as 2.6)
    held = gw.held_counts()
    assert all(v == 0 for k, v in held.items() if k != "server-side MACs"), held


def test_server_nopool_gives_only_ccd_addresses(pki, tmp_path):
    """`server NET MASK nopool` on a tap server (helper.c): no pool -- a client with a ccd
    ifconfig-push gets that address (one without gets none: ours handed out NET+2.. before; the
    in-memory client cannot stand a push without ifconfig, tests/unit/test_parity32.py shows it)
    -- and route-gateway NET+1 is pushed."""
    from appliance.gateway.server_files import ccd_loader
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_text("ifconfig-push 198.19.0.77 255.255.255.0\n")
    w = World()
    conf = tap_conf(pki, f"client-config-dir {d}\n").replace("255.255.255.0\n", "255.255.255.0 nopool\n", 1)
    assert "nopool" in conf
    gw = w.add_server(conf)
    gw.st.ccd = ccd_loader(str(d))            # World reads no files; as server_files does at start
    assert gw.st.pool is None
    w.add_client(client_conf(pki, "client0").replace("dev tun\n", "dev tap\n"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    pushed = w.client_nets[0].pushed
    assert pushed.ifconfig == ("198.19.0.77", "255.255.255.0") and pushed.route_gateway == "198.19.0.1"


@pytest.mark.parametrize("nopool", [False, True])
def test_an_ifconfig_push_of_the_taps_own_address_refuses_the_client_with_or_without_a_pool(pki, tmp_path, caplog,
                                                                                             nopool):
    """review49a: a ccd `ifconfig-push` of the TAP device's own address (`server`'s NET+1)
    refuses the client, saying why, as on a tun server (clientpush._lease_static) -- with
    `nopool` too, where the server had no address to compare with and admitted it (its client
    then shared the address with the server's host). Another client is served meanwhile."""
    import logging
    from appliance.gateway.server_files import ccd_loader
    d = tmp_path / "ccd"
    d.mkdir()
    (d / "client0").write_text("ifconfig-push 198.19.0.1 255.255.255.0\n")
    (d / "client1").write_text("ifconfig-push 198.19.0.77 255.255.255.0\n")
    w = World()
    conf = tap_conf(pki, f"client-config-dir {d}\n")
    if nopool:
        conf = conf.replace("255.255.255.0\n", "255.255.255.0 nopool\n", 1)
    gw = w.add_server(conf)
    gw.st.ccd = ccd_loader(str(d))
    caplog.set_level(logging.INFO)
    for n in (0, 1):
        w.add_client(client_conf(pki, f"client{n}").replace("dev tun\n", "dev tap\n"))
    said = "ifconfig-push 198.19.0.1 for 'client0' is the server's own address"
    assert w.run(lambda: _up(w, 1) and said in caplog.text, max_time=30), caplog.text[-3000:]
    assert not _up(w, 0), "client0 was admitted with the TAP device's own address"
    assert w.client_nets[1].pushed.ifconfig == ("198.19.0.77", "255.255.255.0")


def test_a_restart_in_place_keeps_its_macs_with_no_learn_address(pki, tmp_path, inline):
    """OpenVPN 2.6: a client restarting from its address and port is its instance going on
    (CAS_RECONNECT_PENDING); the MACs it learned stay its own, so its frames after the restart
    run no learn-address (multi_learn_addr finds the instance already their owner), and at its
    end each is deleted once."""
    log = tmp_path / "calls.log"
    la = tmp_path / "la.sh"
    la.write_text(f'#!/bin/sh\necho "$script_type $*" >> {log}\nexit 0\n')
    la.chmod(la.stat().st_mode | stat.S_IXUSR)
    w = World()
    gw = w.add_server(tap_conf(pki, f"script-security 2\nlearn-address {la}\n"))
    c = w.add_client(client_conf(pki, "client0", extra="explicit-exit-notify 1\n").replace("nobind\n", "lport 40001\n"))
    assert w.run(lambda: _up(w), max_time=30)
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    ctun.inject(frame(b"\xff" * 6, CLIENT_MAC, b"first"))
    assert w.run(lambda: log.exists(), max_time=5)
    again = frame(b"\xff" * 6, CLIENT_MAC, b"again")
    ctun.inject(again)
    assert w.run(lambda: again in stun.written, max_time=2)
    rec0 = gw.d.clients[0]
    w.run_for(3)
    c.user_restart()

    def back() -> bool:
        rec = gw.d.record(rec0.addr)
        return rec is not None and rec is not rec0 and rec.session.established and _up(w)
    assert w.run(back, max_time=30), "the restart did not complete"
    w.run_for(2)
    after = frame(b"\xff" * 6, CLIENT_MAC, b"after")
    ctun.inject(after)
    assert w.run(lambda: after in stun.written, max_time=5)
    assert log.read_text().splitlines() == ["learn-address add 02:00:00:00:0a:01@0 client0"]
    c.request_stop()
    w.run_for(5 + EXIT_HOLD)                # (the server holds a client's EXIT, as 2.6)
    assert log.read_text().splitlines()[1:] == ["learn-address delete 02:00:00:00:0a:01@0"]


def test_a_tap_batch_reaches_each_client_in_its_order_with_broadcasts_among_them(pki):
    """The TAP's frames are read in batches and each client's share sealed in one call
    (SwitchDataPath.from_tun): interleaved frames to two clients, broadcasts and unknown unicast
    among them, all in one read; each client's tunnel gives it exactly its frames and the
    broadcasts, in the TAP's order, as one by one (tests/engine/test_l2switch_batch.py)."""
    w = World()
    gw = w.add_server(tap_conf(pki))
    macs = [bytes.fromhex("020000000a01"), bytes.fromhex("020000000a02")]
    for i in range(2):
        w.add_client(client_conf(pki, f"client{i}"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    stun, ctuns = w.server_net.tun, [w.client_nets[i].tun for i in range(2)]
    for i, mac in enumerate(macs):
        hello = frame(b"\xff" * 6, mac, b"hello%d" % i)
        ctuns[i].inject(hello)
        assert w.run(lambda: hello in stun.written, max_time=5)     # the MAC learned
    want: list[list[bytes]] = [[], []]
    batch = []
    for n in range(40):
        k = n % 5
        if k == 4:
            f = frame(b"\xff" * 6, HOST_MAC, b"bcast%d" % n)
            want[0].append(f)
            want[1].append(f)
        elif k == 3:
            f = frame(bytes.fromhex("020000000a09"), HOST_MAC, b"nobody%d" % n)
        else:
            i = (n * 7) % 2
            f = frame(macs[i], HOST_MAC, b"to%d-%d" % (i, n))
            want[i].append(f)
        batch.append(f)
    for i in range(2):
        ctuns[i].written.clear()
    before = gw.dp.stats["no route"]
    for f in batch:
        stun.inject(f)                                   # one read takes them all (BATCH >= 40)
    assert w.run(lambda: all(len(ctuns[i].written) >= len(want[i]) for i in range(2)), max_time=10)
    w.run_for(0.5)
    assert [ctuns[i].written for i in range(2)] == want
    assert gw.dp.stats["no route"] - before == 8
