"""414f428f (CVE-2024-5594): what a control-channel text message must look like before either
end acts on it, as OpenVPN 2.6.14 (Debian's) reads them: messages end at a NUL; text after the
last NUL of a TLS record is no message; a message holding a byte below 0x20 or 0x7f (a CR/LF
at its very end aside, which is cut off) is refused whole, with a warning, never acted upon in a
fixed-up form. Ours split at NUL and escaped control bytes, then acted on the escaped text: a
peer's `EXIT\\x07`, `HALT\\x1b[2J` or an un-terminated `EXIT` ended the session, where OpenVPN
ignores them.

Both directions, on one Session pair in memory: a hostile client writes raw bytes into its TLS
stream to our server, a hostile server to our client.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from tests.engine.test_memory_link import connected
from tests.engine.test_session_security import _closed
from tests.engine.test_session_security import pki  # noqa: F401 - the fixture


def _send_raw(link, sender, raw: bytes) -> None:
    """`raw` as the application data of one TLS record from `sender` (no NUL added)."""
    ks = sender._active_ks()
    sender._queue_tls(ks, ks.tls.send_message(raw))
    sender._flush(link.now)
    link.run(lambda: False, max_steps=40)


def _warnings(sess) -> list[str]:
    return [e.message for e in sess.events if isinstance(e, ev.Warning)]


REFUSED = [
    b"EXIT\x07\0",                  # a control byte
    b"EXIT\x1b[2J\0",               # an escape sequence
    b"EXIT\tx\0",                   # a tab is below 0x20 too (OpenVPN's CC_PRINT)
    b"EXIT\x7f\0",                  # DEL
    b"EXIT\r\nINFO forged\0",       # a line break inside (only a trailing one is cut)
    b"EXIT",                        # no NUL: no message
    b"\0\0EXIT",                    # empty messages, then no NUL
]


@pytest.mark.parametrize("raw", REFUSED)
def test_a_client_cannot_end_its_session_with_a_malformed_exit(pki, raw):  # noqa: F811
    c, s, link = connected(pki)
    _send_raw(link, c, raw)
    assert not s.closed and not _closed(s), f"the server acted on {raw!r}"
    assert any("control message" in w for w in _warnings(s)), _warnings(s)


@pytest.mark.parametrize("raw", REFUSED)
def test_a_server_cannot_end_the_client_with_a_malformed_halt(pki, raw):  # noqa: F811
    c, s, link = connected(pki)
    _send_raw(link, s, raw.replace(b"EXIT", b"HALT"))
    assert not c.closed and not _closed(c), f"the client acted on {raw!r}"
    assert any("control message" in w for w in _warnings(c)), _warnings(c)


@pytest.mark.parametrize("raw", [b"EXIT\0", b"EXIT\r\n\0", b"EXIT\n\0", b"INFO,x\x80\0EXIT\0"])
def test_well_formed_messages_still_act(pki, raw):  # noqa: F811
    """The check can pass: a NUL-terminated EXIT (a trailing CR/LF cut, as OpenVPN's buf_chomp;
    bytes from 0x80 up allowed, as OpenVPN's CC_PRINT) ends the session."""
    c, s, link = connected(pki)
    _send_raw(link, c, raw)
    assert s.closed and _closed(s)
    c, s, link = connected(pki)
    _send_raw(link, s, raw.replace(b"EXIT", b"HALT"))
    assert c.closed and _closed(c)


def test_a_refused_message_does_not_take_the_next_one_with_it(pki):  # noqa: F811
    """Messages are framed by NUL: the good one after a refused one in the same record counts."""
    c, s, link = connected(pki)
    _send_raw(link, c, b"INFO\x1b]0;x\x07\0EXIT\0")
    assert s.closed and any("invalid characters" in w for w in _warnings(s))
