"""The GOT-10k toolkit runs MDNet (tools/toolkits/got10k_tracker.py): got10k's ExperimentOTB tracks
two real OTB sequences (the first 20 frames of Crossing and Couple from ../shared/data, linked into
a temporary OTB-layout folder), reports its success and precision, and mdnet-eval scores the same
result files to the same numbers.

Why they must agree exactly (docs/evaluation.md): both take the success curve as the fraction of
frames with IoU > t for the 21 thresholds 0, 0.05, ..., 1 and its mean as the AUC; both take
precision as centre error <= 20 px; both score frame 0 with the ground-truth box, average curves
over sequences with equal weight, and use unclipped boxes. got10k's centre is x + (w - 1) / 2, ours
x + w / 2: the -1/2 cancels in a difference of centres. What remains is float rounding.
"""
import json
import os

import numpy as np
import pytest

got10k = pytest.importorskip("got10k")  # installed by `make install`; a skip here means a broken install

from tools.eval import cli as eval_cli  # noqa: E402
from tools.toolkits.got10k_tracker import LocalExperimentOTB, MDNetGOT10k  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

FRAMES = 20
SEQUENCES = ("Crossing", "Couple")  # both in got10k's OTB-2015 list, neither cut by its special cases
TOLERANCE = 1e-9


def otb_subset(root, frames=FRAMES):
    """root/<Seq>/img/0001.jpg... (symlinks to ../shared/data/OTB) + the first `frames` lines of
    groundtruth_rect.txt, as got10k's OTB dataset expects."""
    for name in SEQUENCES:
        src = SHARED_DATA / "OTB" / name
        (root / name / "img").mkdir(parents=True)
        for i in range(frames):
            os.symlink(src / "img" / f"{i + 1:04d}.jpg", root / name / "img" / f"{i + 1:04d}.jpg")
        lines = (src / "groundtruth_rect.txt").read_text().splitlines()[:frames]
        (root / name / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return root


def test_experiment_otb_agrees_with_mdnet_eval(tmp_path, shared_data, capsys):
    root = otb_subset(tmp_path / "OTB")
    experiment = LocalExperimentOTB(str(root), version=2015, result_dir=str(tmp_path / "results"),
                                    report_dir=str(tmp_path / "reports"))
    assert sorted(experiment.dataset.seq_names) == sorted(SEQUENCES)
    tracker = MDNetGOT10k(weights=None, mode="fast")  # the shipped model
    experiment.run(tracker)
    performance = experiment.report([tracker.name])[tracker.name]
    result_dir = tmp_path / "results" / "OTB2015" / tracker.name
    assert sorted(p.name for p in result_dir.glob("*.txt")) == sorted(f"{s}.txt" for s in SEQUENCES)

    out = tmp_path / "eval.json"
    assert eval_cli.main(eval_cli.parse_args([str(result_dir), "--gt", str(root), "--json", str(out)])) == 0
    ours = json.loads(out.read_text())["trackers"][tracker.name]

    theirs = performance["overall"]
    assert abs(theirs["success_score"] - ours["auc"]) < TOLERANCE, (theirs["success_score"], ours["auc"])
    assert abs(theirs["precision_score"] - ours["precision_20"]) < TOLERANCE
    for name in SEQUENCES:
        seq = performance["seq_wise"][name]
        assert abs(seq["success_score"] - ours["sequences"][name]["auc"]) < TOLERANCE
        assert abs(seq["precision_score"] - ours["sequences"][name]["precision_20"]) < TOLERANCE
    # The adapter tracks (RGB in, x, y, w, h out): the first second of both clips is easy.
    assert theirs["success_score"] > 0.5 and theirs["precision_score"] > 0.8, theirs
    assert np.all(np.asarray(performance["seq_wise"]["Crossing"]["success_curve"][:10]) > 0.9)


def test_adapter_is_a_got10k_tracker():
    from got10k.trackers import Tracker
    t = MDNetGOT10k(weights="random:0", mode="exact", overrides=["n_pos_init=20"], name="x")
    assert isinstance(t, Tracker) and t.name == "x" and t.is_deterministic
    with pytest.raises(ValueError, match="empty image"):
        t.init(np.zeros((0, 0, 3), np.uint8), [1, 2, 3, 4])
