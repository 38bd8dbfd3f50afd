"""A server's pushes in non-ASCII text (a `setenv-safe` message in Chinese, say) reach the client.

Why: OpenVPN 2.6 reads at most 2048 bytes of control text at a time, and a client (OpenVPN's and
ours, keymethod.MAX_TEXT_MESSAGE) refuses a longer message unread; OpenVPN's server therefore
bundles its pushes by their length in bytes (PUSH_BUNDLE_SIZE). build_push_reply counted
characters: 20 pushes of 80 CJK characters made PUSH_REPLY messages of ~2,400 bytes, which every
client refused, so no client of such a server ever came up.
"""
from __future__ import annotations

from appliance.openvpn.keymethod import MAX_TEXT_MESSAGE, build_push_reply
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up

MOTD = "\u4e2d\u6587" * 35          # 70 characters, 210 bytes of UTF-8 (a line OpenVPN reads: < 256 bytes)


def test_each_push_reply_fits_what_a_client_reads():
    for text in (MOTD, "\u00e9" * 120, "\U0001f600" * 60, "a" * 240):
        opts = [f"setenv-safe MOTD_{i} {text}" for i in range(40)]
        msgs = build_push_reply(opts)
        assert all(len(m.encode()) + 1 <= 1024 for m in msgs), [len(m.encode()) for m in msgs]
        assert all(len(m.encode()) <= MAX_TEXT_MESSAGE for m in msgs)


def test_a_client_comes_up_with_pushes_in_chinese(pki):
    w = World()
    pushes = "".join(f'push "setenv-safe MOTD_{i} {MOTD}"\n' for i in range(20))
    w.add_server(server_conf(pki, extra=pushes))
    cg = w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert cg.conn is not None
