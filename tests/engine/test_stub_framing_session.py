"""A stub-framed session (comp-lzo no, compress, compress stub-v2) receiving another framing's
payload, as OpenVPN 2.6's compstub.c reads it: dropped and counted, the first logged with its
header byte, the session going on. The unit table of each first byte: tests/unit/test_compression.py."""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn.compstub import compress_stub
from tests.engine.test_compression_session import ADDR, _pair
from tests.engine.test_server_dispatcher import _icmp, _up, pki  # noqa: F401 - pki: fixture


@pytest.mark.parametrize("mode, wrong", [("lzo-stub", b"\xfbab\x45"), ("stub", b"\xfa\x45ab"),
                                         ("stub-v2", b"\x50\x01ab")])
def test_a_stub_session_drops_the_other_framing_as_2_6_and_says_so_once(pki, mode, wrong):
    """comp-lzo no takes 0xFA only, compress only 0xFB (2.6's compstub.c: "Bad compression stub
    decompression header byte"); the dropped payloads are counted, the first is logged with its
    byte, the session goes on (before, 0xFB passed under comp-lzo no and 0xFA under compress)."""
    d, cli = _pair(pki, mode, mode)
    assert _up(cli)
    srv = d.by_addr[ADDR].session
    ip = cli.pushed.ifconfig[0]
    pkt = _icmp("198.19.0.1", ip)
    for i in range(5):
        assert cli.receive(srv.send_key.seal(wrong), 1.0 + i / 10) == []
    assert cli.stats.get("bad compression framing") == 5
    warned = [e.message for e in cli.events if isinstance(e, ev.Warning) and "compression header byte" in e.message]
    assert len(warned) == 1 and f"byte {wrong[1] if mode == 'stub-v2' else wrong[0]}," in warned[0], warned
    assert not any(isinstance(e, ev.SessionClosed) for e in cli.events)
    assert [bytes(p) for p in cli.receive(srv.send_key.seal(compress_stub(mode, pkt)), 2.0)] == [pkt]
