"""The compiled data-path helpers load when built (appliance/native/__init__.py): a broken build
must fail here, not fall back to Python silently. Pure Python forced (VPN_APPLIANCE_PURE_PYTHON)
is the one case where a module may be absent. One test function per module."""
from __future__ import annotations

from appliance import native


def test_gro_loads_and_is_the_grobatch_in_use():
    from appliance.tun import offload
    mod = native.load("_gro")
    if native.pure_forced():
        assert mod is None and offload.GroBatch is offload.PyGroBatch
        return
    assert mod is not None, "appliance.native._gro did not build or load (make setup builds it)"
    assert "_gro" in native.MODULES and native.status()["_gro"]
    assert offload.GroBatch is mod.GroBatch, "offload.GroBatch is not the compiled class"


def test_aead_module_loads_unless_pure_python_is_forced():
    mod = native.load("_aead")
    if native.pure_forced():
        assert mod is None
        return
    assert mod is not None, "appliance.native._aead did not build or load (make setup / pip install -e .)"
    assert "_aead" in native.MODULES and native.status()["_aead"] is True
    k = mod.Key("AES-256-GCM", bytes(32), bytes(8), True)
    assert len(k.seal(0x48000001, 4, 1, b"x")) == 1 + 24        # links against libcrypto and runs


def test_gso_loads_and_is_the_split_in_use():
    from appliance.tun import offload
    mod = native.load("_gso")
    if native.pure_forced():
        assert mod is None and offload.gso_split is offload.py_gso_split
        return
    assert mod is not None, "appliance.native._gso did not build or load (make setup builds it)"
    assert "_gso" in native.MODULES and native.status()["_gso"]
    assert offload.gso_split is mod.gso_split and offload.complete_checksum is mod.complete_checksum


def test_udp_loads_and_a_connected_socket_reads_with_it():
    import socket

    from appliance.transport import udp
    mod = native.load("_udp")
    t = udp.UdpTransport(None, ("198.18.0.1", 1194))     # connect() on UDP sends nothing
    try:
        if native.pure_forced():
            assert mod is None and t._recv_many is None
            return
        assert mod is not None, "appliance.native._udp did not build or load (make setup builds it)"
        assert "_udp" in native.MODULES and native.status()["_udp"]
        assert t._recv_many is mod.recv_many, "a connected socket should read with recvmmsg"
        assert udp.MANY_BATCH <= mod.RECV_MAX
        assert udp.UdpTransport(None, None, sock=socket.socket(socket.AF_INET, socket.SOCK_DGRAM))._recv_many is None
    finally:
        t.close()
