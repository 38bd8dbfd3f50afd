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
replace() and asdict() on it, default factories (a mutable default is refused, as there), ClassVar
fields, order=True. Type checkers see each subclass as a frozen dataclass (dataclass_transform), and
a class's own __eq__/__hash__ is kept (StreamKey writes its own: hashed for every TCP packet).
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError
from operator import attrgetter
from typing import Any, Callable, ClassVar, dataclass_transform


def _eq_and_hash(names: tuple[str, ...]) -> tuple[Callable[[Any, object], bool], Callable[[Any], int]]:
    """A class's __eq__ and __hash__ over the compared fields, their tuple read in C
    (operator.attrgetter) by closures made per class (no source compiled): a TCP client's StreamKey
    is hashed for every packet it sends (openvpn/server.py by_addr), and the getattr loop in a
    generator these replace made == ~4x and a dict look-up ~2x a dataclass's time (helper review49b)."""
    if len(names) >= 2:
        key: Callable[[Any], tuple] = attrgetter(*names)
    elif names:
        one = attrgetter(names[0])
        key = lambda r: (one(r),)           # noqa: E731 - a 1-tuple, as a dataclass compares
    else:
        key = lambda r: ()                  # noqa: E731

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(key(self))
    return __eq__, __hash__


_set = object.__setattr__
_ABSENT = object()


# dataclass_transform (PEP 681): type checkers take each subclass's annotations as the fields of a
# frozen dataclass, so `Event(wrong_type)` or a missing argument is reported again, not hidden by
# __init__(*args, **kwargs); no run-time effect beyond setting __dataclass_transform__.
@dataclass_transform(frozen_default=True, eq_default=True)
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
        # A class's own __eq__ and __hash__ are kept, as a dataclass keeps them; the None Python sets
        # for an own __eq__ is not an own __hash__: a dataclass (frozen, eq) writes one then too.
        own_eq, own_hash = "__eq__" in cls.__dict__, cls.__dict__.get("__hash__", _ABSENT)
        eq, hash_ = _eq_and_hash(cls._compared)
        if not own_eq:
            cls.__eq__ = eq                     # type: ignore[method-assign,assignment]
        if own_hash is _ABSENT or (own_hash is None and own_eq):
            cls.__hash__ = hash_                # type: ignore[method-assign,assignment]
        for n, v in defaults.items():       # as a dataclass refuses them: one list shared by every record
            if type(v).__hash__ is None:
                raise ValueError(f"{cls.__name__}: mutable default {type(v).__name__} for field {n!r} "
                                 "is not allowed (a FrozenRecord has no default factory: use a dataclass)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # object.__setattr__, as a frozen dataclass's __init__: writing self.__dict__ instead gave
        # every record a materialised dict, and each later attribute read ~1.7x a dataclass's time
        # (3.11 reads an instance's own values inline only while its __dict__ was never asked for).
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}.__init__() takes {len(fields) + 1} positional "
                            f"arguments but {len(args) + 1} were given")
        for f, v in zip(fields, args):
            _set(self, f, v)
        if kwargs or len(args) < len(fields):
            self._by_keyword(len(args), kwargs)

    def _by_keyword(self, given: int, kwargs: dict[str, Any]) -> None:
        """The fields after the `given` positional ones: by keyword, else their default."""
        fields, name = self._fields, type(self).__name__
        for f in fields[:given]:
            if f in kwargs:
                raise TypeError(f"{name}.__init__() got multiple values for argument {f!r}")
        used = 0
        for f in fields[given:]:
            if f in kwargs:
                _set(self, f, kwargs[f])
                used += 1
            elif f in self._defaults:
                _set(self, f, self._defaults[f])
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

    # __eq__ and __hash__: each subclass's own, from _eq_and_hash in __init_subclass__.

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
