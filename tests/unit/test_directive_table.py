"""The directive table: each OpenVPN directive is declared once, as applied, refused or a no-op with
its reason, and the settings it produces are really read by someone."""
from __future__ import annotations

import pathlib
import re
from dataclasses import fields

import pytest

from appliance.openvpn.config import directives
from appliance.openvpn.config.directives import Directive, Kind, Registry
from appliance.openvpn.config.model import DERIVED_FIELDS, Options
from appliance.openvpn.config.table import FIELD_DIRECTIVES, TABLE

ROOT = pathlib.Path(__file__).resolve().parents[2] / "appliance"
CONFIG_PKG = ROOT / "openvpn" / "config"

# Settings parsed for a consumer that does not read them yet (not one of them changes who may connect).
NOT_YET_READ: dict[str, str] = {}


def test_each_directive_has_exactly_one_outcome():
    for name, e in TABLE.items():
        assert e.name == name
        assert isinstance(e.kind, Kind)
        assert e.why, name
        if e.kind is Kind.APPLY:
            assert e.handler is not None and e.used_by in directives.USERS, name
        else:
            assert not e.sets and not e.used_by, name
        if e.kind is Kind.REFUSE:
            assert e.handler is None, name


def test_a_name_cannot_be_declared_twice():
    reg = Registry()
    reg.noop("persist-key", "x")
    with pytest.raises(ValueError):
        reg.refuse("persist-key", "y")
    with pytest.raises(ValueError):
        reg.apply("persist-key", why="z", used_by="parser")(lambda p, d, a, i: None)


def test_directives_that_change_who_may_connect_are_never_no_ops():
    access = {n for n, e in TABLE.items() if e.access}
    # The ones the security rule is about (server and client side); all must be in the table as such.
    for name in ("ca", "remote-cert-tls", "remote-cert-eku", "remote-cert-ku", "verify-x509-name",
                 "peer-fingerprint", "tls-auth", "tls-crypt", "tls-crypt-v2", "verify-client-cert",
                 "auth-user-pass-verify", "client-config-dir", "ccd-exclusive", "username-as-common-name",
                 "duplicate-cn", "max-clients", "crl-verify", "opt-verify", "tls-verify", "plugin",
                 "client-connect", "tls-crypt-v2-verify"):
        assert name in access, name
    for name in access:
        assert TABLE[name].kind in (Kind.APPLY, Kind.REFUSE), name


def test_every_options_field_is_set_by_a_declared_directive():
    for f in fields(Options):
        if f.name in DERIVED_FIELDS:
            continue
        assert f.name in FIELD_DIRECTIVES, f"{f.name}: no directive declares it"


def _sources(exclude: pathlib.Path) -> str:
    return "\n".join(p.read_text() for p in ROOT.rglob("*.py") if exclude not in p.parents)


def test_every_applied_setting_is_read_where_its_declaration_says():
    """A field nobody reads is a directive accepted and ignored: make the table say so instead."""
    outside = _sources(CONFIG_PKG)
    parser = (CONFIG_PKG / "parser.py").read_text()
    def read(fname: str, text: str) -> bool:
        return bool(re.search(rf"\.{fname}\b", text))

    for fname, entries in FIELD_DIRECTIVES.items():
        if fname not in NOT_YET_READ:
            assert read(fname, outside) or read(fname, parser), f"{fname} is read nowhere"
    for name, e in TABLE.items():
        if e.kind is not Kind.APPLY or not e.sets or set(e.sets) <= set(NOT_YET_READ):
            continue
        where = parser if e.used_by == "parser" else outside
        assert any(read(f, where) for f in e.sets), f"{name}: used_by={e.used_by} but no reader of {e.sets}"


def test_not_yet_read_list_is_current():
    outside = _sources(CONFIG_PKG)
    for fname in NOT_YET_READ:
        assert not re.search(rf"\.{fname}\b", outside), f"{fname} is read now: drop it from NOT_YET_READ"
        assert not any(e.access for e in FIELD_DIRECTIVES[fname])


def test_handlers_cannot_set_undeclared_fields():
    from appliance.openvpn.config.parser import ParseState
    rogue = Directive("rogue", Kind.APPLY, "test", lambda p, d, a, i: p.set("verb", 5), sets=("ca",),
                      used_by="parser")
    st = ParseState("/p/x.ovpn", lambda p: b"", {"rogue": rogue})
    with pytest.raises(AssertionError):
        st.dispatch(["rogue"], None)
