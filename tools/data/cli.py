"""`mdnet-data`: look at tracking data before training on it, and make synthetic data.

    mdnet-data index ROOT... [--json] [--verify]   what the readers find under each root (or pack)
    mdnet-data pack ROOT... --out POOL.h5           every sequence under the roots -> one HDF5 pack
    mdnet-data synth --out DIR [...]               write synthetic OTB-layout sequences
    mdnet-data pool-rebuild --out DIR [...]        the extra real pool again, from git snapshots

Arguments are parsed in `run()` only; `main(args)` takes the parsed namespace so tests and other
tools call it in-process.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

from online.readers import check_frame_bytes, check_frames, find_sequences, load, registry
from online.readers.pack import PackFrames, verify_sequence
from online.sequence import DataError
from tools.data import pool


def _describe(seq) -> dict:
    return {
        "name": seq.name,
        "format": seq.format,
        "path": seq.path,
        "frames": int(seq.frames_on_disk),       # frame files on disk
        "gt_lines": int(len(seq)) if seq.has_groundtruth else 0,
        "annotated": int(seq.annotated),         # frames with a usable box
        "absent": int(seq.absent.sum()),         # frames of the sequence without one
        "has_groundtruth": bool(seq.has_groundtruth),
        "problems": list(seq.problems),
    }


def _verify(seq) -> None:
    if isinstance(seq.frames, PackFrames):
        verify_sequence(seq)  # every byte against the checksums stored when packing
    else:
        for i in range(len(seq.frames)):  # a folder has no checksums: decode every frame
            seq.frames[i]


def index(roots: list[str], verify: bool = False) -> tuple[list[dict], int]:
    """Describe every sequence under the roots; returns (rows, number of sequences with errors).

    A sequence that fails to load, whose first/last frame does not decode, or any of whose frame
    files is truncated (checked from its last bytes) becomes a row with an `error` instead of
    stopping the whole index: a large dataset is best checked in one pass.
    With `verify`, every frame is checked too (a pack: checksums; a folder: decoded).
    """
    rows, errors = [], 0
    for root in roots:
        for ref in find_sequences(root):  # a missing root or an empty one raises DataError
            try:
                seqs = load(ref)
            except DataError as e:
                rows.append({"name": ref.path.name, "format": ref.format, "path": str(ref.path),
                             "error": str(e)})
                errors += 1
                continue
            for seq in seqs:
                row = _describe(seq)
                try:
                    w, h = check_frames(seq)
                    row["size"] = [w, h]
                    # Every frame's last bytes: a truncated file decodes with grey rows in
                    # OpenCV, so decoding the first and last frame alone would not notice it.
                    check_frame_bytes(seq)
                    if verify:
                        _verify(seq)
                except DataError as e:
                    row["error"] = str(e)
                    errors += 1
                rows.append(row)
    return rows, errors


def _print_table(rows: list[dict], out) -> None:
    nw = max([len("name")] + [len(r["name"]) for r in rows])
    print(f"{'name':<{nw}} {'format':<13} {'frames':>6} {'annotated':>9} {'absent':>6}  problems", file=out)
    for r in rows:
        if "frames" not in r:  # could not be read at all
            print(f"{r['name']:<{nw}} {r['format']:<13} {'-':>6} {'-':>9} {'-':>6}  ERROR: {r['error']}",
                  file=out)
            continue
        notes = list(r["problems"]) + ([f"ERROR: {r['error']}"] if "error" in r else [])
        print(f"{r['name']:<{nw}} {r['format']:<13} {r['frames']:>6} {r['annotated']:>9} {r['absent']:>6}  "
              f"{'; '.join(notes) if notes else '-'}", file=out)
    total = sum(r.get("frames", 0) for r in rows)
    print(f"{len(rows)} sequences, {total} frames", file=out)


def _cmd_index(args, out) -> int:
    try:
        rows, errors = index(args.roots, verify=args.verify)
    except DataError as e:
        print(f"mdnet-data index: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(rows, out, indent=1)
        out.write("\n")
    else:
        _print_table(rows, out)
    if errors:
        print(f"mdnet-data index: {errors} sequence(s) with errors", file=sys.stderr)
        return 1
    return 0


def _cmd_pack(args, out) -> int:
    from tools.data.pack import write_pack  # imported here: h5py is not needed to index folders
    if args.frames < 0:
        print("mdnet-data pack: error: --frames must be >= 0", file=sys.stderr)
        return 2
    try:
        write_pack(args.out, args.roots, frames=args.frames, log=lambda line: print(line, file=out, flush=True))
    except DataError as e:
        print(f"mdnet-data pack: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output folder is missing or not writable, the disk is full, ...
        print(f"mdnet-data pack: error: cannot write {args.out}: {e}", file=sys.stderr)
        return 2
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 192x144, got {text!r}") from None
    return w, h


def _cmd_synth(args, out) -> int:
    # Imported here: synthesis code is not needed to index data.
    from tools.data.synth import synthesize
    t0 = time.time()
    try:
        paths = synthesize(args.out, sequences=args.sequences, frames=args.frames,
                           size=args.size, seed=args.seed)
    except ValueError as e:
        print(f"mdnet-data synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} sequences x {args.frames} frames of {args.size[0]}x{args.size[1]} "
          f"(seed {args.seed}) to {args.out} in {time.time() - t0:.1f} s", file=out)
    return 0


def _formats_help() -> str:
    # Generated from the reader registry, so a new format shows up here without editing this file.
    fmts = registry.formats()
    text = "formats, in detection order:\n" + registry.describe(f for f in fmts if not f.needs_init_box)
    no_gt = [f for f in fmts if f.needs_init_box]
    if no_gt:
        text += ("\n\nread only with an initial box (mdnet-track --init), never found by index:\n"
                 + registry.describe(no_gt))
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdnet-data",
        description="Inspect tracking datasets, pack them into one HDF5 file, write synthetic sequences, "
                    "and rebuild the extra real pretraining pool from git snapshots.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Raw formatting keeps the format table's lines; the prose is wrapped here instead.
    pi = sub.add_parser(
        "index", help="list the sequences found under dataset roots",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Find every sequence under each ROOT (a sequence folder; a benchmark root such as "
            "OTB, DTB70, UAV123, LaSOT, or a folder of such roots; a VOT or GOT-10k root with "
            "list.txt; an ImageNet-VID root with Annotations/VID; a pack POOL.h5 written by "
            "mdnet-data pack) and print, per sequence: name, format, frame files on disk, "
            "annotated frames (usable box), absent frames, and problems noticed while reading. "
            "The first and last frame of each sequence are decoded as a check (--verify: every "
            "frame), and every frame file's last bytes are checked for a truncated JPEG or PNG. "
            "Exit status: 0 all good, 1 some sequences have errors (listed), 2 a root is "
            "missing or holds no sequences.", width=88),
        epilog=_formats_help())
    pi.add_argument("roots", nargs="+", metavar="ROOT", help="dataset root or sequence folder")
    pi.add_argument("--json", action="store_true",
                    help="print a JSON list with, per sequence: name, format, path, frames, "
                         "gt_lines, annotated, absent, has_groundtruth, problems, size [w, h] "
                         "(and error, where reading failed)")
    pi.add_argument("--verify", action="store_true",
                    help="check every frame, not only the first and last: in a pack, recompute "
                         "every sequence's sha256 and every frame's CRC (reads every byte, decodes "
                         "nothing); in a folder, decode every frame")

    pp = sub.add_parser(
        "pack", help="pack the sequences under dataset roots into one HDF5 file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Read every sequence under each ROOT (any root mdnet-data index takes, a pack "
            "included) with the same readers the pretraining uses and write them all to one HDF5 "
            "file: per sequence its frame files' bytes unchanged (not re-encoded: frames decode "
            "to the same pixels), the reader's boxes and absent flags, frame file names, name, "
            "format, source folder, problems, and checksums (sha256 per sequence, crc32 per "
            "frame, checked on every read). Put the pack on shared storage instead of the many "
            "small files, and list it under data.packs in the pretraining config. Frames are not "
            "decoded (only each sequence's first, for its size): a corrupt frame file is stored as "
            "it is and fails when read, as it does from the folder (mdnet-data index --verify "
            "on the folders first decodes every frame). The file is written under a temporary "
            "name beside POOL.h5 and renamed when complete, replacing an existing POOL.h5. Exit "
            "status: 0 written; 2 a root is missing or holds no sequences, a sequence cannot be "
            "read, or the file cannot be written (nothing is written).", width=88),
        epilog="layout of the file: see online/readers/pack.py")
    pp.add_argument("roots", nargs="+", metavar="ROOT", help="dataset root, sequence folder or pack")
    pp.add_argument("--out", required=True, type=Path, metavar="POOL.h5", help="the pack to write")
    pp.add_argument("--frames", type=int, default=0, metavar="N",
                    help="keep only the first N frames of every sequence (0 = all, the default); "
                         "for small packs in smoke runs")

    ps = sub.add_parser(
        "synth", help="write synthetic OTB-layout sequences",
        description="Write DIR/synth_000/img/0001.jpg ... and groundtruth_rect.txt per sequence: "
                    "a textured target moving, scaling and rotating over a cluttered background, "
                    "with look-alike distractors, occlusion, illumination change, motion blur and "
                    "camera shake. The same seed gives byte-identical files. Existing synth_NNN "
                    "folders in DIR are replaced.")
    ps.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    ps.add_argument("--sequences", type=int, default=20, metavar="N", help="number of sequences (default 20)")
    ps.add_argument("--frames", type=int, default=60, metavar="F", help="frames per sequence (default 60)")
    ps.add_argument("--size", type=_parse_size, default=(192, 144), metavar="WxH",
                    help="frame size in pixels, at least 48x48 (default 192x144)")
    ps.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    pool.add_parser(sub)
    return p


COMMANDS = {"index": _cmd_index, "pack": _cmd_pack, "synth": _cmd_synth, "pool-rebuild": pool._cmd}


def main(args: argparse.Namespace, out=None) -> int:
    return COMMANDS[args.command](args, out or sys.stdout)


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(main(args))


if __name__ == "__main__":
    run()
