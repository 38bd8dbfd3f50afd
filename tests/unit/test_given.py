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


def _held(n: int, cn: str, established: bool = True, connect_state: str | None = "done"):
    return SimpleNamespace(common_name=cn, n=n, alive=True, connect_state=connect_state,
                           session=SimpleNamespace(established=established))


def test_refused_by_count_keeps_the_newest_of_a_name_and_the_oldest_under_max_clients():
    from appliance.gateway.reload_admission import refused_by_count
    recs = [_held(i, n) for i, n in enumerate(["a", "b", "a", "c", "a"])]
    out = refused_by_count(recs, duplicate_cn=False, max_clients=10, order=lambda r: r.n)
    assert {recs[i].n for i in range(5) if id(recs[i]) in out} == {0, 2}
    out = refused_by_count(recs, duplicate_cn=True, max_clients=3, order=lambda r: r.n)
    assert {r.n for r in recs if id(r) in out} == {3, 4} and all("max-clients 3" in v for v in out.values())
    # As the connect path, one by one (admit45): with a(0) and b(1) established the server is
    # full for any newcomer, whose name is not known yet at its start (2.6: at the instance's
    # creation): a(2), c(3), a(4) refused, a(0) kept. The whole-set rule before (every older a
    # out, then max-clients over b, c, a(4)) kept b and c and no session of the name a.
    out = refused_by_count(recs, duplicate_cn=False, max_clients=2, order=lambda r: r.n)
    assert {r.n for r in recs if id(r) in out} == {2, 3, 4}
    # max-clients 3: a(2) finds room and ends a(0); c(3) finds room; a(4) finds b, a(2), c full.
    out = refused_by_count(recs, duplicate_cn=False, max_clients=3, order=lambda r: r.n)
    assert {r.n for r in recs if id(r) in out} == {0, 4}


def test_refused_by_count_counts_a_pending_connect_and_not_a_restart_or_a_handshake():
    from appliance.gateway.reload_admission import refused_by_count
    old, pending = _held(0, "a"), _held(1, "b", established=False, connect_state="pending")
    handshake = _held(2, "c", established=False, connect_state=None)
    out = refused_by_count([old, pending, handshake], duplicate_cn=False, max_clients=1, order=lambda r: r.n)
    assert out == {id(pending): "max-clients 1 reached (1 clients connected before it)"}
    # a restart in place (same name, same address) of `old`, its connect pending: no other client
    restart = _held(1, "a", established=False, connect_state="pending")
    restarts = {id(restart): (old,)}
    out = refused_by_count([old, restart], duplicate_cn=True, max_clients=1, order=lambda r: r.n,
                           restarts_of=lambda r: restarts.get(id(r), ()))
    assert out == {}
    out = refused_by_count([old, restart], duplicate_cn=False, max_clients=1, order=lambda r: r.n,
                           restarts_of=lambda r: restarts.get(id(r), ()))
    assert out == {id(old): "replaced by a new session from the same address"}
    # one told to go already holds its place (as at a connect) but gets no verdict of its own
    told, newer = _held(0, "a"), _held(1, "a")
    out = refused_by_count([told, newer], duplicate_cn=False, max_clients=5, order=lambda r: r.n,
                           judged=lambda r: r is not told)
    assert out == {}


def test_auth_user_pass_optional_taken_away_is_tightened_switched_on_is_not():
    """atk45: the line lets a login without credentials in; taken away, a kept client may have
    come in so (at 2.6's SIGHUP its reconnect is refused): told RESTART. Switched on: a
    leniency added, nothing to check again."""
    from appliance.openvpn.given import Tightened, admission_of, tightened
    from appliance.openvpn.config import parse_config
    text = ("dev tun\nserver 198.18.5.0 255.255.255.0\ntopology subnet\nca ca.crt\ncert s.crt\nkey s.key\n"
            "dh none\nscript-security 2\nauth-user-pass-verify /bin/true via-env\n")
    lenient = admission_of(parse_config(text + "auth-user-pass-optional\n", read_file=lambda p: b""))
    strict = admission_of(parse_config(text, read_file=lambda p: b""))
    got = tightened(lenient, strict)
    assert isinstance(got, Tightened) and got.startswith("auth-user-pass-optional taken away"), got
    assert tightened(strict, lenient) is None and tightened(lenient, lenient) is None
    # review46d: a client that logged in with a username passed the command with it: kept
    assert tightened(lenient, strict, credentials=True) is None
    changed = admission_of(parse_config(text.replace("/bin/true", "/bin/false"), read_file=lambda p: b""))
    assert tightened(lenient, changed, credentials=True).startswith("auth-user-pass-verify changed")


def test_a_reload_that_keeps_the_cipher_and_tls_lines_restarts_nobody():
    """review46d: atk45's cipher and TLS-version verdicts fire only when the reload's lines leave
    the client's own out -- an unchanged SIGHUP must not tell anyone RESTART: a client on the
    data-ciphers-fallback, one on TLS 1.2 under the default minimum, one on 1.3."""
    from types import SimpleNamespace as NS
    from appliance.openvpn.given import cipher_dropped, tls_version_out
    cfg = NS(data_ciphers=["AES-256-GCM", "AES-128-GCM"], data_ciphers_fallback="AES-128-CBC")
    assert [cipher_dropped(c, cfg) for c in ("AES-256-GCM", "AES-128-GCM", "AES-128-CBC", None)] == [None] * 4
    assert cipher_dropped("AES-128-CBC", NS(data_ciphers=["AES-256-GCM"], data_ciphers_fallback=None))
    default, range_ = NS(tls_version_min=None, tls_version_max=None), NS(tls_version_min="1.0", tls_version_max="1.2")
    assert [tls_version_out(v, default) for v in ("TLSv1.2", "TLSv1.3", None)] == [None] * 3
    assert [tls_version_out(v, range_) for v in ("TLSv1", "TLSv1.1", "TLSv1.2")] == [None] * 3
    assert "above the reload's tls-version-max 1.2" in tls_version_out("TLSv1.3", range_)


def test_a_tls_1_0_client_is_told_when_the_reload_raises_the_minimum():
    """review46d: OpenSSL names TLS 1.0 `TLSv1` (not `TLSv1.0`); read as no version, a kept TLS
    1.0 client stayed past the reload that raised tls-version-min to retire it."""
    from types import SimpleNamespace as NS
    from appliance.openvpn.given import tls_version_out
    got = tls_version_out("TLSv1", NS(tls_version_min="1.2", tls_version_max=None))
    assert got is not None and "its TLS 1.0 is below the reload's tls-version-min 1.2" in got


def test_refused_by_count_hands_a_shared_name_over_once_not_at_each_of_its_clients(monkeypatch):
    """A reload's pass stays one walk when many clients share one certificate (review46a): with
    duplicate-cn on, each client was handed every earlier session of its name, so a pass over
    8,000 clients of one name took ~1 s on the loop (quadratic). Counted, not timed: the
    sessions of a name the decision is handed, over the whole pass, stay within the clients'
    number, with duplicate-cn on (nothing to end) and off (one session of the name at a time)."""
    import appliance.openvpn.count_checks as cc
    from appliance.gateway.reload_admission import refused_by_count
    handed: list[int] = []
    real = cc.by_count

    def counting(rec, n_present, same_name, *rest):
        same_name = list(same_name)
        handed.append(len(same_name))
        return real(rec, n_present, same_name, *rest)

    monkeypatch.setattr(cc, "by_count", counting)
    recs = [_held(i, "shared") for i in range(400)]
    assert refused_by_count(recs, duplicate_cn=True, max_clients=1000, order=lambda r: r.n) == {}
    assert len(handed) == 400 and sum(handed) <= 400, sum(handed)
    handed.clear()
    out = refused_by_count(recs, duplicate_cn=False, max_clients=1000, order=lambda r: r.n)
    assert set(out) == {id(r) for r in recs[:-1]}       # the newest of the name kept
    assert len(handed) == 400 and sum(handed) <= 400, sum(handed)


def test_the_default_tls_minimum_is_one_decision_for_the_context_and_a_reload(monkeypatch):
    """compat47: tls_version_out repeated tls.py's default minimum ("1.2"); both read
    tls.tls_version_min now, so a changed default moves the context and a reload's verdict
    on kept clients together (here: raised to 1.3, a kept TLS 1.2 client is told to restart)."""
    from types import SimpleNamespace as NS
    from appliance.openvpn import tls
    from appliance.openvpn.given import tls_version_out
    default = NS(tls_version_min=None, tls_version_max=None)
    assert tls_version_out("TLSv1.1", default) is not None and tls_version_out("TLSv1.2", default) is None
    monkeypatch.setattr(tls, "DEFAULT_TLS_VERSION_MIN", "1.3")
    assert tls.tls_version_min(default) == "1.3"
    assert "below the reload's tls-version-min 1.3" in tls_version_out("TLSv1.2", default)


def test_a_kept_clients_cipher_is_judged_with_its_ccd_lines_as_at_its_connect():
    """compat47: a ccd `data-ciphers` replaces the server's list for its client in 2.6; a
    reload taking the client's cipher out of the server's list alone does not change what the
    client is given. ciphers.client_choice decides for both the connect and the reload."""
    from types import SimpleNamespace as NS
    from appliance.openvpn.given import cipher_dropped
    cfg = NS(data_ciphers=["AES-256-GCM"], data_ciphers_fallback=None)
    info = {"IV_CIPHERS": "AES-128-GCM:CHACHA20-POLY1305"}
    assert cipher_dropped("AES-128-GCM", cfg, info, None) is not None          # no file: the server's list
    assert cipher_dropped("AES-128-GCM", cfg, info, parse_ccd("data-ciphers AES-128-GCM\n")) is None
    assert cipher_dropped("AES-128-GCM", cfg, info, parse_ccd("data-ciphers CHACHA20-POLY1305\n"))
    assert cipher_dropped("AES-128-GCM", cfg, info, parse_ccd("data-ciphers AES-256-GCM\n"))   # none in common
    assert cipher_dropped("AES-128-GCM", cfg, info, parse_ccd("push-reset\n")) is not None   # no cipher line


def test_a_kept_client_on_the_fallback_name_that_named_its_ciphers_is_told_when_the_reload_retires_it():
    """review47f: a client that named its ciphers (IV_CIPHERS, or its options string's `cipher`)
    gets no data-ciphers-fallback in 2.6.14 (multi.c): after a reload that takes AES-256-GCM out of
    data-ciphers but names it as the fallback, 2.6's reconnect refuses such a client; ours kept it
    on AES-256-GCM because the name equalled the fallback. A client that named nothing keeps it."""
    from types import SimpleNamespace as NS
    from appliance.openvpn.given import cipher_dropped
    cfg = NS(data_ciphers=["AES-128-GCM"], data_ciphers_fallback="AES-256-GCM")
    assert cipher_dropped("AES-256-GCM", cfg, {"IV_CIPHERS": "AES-256-GCM"}) is not None
    assert cipher_dropped("AES-256-GCM", cfg, {}, None, "AES-256-GCM") is not None      # pre-2.4: its `cipher`
    assert cipher_dropped("AES-256-GCM", cfg, {"IV_VER": "2.3.18"}) is None              # named nothing: the fallback
    assert cipher_dropped("AES-128-GCM", cfg, {"IV_CIPHERS": "AES-256-GCM"}) is None     # in the list: kept as before
