"""The protocol engine takes bytes and the time in and gives bytes, packets and events out: it must
not open sockets, read clocks, start threads or print. Checked on the import graph and on the
calls in the source, so a regression shows up here rather than as a flaky in-memory test."""
from __future__ import annotations

import ast
import pathlib

import pytest

ENGINE_DIR = pathlib.Path(__file__).resolve().parents[2] / "appliance" / "openvpn"
# Modules that make up the engine proper (the config readers options/profile/keyfiles/passdb may
# read files: they run before any session exists).
ENGINE = ["session", "server", "reliable", "packet", "datachannel", "replay", "wrapping", "keys",
          "keymethod", "tls", "opcodes", "framing", "cookie", "events", "errors"]
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
