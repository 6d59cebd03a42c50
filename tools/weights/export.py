"""mdnet-export: turn a pretraining checkpoint into the tracker's weight file.

    mdnet-export runs/vot-otb --out weights/vot-otb.h5                 # a run folder: its latest checkpoint
    mdnet-export runs/vot-otb/checkpoints/ckpt-c000100.000000-w8-s00012000 --out w.h5   # one checkpoint
    mdnet-export runs/demo --out random.h5 --random-init 0             # same widths, paper init (a baseline)
    mdnet-export runs/real-cpu --out m.h5 --sources ../shared/pool/MANIFEST.tsv \
        --sources cluster/configs/pool-sources.tsv       # + m.manifest.tsv: where each domain came from

Only the shared layers (conv1-fc5) are exported: the fc6 branches belong to the training
sequences, and the tracker makes a fresh fc6 per target. The file (online/weights.py) carries the
network spec (widths, input size, padding, mean, LRN) and a provenance record: the resolved
pretraining config, steps and cycles done, world size, datasets, domain count, checkpoint path,
time and the code's git commit. `mdnet-track --weights W.h5` loads it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _seed_arg(text: str) -> int:
    # numpy seeds must be non-negative; -1 would fail deep inside the initialiser.
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, got {text!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, got {seed}")
    return seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdnet-export",
                                description="Export the shared layers of a pretraining checkpoint as an MDNet weight file.")
    p.add_argument("checkpoint", help="a checkpoint folder (ckpt-c<cycles>-w<world>-s<step>) or a run folder (its latest complete checkpoint)")
    p.add_argument("--out", required=True, help="weight file to write (.h5)")
    p.add_argument("--random-init", type=_seed_arg, default=None, metavar="SEED",
                   help="write a randomly initialised trunk (online.network.init_trunk, seed SEED) with the "
                        "checkpoint's widths instead of its weights: the matching no-pretraining baseline")
    p.add_argument("--sources", action="append", default=[], type=Path, metavar="MANIFEST.tsv",
                   help="pool manifests naming where each training sequence came from (repeatable): "
                        "writes OUT's stem + .manifest.tsv (sequence, benchmark, source repository, path, "
                        "commit, frames, frames trained on) and records it in the provenance; a trained "
                        "domain in none of them is an error")
    return p


def _check_shared(params: dict, spec, path: Path) -> None:
    # Checked here so a bad checkpoint is blamed, not the weight file being written.
    import numpy as np

    from online.network import param_names
    from pretrain.checkpoint import CheckpointError

    expected = param_names(spec)
    missing = [n for n in expected if n not in params]
    wrong = [f"{n} {tuple(params[n].shape)} (expected {tuple(shape)})" for n, shape in expected.items()
             if n in params and tuple(params[n].shape) != tuple(shape)]
    bad = [n for n in expected if n in params and not np.all(np.isfinite(params[n]))]
    for problem, names in (("missing parameters", missing), ("wrong shapes", wrong), ("non-finite values in", bad)):
        if names:
            raise CheckpointError(f"{path}: {problem} {', '.join(names)} for the network in its meta.json "
                                  f"(damaged checkpoint?)")


def _warn(msg: str) -> None:
    print(f"mdnet-export: warning: {msg}", file=sys.stderr)


def manifest_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".manifest.tsv")


def export(checkpoint, out, random_init: int | None = None, warn=_warn, sources=()) -> dict:
    """Write the weight file; returns the provenance written.

    A run folder whose latest checkpoint is damaged (checksums in its meta.json) exports the
    previous complete one, with `warn` naming the damaged file; a damaged checkpoint folder given
    explicitly is an error naming the file.
    """
    from online.network import Trunk, init_trunk
    from online.shipped import code_commit
    from online.weights import params_from_trunk, save_weights
    from pretrain import checkpoint as ckpt

    ckpt_dir = ckpt.find_latest(checkpoint, warn=warn)
    meta = ckpt.read_meta(ckpt_dir)
    spec = meta.net_spec()
    provenance = {
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkpoint": str(Path(ckpt_dir).resolve()),
        "steps": meta.step, "cycles": meta.cycle, "world_size": meta.world_size,
        "datasets": meta.datasets, "domains": len(meta.domains), "seed": meta.seed,
        "config": meta.config,
        # The code that trained it; checkpoints written before commits were recorded carry none,
        # and then the exporting code's commit is the best record there is (said so).
        "commit": meta.code_commit or code_commit(),
        "commit_source": "checkpoint" if meta.code_commit else "export",
    }
    manifest = None
    if sources:
        from tools.data.pool import RebuildError, manifest_text, training_manifest

        val_fraction = float((meta.config.get("data") or {}).get("val_fraction", 0.2))
        try:
            rows = training_manifest(list(meta.domains), list(sources), val_fraction)
        except RebuildError as e:
            raise ExportError(str(e)) from None
        manifest = manifest_text(rows)
        provenance["training_manifest"] = manifest
    if random_init is None:
        params, _ = ckpt.read_shared(ckpt_dir)
        _check_shared(params, spec, Path(ckpt_dir) / ckpt.SHARED)
        provenance["source"] = "mdnet-pretrain"
    else:
        import mxnet as mx
        trunk = Trunk(spec)
        init_trunk(trunk, mx.cpu(), seed=random_init)
        params = params_from_trunk(trunk)
        # Keep the checkpoint's record so the baseline says which run it is the baseline of.
        provenance = {"source": "random-init", "seed": random_init, "baseline_of": provenance}
    if Path(out).is_dir():
        raise ExportError(f"--out {out}: is a folder, expected a weight file name such as weights.h5")
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_weights(out, params, spec, provenance)
        if manifest is not None and random_init is None:
            from online.atomic import atomic_write_text

            atomic_write_text(manifest_path(out), manifest)
    except OSError as e:  # read-only folder, disk full, a parent that is a file
        raise ExportError(f"cannot write the weight file {out}: {e.strerror or e}") from None
    return provenance


class ExportError(ValueError):
    """The weight file cannot be written; the message names it."""


def main(args: argparse.Namespace) -> int:
    from online.weights import WeightFileError
    from pretrain.checkpoint import CheckpointError

    try:
        prov = export(args.checkpoint, args.out, args.random_init, sources=args.sources)
    except (CheckpointError, WeightFileError, ExportError) as e:
        print(f"mdnet-export: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # reading the checkpoint folder itself failed (permissions, I/O error)
        print(f"mdnet-export: {e.filename or args.checkpoint}: {e.strerror or e}", file=sys.stderr)
        return 2
    if prov["source"] == "random-init":
        print(f"mdnet-export: random-init trunk (seed {args.random_init}) with the widths of "
              f"{prov['baseline_of']['checkpoint']} -> {args.out}")
    else:
        print(f"mdnet-export: {prov['checkpoint']} (step {prov['steps']}, {prov['cycles']:.2f} cycles, "
              f"{prov['domains']} domains) -> {args.out}")
        if "training_manifest" in prov:
            print(f"mdnet-export: training manifest ({prov['domains']} domains) -> {manifest_path(args.out)}")
    return 0


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
