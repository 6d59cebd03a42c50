"""`mdnet-eval`: OTB curves against hand-computed values, result-file quirks, JSON, plots, attributes,
errors, agreement with online/metrics.py `summarize`, and one real OTB sequence."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from online.metrics import summarize
from online.readers import discover, read_sequence
from online.sequence import ImageFiles, Sequence
from tests import helpers
from tools.eval import plots as eval_plots
from tools.eval.cli import main, parse_args, run
from tools.eval.scoring import (NORM_PRECISION_THRESHOLDS, PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, EvalError,
                              evaluate, frame_errors, load_attributes, read_results)

# ---------------------------------------------------------------------------------------------
# A tiny made-up sequence whose curves are computed by hand.
#
# Ground truth: the same 10x10 box in all 5 frames. Results, frame by frame:
#   0  [10,10,10,10]   IoU 1     centre error 0    normalized 0
#   1  [10,10,10,20]   IoU 0.5   centre error 5    normalized 0.5   (exactly on both thresholds)
#   2  [30,10,10,10]   IoU 0     centre error 20   normalized 2     (exactly on P@20)
#   3  [15,10,10,10]   IoU 1/3   centre error 5    normalized 0.5
#   4  [210,210,10,10] IoU 0     centre error 283  normalized 28
GT_BOX = [10, 10, 10, 10]
TINY_PRED = [[10, 10, 10, 10], [10, 10, 10, 20], [30, 10, 10, 10], [15, 10, 10, 10], [210, 210, 10, 10]]
# success(t) = fraction with IoU > t: t = 0 .. 0.30 (7 points): 3/5 (1, .5, 1/3); t = .35 .. .45 (3):
# 2/5; t = .50 .. .95 (10): 1/5 -- IoU 0.5 is NOT > 0.5; t = 1: 0.
TINY_SUCCESS = np.array([0.6] * 7 + [0.4] * 3 + [0.2] * 10 + [0.0])
TINY_AUC = (7 * 0.6 + 3 * 0.4 + 10 * 0.2) / 21
# precision(t) = fraction with error <= t: t = 0..4: 1/5; 5..19: 3/5; 20..50: 4/5 (20 <= 20 counts).
TINY_PRECISION = np.array([0.2] * 5 + [0.6] * 15 + [0.8] * 31)
# normalized: t = 0 .. 0.49: 1/5; t = 0.5: 3/5.
TINY_NORM = np.array([0.2] * 50 + [0.6])
TINY_NORM_AUC = (50 * 0.2 + 0.6) / 51


def write_otb_sequence(root: Path, name: str, boxes, size=(64, 48), gt_file="groundtruth_rect.txt",
                       frames=None, sep=",") -> Path:
    """An OTB-layout folder: img/0001.jpg ... (real small grey JPEGs) and the ground-truth file."""
    return helpers.write_otb_sequence(root, name, boxes, frames, size=size, value=90, gt_file=gt_file, sep=sep)


def write_result(folder: Path, name: str, boxes, sep=",", tail="\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    path.write_text("\n".join(sep.join(f"{v:g}" for v in b) for b in boxes) + tail)
    return path


@pytest.fixture
def bench(tmp_path):
    """Ground truth root with Tiny (5 frames) and Perfect (3 frames); tracker folders A and B."""
    gt = tmp_path / "gt"
    write_otb_sequence(gt, "Tiny", [GT_BOX] * 5)
    perfect = [[5, 5, 20, 10], [6, 5, 20, 10], [7, 6, 20, 12]]
    write_otb_sequence(gt, "Perfect", perfect)
    res = tmp_path / "results"
    write_result(res / "A", "Tiny", TINY_PRED)
    write_result(res / "A", "Perfect", perfect)
    write_result(res / "B", "Tiny", [GT_BOX] * 5)
    return {"gt": gt, "res": res, "tmp": tmp_path, "perfect": perfect}


def seq_of(name, boxes, absent=None) -> Sequence:
    # Frames that do not exist: evaluation must never decode one.
    boxes = np.asarray(boxes, np.float64)
    absent = np.zeros(len(boxes), bool) if absent is None else np.asarray(absent, bool)
    return Sequence(name=name, frames=ImageFiles([f"/nonexistent/{i}.jpg" for i in range(len(boxes))]),
                    boxes=boxes, absent=absent)


def cli(*argv, capsys=None):
    rc = main(parse_args([str(a) for a in argv]))
    out = capsys.readouterr() if capsys is not None else None
    return rc, out


# ---------------------------------------------------------------------------------------------
# Definitions

def test_thresholds_are_otb():
    assert len(SUCCESS_THRESHOLDS) == 21 and SUCCESS_THRESHOLDS[10] == 0.5 and SUCCESS_THRESHOLDS[-1] == 1.0
    assert list(PRECISION_THRESHOLDS) == list(range(51))
    assert len(NORM_PRECISION_THRESHOLDS) == 51 and NORM_PRECISION_THRESHOLDS[-1] == 0.5


def test_hand_computed_curves(bench):
    seqs = discover(bench["gt"])
    report = evaluate([bench["res"] / "A"], seqs)
    tiny = report["trackers"]["A"]["sequences"]["Tiny"]
    assert tiny["frames"] == 5
    assert tiny["auc"] == pytest.approx(TINY_AUC)
    assert tiny["precision_20"] == pytest.approx(0.8)
    assert tiny["norm_precision"] == pytest.approx(TINY_NORM_AUC)
    e = frame_errors(TINY_PRED, [GT_BOX] * 5)
    np.testing.assert_allclose(e.iou, [1, 0.5, 0, 1 / 3, 0])
    np.testing.assert_allclose(e.center, [0, 5, 20, 5, np.hypot(200, 200)])
    np.testing.assert_allclose(e.norm_center, [0, 0.5, 2, 0.5, np.hypot(20, 20)])
    # Perfect: IoU 1 everywhere, which is > t for every t but 1: 20/21.
    perfect = report["trackers"]["A"]["sequences"]["Perfect"]
    assert perfect["auc"] == pytest.approx(20 / 21) and perfect["precision_20"] == 1.0
    assert perfect["norm_precision"] == 1.0


def test_tracker_curves_average_sequences_with_equal_weight(bench):
    report = evaluate([bench["res"] / "A"], discover(bench["gt"]))
    a = report["trackers"]["A"]
    np.testing.assert_allclose(a["success_curve"], (TINY_SUCCESS + np.r_[np.ones(20), 0]) / 2, atol=1e-6)
    np.testing.assert_allclose(a["precision_curve"], (TINY_PRECISION + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(a["norm_precision_curve"], (TINY_NORM + 1) / 2, atol=1e-6)
    assert a["auc"] == pytest.approx((TINY_AUC + 20 / 21) / 2)  # not pooled over the 8 frames
    assert a["precision_20"] == pytest.approx(0.9)
    assert a["frames"] == 8 and a["sequences_scored"] == 2


def test_absent_frames_are_skipped(tmp_path):
    # The same five frames, with unusable ground truth in between: NaN, zero size, and a usable box
    # the benchmark flags absent. Whatever the result says there must not count.
    boxes = [GT_BOX, GT_BOX, [np.nan] * 4, GT_BOX, [10, 10, 0, 0], GT_BOX, GT_BOX, GT_BOX]
    pred = [TINY_PRED[0], TINY_PRED[1], [0, 0, 5, 5], TINY_PRED[2], [0, 0, 5, 5], TINY_PRED[3],
            [50, 30, 5, 5], TINY_PRED[4]]
    absent = [False, False, True, False, True, False, True, False]
    e = frame_errors(pred, boxes, absent)
    np.testing.assert_allclose(e.iou, [1, 0.5, 0, 1 / 3, 0])
    # Through the readers: NaN and zero-size lines become Sequence.absent.
    write_otb_sequence(tmp_path / "gt", "Gappy", boxes)
    seq = discover(tmp_path / "gt")[0]
    assert seq.absent.tolist() == [False, False, True, False, True, False, False, False]
    seq.absent[6] = True  # e.g. a LaSOT out-of-view flag
    write_result(tmp_path / "T", "Gappy", pred)
    row = evaluate([tmp_path / "T"], [seq])["trackers"]["T"]["sequences"]["Gappy"]
    assert row["frames"] == 5 and row["auc"] == pytest.approx(TINY_AUC)
    assert row["precision_20"] == pytest.approx(0.8)


def test_evaluate_decodes_no_frame():
    s = seq_of("Mem", [GT_BOX] * 5)
    e = frame_errors(TINY_PRED, s.boxes, s.absent)
    assert len(e.iou) == 5  # the frame files do not exist: nothing was decoded


@pytest.mark.parametrize("sep,tail", [(",", "\n"), ("\t", "\n"), (" ", "\n"), (", ", "\n\n\n"), ("  ", ""),
                                      (",", "\r\n")])
def test_result_separators_and_trailing_blank_lines(tmp_path, sep, tail):
    path = write_result(tmp_path, "Tiny", TINY_PRED, sep=sep, tail=tail)
    np.testing.assert_array_equal(read_results(path), TINY_PRED)


def test_crlf_and_mixed_separators(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"10,10,10,10\r\n10\t10\t10\t20\r\n30 10 10 10\r\n15, 10,10 ,10,\r\n\r\n")
    np.testing.assert_array_equal(read_results(p), TINY_PRED[:4])


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "Tiny.txt"
    p.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(EvalError, match=r"Tiny\.txt: line 2: expected 4 numbers x,y,w,h, got 3 values"):
        read_results(p)
    p.write_text("1,2,3,4\n\n1,2,3,4\n")
    with pytest.raises(EvalError, match=r"line 2: .* got an empty line"):
        read_results(p)
    p.write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(EvalError, match=r"line 2: .*non-numbers"):
        read_results(p)


def test_short_result_counts_missing_frames_as_failures(bench):
    res = bench["tmp"] / "short"
    path = write_result(res / "S", "Tiny", TINY_PRED[:3])
    report = evaluate([res / "S"], [s for s in discover(bench["gt"]) if s.name == "Tiny"])
    row = report["trackers"]["S"]["sequences"]["Tiny"]
    # IoU [1, .5, 0, missing, missing] -> t <= .45: 2/5, t >= .5: 1/5; errors [0, 5, 20, inf, inf].
    assert row["frames"] == 5
    assert row["auc"] == pytest.approx((10 * 0.4 + 10 * 0.2) / 21)
    assert row["precision_20"] == pytest.approx(0.6)
    assert any(str(path) in w and "3 lines for 5" in w and "failures" in w for w in report["warnings"])


def test_long_result_extra_lines_ignored(bench):
    res = bench["tmp"] / "long"
    path = write_result(res / "L", "Tiny", TINY_PRED + [[0, 0, 1, 1]] * 2)
    report = evaluate([res / "L"], discover(bench["gt"] / "Tiny"))
    assert report["trackers"]["L"]["auc"] == pytest.approx(TINY_AUC)
    assert any(str(path) in w and "7 lines for 5" in w and "ignored" in w for w in report["warnings"])


def test_first_frame_scored_with_ground_truth_and_reported():
    pred = [[40, 30, 10, 10]] + TINY_PRED[1:]
    e = frame_errors(pred, [GT_BOX] * 5, where="X.txt")
    assert e.iou[0] == 1.0 and e.center[0] == 0.0
    assert any("X.txt: the first box" in n for n in e.notes)
    assert not frame_errors(TINY_PRED, [GT_BOX] * 5).notes


def test_invalid_result_box_repeats_previous_box():
    pred = [list(b) for b in TINY_PRED]
    pred[3] = [float("nan")] * 4          # -> frame 2's box: IoU 0, error 20
    pred[4] = [12, 10, 0, 10]             # no area -> the same again
    e = frame_errors(pred, [GT_BOX] * 5, where="X.txt")
    np.testing.assert_allclose(e.iou, [1, 0.5, 0, 0, 0])
    np.testing.assert_allclose(e.center, [0, 5, 20, 20, 20])
    assert any("2 box(es) NaN or without area (first at line 4)" in n for n in e.notes)


# ---------------------------------------------------------------------------------------------
# Against online/metrics.py summarize (mdnet-track's own summary)

def test_agrees_with_summarize_where_definitions_agree():
    # Same length, valid boxes, first line = ground truth: the two must give the same AUC and P@20
    # (both use IoU > t on the 21-point grid and error <= 20 px, and skip absent frames).
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 60))
        gt = np.c_[rng.uniform(0, 100, (n, 2)), rng.uniform(5, 40, (n, 2))]
        pred = gt + np.c_[rng.normal(0, 8, (n, 2)), rng.normal(0, 4, (n, 2))]
        pred[:, 2:] = np.maximum(pred[:, 2:], 1)
        pred[0] = gt[0]
        if trial % 4 == 0:
            pred[1:] = gt[1:]  # IoU exactly 1: the t = 1 point must fail in both
        absent = rng.random(n) < 0.15
        absent[0] = False
        ours = evaluate_one(pred, gt, absent)
        theirs = summarize(pred, gt, absent)
        assert ours["frames"] == theirs["frames_scored"]
        assert ours["auc"] == pytest.approx(theirs["auc"], abs=1e-12)
        assert ours["precision_20"] == pytest.approx(theirs["precision20"], abs=1e-12)


def test_differs_from_summarize_on_short_results_by_design():
    # summarize scores only the frames both have; OTB counts missing result lines as failures.
    gt = np.array([GT_BOX] * 5, float)
    theirs = summarize(TINY_PRED[:3], gt)
    ours = evaluate_one(TINY_PRED[:3], gt)
    assert theirs["frames_scored"] == 3 and ours["frames"] == 5
    assert ours["precision_20"] == pytest.approx(0.6) and theirs["precision20"] == pytest.approx(1.0)


def evaluate_one(pred, gt, absent=None) -> dict:
    from tools.eval.scoring import sequence_curves
    return sequence_curves(frame_errors(pred, gt, absent)).scores()


# ---------------------------------------------------------------------------------------------
# Matching result files to sequences; missing sequences; the JSON report

def test_json_structure_and_missing_sequences(bench, capsys):
    out = bench["tmp"] / "report.json"
    rc, cap = cli(bench["res"] / "A", bench["res"] / "B", "--gt", bench["gt"], "--json", out, capsys=capsys)
    assert rc == 0
    report = json.loads(out.read_text())
    assert list(report["trackers"]) == ["B", "A"]  # ranked by AUC: B is perfect on Tiny
    for name, t in report["trackers"].items():
        assert {"auc", "precision_20", "norm_precision", "sequences", "missing", "frames",
                "success_curve", "precision_curve", "norm_precision_curve"} <= set(t)
        for row in t["sequences"].values():
            assert {"auc", "precision_20", "norm_precision", "frames"} <= set(row)
    assert report["trackers"]["B"]["missing"] == ["Perfect"] and report["trackers"]["A"]["missing"] == []
    assert list(report["trackers"]["B"]["sequences"]) == ["Tiny"]
    assert report["trackers"]["A"]["sequences"]["Tiny"]["auc"] == pytest.approx(TINY_AUC)
    assert len(report["thresholds"]["success"]) == 21
    assert "B: no result for 1 of 2 sequences (Perfect)" in cap.err
    # The table: ranked by AUC, with P@20, norm. precision, sequences, frames.
    lines = cap.out.splitlines()
    head = next(i for i, l in enumerate(lines) if l.split()[:2] == ["tracker", "AUC"])
    assert lines[head].split() == ["tracker", "AUC", "P@20", "normP", "sequences", "frames"]
    assert lines[head + 1].split()[0] == "B" and lines[head + 2].split()[0] == "A"
    a = lines[head + 2].split()
    assert a[1] == f"{(TINY_AUC + 20 / 21) / 2:.3f}" and a[2] == "0.900" and a[4] == "2/2" and a[5] == "8"


def test_per_sequence_table(bench, capsys):
    rc, cap = cli(bench["res"] / "A", bench["res"] / "B", "--gt", bench["gt"], "--per-sequence",
                  capsys=capsys)
    assert rc == 0
    assert "A: per sequence" in cap.out and "B: per sequence" in cap.out
    assert any(l.split()[:2] == ["Tiny", f"{TINY_AUC:.3f}"] for l in cap.out.splitlines())
    assert any(l.split() == ["Perfect", "no", "result"] for l in cap.out.splitlines())


def test_matching_case_multi_target_and_unknown(bench):
    res = bench["res"] / "C"
    write_result(res, "tiny", TINY_PRED)                   # case-insensitive fallback
    write_result(res, "Tiny.target1", TINY_PRED)           # mdnet-track --targets output: not OTB
    write_result(res, "Tiny.target2", TINY_PRED)
    write_result(res, "Elsewhere", TINY_PRED)              # no such sequence
    write_result(res, "Tiny_time", [[0.1, 0, 0, 0]])      # pytracking's timing file
    report = evaluate([res], discover(bench["gt"]))
    c = report["trackers"]["C"]
    assert list(c["sequences"]) == ["Tiny"] and c["sequences"]["Tiny"]["auc"] == pytest.approx(TINY_AUC)
    w = "\n".join(report["warnings"])
    assert "ignored 2 multi-target result file(s) (Tiny.target1.txt, Tiny.target2.txt)" in w
    assert "no ground-truth sequence for 1 result file(s) (Elsewhere.txt)" in w
    # The exact name wins over another spelling of the same sequence.
    write_result(res, "Tiny", [GT_BOX] * 5)
    report = evaluate([res], discover(bench["gt"]))
    assert report["trackers"]["C"]["sequences"]["Tiny"]["auc"] == pytest.approx(20 / 21)
    assert "tiny.txt: Tiny.txt already gives Tiny: ignored" in "\n".join(report["warnings"])


def test_two_target_otb_names(tmp_path):
    # OTB-100 result sets call the targets of Jogging "Jogging-1" and "Jogging-2"; the readers give
    # one Sequence "Jogging" with the first target's ground truth.
    gt = tmp_path / "gt"
    d = write_otb_sequence(gt, "Jogging", [GT_BOX] * 5, gt_file="groundtruth_rect.1.txt")
    (d / "groundtruth_rect.2.txt").write_text("\n".join(["30,20,8,8"] * 5) + "\n")
    write_result(tmp_path / "T", "Jogging-1", TINY_PRED)
    write_result(tmp_path / "T", "Jogging-2", [[30, 20, 8, 8]] * 5)
    report = evaluate([tmp_path / "T"], discover(gt))
    assert report["trackers"]["T"]["sequences"]["Jogging"]["auc"] == pytest.approx(TINY_AUC)
    assert any("Jogging-2.txt: target 2 of Jogging" in w for w in report["warnings"])


# ---------------------------------------------------------------------------------------------
# Plots and attributes

def test_plots_written(bench, capsys):
    plots = bench["tmp"] / "plots"
    rc, _ = cli(bench["res"] / "A", bench["res"] / "B", "--gt", bench["gt"], "--plots", plots, capsys=capsys)
    assert rc == 0
    for kind in ("success", "precision", "norm_precision"):
        png, pdf = plots / f"{kind}_OPE.png", plots / f"{kind}_OPE.pdf"
        assert pdf.stat().st_size > 1000 and pdf.read_bytes()[:5] == b"%PDF-"
        img = cv2.imread(str(png))
        w, h = (int(v * eval_plots.DPI) for v in eval_plots.FIGSIZE)
        assert img is not None and img.shape == (h, w, 3)
        assert img.std() > 10  # something was drawn
    assert not list(plots.glob("*_OPE_*"))  # no attributes known: no attribute plots


def test_legend_ranked_by_each_plots_score():
    # X has the better AUC, Y the better P@20: each plot ranks by its own score, as the OTB toolkit.
    import matplotlib.figure

    drawn, colors = {}, {}
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **k):
        ax = fig.axes[0]
        drawn[ax.get_title()] = [t.get_text() for t in ax.get_legend().get_texts()]
        colors[ax.get_title()] = {t.get_text()[0]: line.get_color()
                                  for t, line in zip(ax.get_legend().get_texts(), ax.get_lines())}
        return orig(fig, *a, **k)

    report = {"thresholds": {"success": list(SUCCESS_THRESHOLDS), "precision": list(PRECISION_THRESHOLDS),
                             "norm_precision": list(NORM_PRECISION_THRESHOLDS)},
              "trackers": {
                  "X": {"auc": 0.7, "precision_20": 0.8, "norm_precision": 0.5, "success_curve": [0.7] * 21,
                        "precision_curve": [0.8] * 51, "norm_precision_curve": [0.5] * 51},
                  "Y": {"auc": 0.6, "precision_20": 0.9, "norm_precision": 0.6, "success_curve": [0.6] * 21,
                        "precision_curve": [0.9] * 51, "norm_precision_curve": [0.6] * 51}},
              "attributes": {}}
    import tempfile
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", spy)
        mp.setattr(eval_plots, "FORMATS", ("png",))
        eval_plots.write_plots(report, d)
    assert drawn["Success plots of OPE"] == ["X [0.700]", "Y [0.600]"]
    assert drawn["Precision plots of OPE"] == ["Y [0.900]", "X [0.800]"]
    assert colors["Success plots of OPE"] == colors["Precision plots of OPE"]  # a tracker keeps its colour


def test_attribute_plots_from_attrs_txt(bench, capsys):
    attrs = bench["tmp"] / "attrs"
    (attrs / "Tiny").mkdir(parents=True)
    (attrs / "Tiny" / "attrs.txt").write_text("IV, SV, OCC\n")
    (attrs / "Perfect").mkdir()
    (attrs / "Perfect" / "attrs.txt").write_text("IV\n")
    plots, out = bench["tmp"] / "plots", bench["tmp"] / "r.json"
    rc, cap = cli(bench["res"] / "A", bench["res"] / "B", "--gt", bench["gt"], "--attributes", attrs,
                  "--plots", plots, "--json", out, capsys=capsys)
    assert rc == 0
    report = json.loads(out.read_text())
    assert list(report["attributes"]) == ["IV", "SV", "OCC"]  # the OTB toolkit's order
    assert report["attributes"]["IV"] == {"name": "illumination variation", "sequences": ["Perfect", "Tiny"]}
    iv = report["trackers"]["A"]["attributes"]["IV"]
    assert iv["auc"] == pytest.approx(report["trackers"]["A"]["auc"]) and iv["sequences_scored"] == 2
    sv = report["trackers"]["A"]["attributes"]["SV"]
    assert sv["auc"] == pytest.approx(TINY_AUC) and sv["sequences_scored"] == 1
    assert report["trackers"]["B"]["attributes"]["IV"]["sequences_scored"] == 1  # B has no Perfect
    for tag in ("IV", "SV", "OCC"):
        for kind in ("success", "precision"):
            for ext in ("png", "pdf"):
                assert (plots / f"{kind}_OPE_{tag}.{ext}").stat().st_size > 1000


def test_attribute_titles(tmp_path):
    titles = []

    def spy(kind, entries, thresholds, title, out_base, styles=None):
        titles.append(title)  # drawing is tested elsewhere
        return []

    seqs = [seq_of(f"S{i}", [GT_BOX] * 3) for i in range(3)]
    for s in seqs:
        write_result(tmp_path / "T", s.name, [GT_BOX] * 3)
    report = evaluate([tmp_path / "T"], seqs, {"S0": ["IV"], "S1": ["IV", "LR"], "S2": ["XYZ"]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(eval_plots, "plot", spy)
        eval_plots.write_plots(report, tmp_path / "plots")
    assert "Success plots of OPE - illumination variation (2)" in titles
    assert "Precision plots of OPE - low resolution (1)" in titles
    assert "Success plots of OPE - XYZ (1)" in titles  # a tag not in the OTB table keeps its name


def test_attribute_sources(tmp_path):
    seqs = [seq_of("Basketball", [GT_BOX] * 2), seq_of("Bolt", [GT_BOX] * 2)]
    j = tmp_path / "attrs.json"
    j.write_text(json.dumps({"Basketball": ["IV", "occ"], "bolt": {"attr": ["FM"]}, "Nope": ["IV"]}))
    found, notes = load_attributes(j, seqs)
    assert found == {"Basketball": ["IV", "OCC"], "Bolt": ["FM"]}
    assert any("Nope" in n for n in notes)
    # The OTB toolkit's anno/att/<seq>.txt: 11 flags in its own order (IV OPR SV OCC DEF MB FM IPR OV BC LR).
    d = tmp_path / "att"
    d.mkdir()
    (d / "Basketball.txt").write_text("1,1,0,1,1,0,0,0,0,1,0\n")
    found, notes = load_attributes(d, seqs)
    assert found == {"Basketball": ["IV", "OPR", "OCC", "DEF", "BC"]}
    assert any("no attributes for 1 sequence(s) (Bolt)" in n for n in notes)
    # attrs.txt in the ground-truth sequence folder, used even without --attributes.
    gt = tmp_path / "gt"
    write_otb_sequence(gt, "Car", [GT_BOX] * 2)
    (gt / "Car" / "attrs.txt").write_text("SV, LR")
    found, notes = load_attributes(None, discover(gt))
    assert found == {"Car": ["SV", "LR"]} and notes == []
    with pytest.raises(EvalError, match="no such attribute file or folder"):
        load_attributes(tmp_path / "missing", seqs)
    (d / "Bolt.txt").write_text("1,0,1\n")
    with pytest.raises(EvalError, match=r"Bolt\.txt: 3 0/1 flags, expected 11"):
        load_attributes(d, seqs)


# ---------------------------------------------------------------------------------------------
# Errors and the command line

def test_errors_exit_2_with_one_line(bench, capsys):
    rc, cap = cli(bench["tmp"] / "nope", "--gt", bench["gt"], capsys=capsys)
    assert rc == 2 and cap.err.strip().count("\n") == 0 and "no such result folder" in cap.err
    empty = bench["tmp"] / "empty"
    empty.mkdir()
    rc, cap = cli(bench["res"] / "A", "--gt", empty, capsys=capsys)
    assert rc == 2 and cap.err.strip().count("\n") == 0 and "no sequences found" in cap.err
    assert not cap.err.strip().endswith(":")
    write_result(bench["tmp"] / "Other", "Unrelated", TINY_PRED)
    rc, cap = cli(bench["tmp"] / "Other", "--gt", bench["gt"], capsys=capsys)
    assert rc == 2 and cap.err.strip().count("\n") == 0
    assert "none of its 1 result files matches a ground-truth sequence" in cap.err
    rc, cap = cli(empty, "--gt", bench["gt"], capsys=capsys)
    assert rc == 2 and "no <sequence>.txt result files" in cap.err
    (bench["res"] / "A" / "Tiny.txt").write_text("1,2,3,4\n1;2;3;4\n")
    rc, cap = cli(bench["res"] / "A", "--gt", bench["gt"], capsys=capsys)
    assert rc == 2 and cap.err.strip().count("\n") == 0 and "Tiny.txt: line 2" in cap.err


def test_cli_subcommand_and_bare_form(bench, capsys):
    with pytest.raises(SystemExit) as e:
        run(["score", str(bench["res"] / "B"), "--gt", str(bench["gt"])])
    assert e.value.code == 0
    scored = capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        run([str(bench["res"] / "B"), "--gt", str(bench["gt"])])
    assert e.value.code == 0 and capsys.readouterr().out == scored
    with pytest.raises(SystemExit) as e:
        run(["--gt", str(bench["gt"]), str(bench["res"] / "B")])  # options first: still `score`
    assert e.value.code == 0 and capsys.readouterr().out == scored
    with pytest.raises(SystemExit) as e:
        run(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "score" in text and "RESULT_DIR... --gt ROOT" in text
    with pytest.raises(SystemExit):
        run(["score", "--help"])
    text = capsys.readouterr().out
    assert "--attributes" in text and "IoU > t" in text


# ---------------------------------------------------------------------------------------------
# Real data

def test_real_otb_sequence_shifted_result(shared_data, tmp_path, capsys):
    # Crossing's ground truth is tab/space separated; a result = ground truth moved 3 px right.
    # A shift of d px keeps the height: IoU = (w - d) / (w + d); centre error = d; normalized d / w.
    seq = read_sequence(shared_data / "OTB" / "Crossing")
    shifted = seq.boxes + [3, 0, 0, 0]
    write_result(tmp_path / "Shift3", "Crossing", shifted)
    report = evaluate([tmp_path / "Shift3"], [seq])
    w = seq.boxes[:, 2]
    ious = (w - 3) / (w + 3)
    ious[0] = 1.0  # frame 0 is scored with the ground truth
    valid = ~seq.absent
    expect_success = (ious[valid][:, None] > SUCCESS_THRESHOLDS).mean(axis=0)
    row = report["trackers"]["Shift3"]
    assert row["frames"] == int(valid.sum()) == 120
    assert row["auc"] == pytest.approx(expect_success.mean())
    assert row["precision_20"] == 1.0
    norm = np.where(np.arange(len(w)) == 0, 0.0, 3 / w)[valid]
    assert row["norm_precision"] == pytest.approx((norm[:, None] <= NORM_PRECISION_THRESHOLDS).mean())
    assert 0.5 < row["auc"] < 0.9
    # Through the command line with the readers, Diving too (215 ground-truth lines, 231 frames).
    diving = read_sequence(shared_data / "OTB" / "Diving")
    write_result(tmp_path / "Shift3", "Diving", diving.boxes + [3, 0, 0, 0])
    write_result(tmp_path / "Exact", "Crossing", seq.boxes)
    write_result(tmp_path / "Exact", "Diving", diving.boxes)
    rc, cap = cli(tmp_path / "Shift3", tmp_path / "Exact", "--gt", shared_data / "OTB", "--json",
                  tmp_path / "r.json", capsys=capsys)
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["trackers"]) == ["Exact", "Shift3"]
    assert report["trackers"]["Exact"]["auc"] == pytest.approx(20 / 21)
    assert report["trackers"]["Shift3"]["sequences"]["Diving"]["frames"] == 215
    assert report["trackers"]["Shift3"]["sequences"]["Crossing"]["auc"] == pytest.approx(row["auc"])
    assert not any("lines for" in w for w in report["warnings"])
    # mdnet-track's own summary agrees on the same boxes once the first line is the ground truth
    # (mdnet-track writes the initial box there).
    aligned = shifted.copy()
    aligned[0] = seq.boxes[0]
    s = summarize(aligned, seq.boxes, seq.absent)
    assert s["auc"] == pytest.approx(row["auc"]) and s["precision20"] == 1.0


def test_one_implementation_of_the_curves():
    # mdnet-eval and mdnet-track's own summary share online/metrics.py's curves and thresholds.
    from online import metrics
    from tools.eval import scoring as evaluation

    assert evaluation.success_curve is metrics.success_curve
    assert evaluation.precision_curve is metrics.precision_curve
    assert evaluation.SUCCESS_THRESHOLDS is metrics.SUCCESS_THRESHOLDS


def test_vot_supervised_files_are_detected(bench, capsys):
    res = bench["tmp"] / "vot" / "V"
    write_result(res, "Tiny", [[1], GT_BOX, [2], [0], [1]])
    with pytest.raises(EvalError, match=r"Tiny\.txt: line 1: .*VOT supervised result.*--protocol vot"):
        read_results(res / "Tiny.txt")
    rc, cap = cli(res, "--gt", bench["gt"], capsys=capsys)  # auto-detected
    assert rc == 0 and "VOT supervised evaluation" in cap.out
    row = next(line.split() for line in cap.out.splitlines() if line.split()[:2] == ["V", "Tiny"])
    assert row[2:6] == ["-", "1", "20.00", "-"]  # all in the burn-in: accuracy unknown; 1 failure in 5
    rc, cap = cli(res, bench["res"] / "B", "--gt", bench["gt"], capsys=capsys)
    assert rc == 2 and "score them apart" in cap.err
