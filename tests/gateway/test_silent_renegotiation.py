"""A renegotiation the peer never answers, on the real client and server pumps (fake clock,
in-memory ports): control packets are dropped from the renegotiation on, data packets pass.

What OpenVPN 2.6 does there (Debian's client and server against each other in the lab, nftables
dropping the control packets; ssl.c tls_multi_process): the new key fails at every hand-window
(its client starts a new TLS session each time), the old key -- the lame duck -- carries the
tunnel, keepalive pings included, so ping-restart never fires, until tran-window after the soft
reset went out or came in; then the key is gone and the session restarts ("SIGUSR1[soft,
tls-error]"): the client reconnects, the server lets the client instance go. Whoever starts it,
and when the peer saw the soft reset and went silent after it the same. A client that never saw
the server's soft reset reconnects by ping-restart once the server stopped. With OpenVPN's
default tran-window (3600 s) the tunnel thus runs up to an hour on the old key before anything
reconnects. (Against Debian's OpenVPN: tests/interop/test_failed_renegotiation.py.)"""
from __future__ import annotations

import pytest

from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf

SERVER_TUN = "198.19.0.1"
RENEG, HAND, TRAN = 20, 5, 30
TIMERS = f"hand-window {HAND}\ntran-window {TRAN}\n"        # the server's keepalive 10 60: pings both ways
DATA_OPS = (6, 9)
SOFT_RESET = 3


def _silence_control(w: World, after_soft_reset: bool) -> list[float]:
    """From now on no control packet is delivered either way; with `after_soft_reset`, only from
    the first soft reset on (that one still arrives: the peer saw the renegotiation start).
    Returns a list that gets the time the first soft reset was sent."""
    deliver = w.net.deliver
    reset_at: list[float] = []

    def filtered(data: bytes, src: tuple, dst: tuple) -> None:
        op = data[0] >> 3 if data else None
        if op not in DATA_OPS:
            first = op == SOFT_RESET and not reset_at
            if first:
                reset_at.append(w.clock.t)
            if not (first and after_soft_reset):
                return
        deliver(data, src, dst)
    w.net.deliver = filtered
    return reset_at


def _reaches_server(w: World, tag: bytes) -> bool:
    pkt = ipv4_udp(w.client_addr(), SERVER_TUN, tag)
    w.client_nets[0].tun.inject(pkt)
    return w.run(lambda: pkt in w.server_net.tun.written, max_time=3)


def _tunnel_traffic_until(w: World, end: float) -> None:
    """A tunnel packet every 2 s until `end`, each must reach the server (the session unchanged)."""
    first = w.clients[0].conn
    while w.clock.t < end:
        assert w.clients[0].conn is first and len(w.server.d.clients) == 1, f"the session ended at {w.clock.t:.0f}"
        assert _reaches_server(w, b"t%d" % int(w.clock.t * 10)), f"tunnel traffic lost at {w.clock.t:.0f}"
        w.run_for(2.0)


TRIGGERS = {"reneg-sec": f"reneg-sec {RENEG}\n", "reneg-bytes": "reneg-sec 0\nreneg-bytes 400\n",
            "reneg-pkts": "reneg-sec 0\nreneg-pkts 10\n"}


@pytest.mark.parametrize("after_soft_reset", [False, True], ids=["never-answered", "peer-saw-it-then-silent"])
@pytest.mark.parametrize("who,trigger", [("client", "reneg-sec"), ("server", "reneg-sec"), ("client", "reneg-bytes"),
                                         ("server", "reneg-pkts")])
def test_the_old_key_carries_the_tunnel_until_tran_window_then_the_client_reconnects(pki, who, trigger,
                                                                                      after_soft_reset):
    w = World()
    w.add_server(server_conf(pki, extra=TIMERS + (TRIGGERS[trigger] if who == "server" else "reneg-sec 0\n")))
    w.add_client(client_conf(pki, extra=TIMERS + (TRIGGERS[trigger] if who == "client" else "reneg-sec 0\n")))
    assert w.run(lambda: w.clients[0].conn is not None and w.clients[0].conn.was_up, max_time=30)
    first = w.clients[0].conn
    reset_at = _silence_control(w, after_soft_reset)
    _tunnel_traffic_until(w, w.clock.t + RENEG + 1)         # traffic (and pings) bring the trigger
    assert reset_at, "no renegotiation started"
    expiry = reset_at[0] + TRAN                   # its key dies tran-window after the soft reset
    _tunnel_traffic_until(w, expiry - 3)          # the old key carries the tunnel meanwhile
    client_gives_up = who == "client" or after_soft_reset      # it started or saw the renegotiation
    server_gives_up = who == "server" or after_soft_reset
    if client_gives_up:
        assert w.run(lambda: w.clients[0].conn is not first, max_time=TRAN), "the client never reconnected"
        assert expiry - 1 <= w.clock.t <= expiry + 2, w.clock.t - expiry
    if server_gives_up:
        assert w.run(lambda: not w.server.d.clients, max_time=TRAN), "the server kept the client"
        assert expiry - 1 <= w.clock.t <= expiry + 2, w.clock.t - expiry
    # the end that never saw the soft reset: ping-restart once the other's data stopped (the
    # client's pushed 60 s; the server's own, twice keepalive's 60)
    assert w.run(lambda: w.clients[0].conn is not first and not w.server.d.clients, max_time=150), \
        "the end that never saw the renegotiation kept the session"
    assert w.clock.t <= expiry + (60 if server_gives_up else 120) + 11, w.clock.t - expiry
