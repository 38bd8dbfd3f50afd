"""The shape of the directive table: one Directive per OpenVPN directive name.

Why a table: a directive used to be described in up to four places (a `d_*` handler, a NOOP set,
a REJECT map, the renderer), and they disagreed (14 names were both "no effect" and handled;
`replay-window` was accepted and silently ignored). Now each name is declared exactly once, with
one of three outcomes:

- APPLY:  a handler parses the arguments and sets the Options fields listed in `sets`; `used_by`
          names who reads them (session, tls, server, client, pump, parser).
- REFUSE: the directive is an error, reported as `file:line: directive: why`.
- NOOP:   accepted with a note saying why it has no effect here (an optional `check` may still
          refuse bad arguments, but it sets nothing).

`access` marks directives that change who may connect. The security rule: such a directive is
enforced (APPLY) or refused (REFUSE), never a NOOP; table.py asserts it at import time.

Registering a name twice raises, so a directive cannot be both handled and a no-op.
"""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ...frozen_record import FrozenRecord

if TYPE_CHECKING:
    from .parser import ParseState

Handler = Callable[["ParseState", str, list[str], "str | None"], None]


class Kind(str, Enum):
    APPLY = "applied"
    REFUSE = "refused"
    NOOP = "accepted, no effect"


USERS = ("session", "tls", "server", "client", "pump", "parser")


class Directive(FrozenRecord):
    name: str
    kind: Kind
    why: str                                  # APPLY: what it does; REFUSE/NOOP: the reason
    handler: Handler | None = None            # APPLY: parse + set; NOOP: optional argument check
    nargs: tuple[int, int | None] = (0, None)  # argument count accepted (hi None: no limit)
    sets: tuple[str, ...] = ()                # Options fields the handler may set
    used_by: str = ""                         # APPLY: who reads the fields (one of USERS)
    access: bool = False                      # changes who may connect
    inline: bool = False                      # may be given as an inline <name> block
    show: Mapping[str, Callable[[Any], Any]] | None = None  # field -> how `check` prints it


class Registry:
    """Collects the directives of one module; table.py merges the registries."""

    def __init__(self) -> None:
        self.items: dict[str, Directive] = {}

    def _add(self, d: Directive) -> None:
        if d.name in self.items:
            raise ValueError(f"directive {d.name} declared twice")
        self.items[d.name] = d

    def apply(self, *names: str, why: str, sets: tuple[str, ...] = (), used_by: str,
              nargs: tuple[int, int | None] = (0, None), access: bool = False, inline: bool = False,
              show: Mapping[str, Callable[[Any], Any]] | None = None) -> Callable[[Handler], Handler]:
        """Decorator: `names` (a directive and its aliases) are applied by the function."""
        def deco(fn: Handler) -> Handler:
            for n in names:
                self._add(Directive(n, Kind.APPLY, why, fn, nargs, sets, used_by, access, inline, show))
            return fn
        return deco

    def refuse(self, names: str, why: str, *, access: bool = False, inline: bool = False) -> None:
        """Each whitespace-separated name in `names` is an error, for the same reason."""
        for n in names.split():
            self._add(Directive(n, Kind.REFUSE, why, access=access, inline=inline))

    def noop(self, names: str, why: str, *, check: Handler | None = None,
             nargs: tuple[int, int | None] = (0, None), inline: bool = False) -> None:
        """Each whitespace-separated name in `names` is accepted with a note saying `why`."""
        for n in names.split():
            self._add(Directive(n, Kind.NOOP, why, check, nargs, inline=inline))


def case_variant(word: str, known: Callable[[str], bool]) -> str | None:
    """The directive `word` names if OpenVPN matched names without case, when it is spelled
    otherwise (`IROUTE` -> "iroute"), else None. OpenVPN 2.6 compares a line's first word with
    each directive's name exactly (options.c add_option: streq), so `KEEPALIVE 10 60` is an
    unknown option to it -- in a config file fatal, in a per-client file skipped; the callers
    read it so too and use this only to say what was meant."""
    low = word.lower()
    return low if low != word and known(low) else None


def case_hint(word: str, known: Callable[[str], bool]) -> str:
    """The hint appended to an unknown directive's message when only its case is wrong."""
    meant = case_variant(word, known)
    return (f" (OpenVPN 2.6 matches directive names exactly, case included: write `{meant}`)"
            if meant is not None else "")
