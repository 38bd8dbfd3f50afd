"""FrozenRecord behaves as the frozen dataclass it replaces (appliance/frozen_record.py): the same
class written both ways is checked side by side, a real dataclass being the oracle."""
import copy
import pickle
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from appliance.frozen_record import FrozenRecord


@dataclass(frozen=True)
class D:
    key_id: int
    secret: str = field(repr=False)
    name: str | None
    flag: bool = False
    check: object = field(default=None, repr=False, compare=False)


class R(FrozenRecord):
    key_id: int
    secret: str
    name: str | None
    flag: bool = False
    check: object = None
    _not_shown = ("secret", "check")
    _not_compared = ("check",)


CALLS = [((1, "s", "cn"), {}), ((1,), {"secret": "s", "name": None, "flag": True}),
         ((), {"key_id": 2, "secret": "x", "name": "n", "check": object()})]
BAD_CALLS = [((1, "s"), {}), ((1, "s", "n", True, None, 9), {}), ((1, "s", "n"), {"key_id": 3}),
             ((1, "s", "n"), {"colour": 1})]


@pytest.mark.parametrize("args,kwargs", CALLS)
def test_init_repr_eq_hash_as_the_dataclass(args, kwargs):
    d, r = D(*args, **kwargs), R(*args, **kwargs)
    assert repr(r) == repr(d).replace("D(", "R(", 1)
    assert [getattr(r, n) for n in ("key_id", "secret", "name", "flag", "check")] == \
        [getattr(d, n) for n in ("key_id", "secret", "name", "flag", "check")]
    other = R(*args, **{**kwargs, "check": "different"}) if "check" in kwargs else R(*args, **kwargs, check=1)
    assert r == other and hash(r) == hash(other)                 # `check` is not compared, as there
    assert (r == R(99, "s", "cn")) is (d == D(99, "s", "cn")) is False
    assert r != d and d != r                                     # another class is never equal
    assert R.__match_args__ == D.__match_args__


@pytest.mark.parametrize("args,kwargs", BAD_CALLS)
def test_bad_calls_fail_as_the_dataclasss(args, kwargs):
    with pytest.raises(TypeError):
        D(*args, **kwargs)
    with pytest.raises(TypeError):
        R(*args, **kwargs)


def test_frozen_copy_pickle_match():
    r = R(1, "s", "cn", flag=True)
    for attempt in (lambda: setattr(r, "key_id", 2), lambda: delattr(r, "name"), lambda: setattr(r, "new", 1)):
        with pytest.raises(FrozenInstanceError):
            attempt()
    assert copy.copy(r) == r and copy.deepcopy(r) == r and pickle.loads(pickle.dumps(r)) == r
    moved = r.replace(name="other", check=5)
    assert moved == R(1, "s", "other", True) and moved.check == 5 and r.name == "cn"
    with pytest.raises(TypeError):
        r.replace(colour=1)
    match r:
        case R(key_id, secret, name, flag):
            assert (key_id, secret, name, flag) == (1, "s", "cn", True)
        case _:
            pytest.fail("no match")


def test_a_required_field_after_a_default_and_an_unknown_option_are_refused():
    with pytest.raises(TypeError):
        class Bad(FrozenRecord):                                 # noqa: F841
            a: int = 0
            b: int
    with pytest.raises(TypeError):
        class Typo(FrozenRecord):                                # noqa: F841
            a: int
            _not_shown = ("b",)


def test_the_engine_events_are_records_with_their_hidden_fields():
    from appliance.openvpn import events
    a = events.AuthRequested(1, "user", "hunter2", "cn", check=object())
    assert "hunter2" not in repr(a) and "user" in repr(a)
    assert a == events.AuthRequested(1, "user", "hunter2", "cn")
    assert "secretmeta" not in repr(events.V2VerifyRequested(1, b"secretmeta"))
    assert events.SessionClosed("x", True) != events.SessionClosed("x", False)


def test_a_classvar_annotation_is_not_a_field():
    from typing import ClassVar

    class C(FrozenRecord):
        x: int
        limit: ClassVar[int] = 3

    assert C._fields == ("x",) and C(1).limit == 3 and repr(C(1)).endswith(".C(x=1)")    # __qualname__, as a dataclass
