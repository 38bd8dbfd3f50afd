"""Start-up's objects are frozen out of the garbage collector once the gateway is ready
(gateway/loop.py freeze_startup_heap), in a fresh process as the program runs."""
from __future__ import annotations

import subprocess
import sys

_CHILD = r"""
import gc
from appliance.gateway import loop
before = len(gc.get_objects())
loop.freeze_startup_heap()
frozen = gc.get_freeze_count()
assert frozen >= before - 50, (frozen, before)
assert len(gc.get_objects()) < 100
junk = [[] for _ in range(1000)]
loop.freeze_startup_heap()                      # a second gateway in the process: no-op
assert gc.get_freeze_count() == frozen
print("ok", frozen)
"""


def test_the_startup_heap_is_frozen_once():
    r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr
