"""The data path's compiled helpers and the one switch between them and their pure-Python twins.

Why compiled (issue 11): on the bulk data path ~80% of the receiving server's instructions were
the interpreter's (~690 bytecodes per packet: GRO merging, opening, dispatch; lab/server_path.py),
so halving the per-packet cost was beyond Python changes. The C modules here do the same work as
named pure-Python functions, byte for byte (differential tests in tests/unit/test_native_*.py).

Why a fallback: a checkout that was never built (no compiler, `PYTHONPATH=.`) must still run, and
CI tests the Python twins as well as the C (VPN_APPLIANCE_PURE_PYTHON=1 forces them). The choice
is made here once, at import, by `load`; callers keep the Python version as the reference.

The modules are built by pip from setup.py (`make setup`), in place for the editable install, and
by image/build.py for the VM image.
"""
from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

PURE_ENV = "VPN_APPLIANCE_PURE_PYTHON"
# Every compiled module setup.py builds (tests/unit/test_native_build.py checks each loads when
# built, so a broken build fails CI instead of silently falling back).
MODULES: tuple[str, ...] = ("_gro", "_aead", "_gso", "_udp")


def pure_forced() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """-> the compiled module `appliance.native.<name>`, or None when pure Python is forced or the
    module was not built (then the caller uses its Python twin)."""
    if pure_forced():
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return None


def status() -> dict[str, bool]:
    """Module -> whether the compiled version is in use."""
    return {m: load(m) is not None for m in MODULES}


def describe() -> tuple[bool, str]:
    """-> (all compiled modules in use, one line saying which data path runs), for the start-up log:
    a data path several times slower than it should be is worth a line, and why it is so."""
    if pure_forced():
        return True, f"data path: pure Python ({PURE_ENV} is set)"
    st = status()
    missing = [m for m, ok in st.items() if not ok]
    if missing:
        return False, (f"data path: pure Python for {', '.join(missing)}: the compiled module(s) did not load "
                       "(not built? `pip install .` builds them; the program works, more slowly)")
    return True, f"data path: compiled ({', '.join(st) or 'none'})"


def log_data_path(log: logging.Logger) -> None:
    """The line `describe` gives, at start-up: info, or a warning when a built module is missing."""
    ok, line = describe()
    (log.info if ok else log.warning)("%s", line)
