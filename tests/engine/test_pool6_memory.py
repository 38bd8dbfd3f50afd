"""The IPv6 pool's memory of which name had which address (ifconfig-pool-persist, or in memory)
beside the pool's 65,536-address bound (compat50, as 2.6's pool.c)."""
from __future__ import annotations

from appliance.openvpn import wrapping

from .test_server_dispatcher import _client, _pump, _server, _up, pki  # noqa: F401 - pki: the fixture


def test_a_remembered_ipv6_address_past_the_pools_65536_is_replaced_in_the_memory(pki):
    """review50e: the IPv6 pool of a network wider than /112 holds 65,536 addresses (compat50, as
    2.6's pool.c); a remembered address past them (ifconfig-pool-persist written when ours handed
    out the whole /64) is not handed out -- 2.6: "out of pool range" -- and the address the
    client gets instead is remembered, as 2.6 writes its pool. Ours kept the old line for ever
    and the client's new address was never remembered."""
    from appliance.openvpn.addresspool import AddressPool6
    from appliance.openvpn.poolfile import PoolMemory
    d = _server(pki, "none", pool6=AddressPool6("2001:db8:44::/64"))
    d.st.pool = None
    d.st.pool_memory = mem = PoolMemory.in_memory()
    mem.note("client0", None, "2001:db8:44::1:1000")
    s = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    _pump(d, [(s, ("198.18.0.2", 40000))])
    assert _up(s) and s.pushed.ifconfig_ipv6[0] == "2001:db8:44::1000/64", s.pushed.ifconfig_ipv6
    assert mem.want("client0") == (None, "2001:db8:44::1000")
