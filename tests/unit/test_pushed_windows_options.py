"""A pushed Windows-only option (block-outside-dns, which PiVPN, Nyr, docker-openvpn and eduVPN
push to every client): OpenVPN 2.6's Linux client does not know it and logs "Options error:
Unrecognized option or missing or extra parameter(s) in [PUSH-OPTIONS]:N: block-outside-dns"
and goes on; ours names it the same way (N: its place in the push message) instead of listing it
as silently ignored. A `pull-filter ignore` keeps it out before, as in 2.6 (no error)."""
from __future__ import annotations

import logging

from appliance.gateway.eventlog import log_unrecognized
from appliance.openvpn.keymethod import parse_push_reply_untrusted

REPLY = "PUSH_REPLY,route 198.18.100.0 255.255.255.0,block-outside-dns,register-dns,ping 5,topology subnet"


def test_named_as_2_6_names_it_and_the_rest_applies():
    p = parse_push_reply_untrusted(REPLY)
    assert p.unrecognized == ["[PUSH-OPTIONS]:2: block-outside-dns", "[PUSH-OPTIONS]:3: register-dns"]
    assert p.ignored == [] and p.ping == 5 and p.routes and p.topology == "subnet"


def test_route_nopull_does_not_hide_it_and_pull_filter_does():
    assert parse_push_reply_untrusted(REPLY, route_nopull=True).unrecognized[0].endswith("block-outside-dns")
    p = parse_push_reply_untrusted(REPLY, filters=[("ignore", "block-outside-dns")])
    assert p.filtered == ["block-outside-dns"] and p.unrecognized == ["[PUSH-OPTIONS]:3: register-dns"]


def test_logged_as_errors_bounded(caplog):
    p = parse_push_reply_untrusted("PUSH_REPLY," + ",".join(["block-outside-dns"] * 40))
    with caplog.at_level(logging.ERROR, logger="vpn-appliance"):
        log_unrecognized(p)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Options error: Unrecognized option or missing or extra parameter(s) in "
                               "[PUSH-OPTIONS]:1: block-outside-dns")
    assert len(lines) == 9 and lines[-1] == "... 40 such pushed options in all"
