"""A server (or whoever holds its key) abusing AUTH_PENDING / INFO towards our client
(roles.ClientRole._auth_pending, _server_info)."""
from __future__ import annotations

from appliance.openvpn import events as ev
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture


def test_auth_pending_in_a_renegotiation_does_not_stretch_its_hand_window(pki):  # noqa: F811
    """OpenVPN 2.6's client reads AUTH_PENDING for the wait for its first push only
    (receive_auth_pending moves push_request_timeout); a renegotiation keeps its hand-window.
    Here a server could hold a renegotiation open for reneg-sec/2 (30 minutes by default)
    instead of the client giving up on it at hand-window, with a message a minute."""
    c, s, _ = make_pair(pki)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    c.renegotiate(link.now)
    ks = c.keys[c.newest_key_id]
    assert ks.key_id != 0 and ks.negotiating
    c.role.text_message(ks, "AUTH_PENDING,timeout 1000", link.now)
    assert ks.hand_deadline is None and ks.auth_pending_at is None
    assert not [e for e in c.events if isinstance(e, ev.AuthPending)]


def test_a_web_login_url_cannot_hide_behind_bidi_or_line_separators(pki):  # noqa: F811
    """INFO_PRE,WEB_AUTH::<url> is shown for the user to open. A right-to-left override (U+202E)
    made `https://evil.example/\\u202emoc.knab` read as `.../bank.com` on a terminal, and U+2028
    starts a new line in some log viewers: format and separator characters are shown escaped."""
    c, _s, _ = make_pair(pki)
    ks = c.keys[0]
    c.role.text_message(ks, "INFO_PRE,WEB_AUTH::https://evil.example/\u202emoc.knab\u2028forged line", 1.0)
    c.role.text_message(ks, "AUTH_PENDING,timeout 60\u202e", 1.0)
    infos = [e for e in c.events if isinstance(e, (ev.ServerInfo, ev.AuthPending))]
    assert infos[0] == ev.ServerInfo("INFO_PRE", "WEB_AUTH::https://evil.example/\\u202emoc.knab\\u2028forged line")
    assert infos[1].keywords == "timeout 60\\u202e"
