"""`vpn-appliance check`: every resolved setting with the line it came from.

How a field is shown is declared with the directive that sets it (`show` in the table): key
material and passwords are summarised, never printed. Defaults are marked `(default)`.
"""
from __future__ import annotations

from dataclasses import fields

from .model import Options
from .table import FIELD_DIRECTIVES

_HIDDEN = {"source", "notes", "path"}


def render_options(o: Options) -> str:
    """`name = value   # file:line` for each setting; secrets summarised; defaults marked."""
    out = []
    for f in fields(Options):
        if f.name in _HIDDEN:
            continue
        v = getattr(o, f.name)
        for entry in FIELD_DIRECTIVES.get(f.name, []):
            if entry.show and f.name in entry.show:
                v = entry.show[f.name](v)
                break
        src = o.source.get(f.name)
        where = f"# {src[0]}:{src[1]}" if src else "# (default)"
        out.append(f"{f.name.replace('_', '-')} = {v}   {where}")
    return "\n".join(out)
