"""appliance/native: the one switch between the compiled data path and its pure-Python twins."""
from __future__ import annotations

import logging

from appliance import native


def test_pure_forced_by_env(monkeypatch):
    monkeypatch.setenv(native.PURE_ENV, "1")
    for m in native.MODULES:
        assert native.load(m) is None, f"{m} loaded although pure Python was forced"
    ok, line = native.describe()
    assert ok and line == f"data path: pure Python ({native.PURE_ENV} is set)"


def test_missing_module_is_a_warning_naming_it(monkeypatch, caplog):
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    monkeypatch.setattr(native, "MODULES", native.MODULES + ("_not_built",))
    assert native.load("_not_built") is None
    with caplog.at_level(logging.INFO):
        native.log_data_path(logging.getLogger("t"))
    (rec,) = [r for r in caplog.records if "data path" in r.getMessage()]
    assert rec.levelno == logging.WARNING and "_not_built" in rec.getMessage()


def test_zero_means_not_forced(monkeypatch):
    monkeypatch.setenv(native.PURE_ENV, "0")
    assert not native.pure_forced()
