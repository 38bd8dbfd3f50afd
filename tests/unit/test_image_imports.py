"""The image ships `appliance` only, not the test lab (`lab/`, beside it in the repository): every module
the VM runs must import without it. (Once, bench.py borrowed a helper from the lab and the VM self-test
failed; this catches that in a second instead of a VM boot.)"""
import subprocess
import sys

import pytest

CODE = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "lab" or name.startswith(("lab.", "tests")):
            raise ImportError(name + " is not in the image")
sys.meta_path.insert(0, Block())
for m in ("appliance.boot.init", "appliance.boot.selftest", "appliance.boot.dhcp_client", "appliance.bench",
          "appliance.cli", "appliance.gateway", "appliance.gateway.client", "appliance.gateway.server",
          "appliance.run_toml", "appliance.router.nics",
          "appliance.config.schema", "appliance.config.ovpn_import"):
    importlib = __import__("importlib")
    importlib.import_module(m)
if sys.argv[1:] == ["selftest"]:
    from appliance.boot.selftest import run
    assert run(print)
print("ok")
"""


def test_image_modules_do_not_need_the_lab():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


@pytest.mark.root   # the self-test opens a TUN device
def test_boot_selftest_runs_without_the_lab():
    r = subprocess.run([sys.executable, "-c", CODE, "selftest"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
