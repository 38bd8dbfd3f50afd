"""The compiled data-path modules load when built: a broken build must fail here, not fall back to
the Python twins in silence (appliance/native/__init__.py). Each module has its own function."""
from __future__ import annotations

from appliance import native


def test_aead_module_loads_unless_pure_python_is_forced():
    mod = native.load("_aead")
    if native.pure_forced():
        assert mod is None
        return
    assert mod is not None, "appliance.native._aead did not build or load (make setup / pip install -e .)"
    assert "_aead" in native.MODULES and native.status()["_aead"] is True
    k = mod.Key("AES-256-GCM", bytes(32), bytes(8), True)
    assert len(k.seal(0x48000001, 4, 1, b"x")) == 1 + 24        # links against libcrypto and runs
