"""openvpn/given.py: what a reload compares to decide whether a kept client would now be given
other options (gateway/ops.py restarts those)."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.openvpn.config import parse_ccd
from appliance.openvpn.given import given_under, what_differs


def _st(push=("ping 10",), connect=()):
    return SimpleNamespace(push=list(push), addressing_push=(("topology subnet",), ()), connect_command=connect)


def test_a_comment_or_blank_line_changes_nothing():
    a = parse_ccd("ifconfig-push 198.19.0.5 255.255.255.0\n", "<a>")
    b = parse_ccd("# moved\n\nifconfig-push 198.19.0.5   255.255.255.0\n", "<b>")
    assert what_differs(given_under(_st(), a), given_under(_st(), b)) is None


def test_each_input_that_would_give_other_options_is_told():
    old = parse_ccd("ifconfig-push 198.19.0.5 255.255.255.0\niroute 198.18.90.0 255.255.255.0\n", "<a>")
    was = given_under(_st(), old)
    cases = {
        "its client-config-dir file changed": given_under(_st(), parse_ccd(
            "ifconfig-push 198.19.0.6 255.255.255.0\niroute 198.18.90.0 255.255.255.0\n", "<b>")),
        "its client-config-dir file is gone": given_under(_st(), None),
        "the client-connect line changed": given_under(_st(connect=("/bin/true",)), old),
        "the push lines changed": given_under(_st(push=("ping 10", "route 10.0.0.0 255.0.0.0")), old),
    }
    for why, now in cases.items():
        assert what_differs(was, now) == why
    assert what_differs(given_under(_st(), None), given_under(_st(), old)) == "its client-config-dir file is new"
    iroute = parse_ccd("ifconfig-push 198.19.0.5 255.255.255.0\niroute 198.18.91.0 255.255.255.0\n", "<c>")
    assert what_differs(was, given_under(_st(), iroute)) == "its client-config-dir file changed"
