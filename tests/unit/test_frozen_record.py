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
    assert hash(r) == hash(d)                                    # the same tuple of compared fields
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


def test_a_mutable_default_is_refused_as_by_a_dataclass():
    """A FrozenRecord has no default factory: one list default would be shared by every record."""
    with pytest.raises(ValueError):
        @dataclass(frozen=True)
        class DL:                                                # noqa: F841
            items: list = []                                     # noqa: RUF012
    with pytest.raises(ValueError, match="mutable default"):
        class RL(FrozenRecord):                                  # noqa: F841
            items: list = []                                     # noqa: RUF012


@dataclass(frozen=True)
class D1:
    only: object
    check: object = field(default=None, compare=False)


class R1(FrozenRecord):
    only: object
    check: object = None
    _not_compared = ("check",)


@dataclass(frozen=True)
class D0:
    check: object = field(default=None, compare=False)


class R0(FrozenRecord):
    check: object = None
    _not_compared = ("check",)


def test_one_or_no_compared_field_and_unhashable_values_as_the_dataclass():
    """== and hash read the compared fields as a tuple (operator.attrgetter, made per class): with
    one field still a 1-tuple, with none the empty one; an unhashable value (a dict, as
    ClientAuthenticated's peer_info) fails only when the record is hashed, as a dataclass's."""
    nan = float("nan")
    for a, b in ((1, 1), (1, 2), (nan, nan), ("x", float("nan"))):
        assert (R1(a) == R1(b)) is (D1(a) == D1(b))
        assert hash(R1(a)) == hash(D1(a))
    assert R0(1) == R0(2) and D0(1) == D0(2) and hash(R0(1)) == hash(D0(1))
    assert R1({"k": 1}) == R1({"k": 1})
    with pytest.raises(TypeError):
        hash(D1({"k": 1}))
    with pytest.raises(TypeError):
        hash(R1({"k": 1}))
    from appliance.openvpn.events import ClientAuthenticated
    c = ClientAuthenticated("cn", None, {"IV_VER": "2.6.14"})
    assert c == ClientAuthenticated("cn", None, {"IV_VER": "2.6.14"})
    with pytest.raises(TypeError):
        hash(c)


def test_a_subclass_compares_its_own_fields_and_never_equals_its_base():
    class R2(R1):
        more: int = 0

    assert R2(1, more=2) != R2(1, more=3) and R2(1) == R2(1) and R2(1) != R1(1) and R1(1) != R2(1)
    assert hash(R2(1, more=2)) == hash((1, 2))


def test_a_class_s_own_eq_and_hash_are_kept_and_stream_keys_are_dict_keys():
    """StreamKey writes its own (a TCP client's key, hashed per packet): kept, and it equals and
    hashes as the dataclass it was."""
    from appliance.openvpn.server_model import StreamKey

    @dataclass(frozen=True)
    class OldKey:
        conn: int
        ip: str

    assert "__hash__" in StreamKey.__dict__ and StreamKey.__hash__ is not R1.__hash__
    k = StreamKey(7, "198.18.0.7")
    d = {k: "client"}
    assert d[StreamKey(7, "198.18.0.7")] == "client" and StreamKey(8, "198.18.0.7") not in d
    assert hash(k) == hash(OldKey(7, "198.18.0.7")) and k != OldKey(7, "198.18.0.7") and k != (7, "198.18.0.7")
    assert str(k) == "tcp#7/198.18.0.7" and repr(k) == "StreamKey(conn=7, ip='198.18.0.7')"


def test_type_checkers_see_frozen_dataclass_fields():
    """typing.dataclass_transform (PEP 681): mypy/pyright check a record's construction against its
    annotations (a wrong type, a missing or unknown argument, an assignment: README "helper review49b")."""
    told = FrozenRecord.__dataclass_transform__                  # type: ignore[attr-defined]
    assert told["eq_default"] is True
    assert {**told, **told.get("kwargs", {})}["frozen_default"] is True         # 3.11: among kwargs


def test_an_own_eq_without_hash_still_hashes_as_the_dataclass():
    @dataclass(frozen=True)
    class DE:
        a: int

        def __eq__(self, other):
            return isinstance(other, DE) and self.a % 10 == other.a % 10

    class RE(FrozenRecord):
        a: int

        def __eq__(self, other):
            return isinstance(other, RE) and self.a % 10 == other.a % 10

    assert RE(1) == RE(11) and DE(1) == DE(11)                   # the class's own ==, kept
    assert hash(RE(3)) == hash(DE(3)) == hash((3,))              # a hash written for it, as there


def test_an_explicit_unhashable_record_stays_unhashable():
    class RU(FrozenRecord):
        a: int
        __hash__ = None                                          # type: ignore[assignment]

    assert RU(1) == RU(1)
    with pytest.raises(TypeError):
        hash(RU(1))
