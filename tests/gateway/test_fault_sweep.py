"""Faults injected into the functions on one client's path (lab/reliability/fault_sweep.py):
each ends at most that client's session -- the server and the other client go on, the client
comes back, the server's books hold no trace of the ended session -- counted and logged at a
limited rate. A seeded sample of the sweep, and the cases it found broken."""
from __future__ import annotations

import pytest

from lab.reliability import fault_sweep as fs

BAD = ("FATAL", "COLLATERAL")


@pytest.fixture(scope="module")
def targets(pki):
    return {proto: fs.targets_of(pki, proto) for proto in ("udp", "tcp")}


def _inject(pki, targets, proto: str, name: str, exc: str = "runtime", repeat: int = 1) -> fs.Outcome:
    code, phase = targets[proto][name]
    st = fs.new_stage(pki, proto)
    return fs.inject(st, code, phase, fs.EXCEPTIONS[exc], repeat)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_the_victims_path_is_recorded(targets, proto):
    names = targets[proto]
    assert len(names) > 200
    for must in ("appliance.openvpn.server:ServerDispatcher.receive", "appliance.openvpn.session:Session.receive",
                 "appliance.gateway.client:ClientGateway._on_link_read"):
        assert must in names, must


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("name", [
    # A bug midway through forgetting a session left its record in by_addr (dead), its address
    # and peer-id held by nobody, and the client's restart stood beside the dead record.
    "appliance.openvpn.admission:Admission.gone",
    "appliance.openvpn.session:Session.release",
    # A bug while a session was being made kept its peer-id for the server's life.
    "appliance.gateway.ops:Operations.created",
    "appliance.openvpn.session:Session.__init__",
])
def test_a_bug_while_the_server_makes_or_forgets_a_session_leaves_nothing_behind(pki, targets, proto, name):
    o = _inject(pki, targets, proto, name)
    assert o.verdict in ("ok-ended", "ok-survived"), (o.verdict, o.detail)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("name", [
    "appliance.gateway.client:ClientGateway._connect_to",
    "appliance.gateway.restart_pause:restart_pause",
    "appliance.openvpn.settings:client_session_config",
])
def test_a_bug_in_the_clients_restart_does_not_leave_it_without_a_connection(pki, targets, proto, name):
    """Our client's restart (SIGUSR1) raising midway: it was alive with no connection and no
    attempt to come, for ever. Now the attempt ends and another follows."""
    o = _inject(pki, targets, proto, name)
    assert o.verdict in ("ok-ended", "ok-survived"), (o.verdict, o.detail)


def test_a_hundred_faults_cost_a_bounded_number_of_log_lines(pki, targets):
    o = _inject(pki, targets, "udp", "appliance.openvpn.server:ServerDispatcher.note_sent", repeat=100)
    assert o.hits == 100 and o.verdict.startswith("ok"), (o.hits, o.verdict, o.detail)
    assert o.fault_lines <= 10, f"{o.fault_lines} lines about 100 internal errors"


@pytest.mark.parametrize("exc", ["runtime", "value", "key", "index", "struct", "memory"])
def test_a_seeded_sample_ends_nothing_beyond_the_victim(pki, targets, exc):
    """6 functions per exception type (seeded): no gateway ends, client1 and client2 keep their
    tunnels, sessions, addresses and peer-ids."""
    import random
    rng = random.Random(f"fault37-{exc}")
    out = []
    for proto in ("udp", "tcp"):
        names = sorted(targets[proto])
        for name in rng.sample(names, 3):
            out.append(_inject(pki, targets, proto, name, exc))
    bad = [(o.proto, o.function, o.verdict, o.detail) for o in out if o.verdict in BAD]
    assert not bad, bad


@pytest.mark.parametrize("name", ["appliance.gateway.client:ClientGateway._exit_notify_tick",
                                  "appliance.gateway.client:ClientGateway._stop_now"])
def test_a_bug_in_the_exit_notifications_wait_does_not_keep_the_client_from_stopping(pki, targets, name):
    """Told to stop (explicit-exit-notify), our client waited for ever when a tick of that wait
    raised: a shutdown held up. It ends by the backstop after the wait now."""
    o = _inject(pki, targets, "udp", name)
    assert o.verdict == "ok-ended", (o.verdict, o.detail)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("name", ["appliance.gateway.client:ClientGateway._tunnel_up",
                                  "appliance.openvpn.profile_push:with_profile"])
def test_a_bug_while_our_client_takes_the_push_ends_that_session(pki, targets, proto, name):
    """It went to the loop's catch-all: the server had the client connected, the client never
    brought its tunnel up and armed no ping-restart -- alive without a tunnel, for ever. Now it
    starts over (its next attempt's tunnel pings both ways) and the fault is counted."""
    o = _inject(pki, targets, proto, name)
    assert o.verdict == "ok-ended", (o.verdict, o.detail)
    assert "client: internal error" in o.detail


@pytest.mark.parametrize(("proto", "name"), [
    # A bug in the status books' stream_gone skipped the rest of closing the connection: its
    # socket stayed open and watched, the client talked to a server that no longer read it.
    ("tcp", "appliance.gateway.ops:Operations.stream_gone"),
    # A bug on the very first line of the next attempt's timer: no attempt ever came again.
    ("udp", "appliance.gateway.client:ClientGateway._connect_guarded"),
    ("tcp", "appliance.gateway.client:ClientGateway._connect_guarded"),
    # The old link left watched after a bug on the way out of its connection: the client's loop
    # woke for its readable socket at once, for ever (100% CPU), never reading it.
    ("tcp", "appliance.gateway.loop:Pump.unwatch"),
])
def test_a_bug_while_a_connection_ends_or_the_next_begins_neither_wedges_nor_spins(pki, targets, proto, name):
    o = _inject(pki, targets, proto, name)
    assert o.verdict in ("ok-ended", "ok-survived"), (o.verdict, o.detail)


@pytest.mark.parametrize("name", ["appliance.openvpn.addresspool:AddressPool.release",
                                  "appliance.openvpn.peerids:PeerIds.release",
                                  "appliance.openvpn.server:ServerDispatcher._forget_steps"])
def test_what_a_bug_in_a_release_left_is_given_back(pki, targets, name):
    """Inside the release of the very resource nothing but a look at who holds what can give
    it back: the server's 5 s timer does (ServerDispatcher.reconcile), counted and logged."""
    o = _inject(pki, targets, "udp", name)
    assert o.verdict in ("ok-ended", "ok-survived"), (o.verdict, o.detail)
    assert "server: internal error: held by no session, given back" in o.detail, o.detail


def test_a_pushed_option_our_parser_fails_on_is_counted(pki, targets):
    o = _inject(pki, targets, "udp", "appliance.openvpn.keymethod:_take_option", "value")
    assert o.verdict.startswith("ok"), (o.verdict, o.detail)
    assert "client: pushed options with a bad value (left out)" in o.detail, o.detail


@pytest.mark.parametrize(("proto", "name"), [
    ("udp", "appliance.openvpn.session:Session.peer_chain"),
    ("tcp", "appliance.openvpn.session:Session.peer_chain"),
    ("udp", "appliance.openvpn.tls:TlsEndpoint.peer_chain"),
    ("udp", "appliance.openvpn.tls:TlsEndpoint._keep_chain"),
])
def test_a_chain_certificate_that_cannot_be_read_at_a_restart_is_counted(pki, targets, proto, name):
    """A ValueError while reading the peer's chain is what cryptography raises for a chain
    certificate it cannot read: the scripts get depth 0 only, as designed -- and now it is
    counted (it was silent)."""
    o = _inject(pki, targets, proto, name, "value")
    assert o.verdict.startswith("ok"), (o.verdict, o.detail)
    assert "client: peer certificate chain unreadable (depth 0 only)" in o.detail, o.detail


@pytest.fixture(scope="module")
def tap_targets(pki):
    return fs.targets_of(pki, "udp", dev="tap")


@pytest.mark.parametrize("name", [
    # dev tap: a bug before the switch forgot a session (the first line of the release steps'
    # builder, the switch's forget, the MAC table's) left the session's MAC list behind, and its
    # MACs leading to it until another session took them (the TAP's frames sealed for it).
    "appliance.openvpn.server:ServerDispatcher._forget_steps",
    "appliance.openvpn.l2switch:SwitchDataPath._forget",
    "appliance.openvpn.l2switch:MacTable.forget",
])
def test_on_a_tap_server_a_bug_while_forgetting_leaves_no_mac_behind(pki, tap_targets, name):
    assert "appliance.openvpn.l2switch:SwitchDataPath.from_link" in tap_targets
    code, phase = tap_targets[name]
    o = fs.inject(fs.new_stage(pki, "udp", dev="tap"), code, phase, fs.EXCEPTIONS["runtime"])
    assert o.verdict in ("ok-ended", "ok-survived"), (o.verdict, o.detail)
    assert o.proto == "udp/tap"


def test_the_victim_has_two_bystanders(pki):
    st = fs.new_stage(pki, "udp")
    assert len(st.w.clients) == 3 and fs.VICTIM not in fs.BYSTANDERS
    held = fs.bystanders(st)
    assert all(h[1] is not None and h[2] is not None for h in held.values()), held
    assert len({h[1] for h in held.values()}) == 2 and len({h[2][2] for h in held.values()}) == 2


@pytest.mark.parametrize(("proto", "name"), [
    # MemoryError went past the loop's guards and ended the gateway: the server (every client's
    # session) for one client's data packet or TCP read, our client for its push.
    ("udp", "appliance.openvpn.server:ServerDispatcher.note_sent"),
    ("udp", "appliance.transport.udp:UdpTransport.send_batch"),
    ("tcp", "appliance.gateway.server:ServerGateway._on_conn_read"),
    ("udp", "appliance.gateway.client:ClientGateway._tunnel_up"),
])
def test_a_memory_error_on_one_clients_path_ends_at_most_that_client(pki, targets, proto, name):
    o = _inject(pki, targets, proto, name, "memory")
    assert o.verdict in ("ok-ended", "ok-survived"), (o.verdict, o.detail)
    assert "internal error" in o.detail, o.detail


@pytest.mark.parametrize(("proto", "name"), [
    # Our bug while the client acted on SIGTERM: the stop was lost (it ran on until SIGKILL,
    # which skips the clean-up giving back the host's routes and DNS).
    ("udp", "appliance.gateway.client:ClientGateway.request_stop"),
    ("udp", "appliance.openvpn.session:Session.exit_notify"),
    ("tcp", "appliance.gateway.client:ClientGateway._stop_now"),
    ("tcp", "appliance.gateway.client:ClientGateway.request_stop"),
])
def test_a_bug_while_the_client_acts_on_sigterm_still_stops_it_and_closes_its_tunnel(pki, targets, proto, name):
    o = _inject(pki, targets, proto, name)
    assert o.verdict == "ok-ended", (o.verdict, o.detail)
