"""OTB one-pass evaluation (OPE) of result files: success, precision and normalized precision;
and VOT-style supervised runs: accuracy, failures, robustness (`evaluate_vot`, end of the file).

Definitions (those of the OTB toolkit, `perfPlot.m` / `calcSeqErrRobust.m`, so numbers compare
with published tables; the LaSOT toolkit and pytracking follow the same rules):

- success: the fraction of scored frames whose IoU with the ground truth is > t (strictly) for
  t = 0, 0.05, ..., 1 (21 thresholds); AUC = the mean of those 21 points (the toolkit's "AUC" is
  that mean, not a trapezoid integral);
- precision: the fraction of frames whose centre distance is <= t px for t = 0, 1, ..., 50;
  P@20 = the 20 px point;
- normalized precision (LaSOT): the centre offset divided per axis by the ground-truth width and
  height, then its length; fraction <= t for t = 0, 0.01, ..., 0.5; the score is the mean of those
  51 points (the area under the curve, as the LaSOT paper ranks);
- frames whose ground truth is absent (`Sequence.absent`, NaN, zero or negative size) are skipped:
  neither successes nor failures;
- frame 0 is scored with the ground-truth box in place of the result's first line, as the OTB
  toolkit (`rectMat(1,:) = rect_anno(1,:)`) and pytracking do (a first line far from the ground
  truth is reported: it usually means the wrong file or a 0/1-based offset);
- a result box that is NaN or has no area is replaced by the previous frame's box (OTB toolkit);
- lines missing at the end of a short result file are failures (IoU 0, infinite centre error);
  extra lines are ignored; both are reported;
- a tracker's curves are the mean of its per-sequence curves, every sequence weighted equally.

The toolkit's centre `x + (w-1)/2` and its inclusive-pixel intersection (`right = x + w - 1`, `+1`
on the overlap width) give exactly the numbers of the continuous `x + w/2` and `[x, x+w)` used
here: the -1/2 cancels in every difference and the -1/+1 cancel in the overlap.

VOT supervised result files (`mdnet-track --protocol vot`, pysot, the VOT toolkit): one line per
frame, `1` (initialised), `2` (failure), `0` (skipped) or a box; scored by online/metrics.py's
`vot_scores` (accuracy without 10 burn-in frames from every (re)initialisation, failures,
robustness = failures per 100 frames); the overall accuracy pools the scored frames of all
sequences, as pysot does. fps comes from `<sequence>_time.txt` beside the result when present.

Pure numpy: plots live in tools/eval/plots.py, the command line in tools/eval/cli.py.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from online.boxes import iou
# The one implementation of the OTB curves (the tracker's own summary uses the same functions).
from online.metrics import PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, precision_curve, success_curve
from online.metrics import (VOT_BURN_IN, VOT_FAILURE, VOT_INIT, VOT_SKIPPED, VOT_TRACKED, vot_overall,
                            vot_scores)

NORM_PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
PRECISION_PX = 20  # P@20: PRECISION_THRESHOLDS[20] == 20 px
# A first result line with IoU below this against the first ground-truth box is reported.
FIRST_FRAME_IOU_WARN = 0.5

ATTRIBUTE_TABLE = Path(__file__).with_name("otb_attributes.json")
# mdnet-track --targets writes one file per target; those are not OTB single-target results.
_MULTI_TARGET = re.compile(r"^(?P<seq>.+)\.target(?P<k>\d+)$")
# OTB-100 result sets name the two-target sequences Jogging-1, Jogging-2, Skating2-1, ... Human4-2.
_OTB_TARGET = re.compile(r"^(?P<seq>.+)-(?P<k>\d+)$")
# Comma (spaces around it allowed) or a run of whitespace, as the readers parse ground truth.
_SEP = re.compile(r"\s*,\s*|\s+")


class EvalError(ValueError):
    """Bad input for the evaluation; the message is one line and names the file (and line)."""


# ----------------------------------------------------------------------------------------------
# Result files

def _numbered_values(path: str | Path):
    """(line number, stripped text, floats or None when not numbers) per line; trailing blank
    lines dropped. Shared by the OTB and the VOT result readers."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise EvalError(f"{path}: cannot read ({e.strerror})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for i, line in enumerate(lines):
        # A trailing separator ("1,2,3,4,") is a harmless quirk of some writers.
        s = line.strip().rstrip(",").strip()
        try:
            vals = [float(t) for t in _SEP.split(s)] if s else []
        except ValueError:
            vals = None
        out.append((i + 1, s, vals))
    return out


def read_results(path: str | Path) -> np.ndarray:
    """One box per line, `x,y,w,h` separated by commas, tabs or spaces; trailing blank lines ok."""
    rows = _numbered_values(path)
    boxes = np.empty((len(rows), 4), np.float64)
    for k, (n, s, vals) in enumerate(rows):
        if vals is not None and len(vals) == 1 and vals[0] in (VOT_SKIPPED, VOT_INIT, VOT_FAILURE):
            raise EvalError(f"{path}: line {n}: {s!r}: a VOT supervised result (1 init / 2 failure / 0 "
                            f"skipped lines); score it with --protocol vot")
        if vals is None or len(vals) != 4:
            got = "an empty line" if not s else (f"{len(vals)} values" if vals is not None else "non-numbers")
            raise EvalError(f"{path}: line {n}: expected 4 numbers x,y,w,h, got {got}: {s!r}")
        boxes[k] = vals
    return boxes


def find_result_files(result_dir: str | Path, timing_note: bool = True) -> tuple[dict[str, Path], list[str]]:
    """`<sequence>.txt` files of one tracker's folder -> {sequence name: path}, and notes."""
    d = Path(result_dir)
    if not d.exists():
        raise EvalError(f"{d}: no such result folder")
    if not d.is_dir():
        raise EvalError(f"{d}: not a folder (give one folder of <sequence>.txt files per tracker)")
    files = {p.stem: p for p in sorted(d.iterdir())
             if p.suffix.lower() == ".txt" and p.is_file() and not p.name.startswith(".")}
    notes = []
    multi = sorted(n for n in files if _MULTI_TARGET.match(n))
    if multi:
        notes.append(f"{d}: ignored {len(multi)} multi-target result file(s) ({_few(f + '.txt' for f in multi)}): "
                     f"not single-target OTB results")
    # pytracking writes <seq>_time.txt (per-frame times) beside <seq>.txt.
    stems = {n.lower() for n in files}
    timing = sorted(n for n in files if n.endswith("_time") and n[:-5].lower() in stems)
    if timing and timing_note:
        notes.append(f"{d}: ignored {len(timing)} timing file(s) ({_few(t + '.txt' for t in timing)})")
    for n in multi + timing:
        del files[n]
    if not files:
        raise EvalError(f"{d}: no <sequence>.txt result files")
    return files, notes


def _few(names, k: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:k]) + (f", ... ({len(names)} in all)" if len(names) > k else "")


# ----------------------------------------------------------------------------------------------
# One sequence

def valid_groundtruth(gt: np.ndarray, absent: np.ndarray | None = None) -> np.ndarray:
    """Frames whose ground truth can be scored: not absent, finite, positive width and height."""
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if absent is not None:
        ok &= ~np.asarray(absent, bool).reshape(-1)
    return ok


@dataclass
class FrameErrors:
    """Per scored frame: IoU, centre error (px) and normalized centre error; plus what was odd."""
    iou: np.ndarray
    center: np.ndarray
    norm_center: np.ndarray
    notes: list[str] = field(default_factory=list)


def frame_errors(pred: np.ndarray, gt: np.ndarray, absent: np.ndarray | None = None,
                 where: str = "result") -> FrameErrors:
    """Score a result against the ground truth of one sequence under the OTB rules (module doc)."""
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    raw = np.asarray(pred, np.float64).reshape(-1, 4)
    n, m = len(gt), len(raw)
    notes = []
    if m < n:
        notes.append(f"{where}: {m} lines for {n} ground-truth frames: the last {n - m} count as failures")
    elif m > n:
        notes.append(f"{where}: {m} lines for {n} ground-truth frames: the last {m - n} ignored")
    pred = np.full((n, 4), np.nan)
    pred[:min(m, n)] = raw[:n]
    have = np.arange(n) < m
    valid = valid_groundtruth(gt, absent)

    if m and valid[0]:
        first = float(iou(pred[0], gt[0])[0]) if np.isfinite(pred[0]).all() else 0.0
        if first < FIRST_FRAME_IOU_WARN:
            notes.append(f"{where}: the first box {_box(pred[0])} is far from the ground truth {_box(gt[0])} "
                         f"(IoU {first:.2f}): is this the result of this sequence? (frame 0 is scored with "
                         f"the ground-truth box, as the OTB toolkit does)")
        pred[0] = gt[0]
    with np.errstate(invalid="ignore"):
        bad = have & ~(np.isfinite(pred).all(axis=1) & (pred[:, 2] > 0) & (pred[:, 3] > 0))
    bad[:1] = False  # frame 0 is the ground truth (or not scored)
    if bad.any():
        notes.append(f"{where}: {int(bad.sum())} box(es) NaN or without area (first at line "
                     f"{int(np.flatnonzero(bad)[0]) + 1}): the previous box is used, as the OTB toolkit does")
        for i in np.flatnonzero(bad):
            pred[i] = pred[i - 1]

    p, g, h = pred[valid], gt[valid], have[valid]
    with np.errstate(invalid="ignore"):
        ov = np.nan_to_num(np.where(h, iou(p, g), 0.0), nan=0.0) if len(p) else np.zeros(0)
        offset = (p[:, :2] + p[:, 2:] / 2) - (g[:, :2] + g[:, 2:] / 2)
        center = np.where(h, np.sqrt((offset ** 2).sum(axis=1)), np.inf)
        norm = np.where(h, np.sqrt(((offset / g[:, 2:]) ** 2).sum(axis=1)), np.inf)
    center[~np.isfinite(center)] = np.inf
    norm[~np.isfinite(norm)] = np.inf
    return FrameErrors(ov, center, norm, notes)


def _box(b) -> str:
    return "[" + ",".join(f"{v:g}" for v in b) + "]"


@dataclass
class Curves:
    """Success, precision and normalized-precision curves of one sequence or an average of them."""
    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray
    frames: int  # frames scored (summed over sequences for an average)

    @property
    def auc(self) -> float:
        return float(np.mean(self.success))

    @property
    def precision_20(self) -> float:
        return float(self.precision[PRECISION_PX])

    @property
    def norm_precision_auc(self) -> float:
        return float(np.mean(self.norm_precision))

    def scores(self) -> dict:
        return {"auc": self.auc, "precision_20": self.precision_20,
                "norm_precision": self.norm_precision_auc, "frames": int(self.frames)}

    def curves(self) -> dict:
        return {"success_curve": _rounded(self.success), "precision_curve": _rounded(self.precision),
                "norm_precision_curve": _rounded(self.norm_precision)}


def _rounded(a) -> list[float]:
    return [round(float(v), 6) for v in a]


def sequence_curves(errors: FrameErrors) -> Curves:
    return Curves(success_curve(errors.iou), precision_curve(errors.center),
                  precision_curve(errors.norm_center, NORM_PRECISION_THRESHOLDS), len(errors.iou))


def average(curves: list[Curves]) -> Curves:
    """Equal weight per sequence, as the OTB toolkit averages its per-sequence success plots."""
    return Curves(np.mean([c.success for c in curves], axis=0),
                  np.mean([c.precision for c in curves], axis=0),
                  np.mean([c.norm_precision for c in curves], axis=0),
                  sum(c.frames for c in curves))


# ----------------------------------------------------------------------------------------------
# Matching result files to ground-truth sequences

def _scorable(sequences) -> tuple[dict, list[str]]:
    """{name: Sequence} of the sequences that have ground truth to score, and notes."""
    by_name, notes = {}, []
    for seq in sequences:
        if seq.name in by_name:
            raise EvalError(f"two ground-truth sequences are named {seq.name!r} ({by_name[seq.name].path} "
                            f"and {seq.path}): results cannot be matched; give one benchmark root")
        if not seq.has_groundtruth:
            notes.append(f"{seq.name}: no ground truth beyond the first frame: not scored")
            continue
        if not valid_groundtruth(seq.boxes, seq.absent).any():
            notes.append(f"{seq.name}: no frame with a usable ground-truth box: not scored")
            continue
        by_name[seq.name] = seq
    return by_name, notes


def match_results(files: dict[str, Path], gt: dict) -> tuple[dict[str, Path], list[str]]:
    """{ground-truth name: result file}: exact name, then case-insensitive, then OTB's `<seq>-<k>`."""
    lower: dict[str, list[str]] = {}
    for name in gt:
        lower.setdefault(name.lower(), []).append(name)
    matched: dict[str, Path] = {}
    unmatched, notes = [], []

    def claim(name, path):
        if name in matched:
            notes.append(f"{path}: {matched[name].name} already gives {name}: ignored")
        else:
            matched[name] = path

    # Exact names first, so that another spelling of the same sequence never displaces one.
    for stem, path in files.items():
        if stem in gt:
            claim(stem, path)
    for stem, path in files.items():
        if stem in gt:
            continue
        cands = lower.get(stem.lower(), [])
        if len(cands) == 1:
            claim(cands[0], path)
            continue
        m = _OTB_TARGET.match(stem)
        if m:
            base = m["seq"] if m["seq"] in gt else (lower.get(m["seq"].lower()) or [None])[0]
            if base is not None:
                if _is_target_file(gt[base], int(m["k"])):
                    claim(base, path)
                else:
                    notes.append(f"{path}: target {m['k']} of {base}, whose ground truth here is another "
                                 f"target's file: not scored")
                continue
        unmatched.append(path.name)
    if unmatched:
        notes.append(f"{next(iter(files.values())).parent}: no ground-truth sequence for "
                     f"{len(unmatched)} result file(s) ({_few(unmatched)}): ignored")
    return matched, notes


def _is_target_file(seq, k: int) -> bool:
    # Readers use the first of groundtruth_rect.<k>.txt for a two-target OTB sequence; a result
    # named <seq>-<k> belongs to it only when that file is the ground truth the reader gave.
    gt_file = Path(seq.path) / f"groundtruth_rect.{k}.txt"
    if not gt_file.is_file():
        return False
    try:
        boxes = read_results(gt_file)
    except EvalError:
        return False
    return boxes.shape == seq.boxes.shape and np.allclose(boxes, seq.boxes, equal_nan=True)


# ----------------------------------------------------------------------------------------------
# Attributes (data, not code: tools/eval/otb_attributes.json)

def attribute_table() -> dict:
    return json.loads(ATTRIBUTE_TABLE.read_text())


def attribute_name(tag: str, table: dict | None = None) -> str:
    table = attribute_table() if table is None else table
    return table["names"].get(tag, tag)


def parse_attributes(text: str, where: str, table: dict | None = None) -> list[str]:
    """`IV, SV, OCC` tags, or the OTB toolkit's 11 0/1 flags (anno/att/<seq>.txt)."""
    table = attribute_table() if table is None else table
    tokens = [t for t in _SEP.split(text.strip()) if t]
    order = table["toolkit_order"]
    if tokens and all(t in ("0", "1") for t in tokens):
        if len(tokens) != len(order):
            raise EvalError(f"{where}: {len(tokens)} 0/1 flags, expected {len(order)} "
                            f"(OTB toolkit order {', '.join(order)})")
        return [tag for tag, t in zip(order, tokens) if t == "1"]
    return sorted({t.upper() for t in tokens}, key=lambda t: _tag_key(t, order))


def _tag_key(tag: str, order: list[str]):
    return (order.index(tag), "") if tag in order else (len(order), tag)


def load_attributes(source: str | Path | None, sequences) -> tuple[dict[str, list[str]], list[str]]:
    """{sequence name: [tags]} from a JSON file, a folder, or the ground-truth folders themselves.

    `source` may be a JSON file `{seq: [tags] | "IV, SV" | {"attr": [tags]}}` (pysot's OTB100.json
    has the last form), or a folder holding `<seq>/attrs.txt` or `<seq>.txt` (tags, or the OTB
    toolkit's 0/1 flags). A sequence not found there falls back to `attrs.txt` in its own
    ground-truth folder; with `source` None only those are read.
    """
    table = attribute_table()
    names = [s.name for s in sequences]
    by_lower = {n.lower(): n for n in names}
    found: dict[str, list[str]] = {}
    notes: list[str] = []
    if source is not None:
        src = Path(source)
        if not src.exists():
            raise EvalError(f"{src}: no such attribute file or folder")
        if src.is_file():
            if src.suffix.lower() != ".json":
                raise EvalError(f"{src}: an attribute file must be JSON {{sequence: [tags]}}; "
                                f"or give a folder of <sequence>/attrs.txt files")
            try:
                data = json.loads(src.read_text(encoding="utf-8-sig"))
            except json.JSONDecodeError as e:
                raise EvalError(f"{src}: not valid JSON (line {e.lineno}: {e.msg})") from None
            if not isinstance(data, dict):
                raise EvalError(f"{src}: expected a JSON object {{sequence: [tags]}}")
            unknown = []
            for key, val in data.items():
                name = key if key in names else by_lower.get(str(key).lower())
                if name is None:
                    unknown.append(str(key))
                    continue
                if isinstance(val, dict):
                    val = val.get("attr", val.get("attributes"))
                if isinstance(val, str):
                    tags = parse_attributes(val, f"{src}: {key}", table)
                elif isinstance(val, list) and all(isinstance(t, str) for t in val):
                    tags = parse_attributes(", ".join(val), f"{src}: {key}", table)
                else:
                    raise EvalError(f"{src}: {key}: expected a list of attribute tags, got {val!r}")
                found[name] = tags
            if unknown:
                notes.append(f"{src}: {len(unknown)} entr(ies) name no ground-truth sequence ({_few(unknown)})")
        else:
            entries = {p.name.lower(): p for p in src.iterdir()}
            for name in names:
                for cand in (f"{name}/attrs.txt", f"{name}.txt"):
                    p = src / cand
                    if not p.is_file():
                        # Case-insensitive fallback, like result files.
                        head, _, tail = cand.partition("/")
                        q = entries.get(head.lower())
                        p = (q / tail) if (q is not None and tail) else q
                    if p is not None and p.is_file():
                        found[name] = parse_attributes(p.read_text(encoding="utf-8-sig"), str(p), table)
                        break
    for seq in sequences:
        if seq.name not in found and seq.path:
            p = Path(seq.path) / "attrs.txt"
            if p.is_file():
                found[seq.name] = parse_attributes(p.read_text(encoding="utf-8-sig"), str(p), table)
    if source is not None:
        missing = [n for n in names if n not in found]
        if missing:
            notes.append(f"no attributes for {len(missing)} sequence(s) ({_few(missing)}): "
                         f"they appear only in the overall plots")
    return found, notes


# ----------------------------------------------------------------------------------------------
# The whole evaluation

DEFINITIONS = {
    "success": "fraction of scored frames with IoU > t, t = 0, 0.05, ..., 1; auc = mean of the 21 points",
    "precision": "fraction of scored frames with centre error <= t px, t = 0..50; precision_20 at 20 px",
    "norm_precision": "centre offset / ground-truth (w, h), length <= t, t = 0, 0.01, ..., 0.5; "
                      "norm_precision = mean of the 51 points (LaSOT)",
    "frames": "absent / NaN / empty ground truth skipped; frame 0 scored with the ground-truth box; "
              "missing result lines are failures; NaN or empty result boxes repeat the previous box",
    "average": "per-sequence curves averaged with equal weight",
}


def evaluate(result_dirs, sequences, attributes: dict[str, list[str]] | None = None,
             timing_note: bool = True) -> dict:
    """Score every tracker folder against the sequences; returns the JSON-ready report.

    `result_dirs`: one folder per tracker (its name is the tracker's name) of `<sequence>.txt`.
    `sequences`: `online.sequence.Sequence` objects (only boxes and absent flags are used).
    `attributes`: optional {sequence name: [tags]} for per-attribute curves.
    `timing_note`: report `<sequence>_time.txt` files as ignored (mdnet-eval run writes them).
    Raises EvalError (one line) when nothing can be scored.
    """
    sequences = list(sequences)
    gt, warnings = _scorable(sequences)
    if not gt:
        raise EvalError("no ground-truth sequences to score" + (f" ({warnings[0]})" if warnings else ""))
    table = attribute_table()
    attributes = {k: v for k, v in (attributes or {}).items() if k in gt}

    names = _tracker_names([Path(d) for d in result_dirs])
    if not names:
        raise EvalError("no result folders given")
    per_tracker: dict[str, dict[str, Curves]] = {}
    report_trackers: dict[str, dict] = {}
    for d, name in names:
        files, notes = find_result_files(d, timing_note)
        warnings += notes
        matched, notes = match_results(files, gt)
        warnings += notes
        if not matched:
            raise EvalError(f"{d}: none of its {len(files)} result files matches a ground-truth sequence "
                            f"(e.g. {_few(sorted(files)[:3])}; ground truth has {_few(sorted(gt))})")
        curves, seq_rows = {}, {}
        for seq_name in [s for s in gt if s in matched]:
            seq, path = gt[seq_name], matched[seq_name]
            errs = frame_errors(read_results(path), seq.boxes, seq.absent, where=str(path))
            warnings += errs.notes
            c = sequence_curves(errs)
            curves[seq_name] = c
            seq_rows[seq_name] = {**c.scores(), "result_file": str(path)}
        missing = [s for s in gt if s not in matched]
        if missing:
            warnings.append(f"{name}: no result for {len(missing)} of {len(gt)} sequences ({_few(missing)}): "
                            f"scored on the other {len(matched)}")
        avg = average(list(curves.values()))
        report_trackers[name] = {"result_dir": str(d), **avg.scores(), "sequences_scored": len(curves),
                                 **avg.curves(), "sequences": seq_rows, "missing": missing}
        per_tracker[name] = curves

    if len({tuple(sorted(c)) for c in per_tracker.values()}) > 1:
        warnings.append("the trackers were scored on different sets of sequences: their averages are "
                        "not directly comparable")

    report_attrs = {}
    tags = sorted({t for ts in attributes.values() for t in ts}, key=lambda t: _tag_key(t, table["toolkit_order"]))
    for tag in tags:
        with_tag = [s for s in gt if tag in attributes.get(s, ())]
        scored = [s for s in with_tag if any(s in c for c in per_tracker.values())]
        if not scored:
            continue
        report_attrs[tag] = {"name": attribute_name(tag, table), "sequences": scored}
        for name, curves in per_tracker.items():
            mine = [curves[s] for s in scored if s in curves]
            if mine:
                avg = average(mine)
                report_trackers[name].setdefault("attributes", {})[tag] = {
                    **avg.scores(), "sequences_scored": len(mine), **avg.curves()}

    ranked = dict(sorted(report_trackers.items(), key=lambda kv: (-kv[1]["auc"], kv[0])))
    return {
        "evaluation": "OTB one-pass evaluation (OPE)",
        "definitions": DEFINITIONS,
        "thresholds": {"success": _rounded(SUCCESS_THRESHOLDS), "precision": _rounded(PRECISION_THRESHOLDS),
                       "norm_precision": _rounded(NORM_PRECISION_THRESHOLDS)},
        "ground_truth": {"sequences": list(gt)},
        "trackers": ranked,
        "attributes": report_attrs,
        "warnings": warnings,
    }


def _tracker_names(dirs: list[Path]) -> list[tuple[Path, str]]:
    # The folder name is the tracker's name; two folders with the same name keep their parent too.
    out, seen = [], {}
    for d in dirs:
        name = Path(d).resolve().name if d.name in ("", ".", "..") else d.name
        seen.setdefault(name, []).append(d)
    for d in dirs:
        name = Path(d).resolve().name if d.name in ("", ".", "..") else d.name
        if len(seen[name]) > 1:
            name = f"{d.parent.name}/{name}" if d.parent.name else str(d)
        out.append((d, name))
    if len({n for _, n in out}) != len(out):
        raise EvalError(f"result folders with the same name: {', '.join(str(d) for d in dirs)}")
    return out


# ----------------------------------------------------------------------------------------------
# Text

def format_table(report: dict, per_sequence: bool = False) -> str:
    """Trackers ranked by AUC; with `per_sequence`, each tracker's sequences after it. An fps
    column (frames after the first per second of tracking) where the report has timings."""
    trackers = report["trackers"]
    n_gt = len(report["ground_truth"]["sequences"])
    width = max([len("tracker")] + [len(n) for n in trackers])
    timed = any(t.get("fps") is not None for t in trackers.values())

    def fps(row):
        v = row.get("fps")
        return f"  {v:6.1f}" if v is not None else f"  {'-':>6}"

    head = (f"{'tracker':<{width}}  {'AUC':>6}  {'P@20':>6}  {'normP':>6}  {'sequences':>9}  {'frames':>7}"
            + (f"  {'fps':>6}" if timed else ""))
    lines = [f"OTB one-pass evaluation: {len(trackers)} tracker(s), {n_gt} ground-truth sequence(s), "
             f"ranked by success AUC", head]
    for name, t in trackers.items():
        lines.append(f"{name:<{width}}  {t['auc']:6.3f}  {t['precision_20']:6.3f}  {t['norm_precision']:6.3f}  "
                     f"{t['sequences_scored']:>4}/{n_gt:<4}  {t['frames']:>7}" + (fps(t) if timed else ""))
    if per_sequence:
        for name, t in trackers.items():
            rows = t["sequences"]
            sw = max([len("sequence")] + [len(s) for s in rows])
            lines += ["", f"{name}: per sequence",
                      f"{'sequence':<{sw}}  {'AUC':>6}  {'P@20':>6}  {'normP':>6}  {'frames':>7}"
                      + (f"  {'fps':>6}" if timed else "")]
            for s, r in rows.items():
                lines.append(f"{s:<{sw}}  {r['auc']:6.3f}  {r['precision_20']:6.3f}  "
                             f"{r['norm_precision']:6.3f}  {r['frames']:>7}" + (fps(r) if timed else ""))
            for s in t["missing"]:
                lines.append(f"{s:<{sw}}  {'no result':>6}")
    return "\n".join(lines)



# ----------------------------------------------------------------------------------------------
# VOT-style supervised runs

PROTOCOLS = ("ope", "vot")
VOT_DEFINITIONS = {
    "accuracy": f"mean IoU over frames holding a box, leaving out the {VOT_BURN_IN} frames counted from every "
                f"(re)initialisation frame (itself included; pysot / VOT toolkit), code frames and frames "
                f"with absent ground truth; overall: pooled over the scored frames of all sequences (pysot)",
    "failures": "frames marked 2 (the box had IoU 0 with the ground truth; re-initialised 5 frames later)",
    "robustness": "failures per 100 frames (pysot's table)",
    "fps": "frames on which the tracker ran track() / their seconds (<sequence>_time.txt); null if unknown",
}


def read_supervised(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A VOT supervised result: per line `1`, `2`, `0` or a box -> (status, boxes); status is
    VOT_TRACKED where the line is a box, boxes NaN where it is a code."""
    rows = _numbered_values(path)
    status = np.full(len(rows), VOT_TRACKED, np.int8)
    boxes = np.full((len(rows), 4), np.nan)
    for k, (n, s, vals) in enumerate(rows):
        if vals is not None and len(vals) == 1 and vals[0] in (VOT_SKIPPED, VOT_INIT, VOT_FAILURE):
            status[k] = int(vals[0])
        elif vals is not None and len(vals) == 4:
            boxes[k] = vals
        else:
            raise EvalError(f"{path}: line {n}: expected 1, 2, 0 or x,y,w,h (VOT supervised format), got {s!r}")
    return status, boxes


def is_supervised(path: str | Path) -> bool:
    """Whether a result file uses VOT's supervised codes (some line is a lone 0, 1 or 2)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            return any(line.strip().rstrip(",").strip() in ("0", "1", "2") for line in fh)
    except OSError as e:
        raise EvalError(f"{path}: cannot read ({e.strerror})") from None


def detect_protocol(result_dirs) -> str:
    """"vot" when the result folders hold VOT supervised files, "ope" when they hold plain boxes;
    an EvalError when they disagree (give --protocol)."""
    kinds = {}
    for d in result_dirs:
        files, _ = find_result_files(d, timing_note=False)
        kinds[str(d)] = "vot" if any(is_supervised(p) for p in files.values()) else "ope"
    if len(set(kinds.values())) > 1:
        vot = sorted(d for d, k in kinds.items() if k == "vot")
        raise EvalError(f"some result folders hold VOT supervised results ({_few(vot)}) and others plain boxes: "
                        f"score them apart")
    return next(iter(kinds.values()), "ope")


def read_times(path: Path, frames: int) -> np.ndarray | None:
    """Seconds per frame from `<sequence>_time.txt` (one number per line), or None when absent or
    of another length than the result."""
    if not path.is_file():
        return None
    try:
        t = np.array([float(v) for v in path.read_text().split()], np.float64)
    except ValueError:
        return None
    return t if len(t) == frames else None


def evaluate_vot(result_dirs, sequences, burn_in: int = VOT_BURN_IN) -> dict:
    """Score folders of VOT supervised results; returns the JSON-ready report (NaN -> None)."""
    sequences = list(sequences)
    gt, warnings = _scorable(sequences)
    if not gt:
        raise EvalError("no ground-truth sequences to score" + (f" ({warnings[0]})" if warnings else ""))
    names = _tracker_names([Path(d) for d in result_dirs])
    if not names:
        raise EvalError("no result folders given")
    trackers = {}
    for d, name in names:
        files, notes = find_result_files(d, timing_note=False)
        warnings += notes
        matched, notes = match_results(files, gt)
        warnings += notes
        if not matched:
            raise EvalError(f"{d}: none of its {len(files)} result files matches a ground-truth sequence "
                            f"(e.g. {_few(sorted(files)[:3])}; ground truth has {_few(sorted(gt))})")
        rows, tracked, seconds = {}, 0, 0.0
        for seq_name in [s for s in gt if s in matched]:
            seq, path = gt[seq_name], matched[seq_name]
            status, boxes = read_supervised(path)
            if not (status == VOT_INIT).any():
                raise EvalError(f"{path}: no initialisation line (1): not a VOT supervised result")
            if len(status) != len(seq):
                warnings.append(f"{path}: {len(status)} lines for {len(seq)} ground-truth frames: scored on the "
                                f"first {min(len(status), len(seq))}")
            # Polygons (VOT ground truth) clipped to the image, as the VOT toolkit and the tracker do.
            row = vot_scores(status, boxes, seq.boxes, seq.absent, burn_in, polygons=seq.polygons,
                             image_size=seq.image_size)
            times = read_times(path.with_name(f"{path.stem}_time.txt"), len(status))
            on = (status == VOT_TRACKED) | (status == VOT_FAILURE)
            if times is not None and times[on].sum() > 0:
                row["fps"] = float(on.sum() / times[on].sum())
                tracked += int(on.sum())
                seconds += float(times[on].sum())
            else:
                row["fps"] = float("nan")
            rows[seq_name] = {**row, "result_file": str(path)}
        missing = [s for s in gt if s not in matched]
        if missing:
            warnings.append(f"{name}: no result for {len(missing)} of {len(gt)} sequences ({_few(missing)}): "
                            f"scored on the other {len(matched)}")
        overall = vot_overall(list(rows.values()))
        # fps over the sequences whose times are known (all of them, or it is not reported).
        overall["fps"] = tracked / seconds if seconds > 0 and all(np.isfinite(r["fps"]) for r in rows.values()) \
            else float("nan")
        overall["sequences_scored"] = overall.pop("sequences")
        trackers[name] = {"result_dir": str(d), **overall, "sequences": rows, "missing": missing}
    ranked = dict(sorted(trackers.items(), key=lambda kv: (kv[1]["failures"], -_num(kv[1]["accuracy"]), kv[0])))
    return _no_nan({
        "evaluation": "VOT supervised (baseline): accuracy, failures, robustness",
        "definitions": VOT_DEFINITIONS,
        "burn_in": burn_in,
        "ground_truth": {"sequences": list(gt)},
        "trackers": ranked,
        "warnings": warnings,
    })


def _num(v) -> float:
    return -1.0 if v is None or not np.isfinite(v) else float(v)


def _no_nan(obj):
    # JSON has no NaN: an unknown accuracy (nothing scored) or fps is null.
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def format_vot_table(report: dict) -> str:
    """Per tracker (fewest failures first) one row per sequence and an `(all)` row:
    tracker, sequence, accuracy, failures, failures per 100 frames, fps, frames."""
    def f(v, fmt):
        return format(v, fmt) if v is not None else "-".rjust(int(fmt.split(".")[0]))

    trackers = report["trackers"]
    n_gt = len(report["ground_truth"]["sequences"])
    rows = [(name, s, r) for name, t in trackers.items() for s, r in [*t["sequences"].items(), ("(all)", t)]]
    tw = max([len("tracker")] + [len(n) for n in trackers])
    sw = max([len("sequence")] + [len(s) for _, s, _ in rows])
    lines = [f"VOT supervised evaluation: {len(trackers)} tracker(s), {n_gt} ground-truth sequence(s); accuracy "
             f"without {report['burn_in']} burn-in frames, robustness = failures per 100 frames",
             f"{'tracker':<{tw}}  {'sequence':<{sw}}  {'accuracy':>8}  {'failures':>8}  {'robust':>7}  "
             f"{'fps':>7}  {'frames':>7}"]
    for name, s, r in rows:
        lines.append(f"{name:<{tw}}  {s:<{sw}}  {f(r['accuracy'], '8.3f')}  {r['failures']:>8}  "
                     f"{f(r['robustness'], '7.2f')}  {f(r['fps'], '7.2f')}  {r['frames']:>7}")
    for name, t in trackers.items():
        for s in t["missing"]:
            lines.append(f"{name:<{tw}}  {s:<{sw}}  {'no result':>8}")
    return "\n".join(lines)
