"""A large client-config-dir file is read and parsed off the event loop (gateway/server_files.py
CcdReader): 1 MiB of lines took ~0.3-0.9 s to parse on the loop when its client connected, and
every tunnel's packets waited meanwhile. Now a file over 16 KiB is read by a worker while its
client waits (as for a client-connect script), the other clients' packets flowing; its options
apply as before (ifconfig-push, push, disable), and the file is read again at each connect."""
from __future__ import annotations

import time

from appliance.gateway.server_files import INLINE_MAX, CcdReader, ccd_loader
from appliance.openvpn.errors import CcdPending
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up

# ~1 MiB of lines that cost the parser (each a push-remove matching nothing), then the options.
FILLER = b'push-remove "nothing-matches-this"\n'
BIG = FILLER * (1024 * 1024 // len(FILLER) - 4)
TAIL = b'ifconfig-push 198.19.0.77 255.255.255.0\npush "route 198.18.77.0 255.255.255.0"\n'


def _world(pki, tmp_path, offloop: bool) -> tuple[World, object, object]:
    d = tmp_path / ("ccd-new" if offloop else "ccd-old")
    d.mkdir()
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {d}\n"))
    gw.st.ccd = ccd_loader(str(d))          # World reads no files; as server_files does at start
    if offloop:
        gw.attach_ccd_reader()              # as start() does: a worker thread
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    return w, gw, d


def _longest_server_step(w: World, gw, until, seconds: float = 60.0) -> float:
    """Step the pumps (the fake clock following the real one while they idle) until `until()`,
    client1 sending a packet to the server every few steps: the longest server step, in s."""
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    longest, n, end = 0.0, 0, time.monotonic() + seconds
    sent: list[bytes] = []
    while not until() and time.monotonic() < end and n < 200_000:
        n += 1
        if n % 20 == 0:
            pkt = ipv4_udp(w.client_addr(0), SERVER_TUN, b"ping-%d" % n)
            ctun.inject(pkt)
            sent.append(pkt)
        t0 = time.perf_counter()
        busy = gw.pump.step(block=False)
        longest = max(longest, time.perf_counter() - t0)
        for c in w.clients:
            busy = c.pump.step(block=False) or busy
        if not busy:
            time.sleep(0.001)
            w.clock.t += 0.001
    assert until(), "the client did not come up"
    assert sum(p in stun.written for p in sent) >= len(sent) // 2, "client1's packets did not get through"
    return longest


def test_a_1_mib_ccd_file_does_not_stall_the_other_clients(pki, tmp_path):
    longest = {}
    for offloop in (False, True):           # the old way (on the loop), then the worker's
        w, gw, d = _world(pki, tmp_path, offloop)
        (d / "client0").write_bytes(BIG + TAIL)
        w.add_client(client_conf(pki, "client0"))
        longest[offloop] = _longest_server_step(w, gw, lambda: _up(w, 1))
        # Its options applied all the same: its address and its route.
        assert w.client_addr(1) == "198.19.0.77"
        assert "198.18.77.0" in [r[0] for r in w.client_nets[1].pushed.routes]
        if offloop:
            assert gw.ccd_reader.waiting == 0 and gw.ccd_reader.ready == {}
        gw._cleanup()
    assert longest[True] * 10 < longest[False], longest


def test_a_large_file_saying_disable_refuses_its_client_after_the_read(pki, tmp_path, caplog):
    caplog.set_level("INFO")
    w, gw, d = _world(pki, tmp_path, True)
    (d / "client0").write_bytes(FILLER * (2 * INLINE_MAX // len(FILLER)) + b"disable\n")
    w.add_client(client_conf(pki, "client0"))
    deadline = time.monotonic() + 30
    while "says disable" not in caplog.text and time.monotonic() < deadline:
        w.run_for(0.2)
        time.sleep(0.01)
    assert "client-config-dir file for 'client0' says disable" in caplog.text
    assert not _up(w, 1)
    gw._cleanup()


def test_the_reader_reads_each_file_once_for_its_waiters_and_again_next_time(tmp_path):
    """Two clients of one (large) DEFAULT file wait on one read; once it is taken and forgotten,
    the next connect reads the file as it is then (OpenVPN reads it at every connect)."""
    (tmp_path / "DEFAULT").write_bytes(FILLER * (2 * INLINE_MAX // len(FILLER)) + b"push-reset\n")
    files = ccd_loader(str(tmp_path))
    files.reader = r = CcdReader()
    try:
        keys = []
        for _ in range(2):
            try:
                files.at_connect("DEFAULT")
            except CcdPending as p:
                keys.append(p.key)
        assert keys == [str(tmp_path / "DEFAULT")] * 2 and r.waiting == 1
        deadline = time.monotonic() + 30
        got: set = set()
        while not got and time.monotonic() < deadline:
            got = r.take_finished()
            time.sleep(0.01)
        assert got == {keys[0]} and files.at_connect("DEFAULT").push_reset
        r.forget(got)
        (tmp_path / "DEFAULT").write_bytes(FILLER * (2 * INLINE_MAX // len(FILLER)) + b"disable\n")
        try:
            files.at_connect("DEFAULT")
            raise AssertionError("answered from the old read")
        except CcdPending:
            pass
        # Small files and names with no file are answered at once, as before.
        (tmp_path / "small").write_text("push-reset\n")
        assert files.at_connect("small").push_reset and files.at_connect("nobody") is None
    finally:
        r.close()
