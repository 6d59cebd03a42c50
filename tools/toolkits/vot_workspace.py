"""mdnet-vot workspace: a VOT toolkit workspace around mdnet-trax, on local sequences.

    mdnet-vot workspace ROOT_OR_SEQUENCE... --out WS [--frames N] [--weights W] [--threads N]
    .venv-vot/bin/vot evaluate --workspace WS mdnet_fast        # or mdnet_exact
    .venv-vot/bin/vot analysis --workspace WS --format json --name report mdnet_fast

Writes WS/config.yaml (stack and sequences of the workspace), WS/stack.yaml (one unsupervised
"baseline" experiment: one pass from the first frame, one repetition because the tracker is
deterministic, VOT's accuracy per sequence and averaged; see STACK for why not supervised),
WS/trackers.ini (mdnet_exact and mdnet_fast: `python -m tools.toolkits.trax_server --mode M` with
this venv's python and the weights as an absolute path) and WS/sequences/ in VOT's format
(list.txt; per sequence color/00000001.jpg..., groundtruth.txt and the `sequence` metadata file),
built from any root or sequence the readers know (online/readers), so the toolkit downloads
nothing: the stack names no dataset. JPEG frames are copied byte for byte, others re-encoded;
VOT polygons stay polygons; absent frames are written NaN (the toolkit's "unknown").
"""
from __future__ import annotations

import argparse
import configparser
import shlex
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from online.loading import resolve_weights
from online.weights import parse_random_seed

STACK = {
    "title": "MDNet local stack (mdnet-vot workspace)",
    "experiments": {
        # Unsupervised (one pass from the first frame, as OTB's OPE): vot-toolkit 0.9.0's supervised
        # experiment hands a TraX tracker one ObjectStatus where the TraX runtime wants a list, and
        # stops with "multiple objects were provided for initialization" (measured), so the
        # re-initialising VOT-ST baseline cannot run a TraX tracker with this toolkit version.
        "baseline": {
            "type": "unsupervised",
            "repetitions": 1,  # deterministic tracker: more repetitions would repeat the same run
            "analyses": [{"type": "accuracy"}, {"type": "average_accuracy"}],  # VOT's burn-in of 10 frames
        }
    },
}
MODES = ("exact", "fast")
TIMEOUT_S = 600  # the toolkit's wait for one reply; exact mode's first frame takes tens of seconds on 2 cores


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdnet-vot", description="The VOT toolkit around MDNet (TraX).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    w = sub.add_parser("workspace", help="write a VOT toolkit workspace: local sequences, stack, trackers.ini",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("paths", nargs="+", metavar="PATH", help="a dataset root or sequence folder the readers know")
    w.add_argument("--out", required=True, metavar="WS", help="the workspace folder (must not hold a config.yaml)")
    w.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames of each sequence")
    w.add_argument("--weights", default=None,
                   help="weight file or random:SEED for both trackers.ini entries (default: the shipped model)")
    w.add_argument("--threads", type=int, default=None, metavar="N",
                   help="pass --threads N to the tracker process (default: its own default)")
    return p


def _frame_line(row) -> str:
    return ",".join("nan" if not np.isfinite(v) else f"{v:g}" for v in row)


def write_sequence(seq, folder: Path, frames: int | None) -> int:
    """One sequence in VOT's format under `folder`; returns its frame count."""
    from online.sequence import ImageFiles

    n = len(seq) if frames is None else min(len(seq), frames)
    (folder / "color").mkdir(parents=True)
    paths = seq.frames.paths if isinstance(seq.frames, ImageFiles) else None
    for i in range(n):
        dst = folder / "color" / f"{i + 1:08d}.jpg"
        if paths is not None and paths[i].lower().endswith((".jpg", ".jpeg")):
            seq.frames.check(i)  # a truncated file is refused here, not halfway through an evaluation
            shutil.copyfile(paths[i], dst)
        elif not cv2.imwrite(str(dst), cv2.cvtColor(seq.frame(i), cv2.COLOR_RGB2BGR)):
            raise OSError(f"{dst}: cannot write")
    regions = seq.polygons if seq.polygons is not None else seq.boxes
    rows = [np.full(regions.shape[1], np.nan) if seq.absent[i] else regions[i] for i in range(n)]
    (folder / "groundtruth.txt").write_text("".join(_frame_line(r) + "\n" for r in rows))
    h, w = seq.frame(0).shape[:2]
    meta = {"channels.color": "color/%08d.jpg", "format": "default", "fps": 30, "name": folder.name,
            "width": w, "height": h, "length": n}
    (folder / "sequence").write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
    return n


def tracker_entries(weights: str, threads: int | None) -> configparser.ConfigParser:
    ini = configparser.ConfigParser()
    for mode in MODES:
        cmd = [sys.executable, "-m", "tools.toolkits.trax_server", "--mode", mode, "--weights", weights]
        if threads:
            cmd += ["--threads", str(threads)]
        ini[f"mdnet_{mode}"] = {"label": f"MDNet {mode}", "protocol": "trax",
                                "command": " ".join(shlex.quote(c) for c in cmd), "timeout": str(TIMEOUT_S)}
    return ini


def write_workspace(args) -> list:
    """Write the workspace; returns [(sequence name, frames)]."""
    from online.cli import resolve_paths

    out = Path(args.out)
    if (out / "config.yaml").exists():
        raise FileExistsError(f"{out}: already a workspace (config.yaml exists); choose another --out")
    weights = resolve_weights(args.weights)
    if parse_random_seed(weights) is None:
        weights = str(Path(weights).resolve())  # the toolkit starts the tracker in a temporary folder
        if not Path(weights).is_file():
            raise FileNotFoundError(f"--weights {weights}: no such file")
    seqs = [s for s in resolve_paths(args.paths, None) if s.has_groundtruth]
    if not seqs:
        raise ValueError("no sequence with ground truth under " + ", ".join(args.paths))
    names, written = set(), []
    for seq in seqs:
        name = seq.name
        while name in names:
            name += "_"
        names.add(name)
        written.append((name, write_sequence(seq, out / "sequences" / name, args.frames)))
    (out / "sequences" / "list.txt").write_text("".join(n + "\n" for n, _ in written))
    (out / "stack.yaml").write_text(yaml.safe_dump(STACK, sort_keys=False))
    (out / "config.yaml").write_text(yaml.safe_dump({"registry": ["."], "stack": "stack.yaml",
                                                     "sequences": "sequences"}, sort_keys=False))
    (out / "results").mkdir(exist_ok=True)
    with open(out / "trackers.ini", "w") as f:
        tracker_entries(weights, args.threads).write(f)
    return written


def main(args: argparse.Namespace) -> int:
    from online.sequence import DataError

    try:
        written = write_workspace(args)
    except (DataError, ValueError, OSError) as e:
        print(f"mdnet-vot: {e}", file=sys.stderr)
        return 2
    print(f"mdnet-vot: workspace {args.out}: {len(written)} sequence(s), {sum(n for _, n in written)} frames; "
          f"trackers mdnet_exact, mdnet_fast. Next: vot evaluate --workspace {args.out} mdnet_fast")
    return 0


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
