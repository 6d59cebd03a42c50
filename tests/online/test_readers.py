"""Sequence readers, on the real benchmark sequences in shared/data and on crafted bad input."""
from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from online.readers import (VideoFrames, check_frames, detect_format, discover, find_sequences,
                            load, read_boxes, read_dtb70, read_got10k, read_image_folder,
                            read_imagenet_vid, read_lasot, read_otb, read_sequence, read_uav123,
                            read_video, read_vot)
from online.sequence import DataError
from tests.helpers import write_frames, write_otb_sequence

# folder: (format, frames on disk, ground-truth lines, ground-truth file, (width, height))
REAL = {
    "DTB70/MountainBike6": ("dtb70", 81, 81, "groundtruth_rect.txt", (1280, 720)),
    "DTB70/Surfing06": ("dtb70", 106, 106, "groundtruth_rect.txt", (1280, 720)),
    "OTB/Bolt2": ("otb", 293, 293, "groundtruth_rect.txt", (480, 270)),
    "OTB/Couple": ("otb", 140, 140, "groundtruth_rect.txt", (320, 240)),
    "OTB/Crossing": ("otb", 120, 120, "groundtruth_rect.txt", (360, 240)),
    "OTB/Diving": ("otb", 231, 215, "groundtruth_rect.txt", (400, 224)),
    "OTB/DragonBaby": ("otb", 113, 113, "groundtruth_rect.txt", (640, 360)),
    "OTB/Football1": ("otb", 81, 74, "groundtruth_rect.txt", (352, 288)),
    "OTB/Freeman1": ("otb", 326, 326, "groundtruth_rect.txt", (360, 240)),
    "OTB/Skiing": ("otb", 81, 81, "groundtruth_rect.txt", (640, 360)),
    "UAV123_10fps/building5": ("uav123", 161, 161, "groundtruth_rect.txt", (1280, 720)),
    "UAV123_10fps/wakeboard7": ("uav123", 67, 67, "groundtruth_rect.txt", (1280, 720)),
    "VOT/bag": ("vot", 196, 196, "groundtruth.txt", (480, 360)),
    "VOT/ball1": ("vot", 105, 105, "groundtruth.txt", (1280, 720)),
}
SPECIFIC = {"otb": read_otb, "dtb70": read_dtb70, "uav123": read_uav123, "vot": read_vot}


def parse_independently(path: Path) -> list[list[float]]:
    """The test's own reading of a ground-truth file: split on commas/whitespace, polygons to rects."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        v = [float(t) for t in re.split(r"[,\s]+", line.strip())]
        if len(v) == 8:
            xs, ys = v[0::2], v[1::2]
            v = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        rows.append(v)
    return rows


# ----------------------------------------------------------------------------------------------
# Real sequences

def test_discover_finds_the_14_real_sequences(shared_data):
    refs = find_sequences(shared_data)
    assert [str(r.path.relative_to(shared_data)) for r in refs] == sorted(REAL)
    seqs = discover(shared_data)
    assert len(seqs) == 14
    assert [s.name for s in seqs] == [k.split("/")[1] for k in sorted(REAL)]


@pytest.mark.parametrize("folder", sorted(REAL))
def test_real_sequence(shared_data, folder):
    fmt, n_frames, n_lines, gt_name, size = REAL[folder]
    path = shared_data / folder
    assert detect_format(path) == fmt
    seq = read_sequence(path)
    again = SPECIFIC[fmt](path)
    assert np.array_equal(seq.boxes, again.boxes)

    assert seq.format == fmt and seq.name == path.name and seq.has_groundtruth
    assert len(list((path / "img").glob("*.jpg"))) == n_frames
    assert seq.frames_on_disk == n_frames
    assert len(seq) == n_lines == len(seq.frames)
    assert seq.annotated == n_lines and not seq.absent.any()

    expected = parse_independently(path / gt_name)
    assert len(expected) == n_lines
    for i in (0, 1, n_lines // 2, n_lines - 1):
        assert seq.boxes[i].tolist() == expected[i], f"line {i + 1}"
    assert check_frames(seq) == size
    frame = seq.frame(n_lines - 1)
    assert frame.dtype == np.uint8 and frame.shape == (size[1], size[0], 3)


def test_fewer_lines_than_frames_use_the_annotated_prefix(shared_data):
    diving = read_otb(shared_data / "OTB/Diving")
    assert (len(diving), diving.frames_on_disk, diving.annotated) == (215, 231, 215)
    assert any("215 lines for 231 frames" in p for p in diving.problems)
    # the last annotated frame is file 0215.jpg, and frames past the annotation are not exposed
    assert diving.frames.describe(214).endswith("0215.jpg")
    with pytest.raises(IndexError):
        diving.frame(215)
    football = read_otb(shared_data / "OTB/Football1")
    assert (len(football), football.frames_on_disk) == (74, 81)
    assert any("74 lines for 81 frames" in p for p in football.problems)


def test_exact_values_from_the_files(shared_data):
    # Numbers copied by hand from the files.
    couple = read_otb(shared_data / "OTB/Couple")  # tab-separated
    assert couple.boxes[0].tolist() == [51, 47, 25, 62]
    assert couple.boxes[-1].tolist() == [130, 25, 39, 90]
    crossing = read_otb(shared_data / "OTB/Crossing")  # tab-separated
    assert crossing.boxes[0].tolist() == [205, 151, 17, 50]
    surfing = read_dtb70(shared_data / "DTB70/Surfing06")  # fractional
    assert surfing.boxes[1].tolist() == [722.5, 308, 41, 60]
    assert surfing.boxes[2].tolist() == [720, 312.5, 42, 61]
    bike = read_dtb70(shared_data / "DTB70/MountainBike6")
    assert bike.boxes[-2].tolist() == [540.92, 279.99, 68, 61]
    # VOT polygon 334.02,128.36,438.19,188.78,396.39,260.83,292.23,200.41 -> bounding rectangle
    bag = read_vot(shared_data / "VOT/bag")
    assert len(bag) == 196 and bag.frames_on_disk == 196
    assert bag.boxes[0].tolist() == [292.23, 128.36, 438.19 - 292.23, 260.83 - 128.36]
    assert any("groundtruth_vot2015_siamesefc.txt" in p for p in bag.problems)
    ball = read_vot(shared_data / "VOT/ball1")  # an axis-aligned polygon
    assert ball.boxes[0].tolist() == [492.0, 417.0, 47.0, 46.0]


def test_grayscale_frames_become_three_equal_channels(shared_data):
    seq = read_otb(shared_data / "OTB/Freeman1")
    for i in (0, len(seq) - 1):
        img = seq.frame(i)
        assert img.shape == (240, 360, 3)
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


# ----------------------------------------------------------------------------------------------
# Crafted data

# write_frames / write_otb_sequence: tests/helpers.py (frame k filled with (k * 17) % 256, 40x30).


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nope"))):
        read_otb(tmp_path / "nope")
    with pytest.raises(DataError, match="no such"):
        read_sequence(tmp_path / "nope")
    with pytest.raises(DataError, match="no such folder"):
        discover(tmp_path / "nope")


def test_no_frames(tmp_path):
    d = tmp_path / "seq"
    (d / "img").mkdir(parents=True)
    (d / "groundtruth_rect.txt").write_text("1,2,3,4\n")
    with pytest.raises(DataError, match="no frame images"):
        read_otb(d)


def test_no_groundtruth_lines(tmp_path):
    d = write_otb_sequence(tmp_path, "seq", [], 3)
    with pytest.raises(DataError, match="no ground-truth lines"):
        read_otb(d)


@pytest.mark.parametrize("bad, why", [("1,2,x,4", "malformed"), ("1,2,3", "got 3 values"),
                                      ("1,,2,3,4", "malformed"), ("", "empty line")])
def test_malformed_line_names_file_and_line(tmp_path, bad, why):
    d = write_otb_sequence(tmp_path, "seq", ["1,2,3,4", "1,2,3,4", bad, "1,2,3,4"], 4)
    with pytest.raises(DataError) as e:
        read_otb(d)
    msg = str(e.value)
    assert "groundtruth_rect.txt: line 3" in msg and why in msg
    if bad:
        assert repr(bad) in msg


def test_more_lines_than_frames(tmp_path):
    d = write_otb_sequence(tmp_path, "seq", ["1,2,3,4"] * 5, 3)
    with pytest.raises(DataError, match=r"5 ground-truth lines but only 3 frames"):
        read_otb(d)


def test_separators_and_trailing_blank_lines(tmp_path):
    d = write_otb_sequence(tmp_path, "seq",
                           ["1,2,3,4", "5\t6\t7\t8", "9 10  11 12", " 1.5 , 2.5,3.5 ,4.5", "", ""], 4)
    seq = read_otb(d)
    assert seq.boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [1.5, 2.5, 3.5, 4.5]]


def test_invalid_boxes_marked_absent(tmp_path):
    # frames are 40x30
    lines = ["1,2,10,10", "NaN,NaN,NaN,NaN", "5,5,0,10", "5,5,10,-3", "40,5,10,10", "-20,5,10,10",
             "35,25,10,10", "-5,-5,10,10"]
    seq = read_uav123(write_otb_sequence(tmp_path, "seq", lines, len(lines)))
    assert seq.absent.tolist() == [False, True, True, True, True, True, False, False]
    assert seq.annotated == 3
    assert np.isnan(seq.boxes[1]).all()
    text = " | ".join(seq.problems)
    assert "NaN" in text and "zero or negative size" in text and "wholly outside" in text


def test_corrupt_frame_named_on_access(tmp_path):
    d = write_otb_sequence(tmp_path, "seq", ["1,2,10,10"] * 5, 5)
    (d / "img" / "0003.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (d / "img" / "0005.jpg").write_bytes(b"")
    seq = read_otb(d)  # loading decodes only the first frame
    seq.frame(1)
    with pytest.raises(DataError, match=r"0003\.jpg: unreadable or corrupt"):
        seq.frame(2)
    with pytest.raises(DataError, match=r"0005\.jpg"):
        check_frames(seq)


def test_corrupt_first_frame_fails_at_load(tmp_path):
    d = write_otb_sequence(tmp_path, "seq", ["1,2,10,10"] * 2, 2)
    (d / "img" / "0001.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"0001\.jpg"):
        read_otb(d)


def test_otb_two_targets_and_late_start(tmp_path):
    d = tmp_path / "Jogging"
    write_frames(d / "img", 3, start=5)  # 0005.jpg .. 0007.jpg
    (d / "groundtruth_rect.1.txt").write_text("1,1,5,5\n2,2,5,5\n3,3,5,5\n")
    (d / "groundtruth_rect.2.txt").write_text("9,9,5,5\n9,9,5,5\n9,9,5,5\n")
    seq = read_sequence(d)
    assert seq.format == "otb" and len(seq) == 3
    assert seq.boxes[0].tolist() == [1, 1, 5, 5]
    assert seq.frames.describe(0).endswith("0005.jpg")
    assert any("groundtruth_rect.2.txt" in p for p in seq.problems)


def test_plain_image_folder_sorts_naturally(tmp_path):
    d = tmp_path / "clip"
    write_frames(d, 3, names=["10.png", "2.png", "1.png"])
    seq = read_image_folder(d, [3, 4, 10, 12])
    assert [Path(seq.frames.describe(i)).name for i in range(3)] == ["1.png", "2.png", "10.png"]
    assert not seq.has_groundtruth and seq.format == "image-folder"
    assert seq.boxes[0].tolist() == [3, 4, 10, 12] and np.isnan(seq.boxes[1:]).all()
    assert seq.absent.tolist() == [False, True, True]
    with pytest.raises(DataError, match="not a sequence folder"):
        read_sequence(d)
    assert read_sequence(d, init_box=[3, 4, 10, 12]).format == "image-folder"
    with pytest.raises(DataError, match="wholly outside"):
        read_image_folder(d, [100, 100, 5, 5])
    with pytest.raises(DataError, match="zero or negative"):
        read_image_folder(d, [1, 1, 0, 5])


def test_vot_boxes_and_frame_locations(tmp_path):
    a = tmp_path / "a"
    write_frames(a / "color", 2, digits=8)
    (a / "groundtruth.txt").write_text("1,2,11,2,11,7,1,7\n3,4,5,6\n")
    seq = read_vot(a)
    assert seq.boxes.tolist() == [[1, 2, 10, 5], [3, 4, 5, 6]]
    # The corners are kept for the VOT protocol's overlap: as written, or the rectangle's.
    assert seq.polygons.tolist() == [[1, 2, 11, 2, 11, 7, 1, 7], [3, 4, 8, 4, 8, 10, 3, 10]]
    assert seq.image_size == (40, 30) and seq.head(1).polygons.tolist() == [[1, 2, 11, 2, 11, 7, 1, 7]]
    assert read_sequence(write_otb_sequence(tmp_path, "seq", ["1,2,3,4"] * 2, 2)).polygons is None
    b = tmp_path / "b"
    write_frames(b, 2, digits=8)  # frames in the sequence folder itself (VOT2015 layout)
    (b / "groundtruth.txt").write_text("nan,nan,nan,nan,nan,nan,nan,nan\n1,1,3,3\n")
    seq = read_sequence(b)
    assert seq.format == "vot" and seq.absent.tolist() == [True, False]
    assert np.isnan(seq.polygons[0]).all() and seq.polygons[1].tolist() == [1, 1, 4, 1, 4, 4, 1, 4]
    (b / "groundtruth.txt").write_text("m1,2,3\n")
    with pytest.raises(DataError, match="line 1: segmentation-mask"):
        read_vot(b)


def test_vot_root_with_list(tmp_path):
    for name in ("zeta", "alpha", "stray"):
        write_frames(tmp_path / name / "color", 2, digits=8)
        (tmp_path / name / "groundtruth.txt").write_text("1,1,5,5\n1,1,5,5\n")
    (tmp_path / "list.txt").write_text("zeta\nalpha\n")
    assert [s.name for s in discover(tmp_path)] == ["zeta", "alpha"]  # list order; stray ignored
    (tmp_path / "list.txt").write_text("zeta\nmissing\n")
    with pytest.raises(DataError, match=r"list.txt: line 2 names 'missing'"):
        discover(tmp_path)


def make_got10k(d: Path, lines, absence=None, cover=None):
    write_frames(d, len(lines) if absence is not None else 4, digits=8)
    (d / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    if absence is not None:
        (d / "absence.label").write_text("\n".join(map(str, absence)) + "\n")
    if cover is not None:
        (d / "cover.label").write_text("\n".join(map(str, cover)) + "\n")
    return d


def test_got10k(tmp_path):
    d = make_got10k(tmp_path / "GOT-10k_Train_000001", ["1,1,5,5"] * 4, [0, 1, 0, 0], [8, 8, 0, 5])
    seq = read_sequence(d)
    assert seq.format == "got10k" and len(seq) == 4
    assert seq.absent.tolist() == [False, True, True, False]
    # a test sequence: first box only, no labels
    t = make_got10k(tmp_path / "GOT-10k_Test_000001", ["2,2,6,6"])
    seq = read_got10k(t)
    assert not seq.has_groundtruth and len(seq) == 4
    assert seq.boxes[0].tolist() == [2, 2, 6, 6] and seq.absent.tolist() == [False, True, True, True]
    (tmp_path / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Test_000001\n")
    assert [s.format for s in discover(tmp_path)] == ["got10k", "got10k"]
    bad = make_got10k(tmp_path / "GOT-10k_Train_000002", ["1,1,5,5"] * 4, [0, 1, 0])
    (bad / "absence.label").write_text("0\n1\n0\n")
    with pytest.raises(DataError, match=r"absence.label: 3 values but the ground truth has 4 lines"):
        read_got10k(bad)


def test_lasot(tmp_path):
    for cls, idx in (("cat", 2), ("airplane", 1), ("cat", 10)):
        d = tmp_path / cls / f"{cls}-{idx}"
        write_frames(d / "img", 5, digits=8)
        (d / "groundtruth.txt").write_text("1,1,5,5\n" * 4 + "0,0,0,0\n")
        (d / "full_occlusion.txt").write_text("0,1,0,0,0")
        (d / "out_of_view.txt").write_text("0,0,0,1,1")
        (d / "nlp.txt").write_text("a cat\n")
    seqs = discover(tmp_path)
    assert [s.name for s in seqs] == ["airplane-1", "cat-2", "cat-10"]
    seq = seqs[1]
    assert seq.format == "lasot" and seq.absent.tolist() == [False, True, False, True, True]
    (tmp_path / "cat" / "cat-2" / "out_of_view.txt").write_text("0,0,x,1,1")
    with pytest.raises(DataError, match=r"out_of_view.txt: line 1: expected integer labels, got 'x'"):
        read_lasot(tmp_path / "cat" / "cat-2")


def test_lasot_flags_of_the_uncut_video_are_cut_to_the_ground_truth(tmp_path):
    # A copy cut to its first frames keeps the flag files of the whole video (the pool's
    # airplane-1: 300 lines, 2788 flags): the first values are the kept frames'.
    d = tmp_path / "airplane" / "airplane-1"
    write_frames(d / "img", 3, digits=8)
    (d / "groundtruth.txt").write_text("1,1,5,5\n" * 3)
    (d / "full_occlusion.txt").write_text("0,1,0,0,1,1")
    (d / "out_of_view.txt").write_text("0,0,1,1,1,1")
    seq = read_lasot(d)
    assert seq.absent.tolist() == [False, True, True]
    assert seq.problems == ["full_occlusion.txt has 6 values for 3 ground-truth lines: using the first 3",
                            "out_of_view.txt has 6 values for 3 ground-truth lines: using the first 3"]
    (d / "out_of_view.txt").write_text("0,0")
    with pytest.raises(DataError, match=r"out_of_view.txt: 2 values but the ground truth has 3 lines"):
        read_lasot(d)


def test_lasot_real_cut_copy(shared_pool):
    seq = read_lasot(shared_pool / "LaSOT" / "airplane-1")
    assert len(seq) == seq.frames_on_disk == 300 and seq.format == "lasot"
    assert "full_occlusion.txt has 2788 values for 300 ground-truth lines" in seq.problems[0]


VID_XML = """<annotation><folder>x</folder><filename>{t:06d}</filename>
<size><width>40</width><height>30</height></size>{objects}</annotation>"""
VID_OBJ = """<object><trackid>{tid}</trackid><name>n01</name><bndbox><xmax>{x2}</xmax><xmin>{x1}</xmin>
<ymax>{y2}</ymax><ymin>{y1}</ymin></bndbox><occluded>0</occluded><generated>0</generated></object>"""


def test_imagenet_vid(tmp_path):
    video = "ILSVRC2015_train_00000000"
    ann = tmp_path / "Annotations/VID/train/ILSVRC2015_VID_train_0000" / video
    data = tmp_path / "Data/VID/train/ILSVRC2015_VID_train_0000" / video
    ann.mkdir(parents=True)
    write_frames(data, 5, names=[f"{t:06d}.JPEG" for t in range(5)])
    # track 0 in every frame; track 3 in frames 1, 2 and 4 (absent in 3)
    for t in range(5):
        objs = [VID_OBJ.format(tid=0, x1=t, y1=2, x2=t + 10, y2=12)]
        if t in (1, 2, 4):
            objs.append(VID_OBJ.format(tid=3, x1=20, y1=5, x2=30, y2=25))
        (ann / f"{t:06d}.xml").write_text(VID_XML.format(t=t, objects="".join(objs)))
    seqs = discover(tmp_path)
    assert [s.name for s in seqs] == [f"{video}_0", f"{video}_3"]
    s0, s3 = seqs
    assert s0.format == "imagenet-vid" and len(s0) == 5 and not s0.absent.any()
    assert s0.boxes[4].tolist() == [4, 2, 10, 10]
    assert len(s3) == 4 and s3.frames.describe(0).endswith("000001.JPEG")
    assert s3.absent.tolist() == [False, False, True, False]
    assert s3.boxes[0].tolist() == [20, 5, 10, 20]
    assert s3.frame(3).shape == (30, 40, 3)
    assert [s.name for s in read_imagenet_vid(ann)] == [s.name for s in seqs]
    with pytest.raises(DataError, match="one sequence per track"):
        read_sequence(ann)
    (ann / "000002.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"000002.xml: unreadable"):
        read_imagenet_vid(ann)


def write_video(path: Path, n: int, size=(64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.full((size[1], size[0], 3), 10 + 20 * k, np.uint8))  # brightness = index
    writer.release()
    return path


def test_video(tmp_path):
    path = write_video(tmp_path / "clip.avi", 12)
    frames = VideoFrames(path)
    assert len(frames) == 12
    for k in (5, 2, 11, 0, 1, 1, 7):  # out of order, repeated, backwards
        img = frames[k]
        assert img.shape == (48, 64, 3)
        assert abs(float(img.mean()) - (10 + 20 * k)) < 4, k
    with pytest.raises(IndexError):
        frames[12]
    seq = read_video(path, (5, 5, 20, 20))
    assert seq.format == "video" and seq.name == "clip" and len(seq) == 12 and not seq.has_groundtruth
    assert seq.absent.sum() == 11
    with pytest.raises(DataError, match="give an initial box"):
        read_sequence(path)
    assert len(read_sequence(path, init_box=(5, 5, 20, 20))) == 12
    (tmp_path / "broken.avi").write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="broken.avi"):
        VideoFrames(tmp_path / "broken.avi")


def test_read_sequence_dispatch(tmp_path):
    d = write_otb_sequence(tmp_path / "DTB70", "Car1", ["1,2,3,4"] * 2, 2)
    seq = read_sequence(d / "groundtruth_rect.txt")  # the ground-truth file means its folder
    assert seq.format == "dtb70" and seq.name == "Car1"
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="not a sequence folder or a video"):
        read_sequence(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no sequences found"):
        discover(empty)


def test_read_boxes_polygons_only_when_asked(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("1,2,11,2,11,7,1,7\n")
    with pytest.raises(DataError, match="got 8 values"):
        read_boxes(p)
    assert read_boxes(p, polygons=True).tolist() == [[1, 2, 10, 5]]


def test_load_rejects_unknown_format(tmp_path):
    from online.readers import SequenceRef
    with pytest.raises(DataError, match="unknown format"):
        load(SequenceRef(tmp_path, "nope"))
