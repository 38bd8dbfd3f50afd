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


def test_an_admission_check_added_or_changed_is_tightened_one_taken_away_is_not():
    """given.tightened: what a kept client never went through (told RESTART, never held off)."""
    from appliance.openvpn.given import Tightened, tightened
    base = (None, False, (), (), False)
    cases = {
        0: ((("/bin/check",), "via-env"), "auth-user-pass-verify added"),
        1: (True, "management-client-auth added"),
        2: (("/bin/tv",), "tls-verify added"),
        3: (("/bin/la",), "learn-address added"),
        4: (True, "username-as-common-name changed"),
    }
    for i, (value, said) in cases.items():
        now = base[:i] + (value,) + base[i + 1:]
        got = tightened(base, now)
        assert isinstance(got, Tightened) and got.startswith(said), (i, got)
        back = tightened(now, base)             # taken away: a check fewer, no reconnect needed ...
        assert (back is None) == (i != 4), (i, back)    # ... but the name a client goes by changes
    changed = ((("/bin/other",), "via-env"),) + base[1:]
    was = ((("/bin/check",), "via-env"),) + base[1:]
    assert tightened(was, changed).startswith("auth-user-pass-verify changed")
    assert tightened((), base) is None and tightened(base, base) is None


def test_refused_by_count_keeps_the_newest_of_a_name_and_the_oldest_under_max_clients():
    from appliance.gateway.reload_admission import refused_by_count
    recs = [SimpleNamespace(common_name=n, n=i) for i, n in enumerate(["a", "b", "a", "c", "a"])]
    out = refused_by_count(recs, duplicate_cn=False, max_clients=10, order=lambda r: r.n)
    assert {recs[i].n for i in range(5) if id(recs[i]) in out} == {0, 2}
    out = refused_by_count(recs, duplicate_cn=True, max_clients=3, order=lambda r: r.n)
    assert {r.n for r in recs if id(r) in out} == {3, 4} and all("max-clients 3" in v for v in out.values())
    out = refused_by_count(recs, duplicate_cn=False, max_clients=2, order=lambda r: r.n)
    assert {r.n for r in recs if id(r) in out} == {0, 2, 4}     # a, a dropped; of b, c, a(4): a(4) over
