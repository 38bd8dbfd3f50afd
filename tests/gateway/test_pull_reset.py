"""What a pushed option leaves behind once its connection is over, through the real client pump
(fake clock): a server pushes `inactive` (with a minimum no client reaches) and `session-timeout`,
then is reloaded to push neither, and the client reconnects (SIGUSR1). OpenVPN 2.6's client keeps
both in its options and arms them again at the next start (init.c do_init_timers; proven in
tests/interop/test_pulled_options_after_reconnect_vs_openvpn.py); ours arms the profile's, so a
hostile first server's timers cannot end a connection to an honest second one (README,
"Thirty-eighth session (helper pull41)")."""
from __future__ import annotations

import signal

import pytest

from appliance.gateway.loop import Signals
from tests.gateway.conftest import World, client_conf, server_conf

HOSTILE = 'push "inactive 3600 1000000000"\npush "session-timeout 7200"'


def _reconnect(w: World, c) -> None:
    """SIGUSR1 to the client (the handler's effect by hand), until it is up again."""
    before = c.connections
    c.signals = sig = Signals((signal.SIGUSR1,))
    sig.pending.append(signal.SIGUSR1)
    c._on_signal()
    assert w.run(lambda: c.connections == before + 1 and c.conn is not None and c.conn.was_up, max_time=60)


@pytest.mark.parametrize("profile, armed_after", [("", False), ("inactive 900\nsession-timeout 1800", True)])
def test_pulled_timers_end_with_their_connection(pki, profile, armed_after):
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(pki, extra=HOSTILE))
    c = w.add_client(client_conf(pki, extra=profile))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    assert c.pump.timers.armed("inactive") and c.pump.timers.armed("session")
    assert c._inactive is not None and c._inactive.seconds == 3600     # the pushed value is in force
    holder["conf"] = server_conf(pki)                   # the server pushes neither from now on
    assert gw.ops.reload()
    _reconnect(w, c)
    assert c.pump.timers.armed("inactive") is armed_after and c.pump.timers.armed("session") is armed_after
    if armed_after:
        assert c._inactive is not None and c._inactive.seconds == 900     # the profile's, not the pulled one
    # An hour on, well past the pulled inactive's hour and short of its session-timeout's two,
    # with no traffic: still connected (the pulled minimum of 1e9 bytes would have ended it).
    start = w.clock.t
    assert w.run(lambda: w.clock.t >= start + 3700 or c.result is not None, max_time=3800, max_steps=200_000)
    assert c.result is None or armed_after, c.result


def test_a_pulled_inactive_does_not_run_in_the_pause_before_the_next_connection(pki):
    """The pause between connections (connect-retry, a server's backoff, a name being resolved)
    belongs to no server: 2.6 runs no inactivity check there (its timers are set up afresh at
    each start, do_init_timers). Ours left the pulled `inactive` armed through it, so a first
    server's `inactive 20` ended the whole client (status 0, no retry) 20 s into a 60 s pause,
    before it ever reached the next, honest server."""
    w = World()
    gw, holder = w.add_reloadable_server(server_conf(pki, extra='push "inactive 20"'))
    c = w.add_client(client_conf(pki, extra="connect-retry 60 120"))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    assert c._inactive is not None and c._inactive.seconds == 20
    holder["conf"] = server_conf(pki)                   # the next server pushes none
    assert gw.ops.reload()
    t0 = w.clock.t
    _reconnect(w, c)
    assert w.clock.t - t0 >= 60                         # through the whole pause
    assert c.result is None, c.result                   # not ended in the pause
    assert not c.pump.timers.armed("inactive") and c._inactive is None     # the profile has none
