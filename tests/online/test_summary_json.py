"""mdnet-track --summary-json is strict JSON: an unknown number (NaN, an infinity) is null."""
import json
import math

import numpy as np
import pytest

from online import cli
from tests.helpers import write_otb_sequence


def _strict_loads(text):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_strict_json_maps_nan_and_infinities_to_null():
    text = cli.strict_json({"a": float("nan"), "b": [1.5, float("inf"), -math.inf], "c": np.float32("nan"),
                            "d": np.int64(3), "e": np.array([0.5, np.nan]), "f": {"g": np.float64(2.0)}})
    assert _strict_loads(text) == {"a": None, "b": [1.5, None, None], "c": None, "d": 3, "e": [0.5, None],
                                   "f": {"g": 2.0}}
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("protocol", ["ope", "vot"])
def test_summary_json_with_a_nan_metric(tmp_path, monkeypatch, protocol):
    # A sequence whose metrics are unknown (no scored frame: NaN accuracy / mean IoU, NaN fps): the
    # tracking itself is replaced, the summary goes through main's own aggregation and writing.
    seq_dir = write_otb_sequence(tmp_path, "Tiny", ["5,5,10,10"] * 3, size=(40, 30))
    nan = float("nan")
    row = {"frames": 3, "first_frame_s": 0.1, "fps": nan, "net_s": 0.0, "frames_scored": 0}
    if protocol == "vot":
        row.update(init_s=0.1, tracked_frames=0, overlap_sum=0.0, accuracy=nan, failures=0,
                   robustness=0.0, inits=1)
    else:
        row.update(mean_iou=nan, auc=0.0, precision20=float("inf"))
    monkeypatch.setattr(cli, "track_one", lambda seq, *a, **k: {"sequence": seq.name, "files": [], **row})
    summary = tmp_path / "summary.json"
    argv = ["--weights", "random:0", "--widths", "8,16,16,32", "--out-dir", str(tmp_path / "out"), "--quiet",
            "--protocol", protocol, "--summary-json", str(summary), str(seq_dir)]
    assert cli.main(cli.parse_args(argv)) == 0
    text = summary.read_text()
    s = _strict_loads(text)  # a NaN or Infinity token would raise
    assert "NaN" not in text and "Infinity" not in text
    seq = s["sequences"][0]
    if protocol == "vot":
        assert seq["accuracy"] is None and seq["fps"] is None and s["overall"]["accuracy"] is None
    else:
        assert seq["mean_iou"] is None and seq["precision20"] is None and s["overall"]["mean_iou"] is None
    assert s["overall"]["sequences_scored"] == 1
