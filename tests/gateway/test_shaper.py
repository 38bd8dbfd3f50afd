"""`shaper N` through the real client pump (fake clock): what the client writes to the link is
kept near N bytes a second, as OpenVPN 2.6's shaper keeps it, by not reading the TUN while the
link is busy -- the rest waits in the TUN (the kernel's queue on a real host), none is lost here,
and the loop sleeps meanwhile instead of waking for a TUN it must not read."""
from __future__ import annotations

import pytest

from appliance.gateway.shaper import Shaper, header_bytes
from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf

SERVER_TUN = "198.19.0.1"
BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"      # 5 lines


def _shaped_world(pki, rate: int | None, push: str = "") -> tuple[World, list]:
    w = World()
    w.add_server(server_conf(pki, extra=f'push "{push}"' if push else ""))
    c = w.add_client(client_conf(pki, extra=f"shaper {rate}" if rate else ""))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    pkts = [ipv4_udp(w.client_addr(), SERVER_TUN, bytes([i]) * 900) for i in range(30)]
    for p in pkts:
        w.client_nets[0].tun.inject(p)
    return w, pkts


def test_a_burst_leaves_at_the_shaper_rate_and_all_of_it_arrives(pki):
    w, pkts = _shaped_world(pki, 1000)
    got = lambda: [p for p in w.server_net.tun.written if p in pkts]  # noqa: E731
    start = w.clock.t
    # Five seconds of fake time in a bounded number of loop turns: a loop that woke for the
    # unread TUN would use them all up without the clock moving (run_pumps advances it only idle).
    assert w.run(lambda: w.clock.t >= start + 5, max_time=6, max_steps=3000)
    n = len(got())
    assert 2 <= n <= 8, n                       # ~1,000 bytes a second of ~1,000-byte datagrams
    assert w.run(lambda: len(got()) == 30, max_time=60, max_steps=20_000)
    assert w.clock.t - start > 20               # 30 packets of ~1 KB at 1 KB/s: not at once


@pytest.mark.parametrize("push", ["", "shaper 50", "shaper lots"])
def test_without_it_the_burst_goes_at_once(pki, push):
    """Nor does a pushed value out of 2.6's range shape anything (2.6: "Bad shaper value", not applied)."""
    w, pkts = _shaped_world(pki, None, push)
    start = w.clock.t
    assert w.run(lambda: sum(p in pkts for p in w.server_net.tun.written) == 30, max_time=1)
    assert w.clock.t - start < 1
    assert w.clients[0].shaper is None


@pytest.mark.parametrize("profile", [None, 100_000_000])
def test_a_pushed_shaper_replaces_the_profiles(pki, profile):
    """As 2.6's client (OPT_P_SHAPER is among what it pulls): the server's value is used."""
    w, pkts = _shaped_world(pki, profile, "shaper 1000")
    start = w.clock.t
    assert w.run(lambda: w.clock.t >= start + 5, max_time=6, max_steps=3000)
    assert 2 <= sum(p in pkts for p in w.server_net.tun.written) <= 8
    assert w.clients[0].shaper is not None and w.clients[0].shaper.rate == 1000


def test_the_bucket_charges_headers_and_a_minimum_and_caps_the_wait():
    s = Shaper(1000)
    s.wrote([b"x" * 972], header_bytes(False, False), now=10.0)     # 972 + 28 bytes: one second
    assert s.wait(10.0) == pytest.approx(1.0) and s.wait(10.5) == pytest.approx(0.5) and s.wait(11.0) == 0
    s.wrote([b"x"], header_bytes(True, True), now=20.0)             # 1 + 60 < 100: charged 100
    assert s.wait(20.0) == pytest.approx(0.1)
    s.wrote([b"x" * 60000], 28, now=30.0)                           # 60 s of bytes in one write: 10 s
    assert s.wait(30.0) == pytest.approx(10.0)
    for t in range(31, 40):                         # writes not held (control, pings) owe no more than 10 s
        s.wrote([b"x" * 60000], 28, now=float(t))
    assert s.wait(39.0) == pytest.approx(10.0)
    assert s.wait(49.0 - 0.0005) == 0                               # under 1 ms left: go (as 2.6)


@pytest.mark.parametrize("value", ["99", "100000001", "0", "-5", "fast", "1e5"])
def test_a_value_outside_openvpns_range_stops_the_config_at_its_line(value):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + f"shaper {value}\n", "/p/c.ovpn")
    assert "/p/c.ovpn:6" in str(e.value) and "shaper" in str(e.value)


@pytest.mark.parametrize("value", [100, 100000, 100000000])
def test_openvpns_range_is_taken(value):
    assert parse_config(BASE + f"shaper {value}\n", "/p/c.ovpn").shaper == value
    assert parse_config(BASE, "/p/c.ovpn").shaper == 0


def test_a_server_refuses_it_as_openvpn_does(pki):
    with pytest.raises(ConfigError) as e:
        parse_config(server_conf(pki, extra="shaper 10000"), "/p/s.conf")
    assert "--shaper cannot be used with --mode server" in str(e.value)


def test_a_tso_super_packets_segments_are_each_charged_in_full():
    """One TUN read can bring the segments of a TCP super-packet (TSO: ~45 of them): each is one
    write of its own for 2.6, each wait at most 10 s (SHAPER_MAX_TIMEOUT) -- the cap is per write,
    not per read. Capping the read's total at 10 s let `shaper 1000` send 45 KB every 10 s
    (review42: ~4.5 KB/s of TCP through a 1,000 bytes/s shaper)."""
    s = Shaper(1000)
    s.wrote([b"x" * 972] * 40, header_bytes(False, False), now=100.0)      # 40 x one second
    assert s.wait(100.0) == pytest.approx(40.0)
    s.wrote([b"x" * 60000] * 3, 28, now=200.0)       # each over 10 s: 10 s each, as 2.6 caps a write
    assert s.wait(200.0) == pytest.approx(30.0)


def test_the_rate_holds_when_one_read_brings_many_segments(pki):
    """Through the pump: a TUN whose every read returns 40 packets (a TSO super-packet's
    segments) still leaves at about N bytes a second over 100 s."""
    w, _pkts = _shaped_world(pki, 1000)
    tun = w.client_nets[0].tun
    seen = {p for p in _pkts}
    more = [ipv4_udp(w.client_addr(), SERVER_TUN, i.to_bytes(2, "big") * 450) for i in range(600)]
    for p in more:
        tun.inject(p)
    seen.update(more)
    read = tun.read_batch
    tun.read_batch = lambda n=64: read(max(n, 40))          # type: ignore[method-assign]
    start = w.clock.t
    assert w.run(lambda: w.clock.t >= start + 100, max_time=101, max_steps=20_000)
    n = sum(p in seen for p in w.server_net.tun.written)
    # ~1 KB each: 100 s at 1,000 bytes/s is ~100 packets, plus the read in flight (40) and the
    # first burst's; capped per read it was 40 every 10 s (~440)
    assert 40 <= n <= 200, n


def test_a_hostile_pushed_shaper_leaves_the_tunnel_up(pki):
    """A server pushing 2.6's least rate (`shaper 100`) under a TUN that never empties: the data
    crawls, but keepalive pings and the control channel are never held behind it, so neither end's
    ping-restart (60 s here) fires over 200 s (review42)."""
    w = World()
    w.add_server(server_conf(pki, extra='push "shaper 100"'))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    before = c.connections
    for i in range(300):
        w.client_nets[0].tun.inject(ipv4_udp(w.client_addr(), SERVER_TUN, bytes([i % 256]) * 1300))
    w.run_for(200)
    assert c.connections == before and c.conn is not None and c.conn.was_up
    assert len(w.server.d.clients) == 1 and w.client_nets[0].tun.inbox      # still shaping


def test_a_reconnect_while_the_tun_is_held_back_reads_it_again(pki):
    """SIGUSR1 (a reconnect, persist-tun) while the shaper holds the TUN unread: the held-back
    device is read again afterwards -- the worst outcome would be a tunnel up that never reads it."""
    import signal

    from appliance.gateway.loop import Signals
    w, _pkts = _shaped_world(pki, 1000)
    c = w.clients[0]
    w.run_for(1.5)
    assert c._shaped is not None                        # held back now
    before = c.connections
    c.signals = sig = Signals((signal.SIGUSR1,))        # not installed: the handler's effect by hand
    sig.pending.append(signal.SIGUSR1)
    c._on_signal()
    assert w.run(lambda: c.connections == before + 1, max_time=60)
    later = [ipv4_udp(w.client_addr(), SERVER_TUN, bytes([200 + i]) * 900) for i in range(5)]
    for p in later:
        w.client_nets[0].tun.inject(p)
    assert w.run(lambda: all(p in w.server_net.tun.written for p in later), max_time=120, max_steps=50_000)


def test_a_new_rate_at_the_next_connection_judges_the_held_back_tun_afresh(pki):
    """A hold can be long now that each write's cost is capped alone (45 segments at 2.6's least
    rate: 450 s); a connection whose push sets another rate (or none) must not wait out the old
    one's hold before reading the TUN."""
    from types import SimpleNamespace
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, extra="shaper 100"))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    tun = w.client_nets[0].tun
    read = tun.read_batch
    tun.read_batch = lambda n=64: read(max(n, 20))          # type: ignore[method-assign]
    for i in range(40):
        tun.inject(ipv4_udp(w.client_addr(), SERVER_TUN, bytes([i]) * 1300))
    w.run_for(15.0)                                 # (the handshake's own writes owe ~10 s at 100 bytes/s)
    assert c._shaped is not None and c.shaper.wait(w.clock.t) > 100     # 20 x 10 s owed
    c._set_shaper(SimpleNamespace(shaper=100_000_000))                  # the next push's rate
    later = [ipv4_udp(w.client_addr(), SERVER_TUN, bytes([200 + i]) * 900) for i in range(5)]
    for p in later:
        tun.inject(p)
    start = w.clock.t
    assert w.run(lambda: all(p in w.server_net.tun.written for p in later), max_time=30, max_steps=20_000)
    assert w.clock.t - start < 15


def test_a_pushed_shaper_lasts_its_connection(pki):
    """2.6 keeps a pulled `shaper` in its options across a reconnect (pre_connect_restore leaves
    it out), so a first server's rate throttles the next server's tunnel; ours, stricter, goes
    back to the profile's (none) at a push without one, as for every other pushed value, and the
    TUN streams unshaped again."""
    import signal

    from appliance.gateway.loop import Signals
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(pki, extra='push "shaper 1000"'))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    assert c.shaper is not None and c.shaper.rate == 1000
    assert w.client_nets[0].tun.tso is False            # one packet a read while shaped
    holder["conf"] = server_conf(pki)                   # the server pushes no shaper from now on
    assert gw.ops.reload()
    seen: list = []
    set_shaper = c._set_shaper
    c._set_shaper = lambda pushed: (seen.append(pushed.shaper), set_shaper(pushed))[1]  # type: ignore[method-assign]
    before = c.connections
    c.signals = sig = Signals((signal.SIGUSR1,))        # a reconnect (SIGUSR1), the handler's effect by hand
    sig.pending.append(signal.SIGUSR1)
    c._on_signal()
    assert w.run(lambda: c.connections == before + 1 and c.conn is not None and c.conn.was_up, max_time=60)
    assert seen and not seen[-1], seen                  # this push had no shaper ...
    assert c.shaper is None                             # ... and the pulled one went with its connection
    assert w.client_nets[0].tun.tso is True             # TSO back on with it (same device)
    pkts = [ipv4_udp(w.client_addr(), SERVER_TUN, bytes([i]) * 900) for i in range(30)]
    for p in pkts:
        w.client_nets[0].tun.inject(p)
    start = w.clock.t
    assert w.run(lambda: all(p in w.server_net.tun.written for p in pkts), max_time=5, max_steps=3000)
    assert w.clock.t - start < 1                        # 27,000 bytes: 27 s at the first server's rate


@pytest.mark.parametrize("profile,push,tso", [(1000, "", False), (None, "shaper 1000", False), (None, "", True)])
def test_while_shaped_the_tun_gives_one_packet_a_read(pki, profile, push, tso):
    """Under `shaper` the TUN's TCP super-packets are turned off (TunDevice.set_tso): 2.6 reads
    one packet at a time, each then waiting its turn; with TSO one read brought up to ~45 segments
    that left back to back (lab/shaper_bursts.py: 54 KB in 10 ms at `shaper 200000`, 2.6 3 KB)."""
    w, _pkts = _shaped_world(pki, profile, push)
    assert w.client_nets[0].tun.tso is tso


def test_a_late_wake_up_is_not_charged_again_but_idle_time_is_not_saved_up():
    """The loop wakes a little after the link is due free (timer resolution, a busy turn): the
    next write is charged from when it was due, else each packet paid that lateness on top (one
    packet a read at `shaper 1000000` gave ~0.53 MB/s). Idle longer than LATE_KEPT, it starts
    from now: no burst credit."""
    from appliance.gateway.shaper import LATE_KEPT
    s = Shaper(100_000)
    s.wrote([b"x" * 972], 28, now=1.0)                          # 1,000 bytes: 10 ms
    assert s.free_at == pytest.approx(1.010)
    s.wrote([b"x" * 972], 28, now=1.013)                        # woke 3 ms late: due at 1.020, not 1.023
    assert s.wait(1.013) == pytest.approx(0.007)
    late = 1.020 + LATE_KEPT + 0.001                            # idle past LATE_KEPT: from now
    s.wrote([b"x" * 972], 28, now=late)
    assert s.wait(late) == pytest.approx(0.010)
