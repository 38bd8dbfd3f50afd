"""The one directive table: every directive module's entries merged, invariants checked at import.

Invariants (also asserted by tests/unit/test_directive_table.py):
- a name is declared once (applied, refused, or a no-op with its reason — never two of these);
- a directive that changes who may connect (`access`) is applied or refused, never a no-op;
- an applied directive names who uses it; one that sets no field is a parser-level directive.
"""
from __future__ import annotations

from . import d_layer2, d_misc, d_network, d_ops, d_plugin, d_profile, d_proxy, d_security, d_seldom, d_tls
from .directives import USERS, Directive, Kind


def _merge() -> dict[str, Directive]:
    table: dict[str, Directive] = {}
    for reg in (d_network.reg, d_security.reg, d_tls.reg, d_misc.reg, d_ops.reg, d_proxy.reg, d_profile.reg,
                d_plugin.reg, d_seldom.reg, d_layer2.reg):
        for name, entry in reg.items.items():
            if name in table:
                raise ValueError(f"directive {name} declared twice")
            table[name] = entry
    for e in table.values():
        if e.access and e.kind is Kind.NOOP:
            raise ValueError(f"{e.name} changes who may connect: it must be applied or refused, not a no-op")
        if e.kind is Kind.APPLY and (e.handler is None or e.used_by not in USERS):
            raise ValueError(f"{e.name}: an applied directive needs a handler and a user")
        if e.kind is Kind.APPLY and not e.sets and e.used_by != "parser":
            raise ValueError(f"{e.name}: sets nothing, so only the parser can use it")
        if e.kind is not Kind.APPLY and (e.sets or e.used_by):
            raise ValueError(f"{e.name}: only an applied directive sets fields")
        if not e.why:
            raise ValueError(f"{e.name}: no reason given")
    return table


TABLE: dict[str, Directive] = _merge()
INLINE_TAGS = frozenset(n for n, e in TABLE.items() if e.inline)
NOOP = frozenset(n for n, e in TABLE.items() if e.kind is Kind.NOOP)
REFUSE = {n: e.why for n, e in TABLE.items() if e.kind is Kind.REFUSE}
APPLIED = frozenset(n for n, e in TABLE.items() if e.kind is Kind.APPLY)
# Which directive declares each Options field (for `check` and the invariant tests).
FIELD_DIRECTIVES: dict[str, list[Directive]] = {}
for _e in TABLE.values():
    for _f in _e.sets:
        FIELD_DIRECTIVES.setdefault(_f, []).append(_e)
