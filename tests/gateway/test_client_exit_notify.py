"""What our client sends when it stops, on in-memory ports (against OpenVPN 2.6:
tests/interop/test_exit_notify_vs_openvpn.py).

OpenVPN 2.6's client (sig.c process_sigterm, process_explicit_exit_notification_init and
_timer_wakeup): without explicit-exit-notify it exits at once and sends nothing; with
`explicit-exit-notify N` on UDP it sends EXIT on the control channel once (cc-exit negotiated)
or an OCC exit every second, and exits N seconds after the signal; over TCP the directive is
ignored (options.c options_postprocess_mutate_ce). A second SIGTERM ends the wait. Ours sent
an exit notification at every stop and exited at once.
"""
from __future__ import annotations

import pytest

from appliance.gateway.loop import Signals
from appliance.openvpn.session import EXIT_HOLD
from tests.gateway.conftest import World, client_conf, server_conf


def _world(pki, client_extra: str = "", server_extra: str = "", proto: str = "udp") -> World:
    w = World()
    w.add_server(server_conf(pki, proto=proto, extra=server_extra))
    c = w.add_client(client_conf(pki, proto=proto, extra=client_extra))
    assert w.run(lambda: c.conn is not None and c.conn.was_up and w.server.d.clients, max_time=30)
    w.run_for(1)
    return w


def _sends(w: World) -> list[tuple[float, int]]:
    """(time, packets) of every send on the client's link from now on."""
    c = w.clients[0]
    link, out = c.conn.link, []
    send = link.send_packets

    def recording(pkts):
        out.append((w.clock.t, len(pkts)))
        return send(pkts)
    link.send_packets = recording
    return out


@pytest.mark.parametrize("proto, extra", [("udp", ""), ("tcp", "explicit-exit-notify 2")])
def test_without_the_directive_or_over_tcp_nothing_is_sent_and_the_stop_is_at_once(pki, proto, extra):
    w = _world(pki, extra, proto=proto)
    sends = _sends(w)
    w.clients[0].request_stop()
    assert w.clients[0].result == 0
    assert sends == []
    if proto == "udp":
        w.run_for(5)
        assert len(w.server.d.clients) == 1, "the server heard of the client's exit"


def test_with_cc_exit_one_exit_message_and_the_end_after_n_seconds(pki):
    w = _world(pki, "explicit-exit-notify 3")
    c = w.clients[0]
    assert c.conn.session.cc_exit
    t0 = w.clock.t
    c.request_stop()
    assert c.result is None, "no wait for the notification"
    assert w.run(lambda: w.server.d.clients[0].session.exit_at is not None, max_time=2), \
        "the server did not take the EXIT"
    assert w.run(lambda: c.result == 0, max_time=5)
    assert w.clock.t - t0 == pytest.approx(3, abs=0.05)
    # The server ends the client EXIT_HOLD s after its EXIT, as 2.6's schedule_exit.
    assert w.server.d.clients, "ended before the hold was over"
    assert w.run(lambda: not w.server.d.clients, max_time=EXIT_HOLD)
    assert w.clock.t - t0 == pytest.approx(EXIT_HOLD, abs=0.1)


def test_without_cc_exit_an_occ_exit_every_second(pki):
    w = _world(pki, "explicit-exit-notify 3")
    c = w.clients[0]
    c.conn.session.cc_exit = False          # a server that did not negotiate cc-exit
    w.server.d.clients[0].session.cc_exit = False
    sends = _sends(w)
    t0 = w.clock.t
    c.request_stop()
    assert w.run(lambda: c.result == 0, max_time=5)
    times = [round(t - t0, 1) for t, _n in sends]
    assert times == [0.0, 1.0, 2.0]
    assert w.clock.t - t0 == pytest.approx(3, abs=0.05)


def test_a_pushed_explicit_exit_notify_counts(pki):
    w = _world(pki, server_extra='push "explicit-exit-notify 2"')
    c = w.clients[0]
    t0 = w.clock.t
    c.request_stop()
    assert c.result is None
    assert w.run(lambda: c.result == 0, max_time=5)
    assert w.clock.t - t0 == pytest.approx(2, abs=0.05)


def test_a_second_stop_ends_the_wait(pki):
    w = _world(pki, "explicit-exit-notify 5")
    c = w.clients[0]
    c.signals = sig = Signals()             # not installed: the handler's effect by hand
    sig.stop, sig.stops = True, 1
    c._on_signal()
    assert c.result is None, "the first stop did not wait"
    sig.stops = 2
    c._on_signal()
    assert c.result == 0


def test_no_reconnect_during_the_wait(pki):
    """The connection ending meanwhile (here the server stops and tells it) ends the run, no retry."""
    w = _world(pki, "explicit-exit-notify 5")
    c = w.clients[0]
    c.request_stop()
    w.server.request_stop()
    assert w.run(lambda: c.result == 0, max_time=0.5), "the client waits to reconnect instead of ending"


def test_before_any_data_channel_key_the_wait_holds(pki):
    """SIGTERM while the first connection is still under way (no server answers: no key yet).
    OpenVPN 2.6 (sig.c process_sigterm -> process_explicit_exit_notification_init) enters the
    wait whenever its connection's loop runs: "SIGTERM received, sending exit notification to
    peer", nothing can go, and the end N s later. Ours stopped at once."""
    w = World()                              # no server
    c = w.add_client(client_conf(pki, extra="explicit-exit-notify 3"))
    w.run_for(1)
    assert c.conn is not None and c.conn.session.send_key is None
    t0 = w.clock.t
    c.request_stop()
    assert c.result is None, "no wait"
    assert w.run(lambda: c.result == 0, max_time=10)
    assert w.clock.t - t0 == pytest.approx(3, abs=0.05)
