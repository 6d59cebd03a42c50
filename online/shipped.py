"""What ships with the source tree: the default weight file and the commit the code is at.

No mxnet import here: `mdnet-track --help` and the CLI's argument defaults read this before the
thread count is set.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# mdnet-track's default: cluster/configs/real-mobilenetv2.yaml, multi-domain pretraining of fc4-fc6 on
# a frozen ImageNet MobileNetV2 trunk, on ../shared/pool + the fetched VOT/LaSOT pool
# (docs/pretraining.md: "The shipped models").
DEFAULT_WEIGHTS = REPO / "models" / "mdnet-mobilenetv2.h5"
# The VGG-M model (cluster/configs/real-cpu.yaml, from random init: no ImageNet VGG-M reaches these
# machines): the paper's network, the one compared with py-MDNet side by side.
VGGM_WEIGHTS = REPO / "models" / "mdnet-vggm-real-cpu.h5"
SHIPPED = (DEFAULT_WEIGHTS, VGGM_WEIGHTS)


def code_commit() -> str:
    """The git commit of this source tree, '+dirty' when tracked files differ from it;
    'unknown' outside a git checkout (an installed wheel)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
