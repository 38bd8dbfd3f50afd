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
