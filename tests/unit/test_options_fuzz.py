"""Property tests: whatever a user (or a hostile profile) feeds the config parser, only ConfigError
(ConfigErrors included) comes out, quickly, and every error is located in the file."""
from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.openvpn import config as options
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.config import ConfigErrors, parse_ccd, parse_config, render_options

PATH = "/fuzz/profile.ovpn"


def _read_file(p: str) -> bytes:
    """Files exist or not depending on their name, so both branches are exercised."""
    if "missing" in p:
        raise FileNotFoundError(2, "No such file or directory", p)
    if p.endswith(".pass"):
        return b"user\npass\n"
    return b"-----BEGIN X-----\nAAAA\n-----END X-----\n"


# Every directive of the one table (applied, refused, no-op), plus an unknown one.
DIRECTIVES = sorted(set(options.TABLE) | {"bogus"})
ARGS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "1194", "65535", "65536", "abc", "udp", "tcp", "udp6", "tcp-client",
                     "tcp-server", "server", "client", "subnet", "net30", "none", "yes", "no", "adaptive",
                     "stub-v2", "lz4", "198.18.0.1", "198.19.0.0", "255.255.255.0", "300.1.1.1", "[inline]",
                     "ca.crt", "missing.crt", "/abs/missing.key", "x.pass", "AES-256-GCM", "BF-CBC",
                     "AES-128-GCM:?CHACHA20-POLY1305", "?X", "SHA256", "1.2", "1.3", "opt", "foo", "\"a b\"",
                     "'q r'", "\"unterminated", "a\\ b", "\\", "#", ";", "--", "--client", "force-cookie",
                     "00:11", "AA:" * 31 + "AA", "1" * 5000, "١٢٣", "def1", "bypass-dhcp", "infinite",
                     "vpn_gateway", "default", "name-prefix", "mtu", "fixed", "\x00", "é", "a0", "80",
                     "TLS Web Server Authentication", "1.3.6.1.5.5.7.3.1", "x" * 257]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)


@st.composite
def directive_line(draw) -> str:
    d = draw(st.sampled_from(DIRECTIVES))
    prefix = draw(st.sampled_from(["", "", "--", "  ", "\t"]))
    args = draw(st.lists(ARGS, max_size=4))
    if draw(st.integers(0, 9)) == 0:  # an inline block, closed or not
        body = draw(st.lists(st.sampled_from(["AAAA", "-----BEGIN X-----", "</ca>", "#", "x y z"]), max_size=3))
        closing = [f"</{d}>"] if draw(st.booleans()) else []
        return "\n".join([f"<{d}>", *body, *closing])
    return prefix + " ".join([d, *args])


def _named(e: ConfigError, text: str) -> bool:
    """An error names the profile, or a file its `config FILE` lines read (_read_file serves any),
    at the start of its text."""
    ok = e.path == PATH or ("config" in text.lower() and e.path is not None and e.path.startswith("/"))
    return ok and str(e).startswith(f"{e.path}:")


def _check(text: str) -> None:
    t0 = time.thread_time()      # CPU time: a loaded machine (CI's VM half beside) stretches wall time
    try:
        o = parse_config(text, PATH, _read_file)
    except ConfigErrors as e:
        assert e.errors and len(e.errors) >= 2
        for x in e.errors:
            assert isinstance(x, ConfigError) and _named(x, text)
    except ConfigError as e:
        assert _named(e, text)
    else:
        assert o.role in ("client", "server")
        assert render_options(o)  # renders whatever was accepted
    assert time.thread_time() - t0 < 1.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_only_raises_config_error(text):
    _check(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(directive_line(), max_size=25))
def test_plausible_directive_lines_only_raise_config_error(lines):
    _check("\n".join(lines) + "\n")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(directive_line(), max_size=15))
def test_valid_base_plus_directives(lines):
    """Start from a profile that parses, so the later checks in finish() see real values too."""
    base = "client\nremote 198.18.0.1 1194\n<ca>\nX\n</ca>\n"
    _check(base + "\n".join(lines) + "\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(directive_line(), st.text(max_size=40)), max_size=10))
def test_ccd_only_raises_config_error(lines):
    try:
        parse_ccd("\n".join(lines), "/ccd/x")
    except ConfigError as e:
        for x in getattr(e, "errors", [e]):
            assert str(x).startswith("/ccd/x:")
