"""`mdnet-eval`: score tracking results against ground truth (OTB one-pass evaluation).

    mdnet-eval RESULT_DIR... --gt ROOT [--json FILE] [--plots DIR] [--attributes PATH] [--per-sequence]
    mdnet-eval score RESULT_DIR... --gt ROOT ...      # the same: `score` is the default subcommand
    mdnet-eval run ROOT... --weights W.h5 --out-dir DIR [--jobs N]   # track (parallel, resumable), score

Subcommands are the entries of COMMANDS (name -> help, arguments, main); `run` lives in
tools/eval/run.py. A first argument that is not a subcommand name means
`score`, so the bare form keeps working. The definitions are in tools/eval/scoring.py.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Callable

# Light: tools/eval/run.py imports MXNet only inside its worker processes.
from tools.eval.run import RUN_HELP, add_fps, add_run_arguments, run_main

DEFAULT_COMMAND = "score"

SCORE_HELP = """\
Score one folder of OTB-format results per tracker (<sequence>.txt, one x,y,w,h box per line,
comma / tab / space separated; the folder name is the tracker's name) against the ground truth
under --gt (any layout the readers know: OTB, VOT, GOT-10k, LaSOT, UAV123, DTB70, ...).

OTB one-pass evaluation: success = fraction of frames with IoU > t, t = 0, 0.05, ..., 1, AUC = mean
of the 21 points; precision = fraction with centre error <= t px, t = 0..50, P@20 at 20 px;
normalized precision (LaSOT) = centre offset / ground-truth size <= t, t = 0..0.5, mean of the 51
points. Frames with absent ground truth are skipped; frame 0 is scored with the ground-truth box;
missing result lines are failures; per-sequence curves are averaged with equal weight.

Prints trackers ranked by AUC; --json writes the report, --plots success / precision plots (PNG
and PDF; one pair per attribute when attributes are known). Exit status 2 on bad input.

VOT supervised results (mdnet-track --protocol vot, pysot, the VOT toolkit: lines `1` init, `2`
failure, `0` skipped, else x,y,w,h) are recognised by those code lines (or --protocol vot) and scored
for accuracy (mean IoU without the 10 frames counted from every (re)initialisation), failures and
robustness (failures per 100 frames); fps from <sequence>_time.txt beside the result when present.
The table has one row per tracker and sequence plus an (all) row; no plots."""


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULT_DIR",
                   help="one folder of <sequence>.txt result files per tracker (its name names the tracker)")
    p.add_argument("--gt", required=True, action="append", metavar="ROOT",
                   help="ground truth: a benchmark root or one sequence folder (repeatable)")
    p.add_argument("--json", metavar="FILE", help="write the report (scores, curves, per sequence) as JSON")
    p.add_argument("--plots", metavar="DIR", help="write success / precision plots (PNG and PDF) into DIR")
    p.add_argument("--attributes", metavar="PATH",
                   help="sequence attributes: a folder of <sequence>/attrs.txt (\"IV, SV, OCC\") or "
                        "<sequence>.txt (tags, or the OTB toolkit's 0/1 flags), or a JSON file "
                        "{sequence: [tags]}; without it, attrs.txt in the ground-truth folders is used "
                        "when present")
    p.add_argument("--per-sequence", action="store_true", help="also print one row per sequence and tracker")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="score only the first N frames of every sequence (for runs made with --frames N)")
    p.add_argument("--protocol", choices=("auto", "ope", "vot"), default="auto",
                   help="ope: OTB one-pass curves; vot: VOT supervised accuracy / failures; auto (default): "
                        "vot when the result files hold VOT's 1/2/0 code lines")


def score_main(args: argparse.Namespace) -> int:
    from online.atomic import atomic_write_text
    from online.readers import discover
    from online.sequence import DataError
    from tools.eval.scoring import (EvalError, detect_protocol, evaluate, evaluate_vot, format_table,
                                  format_vot_table, load_attributes)

    try:
        protocol = detect_protocol(args.results) if args.protocol == "auto" else args.protocol
        # The readers decode no frame but the first of each sequence (for the image size).
        sequences = [seq for root in args.gt for seq in discover(root)]
        if args.frames is not None:
            sequences = [seq.head(args.frames) for seq in sequences]
        if protocol == "vot":
            notes = ["--attributes ignored: VOT-style results are reported per sequence"] if args.attributes else []
            report = evaluate_vot(args.results, sequences)
        else:
            attributes, notes = load_attributes(args.attributes, sequences)
            report = evaluate(args.results, sequences, attributes, timing_note=False)
            add_fps(report)  # from <sequence>_time.txt beside the results, where there are any
    except (EvalError, DataError) as e:
        print(f"mdnet-eval: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    report["warnings"] = notes + report["warnings"]
    for w in report["warnings"]:
        print(f"mdnet-eval: warning: {w}", file=sys.stderr)
    print(format_vot_table(report) if protocol == "vot" else format_table(report, per_sequence=args.per_sequence))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.plots and protocol == "vot":
        print("mdnet-eval: no plots for VOT-style results (--plots ignored)", file=sys.stderr)
    elif args.plots:
        from tools.eval.plots import write_plots
        files = write_plots(report, args.plots)
        print(f"wrote {len(files)} plot files to {args.plots}")
    return 0


def _one_line(message: str) -> str:
    # The readers' "no sequences found" goes on with a table of the known layouts; the error here
    # stays one line (`mdnet-data index --help` prints that table).
    first = message.strip().splitlines()[0] if message.strip() else message
    return re.sub(r"[;,]?\s*known formats:?\s*$", "", first).rstrip(" :;,")


@dataclass(frozen=True)
class Command:
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "score": Command("score result folders against ground truth (the default)", SCORE_HELP,
                     add_score_arguments, score_main),
    "run": Command("track benchmark sequences in parallel worker processes (resumable), then score them",
                   RUN_HELP, add_run_arguments, run_main),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdnet-eval",
        description="Evaluate tracking results.\n\n"
                    "  mdnet-eval RESULT_DIR... --gt ROOT [options]        the same as `mdnet-eval score ...`\n"
                    "  mdnet-eval score RESULT_DIR... --gt ROOT [options]  OTB one-pass / VOT-style evaluation "
                    "(mdnet-eval score --help)\n"
                    "  mdnet-eval run ROOT... --weights W --out-dir DIR     track in parallel, resumable, then "
                    "score (mdnet-eval run --help)\n\n"
                    "Without a subcommand name the command is `score` (a result folder named like a "
                    "subcommand: write ./score).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(p)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = [DEFAULT_COMMAND] + argv
    return build_parser().parse_args(argv)


def main(args: argparse.Namespace) -> int:
    return COMMANDS[args.command].main(args)


def run(argv=None) -> None:
    sys.exit(main(parse_args(argv)))


if __name__ == "__main__":
    run()
