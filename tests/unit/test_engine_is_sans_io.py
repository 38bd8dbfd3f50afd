"""The protocol engine takes bytes and the time in and gives bytes, packets and events out: it must
not open sockets, read clocks, start threads or print. Checked on the import graph and on the
calls in the source, so a regression shows up here rather than as a flaky in-memory test."""
from __future__ import annotations

import ast
import pathlib

import pytest

ENGINE_DIR = pathlib.Path(__file__).resolve().parents[2] / "appliance" / "openvpn"
# Every module of the engine proper: all of appliance/openvpn/ except the config readers (config/,
# settings, keyfiles, passdb), which may read files: they run before any session exists. A new
# engine module is covered without anyone remembering to list it.
# crl and poolfile read their files (the CRL when it changes, the pool file at start and on a
# timer); the engine only calls the checker object it is handed (TlsSettings.crl). regular_file
# is their one way to read a file a config names (no pipe or device).
CONFIG_READERS = {"settings", "keyfiles", "passdb", "crl", "poolfile", "regular_file", "__init__"}
ENGINE = sorted(p.stem for p in ENGINE_DIR.glob("*.py") if p.stem not in CONFIG_READERS)
OUTSIDE_ENGINE = {"transport", "tun", "router", "boot", "gateway", "config", "cli", "run_toml"}
FORBIDDEN_MODULES = {"time", "socket", "select", "selectors", "threading", "asyncio", "subprocess",
                     "multiprocessing", "signal", "logging", "datetime"}
FORBIDDEN_CALLS = {"print", "open", "input"}


def _tree(name: str) -> ast.Module:
    path = ENGINE_DIR / f"{name}.py"
    assert path.exists(), f"engine module {path} is missing"
    return ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("name", ENGINE)
def test_engine_module_imports_no_io(name):
    bad = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                bad.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level >= 2:
            # `from ..tun import x`: the engine reaches out of appliance/openvpn/ into the I/O side.
            if (node.module or "").split(".")[0] in OUTSIDE_ENGINE:
                bad.append("." * node.level + (node.module or ""))
    assert not bad, f"appliance/openvpn/{name}.py imports {bad}: the engine must stay sans-I/O"


@pytest.mark.parametrize("name", ENGINE)
def test_engine_module_calls_no_io(name):
    bad = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            bad.append(f"{node.func.id}() at line {node.lineno}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
                and node.func.attr != "urandom"):
            bad.append(f"os.{node.func.attr}() at line {node.lineno}")
    assert not bad, f"appliance/openvpn/{name}.py calls {bad}: the engine must stay sans-I/O"
