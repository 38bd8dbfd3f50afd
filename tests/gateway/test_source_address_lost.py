"""The client reconnects when the address its connection leaves from is taken off the host (a WAN
renumbered by DHCP), on in-memory ports; against OpenVPN 2.6 over a real renumbering:
tests/interop/test_wan_renumber_tunnel.py.

Before, the connected socket's sends failed the kernel's source check (counted) and the client
noticed only at ping-restart: a minute with the usual `keepalive 10 60`.
"""
from __future__ import annotations

import errno

from tests.gateway.conftest import World, client_conf, server_conf

OLD, NEW = "198.18.0.2", "198.18.0.77"
KEEPALIVE = 'push "ping 10"\npush "ping-restart 60"\n'


def _up(pki) -> tuple[World, object]:
    w = World()
    w.add_server(server_conf(pki, extra=KEEPALIVE))
    c = w.add_client(client_conf(pki), ip=OLD)
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    return w, c


def _renumber(w: World) -> None:
    """What the kernel does when DHCP moves the WAN: the old source is refused, the new one used."""
    ports = w.client_ports[0]
    w.net.send_fault = lambda src, dst: errno.EINVAL if src[0] == OLD else None
    ports.ip = NEW
    ports.addresses.local.add(NEW)
    ports.addresses.remove(OLD)


def test_a_lost_source_address_reconnects_at_once_not_at_ping_restart(pki, caplog):
    w, c = _up(pki)
    before, t0 = c.connections, w.clock.t
    _renumber(w)
    assert w.run(lambda: c.connections == before + 1, max_time=20), "not up again within 20 s"
    assert w.clock.t - t0 < 10, f"took {w.clock.t - t0:.1f} s: ping-restart's pace, not the address's"
    assert c.conn.link.local_address() == NEW
    assert c.counters.source_lost == 1
    assert f"this host no longer has {OLD}" in caplog.text
    # The server's session of the new address carries the tunnel.
    assert [r.addr[0] for r in w.server.d.clients] == [NEW]


def test_another_address_leaving_changes_nothing(pki):
    w, c = _up(pki)
    conn = c.conn
    w.client_ports[0].addresses.local.add("198.18.5.5")
    w.client_ports[0].addresses.remove("198.18.5.5")
    w.run_for(15)
    assert c.conn is conn and c.conn.was_up and c.counters.source_lost == 0


def test_the_watch_failing_leaves_the_tunnel_alone(pki, caplog):
    w, c = _up(pki)
    conn = c.conn
    a = w.client_ports[0].addresses
    a.fail = errno.EBADF
    a.remove("198.18.5.5")
    w.run_for(5)
    assert c.conn is conn and c.conn.was_up and c.result is None
    assert "no longer watching this host's addresses" in caplog.text
    assert a.closed and c._addr_watch is None


def test_no_watch_available_is_no_failure(pki, caplog, monkeypatch):
    from lab.fakes import MemoryPorts

    def refuse(self):
        raise OSError(errno.EPROTONOSUPPORT, "no netlink here")
    monkeypatch.setattr(MemoryPorts, "address_watch", refuse)
    w, c = _up(pki)
    assert c._addr_watch is None and "not watching this host's addresses" in caplog.text


def test_the_watch_is_closed_at_the_end(pki):
    w, c = _up(pki)
    a = w.client_ports[0].addresses
    c.request_stop()
    assert w.run(lambda: c.result is not None, max_time=10)
    c._cleanup()
    assert a.closed
