"""After our bug inside a release (lab/reliability/fault_sweep.py), the server recomputes the
peer-ids and the pools' leases from its live sessions (ServerDispatcher.reconcile): what none of
them holds is free again -- and handed out again -- and what they hold stays held."""
from __future__ import annotations

from appliance.openvpn.addresspool import AddressPool, AddressPool6
from appliance.openvpn.peerids import PeerIds


def test_peer_ids_nobody_holds_are_free_again_and_held_ones_stay():
    ids = PeerIds()
    a, b, c = ids.take(), ids.take(), ids.take()
    ids.share(b)                       # a restart beside b
    # b's release raised once (its count stays 2 though one holder is gone); c's raised (held by nobody)
    assert ids.reconcile({a: 1, b: 1}) == 2
    assert ids.holders == {a: 1, b: 1}
    assert ids.take() == c             # the lowest free number, as before
    assert ids.reconcile({a: 1, b: 1, c: 1}) == 0


def test_a_live_sessions_peer_id_the_books_lost_is_never_handed_out_twice():
    ids = PeerIds()
    a = ids.take()
    ids.release(a)                     # released twice by a bug: nobody holds it in the books
    assert ids.reconcile({a: 1}) == 1
    assert ids.take() != a


def test_addresses_nobody_holds_go_back_to_the_pool_shared_counts_follow_the_holders():
    pool = AddressPool("198.19.0.0", "255.255.255.0")
    x, y = pool.lease(), pool.lease()
    pool.share(y)                      # an ifconfig-push of y to a second client
    assert pool.reconcile({y: 1}) == 2  # x held by nobody; y's second holder gone
    assert pool.leased == {y} and pool.shared == {}
    assert x in pool.free
    pool.release(y)
    assert pool.leased == set()


def test_ipv6_addresses_nobody_holds_go_back_too():
    pool = AddressPool6("fd00:18::/64")
    x = pool.lease()
    assert pool.reconcile({}) == 1
    assert pool.leased == set() and pool.lease() == x


class _Rec:
    """What Admission and the route table know of a session record."""
    def __init__(self) -> None:
        self.source, self.half_open, self.unverified, self.alive = None, False, None, True


def _admission():
    from types import SimpleNamespace

    from appliance.openvpn.admission import Admission
    return Admission(SimpleNamespace(connect_freq=None, connect_freq_initial=None, max_clients=2,
                                     max_half_open=2, max_half_open_per_source=1, max_unverified=1))


def test_admission_counts_of_sessions_whose_forget_never_ran_are_given_back():
    """_forget_steps raising on its first line skipped gone(): the gone sessions held a
    max-clients slot, a handshake slot, their source's share, for the server's life."""
    adm = _admission()
    a, b, c = _Rec(), _Rec(), _Rec()
    adm.opened(a, ("198.18.0.2", 1000), None)
    adm.established(a)
    adm.opened(b, ("198.18.0.3", 1000), None)
    adm.established(b)
    adm.opened(c, ("198.18.0.4", 1000), b"\x01" * 8)     # a cookie-less handshake in progress
    assert adm.refuse_new(("198.18.0.9", 1), 0.0) == "max-clients reached"
    assert adm.refuse_new(("198.18.0.4", 2), 0.0, replaces_client=True) is not None
    # b and c gone, their gone() skipped by our bug: a is the only live admitted session.
    assert adm.reconcile([a]) == 2
    assert adm.refuse_new(("198.18.0.9", 1), 0.0) is None
    assert adm.refuse_unverified() is None and not adm.sid_in_cookie_less_handshake(b"\x01" * 8)
    assert adm.source_has_room(("198.18.0.4", 2)) and adm.oldest_in_progress() is None
    adm.gone(a)                                          # the live one still leaves cleanly
    assert (adm.n_established, adm.n_half_open) == (0, 0)
    assert adm.reconcile([]) == 0


def test_a_handshake_in_progress_keeps_its_slot_and_its_place():
    adm = _admission()
    old, new = _Rec(), _Rec()
    adm.opened(old, ("198.18.0.2", 1000), None, now=5.0)
    adm.opened(new, ("198.18.0.3", 1000), None, now=7.0)
    assert adm.reconcile([new, old]) == 0
    assert adm.oldest_in_progress() == (old, 5.0) and adm.n_half_open == 2


def test_routes_of_a_forgotten_client_are_removed_a_live_clients_stay():
    import ipaddress

    from appliance.openvpn.iroutes import IrouteTable
    t = IrouteTable()
    gone, live = _Rec(), _Rec()
    t.add(ipaddress.ip_network("198.19.10.0/24"), gone)
    t.add(ipaddress.ip_network("198.19.20.0/24"), live)
    t.add(ipaddress.ip_network("198.19.30.0/28"), gone)
    gone.alive = False
    assert t.reconcile(lambda r: r.alive) == 2
    assert t.lookup(bytes([198, 19, 10, 1])) is None and t.lookup(bytes([198, 19, 30, 1])) is None
    assert t.lookup(bytes([198, 19, 20, 1])) is live and t.lens == [24]
    assert t.reconcile(lambda r: r.alive) == 0
