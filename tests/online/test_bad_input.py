"""Bad input reaching the online half: every fault is a one-line project error naming the file (or
a warned fallback), never silent bad data or a traceback. Real files, written broken into tmp_path."""
from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from online.cli import main as track_main, parse_args
from online.config import ConfigError, load_config, parse_override
from online.readers import check_frame_bytes, find_sequences, read_pack, read_sequence
from online.sequence import DataError, decode_image
from online.tracker_config import TrackerConfig
from online.weights import WeightFileError, load_weights, save_weights
from online.network import NetSpec, Trunk, init_trunk
from online.weights import params_from_trunk
from tests.helpers import write_real_otb_sequence

# Sequences of copies of a real frame (tests/helpers.py REAL_FRAME): OpenCV's imread decodes that
# JPEG cut in half as a grey lower half, no error.


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


# ------------------------------------------------------------------------------- A1 corrupt frames

def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    seq_dir = write_real_otb_sequence(tmp_path)
    bad = seq_dir / "img" / "0003.jpg"
    _truncate(bad)
    assert cv2.imread(str(bad)) is not None  # what made it silent: OpenCV decodes it grey
    seq = read_sequence(seq_dir)
    with pytest.raises(DataError, match=rf"{bad}: corrupt image: truncated JPEG"):
        seq.frames[2]
    with pytest.raises(DataError, match=rf"{bad}: corrupt image: truncated JPEG"):
        check_frame_bytes(seq)  # the cheap pass finds it without decoding
    seq.frames[1]  # the others still read


def test_zero_padding_after_the_end_marker_is_accepted(tmp_path):
    seq_dir = write_real_otb_sequence(tmp_path, frames=2)
    frame = seq_dir / "img" / "0002.jpg"
    frame.write_bytes(frame.read_bytes() + b"\x00" * 100)
    seq = read_sequence(seq_dir)
    check_frame_bytes(seq)
    assert np.array_equal(seq.frames[1], seq.frames[0])


def _png_bytes() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def test_png_without_iend_or_with_a_bad_crc(tmp_path):
    png = _png_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(png[:-12])  # the IEND chunk lost
    with pytest.raises(DataError, match=rf"{cut}: corrupt image: truncated PNG"):
        decode_image(cut)
    # A text chunk with a wrong CRC: libpng only warns and decodes it; the file is damaged.
    body = b"tEXtComment\x00hello"
    chunk = len(body[4:]).to_bytes(4, "big") + body + ((zlib.crc32(body) ^ 1) & 0xFFFFFFFF).to_bytes(4, "big")
    flipped = tmp_path / "crc.png"
    flipped.write_bytes(png[:33] + chunk + png[33:])
    assert cv2.imread(str(flipped)) is not None
    with pytest.raises(DataError, match=rf"{flipped}: corrupt image: PNG chunk 'tEXt' .* fails its CRC"):
        decode_image(flipped)
    good = tmp_path / "good.png"
    good.write_bytes(png)
    assert decode_image(good).shape == (40, 50, 3)


def test_truncated_frame_in_a_pack_is_named(tmp_path):
    from tools.data.pack import write_pack
    seq_dir = write_real_otb_sequence(tmp_path / "data")
    _truncate(seq_dir / "img" / "0004.jpg")
    pack = tmp_path / "pool.h5"
    write_pack(pack, [str(tmp_path / "data")], log=lambda line: None)
    seq = read_pack(pack)[0]
    where = rf"{pack}: sequence 'Seq' frame 3 \(0004.jpg\): corrupt image: truncated JPEG"
    with pytest.raises(DataError, match=where):
        check_frame_bytes(seq)
    with pytest.raises(DataError, match=where):
        seq.frames[3]


def test_unannotated_folder_is_reported_by_discovery(tmp_path):
    write_real_otb_sequence(tmp_path / "root")
    lost = write_real_otb_sequence(tmp_path / "root" / "more")
    (lost / "groundtruth_rect.txt").unlink()
    missing: list = []
    refs = find_sequences(tmp_path / "root", unannotated=missing)
    assert [r.path.name for r in refs] == ["Seq"] and missing == [lost]


# ------------------------------------------------------------------------------- A2 configs, weights

def test_yaml_syntax_errors_name_the_file_or_the_override(tmp_path):
    bad = tmp_path / "tracker.yaml"
    bad.write_text("lr_init: 0.001\nmaxiter_init: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"{bad}: not valid YAML \(line \d+, column \d+"):
        load_config(TrackerConfig, bad)
    with pytest.raises(ConfigError, match=r"--set 'lr_init=\[1': the value is not valid YAML"):
        parse_override("lr_init=[1")


def _weights(path: Path) -> Path:
    spec = NetSpec(conv_channels=(4, 8, 8), fc_width=16)
    trunk = Trunk(spec)
    init_trunk(trunk, seed=0)
    save_weights(path, params_from_trunk(trunk), spec)
    return path


@pytest.mark.parametrize("replace, what", [
    (lambda g: g.create_group("fc4_bias"), "is a group"),
    (lambda g: g.create_dataset("fc4_bias", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype()),
     "holds strings"),
])
def test_weight_file_with_a_group_or_string_where_a_dataset_belongs(tmp_path, replace, what):
    path = _weights(tmp_path / "w.h5")
    with h5py.File(path, "a") as f:
        del f["params/fc4_bias"]
        replace(f["params"])
    with pytest.raises(WeightFileError, match=rf"weight file {path}: /params/fc4_bias {what}"):
        load_weights(path)


# ------------------------------------------------------------------------------- A4 tracker config ranges

@pytest.mark.parametrize("override, key", [
    ("lr_init=-0.0005", "lr_init"), ("lr_update=0", "lr_update"), ("lr_mult_fc6=-1", "lr_mult_fc6"),
    ("overlap_pos_init=1.5", "overlap_pos_init"), ("overlap_neg_update=-0.1", "overlap_neg_update"),
    ("momentum=1.0", "momentum"), ("trans=-0.6", "trans"), ("scale=0.5", "scale"),
    ("weight_decay=-1", "weight_decay"), ("maxiter_update=-1", "maxiter_update"), ("n_samples=0", "n_samples"),
])
def test_tracker_config_ranges_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"TrackerConfig\.{key} "):
        load_config(TrackerConfig, None, [override])


# ------------------------------------------------------------------------------- mdnet-track

def _track(tmp_path, *extra):
    argv = ["--weights", "random:0", "--widths", "4,8,8,16", "--quiet", "--set", "maxiter_init=1",
            "--set", "n_pos_init=20", "--set", "n_neg_init=40", "--set", "n_samples=16", "--set", "batch_test=32",
            "--set", "batch_neg_cand=96", "--set", "n_bbreg=20", "--set", "maxiter_update=1"] + [str(a) for a in extra]
    return track_main(parse_args(argv))


def test_track_out_dir_that_is_a_file(tmp_path, capsys):
    seq = write_real_otb_sequence(tmp_path, frames=2)
    out = tmp_path / "results"
    out.write_text("not a folder")
    assert _track(tmp_path, seq, "--out-dir", out) == 2
    err = capsys.readouterr().err
    assert f"--out-dir {out}: is a file" in err and "Traceback" not in err


def test_track_save_video_bad_extension_rejected_before_tracking(tmp_path, capsys):
    seq = write_real_otb_sequence(tmp_path, frames=2)
    video = tmp_path / "out.xyz"
    assert _track(tmp_path, seq, "--out-dir", tmp_path / "r", "--save-video", video) == 2
    err = capsys.readouterr().err
    assert f"--save-video {video}: OpenCV cannot write a video with this name" in err
    assert not (tmp_path / "r" / "Seq.txt").exists() and not video.exists()  # nothing was tracked


def test_track_short_ground_truth_with_larger_frames_warns_once(tmp_path, capsys):
    seq = write_real_otb_sequence(tmp_path, frames=4, gt_lines=2)
    assert _track(tmp_path, seq, "--out-dir", tmp_path / "r", "--frames", 4) == 0
    err = capsys.readouterr().err
    gt = seq / "groundtruth_rect.txt"
    assert err.count("warning") == 1
    assert f"{gt}: 2 ground-truth lines for 4 frames: tracking the annotated first 2 frames only" in err
    assert len((tmp_path / "r" / "Seq.txt").read_text().splitlines()) == 2


def test_track_yaml_error_in_set_is_a_config_error(tmp_path, capsys):
    seq = write_real_otb_sequence(tmp_path, frames=2)
    assert _track(tmp_path, seq, "--out-dir", tmp_path / "r", "--set", "lr_init={") == 2
    err = capsys.readouterr().err
    assert "config error: --set 'lr_init={': the value is not valid YAML" in err
