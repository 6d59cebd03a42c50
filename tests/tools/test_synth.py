"""Synthetic sequences: deterministic, readable by the OTB reader, boxes inside, not trivial."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from online.readers import discover, read_otb
from tools.data.synth import synthesize

SMALL = dict(sequences=3, frames=12, size=(96, 72))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, seed=7, **SMALL)
    return out


def test_same_seed_gives_identical_bytes(synth_small, tmp_path):
    synthesize(tmp_path, seed=7, **SMALL)
    a, b = files(synth_small), files(tmp_path)
    assert list(a) == list(b)
    assert len(a) == 3 * (12 + 1)
    assert a == b


def test_different_seed_differs(synth_small, tmp_path):
    synthesize(tmp_path, seed=8, **SMALL)
    a, b = files(synth_small), files(tmp_path)
    assert list(a) == list(b)
    assert all(a[k] != b[k] for k in a if k.endswith("groundtruth_rect.txt"))
    assert sum(a[k] != b[k] for k in a) == len(a)


def test_sequence_k_does_not_depend_on_count(synth_small, tmp_path):
    synthesize(tmp_path, seed=7, sequences=2, frames=12, size=(96, 72))
    a, b = files(synth_small), files(tmp_path)
    assert all(a[k] == v for k, v in b.items())


def test_rerun_replaces_old_sequences(tmp_path):
    synthesize(tmp_path, seed=1, **SMALL)
    (tmp_path / "mine.txt").write_text("keep me")
    synthesize(tmp_path, seed=1, sequences=1, frames=5, size=(96, 72))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", "synth_000"]
    assert len(list((tmp_path / "synth_000" / "img").iterdir())) == 5


def test_loads_through_the_otb_reader_with_boxes_inside(synth_small):
    seqs = discover(synth_small)
    assert [s.name for s in seqs] == ["synth_000", "synth_001", "synth_002"]
    for seq in seqs:
        assert seq.format == "otb" and len(seq) == 12 == seq.frames_on_disk
        assert not seq.problems and not seq.absent.any()
        assert seq.frame(0).shape == (72, 96, 3)
        x, y, w, h = seq.boxes.T
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= 96).all() and (y + h <= 72).all()
        assert (w >= 5).all() and (h >= 5).all()
        first = (synth_small / seq.name / "groundtruth_rect.txt").read_text().splitlines()[0]
        assert seq.boxes[0].tolist() == [float(v) for v in first.split(",")]


def test_motion_and_appearance_change(tmp_path):
    # Over 40 frames the target moves, changes size, and the frames are not copies of each other.
    synthesize(tmp_path, seed=3, sequences=2, frames=40, size=(128, 96))
    for seq in (read_otb(tmp_path / f"synth_{k:03d}") for k in range(2)):
        centres = seq.boxes[:, :2] + seq.boxes[:, 2:] / 2
        assert np.ptp(centres, axis=0).max() > 5
        areas = seq.boxes[:, 2] * seq.boxes[:, 3]
        assert areas.max() / areas.min() > 1.1
        f0, f1 = seq.frame(0).astype(int), seq.frame(39).astype(int)
        assert np.abs(f0 - f1).mean() > 5
        assert seq.frame(0).std() > 20  # textured, not flat


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least 48"):
        synthesize(tmp_path, size=(20, 20))
    with pytest.raises(ValueError, match="at least 1 sequence"):
        synthesize(tmp_path, sequences=0)
