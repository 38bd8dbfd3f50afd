"""The "native" fuzz target: the compiled data path (appliance/native/*.c) against its Python twins,
coverage-guided.

Why the unit tests' own properties: tests/unit/test_native_aead.py, test_native_gso.py and
test_gro_differential.py already state what C and Python must agree on (the same bytes, the same
refusal or exception, the same owner calls), with strategies that build real packets, forgeries,
re-entrant owners and garbage. Hypothesis runs a property on bytes the fuzzer chooses
(`fuzz_one_input`), so atheris steers those same properties by the Python twins' coverage (the C
side is not instrumented), and the oracle stays in one place. A disagreement is an AssertionError
escaping `one`: a finding like any other. A crash in C (an out-of-bounds access under ASan, a
refcount error) ends the child and shows in the run's log.

First byte: which property (modulo their number); the rest is hypothesis's choice sequence.
"""
from __future__ import annotations

import importlib

# (module under tests/unit, property): each an @given test that compares C with Python.
PROPERTIES = (
    ("test_native_aead", "test_random_bytes_are_refused_alike_and_only_as_bad_packets"),
    ("test_native_aead", "test_every_forgery_is_refused_by_both_for_the_same_reason_and_moves_nothing"),
    ("test_native_aead", "test_replays_reordering_and_time_limit_decided_alike"),
    ("test_gro_differential", "test_the_compiled_grobatch_does_exactly_what_the_python_one_does"),
    ("test_native_gso", "test_real_super_packets_split_identically"),
    ("test_native_gso", "test_garbage_behind_a_plausible_header_agrees"),
    ("test_native_gso", "test_garbage_agrees"),
    ("test_native_gso", "test_complete_checksum_agrees"),
)


def make_native():
    fuzz = [getattr(importlib.import_module(f"tests.unit.{m}"), name).hypothesis.fuzz_one_input
            for m, name in PROPERTIES]

    def one(data: bytes) -> None:
        if not data:
            return
        fuzz[data[0] % len(fuzz)](data[1:])
    return one


def seeds() -> list[bytes]:
    """Two per property: all zeros (hypothesis's simplest example) and some deterministic bytes."""
    from .harness import det_bytes
    return [bytes([i]) + body for i in range(len(PROPERTIES))
            for body in (bytes(64), det_bytes(f"native/{i}", 512))]
