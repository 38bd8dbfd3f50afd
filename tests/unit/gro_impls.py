"""Both GroBatch implementations for the GRO tests: offload.PyGroBatch (the reference) and the
compiled appliance.native._gro.GroBatch, as the module-scoped fixture `gro_cls` (import it into a
test module). Why fail, not skip: CI builds the C module (`make setup`), so a C module that does
not load is a broken build, and a skip would hide it; only with pure Python forced
(VPN_APPLIANCE_PURE_PYTHON, a checkout that was never built) may it be absent."""
from __future__ import annotations

import importlib

import pytest

from appliance import native
from appliance.tun.offload import PyGroBatch

IMPLS = ("python", "c")


def c_gro_batch() -> type:
    """The compiled class, imported directly (not through native.load: with pure Python forced, a
    built module is still tested)."""
    try:
        return importlib.import_module("appliance.native._gro").GroBatch
    except ImportError as e:
        if native.pure_forced():
            pytest.skip(f"pure Python forced and appliance.native._gro not built ({e})")
        pytest.fail(f"appliance.native._gro did not load (a broken build): {e}")


def impl(name: str) -> type:
    return PyGroBatch if name == "python" else c_gro_batch()


@pytest.fixture(scope="module", params=IMPLS)
def gro_cls(request) -> type:  # noqa: ANN001 - pytest request
    return impl(request.param)


def coalesce(cls: type, packets) -> list:  # noqa: ANN001 - any iterable of buffers
    """offload.gro_coalesce with the given class."""
    b = cls()
    for p in packets:
        b.add(p)
    return b.take()
