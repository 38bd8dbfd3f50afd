"""Run DataKey tests on both AEAD paths: the compiled appliance.native._aead and the Python code
in datachannel.py (its reference twin).

Why a switch here rather than the environment: one pytest run must cover both, and DataKey picks
its path once, at construction, from `datachannel._aead`; setting that for a test module (or a
`with` block) decides every key made in it.

Why the compiled path FAILS when missing: a broken build must not pass CI by quietly testing the
Python twin twice. Only VPN_APPLIANCE_PURE_PYTHON=1 (a deliberate pure run) skips it.

Use: `pytestmark = pytest.mark.usefixtures("aead_path")` plus `from tests.aead_paths import
aead_path  # noqa: F401` in a test module, or `with forced("c"): ...` in a test.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from appliance import native
from appliance.openvpn import datachannel

PATHS = ("python", "c")


def compiled_aead():
    """The compiled module, or a test failure (a skip when pure Python is forced)."""
    if native.pure_forced():
        pytest.skip(f"{native.PURE_ENV} set: the compiled AEAD is not under test")
    mod = native.load("_aead")
    assert mod is not None, "appliance.native._aead did not build or load (make setup / pip install -e .)"
    return mod


@contextmanager
def forced(path: str) -> Iterator[None]:
    """Every DataKey made inside takes `path` ("python" or "c")."""
    before = datachannel._aead
    datachannel._aead = compiled_aead() if path == "c" else None
    try:
        yield
    finally:
        datachannel._aead = before


@pytest.fixture(scope="module", params=PATHS)
def aead_path(request) -> Iterator[str]:  # noqa: ANN001 - pytest request
    """Module-scoped so hypothesis tests may use it; each module runs once per path."""
    with forced(request.param):
        yield request.param
