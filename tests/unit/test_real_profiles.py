"""The real-world config shapes of tests/real_profiles.py through `vpn-appliance check`'s own
checks: the ones Debian's OpenVPN 2.6.14 accepts (lab/profile_compare.py) check clean here, but
for the lines a shape documents as refused; every refusal names its file and line; where 2.6
refuses at a line, ours refuses that line too. Without its refused lines each shape checks clean
(what a user gets after removing what the error names)."""
from __future__ import annotations

import pytest

from appliance.cli import _runtime_checked
from appliance.openvpn.config import ConfigError, ConfigErrors, load_config
from tests.real_profiles import SHAPES, SHAPES_BY_NAME, write_all


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("shapes"))


def _errors(path) -> list[ConfigError]:
    """What `vpn-appliance check FILE` reports (cli.cmd_check's steps, the key prompt aside)."""
    try:
        _runtime_checked(load_config(str(path)))
    except ConfigErrors as e:
        return list(e.errors)
    except ConfigError as e:
        return [e]
    return []


def _prefix(shape, line: str) -> str | None:
    return next((p for p in shape.refused if line.startswith(p)), None)


def test_more_than_25_distinct_shapes_with_their_verdicts():
    assert len(SHAPES) >= 25 and len(SHAPES_BY_NAME) == len(SHAPES)
    both = [s for s in SHAPES if s.openvpn.startswith("accepts") and not s.refused]
    assert len(both) >= 20, [s.name for s in both]
    for s in SHAPES:        # a gap we keep says why 2.6 accepts what we refuse
        assert s.openvpn.startswith(("accepts", "refuses")), s


@pytest.mark.parametrize("name", [s.name for s in SHAPES])
def test_check_accepts_it_or_refuses_it_at_the_documented_lines(name, written):
    shape, path = SHAPES_BY_NAME[name], written[name]
    lines = path.read_text().split("\n")
    errors = _errors(path)
    if not shape.refused:
        assert errors == [], errors
        return
    assert errors, f"{name}: documented as refused ({shape.refused}) but checks clean"
    at_lines = [e for e in errors if e.line is not None]
    assert {e.directive for e in errors if e.line is None} <= set(shape.follows), errors
    for e in at_lines:
        assert e.path == str(path), e
        assert _prefix(shape, lines[e.line - 1]) is not None, f"undocumented refusal: {e}"
    assert {_prefix(shape, lines[e.line - 1]) for e in at_lines} == set(shape.refused), errors
    if shape.openvpn_line is not None:          # where 2.6 refuses, we refuse too
        assert shape.openvpn_line in {e.line for e in errors}, (shape.openvpn, errors)


@pytest.mark.parametrize("name", [s.name for s in SHAPES if s.refused and s.removable])
def test_without_its_refused_lines_it_checks_clean(name, written, tmp_path):
    shape, path = SHAPES_BY_NAME[name], written[name]
    kept = [ln for ln in path.read_text().split("\n") if _prefix(shape, ln) is None]
    p = path.parent / f"kept-{path.name}"
    p.write_text("\n".join(kept))
    p.chmod(0o600)
    assert _errors(p) == []


def test_lines_whose_reading_is_easy_to_get_wrong(written):
    """Synology's single-quoted name, Sophos UTM's subject and remote_host route, the Asuswrt
    client's `keepalive` and its repeated `nobind`, PIA's inline CRL: read as 2.6 reads them."""
    o = load_config(str(written["synology-client"]))
    assert o.verify_x509_name == ("synology", "name") and o.redirect_gateway == ["def1"]
    o = load_config(str(written["sophos-utm-client"]))
    assert o.verify_x509_name == ("CN=server", "subject")
    assert [tuple(r) for r in o.route] == [("remote_host", "255.255.255.255", "net_gateway", None)]
    o = load_config(str(written["asuswrt-client"]))
    assert (o.ping, o.ping_restart) == (15, 60) and o.nobind
    o = load_config(str(written["pia-strong"]))
    assert o.crl_verify
