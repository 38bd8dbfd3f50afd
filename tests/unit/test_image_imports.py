"""The image ships `appliance` without `testlab` (image/build.py leaves it out): every module the VM
runs must import without it. (Once, bench.py borrowed a helper from testlab and the VM self-test
failed; this catches that in a second instead of a VM boot.)"""
import subprocess
import sys

CODE = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("appliance.testlab"):
            raise ImportError("appliance.testlab is not in the image")
sys.meta_path.insert(0, Block())
for m in ("appliance.boot.init", "appliance.boot.selftest", "appliance.boot.net", "appliance.bench",
          "appliance.cli", "appliance.gateway", "appliance.gateway.client", "appliance.gateway.server", "appliance.appliance_main",
          "appliance.config.schema", "appliance.config.ovpn_import"):
    importlib = __import__("importlib")
    importlib.import_module(m)
from appliance.boot.selftest import run
assert run(lambda s: None)
print("ok")
"""


def test_image_modules_do_not_need_testlab():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
