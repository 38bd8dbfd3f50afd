"""Both implementations of TSO splitting and checksum completion, for tests to run over each:
the Python reference (offload.py_*) and the compiled twin (appliance.native._gso).

Why a failure and not a skip when the C module is missing: CI builds it, so a missing module is a
broken build that would otherwise go unnoticed behind the Python fallback. Only when pure Python is
forced (VPN_APPLIANCE_PURE_PYTHON) is the C side skipped: it is then deliberately not in use."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance import native
from appliance.tun import offload

IMPLS = ["python", "c"]


def impl(which: str) -> SimpleNamespace:
    """-> .gso_split and .complete_checksum of the named implementation."""
    if which == "python":
        return SimpleNamespace(gso_split=offload.py_gso_split, complete_checksum=offload.py_complete_checksum)
    if native.pure_forced():
        pytest.skip(f"pure Python forced ({native.PURE_ENV})")
    mod = native.load("_gso")
    assert mod is not None, "appliance.native._gso did not build or load (run `make setup`)"
    return SimpleNamespace(gso_split=mod.gso_split, complete_checksum=mod.complete_checksum)
