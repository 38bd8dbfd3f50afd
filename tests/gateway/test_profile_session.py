"""Profile lines applied through the real client pump (fake clock, in-memory ports):
`session-timeout` ends the run N seconds into the connection (a pushed one counts from the push and
replaces the profile's), and the profile's block-ipv6 / route-ipv6 / dns reach the tunnel with the
pushed options, as OpenVPN 2.6 takes a profile line and a pushed one alike."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_block_ipv6 import FAR6, HOST6, _udp6


def _up(w: World) -> bool:
    c = w.clients[0]
    return c.conn is not None and c.conn.was_up


def test_session_timeout_ends_the_run_n_seconds_into_the_connection(pki):
    w = World()
    w.add_server(server_conf(pki))                # keepalive 10 60: traffic flows all along
    c = w.add_client(client_conf(pki, extra="session-timeout 30\n"))
    assert w.run(lambda: _up(w), max_time=30)
    up = w.clock.t
    assert w.run(lambda: c.result is not None, max_time=60), "session-timeout never ended the run"
    # It counts from the connection's start; the push (ping 10, ping-restart 60: timer options)
    # restarts it, as OpenVPN 2.6's do_deferred_options: so 30 s after the push.
    assert c.result == 0 and 30 <= w.clock.t - up <= 31, w.clock.t - up
    assert c._exit_why == "session-timeout"


def test_a_pushed_session_timeout_replaces_the_profiles(pki):
    w = World()
    w.add_server(server_conf(pki, extra='push "session-timeout 20"\n'))
    c = w.add_client(client_conf(pki, extra="session-timeout 600\n"))
    assert w.run(lambda: _up(w), max_time=30)
    up = w.clock.t
    assert w.run(lambda: c.result is not None, max_time=60), "the pushed session-timeout was not used"
    assert 20 <= w.clock.t - up <= 21, w.clock.t - up


def test_without_session_timeout_the_tunnel_stays(pki):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    w.run_for(120)
    assert c.result is None and _up(w)


def test_the_profiles_block_ipv6_route_ipv6_and_dns_reach_the_tunnel_with_the_push(pki):
    w = World()
    w.add_server(server_conf(pki, extra='push "route-ipv6 2001:db8:9::/48"\npush "dns server 1 address 198.19.0.53"\n'))
    c = w.add_client(client_conf(pki, extra="block-ipv6\nroute-ipv6 2001:db8:7::/48\nroute-metric 40\n"
                                            "dns server 0 address 198.18.0.53\n"))
    assert w.run(lambda: _up(w), max_time=30)
    p = w.client_nets[0].pushed
    assert p.block_ipv6 and p.routes_ipv6 == [("2001:db8:7::/48", None, 40), ("2001:db8:9::/48", None, 40)]
    assert p.dns == ["198.18.0.53", "198.19.0.53"]
    # block-ipv6 from the profile is enforced: IPv6 from the TUN is answered there, never sent.
    ctun = w.client_nets[0].tun
    ctun.inject(_udp6(HOST6, FAR6, b"q"))
    w.run_for(1)
    assert c.counters.ipv6_refused == 1
    assert not any(pk[0] >> 4 == 6 for pk in w.server_net.tun.written), "an IPv6 packet reached the server"


def test_the_profiles_dhcp_option_goes_with_the_pushed_ones_first(pki):
    """A profile's `dhcp-option DNS/DOMAIN` is used as a pushed one (OpenVPN hands both to its DNS
    scripts as foreign options, the profile's first); route-nopull keeps it. Before, the line was
    accepted with no effect while a profile `dns` line applied."""
    w = World()
    w.add_server(server_conf(pki, extra='push "dhcp-option DNS 198.19.0.53"\npush "dhcp-option DOMAIN corp.test"\n'))
    w.add_client(client_conf(pki, extra="dhcp-option DNS 198.18.0.77\ndhcp-option DOMAIN-SEARCH home.test\n"))
    assert w.run(lambda: _up(w), max_time=30)
    p = w.client_nets[0].pushed
    assert p.dns == ["198.18.0.77", "198.19.0.53"]
    assert p.dhcp_options == [("DNS", "198.18.0.77"), ("DOMAIN-SEARCH", "home.test"),
                              ("DNS", "198.19.0.53"), ("DOMAIN", "corp.test")]
    w2 = World()
    w2.add_server(server_conf(pki, extra='push "dhcp-option DNS 198.19.0.53"\n'))
    w2.add_client(client_conf(pki, extra="route-nopull\ndhcp-option DNS 198.18.0.77\n"))
    assert w2.run(lambda: _up(w2), max_time=30)
    assert w2.client_nets[0].pushed.dns == ["198.18.0.77"]


# ------------------------------------------------------------------ the server's session-timeout
def _server_up(w: World) -> list:
    return [r for r in w.server.d.clients if r.alive]


def test_a_servers_session_timeout_ends_each_client_n_seconds_after_its_tunnel_came_up(pki):
    w = World()
    w.add_server(server_conf(pki, extra="session-timeout 20\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w), max_time=30)
    first, up0 = w.server.d.clients[0], w.clock.t
    w.run_for(8)
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: w.clients[1].conn is not None and w.clients[1].conn.was_up, max_time=30)
    second, up1 = [r for r in w.server.d.clients if r is not first][0], w.clock.t
    assert w.run(lambda: not first.alive, max_time=30), "the first client was never ended"
    assert 20 <= w.clock.t - up0 <= 20.5 and second.alive, (w.clock.t - up0, second.alive)
    assert w.run(lambda: not second.alive, max_time=30), "the second client was never ended"
    assert 20 <= w.clock.t - up1 <= 20.5, w.clock.t - up1


def test_a_reload_changes_the_servers_session_timeout_for_the_clients_it_keeps(pki):
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w), max_time=30)
    rec, up = gw.d.clients[0], w.clock.t
    w.run_for(10)
    assert rec.alive
    holder["conf"] = server_conf(pki, extra="session-timeout 30\n")
    assert gw.ops.reload()
    assert w.run(lambda: not rec.alive, max_time=40), "the reloaded session-timeout was not applied"
    assert 30 <= w.clock.t - up <= 30.5, w.clock.t - up            # counted from its tunnel's start
    holder["conf"] = conf                                          # taken out again: no end
    assert gw.ops.reload()
    assert w.run(lambda: bool(_server_up(w)), max_time=40)        # the client came back
    back = _server_up(w)[0]
    w.run_for(60)
    assert back.alive


def test_the_start_of_a_client_is_never_moved():
    """A second `started` for the same session (none comes from the engine today) must not push
    its end out: a client renegotiating or reconnecting its key would keep its session for ever."""
    from appliance.gateway.session_limit import SessionLimit
    t = [0.0]
    armed: list = []
    kicked: list = []
    lim = SessionLimit(10, lambda: t[0], armed.append, lambda rec, why: kicked.append(rec))
    rec = object()
    lim.started(rec)
    t[0] = 9.0
    lim.started(rec)
    assert armed[-1] == 10.0
    t[0] = 10.0
    lim.due()
    assert kicked == [rec] and armed[-1] is None


def test_ten_thousand_clients_time_out_without_scanning_them_all_each_time(caplog):
    """10,000 clients whose tunnels came up 1 ms apart, each ended at its own deadline (a reload's
    N applies to all, from each one's start), a gone one never kicked. Each start and each
    deadline scanned every client before: ~13 s of the event loop's time for this round of
    timeouts; now well under 1 s."""
    import logging
    import time

    from appliance.gateway.session_limit import SessionLimit
    caplog.set_level(logging.ERROR)                  # (10,000 "disconnected" lines otherwise)
    t = [0.0]
    armed: list = []
    kicked: list = []
    lim = SessionLimit(3600, lambda: t[0], armed.append, lambda rec, why: kicked.append((rec, t[0])))
    recs = [type("Rec", (), {})() for _ in range(10_000)]
    cpu = time.process_time()
    for i, r in enumerate(recs):
        t[0] = i * 0.001
        lim.started(r)
    lim.gone(recs[5])
    lim.set_seconds(100)                             # a reload: from each one's start
    for i in range(10_000):
        t[0] = 100 + i * 0.001
        while armed[-1] is not None and armed[-1] <= t[0]:
            lim.due()
    cpu = time.process_time() - cpu
    assert [r for r, _ in kicked] == [r for i, r in enumerate(recs) if i != 5]
    assert all(abs(when - (100 + recs.index(r) * 0.001)) < 1e-6 for r, when in kicked[:50])
    assert armed[-1] is None and not lim.up
    assert cpu < 1.0, f"{cpu:.1f} s of CPU for 10,000 session timeouts"
