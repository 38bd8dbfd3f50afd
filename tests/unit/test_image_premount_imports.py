"""The VM's init runs before /ro (the squashfs holding most of the stdlib, image/build.py RO_GLOBS) is
mounted: whatever appliance.boot.init imports at module level must be among the files kept outside
(RO_KEEP), or PID 1 dies at its first line. This checks it in a second on the host Python, instead of
a VM boot: the stdlib's pure-Python modules outside RO_KEEP are made unimportable, as in the VM."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import sys, sysconfig, importlib.abc, importlib.machinery
from pathlib import Path
repo = Path(sys.argv[1])
sys.path[:0] = [str(repo), str(repo / "image")]
import build                      # image/build.py: RO_KEEP
sys.path.remove(str(repo / "image"))
stdlib = Path(sysconfig.get_paths()["stdlib"])
kept = {p.removeprefix("usr/lib/python3.11/").removesuffix(".pyc") for p in build.RO_KEEP}
class InRo(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if importlib.machinery.FrozenImporter.find_spec(name) is not None:
            return None                       # frozen into the binary (os, abc, codecs...): no file
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
            return None
        origin = Path(spec.origin)
        if stdlib in origin.parents and origin.parent.name != "lib-dynload":
            top = origin.relative_to(stdlib).parts[0].removesuffix(".py")
            if top not in kept:
                raise ImportError(f"{name}: in /ro in the image (not in RO_KEEP), before the mount")
        return None
for m in [m for m in sys.modules if m not in sys.builtin_module_names and m != "__main__"]:
    if not m.startswith(("_frozen", "encodings", "zipimport", "builtins", "sys")):
        del sys.modules[m]      # as in a fresh interpreter: what build.py pulled in must load again
sys.meta_path.insert(0, InRo())
import appliance.boot.init
print("ok")
"""


def test_the_init_imports_only_what_stays_outside_the_squashfs():
    r = subprocess.run([sys.executable, "-I", "-c", CODE, str(REPO)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
