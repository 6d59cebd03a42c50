"""The tracker must import on a machine without Horovod: every module under online/ is imported in a
fresh interpreter where `import horovod` raises ImportError. Modules are discovered, so new ones
are covered as they are added.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib, json, pkgutil, sys

class BlockHorovod:
    # A meta-path finder consulted before the real ones: horovod looks uninstalled.
    def find_spec(self, name, path=None, target=None):
        if name == "horovod" or name.startswith("horovod."):
            raise ImportError(f"No module named {name!r} (blocked by test_no_horovod)")
        return None

sys.meta_path.insert(0, BlockHorovod())
try:
    import horovod  # noqa: F401
    raise SystemExit("the horovod block did not work")
except ImportError:
    pass

import online
failed = {}
# walk_packages imports subpackages to list them; a failing one is reported through onerror.
names = sorted(m.name for m in pkgutil.walk_packages(
    online.__path__, "online.", onerror=lambda n: failed.setdefault(n, repr(sys.exc_info()[1])))
    if m.name.rsplit(".", 1)[-1] != "__main__")  # __main__ would run a CLI
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:  # report every failing module, not just the first
        failed[name] = f"{type(e).__name__}: {e}"
leaked = sorted(k for k in sys.modules if k.split(".")[0] == "horovod")
print(json.dumps({"modules": names, "failed": failed, "leaked": leaked}))
"""


def test_online_imports_without_horovod():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"online.network", "online.boxes", "online.crops", "online.weights"} <= set(
        result["modules"]), result["modules"]
    assert result["failed"] == {}, result["failed"]
    assert result["leaked"] == []
