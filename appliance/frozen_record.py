"""FrozenRecord: what `@dataclass(frozen=True)` gives a small value class, without its import cost.

Why: every process pays its imports before it is ready (README, "Forty-fourth session (helper
startup49)"). A frozen dataclass writes the source of its __init__, __repr__, __eq__, __hash__,
__setattr__ and __delattr__ and compiles each at import: ~0.6 ms per class on this machine, ~0.02 ms
for a plain class, and the engine's events alone were 18 of them on every server's and client's path.
A subclass declares its fields as a dataclass does -- annotations in order, a default as a class
attribute -- and gets the same behaviour: __init__ taking them positionally or by keyword (TypeError
for a missing, repeated or unknown one), == and hash over the compared fields and only between
instances of the same class, a repr `Name(field=value, ...)`, assignment and deletion refused with
dataclasses.FrozenInstanceError, __match_args__, copy and pickle; `r.replace(name=value)` for
dataclasses.replace(r, name=value). What a dataclass field(repr=False) or field(compare=False)
said, `_not_shown` and `_not_compared` say. Not supported (use a dataclass): dataclasses.fields(),
replace() and asdict() on it, default factories, ClassVar fields, order=True.
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any, ClassVar


class FrozenRecord:
    """Base of immutable value classes; see the module's docstring."""
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _not_shown: ClassVar[tuple[str, ...]] = ()
    _not_compared: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [n for n, t in cls.__dict__.get("__annotations__", {}).items()
               if "ClassVar" not in str(t).split("[")[0]]      # "ClassVar[...]", typing.ClassVar[...]
        fields = cls._fields + tuple(n for n in own if n not in cls._fields)
        defaults = dict(cls._defaults)
        defaults.update({n: cls.__dict__[n] for n in own if n in cls.__dict__})
        seen_default = None
        for n in fields:                     # as a dataclass refuses it: a required field after a default
            if n in defaults:
                seen_default = n
            elif seen_default is not None:
                raise TypeError(f"non-default argument {n!r} follows default argument {seen_default!r}")
        for n in (*cls._not_shown, *cls._not_compared):
            if n not in fields:
                raise TypeError(f"{cls.__name__}: {n!r} is not a field")
        cls._fields, cls._defaults, cls.__match_args__ = fields, defaults, fields
        cls._shown = tuple(n for n in fields if n not in cls._not_shown)
        cls._compared = tuple(n for n in fields if n not in cls._not_compared)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields, name = self._fields, type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}.__init__() takes {len(fields) + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        d = self.__dict__
        for f, v in zip(fields, args):
            if f in kwargs:
                raise TypeError(f"{name}.__init__() got multiple values for argument {f!r}")
            d[f] = v
        used = 0
        for f in fields[len(args):]:
            if f in kwargs:
                d[f] = kwargs[f]
                used += 1
            elif f in self._defaults:
                d[f] = self._defaults[f]
            else:
                raise TypeError(f"{name}.__init__() missing required argument: {f!r}")
        if used != len(kwargs):
            unknown = sorted(k for k in kwargs if k not in fields)
            raise TypeError(f"{name}.__init__() got an unexpected keyword argument {unknown[0]!r}")

    def replace(self, **changes: Any) -> FrozenRecord:
        """A copy with `changes` (dataclasses.replace's: through __init__, so an unknown name fails)."""
        return type(self)(**{**{n: getattr(self, n) for n in self._fields}, **changes})

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self._shown) + ")"

    def _key(self) -> tuple:
        return tuple(getattr(self, n) for n in self._compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()          # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
