"""The reader registry: every registered format is detected and read from a tiny example of its
layout built on disk, unknown names are answered with the valid ones, and `mdnet-data index
--help` lists what is registered.

A new format needs an entry in EXAMPLES below; `test_every_format_has_an_example` fails until it
has one.
"""
from __future__ import annotations

import dataclasses
import math
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import online.readers
from online.readers import SequenceRef, detect_format, find_sequences, load, read_sequence, registry
from online.sequence import DataError
from tests.helpers import write_frames, write_otb_sequence
from tests.online.test_readers import VID_OBJ, VID_XML, make_got10k, write_video

NAN = math.nan


@dataclass
class Expected:
    name: str
    boxes: list
    absent: list
    frame_files: list  # file names of the frames, in order (None: not image files)
    brightness: list   # mean pixel value of each frame as written
    format: str = None  # the sequence's own format where it differs from the reader's (a pack)


@dataclass
class Example:
    path: Path         # what detect_format / read_sequence are given
    root: Path         # a root that discovery walks (None for formats needing an initial box)
    seqs: list
    init_box: list = field(default=None)


# write_frames paints frame k with the value (k * 17) % 256, file names 0001.jpg ... by default.
def shades(n, start=0):
    return [(k * 17) % 256 for k in range(start, start + n)]


def ex_otb(tmp: Path) -> Example:
    d = write_otb_sequence(tmp / "OTB100", "Basketball", ["1,2,10,10", "3,4,10,12", "0,0,0,0"], 3)
    return Example(d, tmp / "OTB100", [Expected(
        "Basketball", [[1, 2, 10, 10], [3, 4, 10, 12], [0, 0, 0, 0]], [False, False, True],
        ["0001.jpg", "0002.jpg", "0003.jpg"], shades(3))])


def ex_dtb70(tmp: Path) -> Example:
    d = write_otb_sequence(tmp / "DTB70", "Car1", ["1.5,2.25,10,10", "2.5,3,10.5,11", "3,4,9,9"], 3)
    return Example(d, tmp / "DTB70", [Expected(
        "Car1", [[1.5, 2.25, 10, 10], [2.5, 3, 10.5, 11], [3, 4, 9, 9]], [False, False, False],
        ["0001.jpg", "0002.jpg", "0003.jpg"], shades(3))])


def ex_uav123(tmp: Path) -> Example:
    d = write_otb_sequence(tmp / "UAV123_10fps" / "data_seq", "bike1",
                           ["1,2,10,10", "NaN,NaN,NaN,NaN", "3,4,5,6"], 3)
    return Example(d, tmp / "UAV123_10fps", [Expected(
        "bike1", [[1, 2, 10, 10], [NAN] * 4, [3, 4, 5, 6]], [False, True, False],
        ["0001.jpg", "0002.jpg", "0003.jpg"], shades(3))])


def ex_lasot(tmp: Path) -> Example:
    d = tmp / "LaSOT" / "cat" / "cat-1"
    write_frames(d / "img", 3, digits=8)
    (d / "groundtruth.txt").write_text("1,1,5,5\n2,2,5,5\n3,3,5,5\n")
    (d / "full_occlusion.txt").write_text("0,1,0")
    (d / "out_of_view.txt").write_text("0,0,1")
    return Example(d, tmp / "LaSOT", [Expected(
        "cat-1", [[1, 1, 5, 5], [2, 2, 5, 5], [3, 3, 5, 5]], [False, True, True],
        ["00000001.jpg", "00000002.jpg", "00000003.jpg"], shades(3))])


def ex_got10k(tmp: Path) -> Example:
    d = make_got10k(tmp / "GOT-10k" / "train" / "GOT-10k_Train_000001",
                    ["1,1,5,5", "2,2,6,6", "3,3,7,7"], absence=[0, 0, 1], cover=[8, 0, 8])
    return Example(d, tmp / "GOT-10k", [Expected(
        "GOT-10k_Train_000001", [[1, 1, 5, 5], [2, 2, 6, 6], [3, 3, 7, 7]], [False, True, True],
        ["00000001.jpg", "00000002.jpg", "00000003.jpg"], shades(3))])


def ex_vot(tmp: Path) -> Example:
    d = tmp / "VOT" / "bag"
    write_frames(d / "color", 3, digits=8)
    (d / "groundtruth.txt").write_text("1,2,11,2,11,7,1,7\n3,4,5,6\nnan,nan,nan,nan,nan,nan,nan,nan\n")
    return Example(d, tmp / "VOT", [Expected(
        "bag", [[1, 2, 10, 5], [3, 4, 5, 6], [NAN] * 4], [False, False, True],
        ["00000001.jpg", "00000002.jpg", "00000003.jpg"], shades(3))])


def ex_imagenet_vid(tmp: Path) -> Example:
    video = "ILSVRC2015_train_00000001"
    ann = tmp / "ILSVRC" / "Annotations/VID/train" / video
    ann.mkdir(parents=True)
    names = [f"{t:06d}.JPEG" for t in range(3)]
    write_frames(tmp / "ILSVRC" / "Data/VID/train" / video, 3, names=names)
    for t in range(3):  # track 0 in every frame, track 2 in frame 1 and 2
        objs = [VID_OBJ.format(tid=0, x1=t, y1=2, x2=t + 10, y2=12)]
        if t >= 1:
            objs.append(VID_OBJ.format(tid=2, x1=20, y1=5, x2=30, y2=25))
        (ann / f"{t:06d}.xml").write_text(VID_XML.format(t=t, objects="".join(objs)))
    return Example(ann, tmp / "ILSVRC", [
        Expected(f"{video}_0", [[0, 2, 10, 10], [1, 2, 10, 10], [2, 2, 10, 10]], [False] * 3,
                 names, shades(3)),
        Expected(f"{video}_2", [[20, 5, 10, 20]] * 2, [False] * 2, names[1:], shades(2, start=1))])


def ex_video(tmp: Path) -> Example:
    path = write_video(tmp / "clip.avi", 3)  # frame k has brightness 10 + 20 k
    return Example(path, None, [Expected(
        "clip", [[5, 5, 20, 20]] + [[NAN] * 4] * 2, [False, True, True], None, [10, 30, 50])],
        init_box=[5, 5, 20, 20])


def ex_image_folder(tmp: Path) -> Example:
    d = tmp / "my_clip"
    write_frames(d, 3, names=["frame10.png", "frame2.png", "frame1.png"])  # k=0 is frame10
    return Example(d, None, [Expected(
        "my_clip", [[3, 4, 10, 12]] + [[NAN] * 4] * 2, [False, True, True],
        ["frame1.png", "frame2.png", "frame10.png"], [34, 17, 0])], init_box=[3, 4, 10, 12])


def ex_pack(tmp: Path) -> Example:
    # A pack of two formats' examples: each sequence keeps its own format, name, boxes and frames.
    from tools.data.pack import write_pack
    srcs = [ex_otb(tmp / "src"), ex_vot(tmp / "src")]
    pack = tmp / "pool.h5"
    write_pack(pack, [str(ex.root) for ex in srcs], log=lambda line: None)
    seqs = [dataclasses.replace(ex.seqs[0], format=fmt) for ex, fmt in zip(srcs, ("otb", "vot"))]
    return Example(pack, pack, seqs)


EXAMPLES = {
    "otb": ex_otb, "dtb70": ex_dtb70, "uav123": ex_uav123, "lasot": ex_lasot, "got10k": ex_got10k,
    "vot": ex_vot, "imagenet-vid": ex_imagenet_vid, "pack": ex_pack, "video": ex_video,
    "image-folder": ex_image_folder,
}
REGISTERED = [f.name for f in registry.formats()]


def test_every_format_has_an_example():
    assert sorted(EXAMPLES) == sorted(REGISTERED)


def test_every_format_module_is_registered():
    # A format module that __init__ forgets to import would register nothing.
    modules = {m.name for m in pkgutil.iter_modules(online.readers.__path__)} - {"common", "registry"}
    assert {f.read.__module__.rsplit(".", 1)[1] for f in registry.formats()} == modules


def check(seq, fmt_name: str, exp: Expected):
    assert (seq.format, seq.name) == (exp.format or fmt_name, exp.name)
    np.testing.assert_array_equal(seq.boxes, np.array(exp.boxes, np.float64))
    assert seq.absent.tolist() == exp.absent
    assert len(seq) == len(seq.frames) == len(exp.absent)
    if exp.frame_files is not None:
        assert [Path(seq.frames.describe(i)).name for i in range(len(seq))] == exp.frame_files
    for i, value in enumerate(exp.brightness):
        assert abs(float(seq.frame(i).mean()) - value) < 4, (exp.name, i)


@pytest.mark.parametrize("name", REGISTERED)
def test_reads_every_registered_format(tmp_path, name):
    fmt = registry.get(name)
    assert name in EXAMPLES, f"no example for the format {name!r}: add one to EXAMPLES"
    ex = EXAMPLES[name](tmp_path)
    assert fmt.detect(ex.path)
    assert detect_format(ex.path, with_init_box=fmt.needs_init_box) == name
    if fmt.needs_init_box:
        # Never taken for a sequence with ground truth, never found by discovery.
        assert detect_format(ex.path) is None
        with pytest.raises(DataError, match="give an initial box"):
            read_sequence(ex.path)
        seqs = [read_sequence(ex.path, init_box=ex.init_box)]
        assert not seqs[0].has_groundtruth
    else:
        refs = find_sequences(ex.root)
        assert refs == [SequenceRef(ex.path, name)]
        seqs = load(refs[0])
        if fmt.read_all is None:
            # the ground truth wins over a given initial box
            for again in (read_sequence(ex.path), read_sequence(ex.path, init_box=[1, 1, 2, 2])):
                assert again.name == seqs[0].name and np.array_equal(again.boxes, seqs[0].boxes,
                                                                      equal_nan=True)
        else:
            with pytest.raises(DataError, match="one sequence per"):
                read_sequence(ex.path)
    assert len(seqs) == len(ex.seqs)
    for seq, exp in zip(seqs, ex.seqs):
        check(seq, name, exp)


def test_unknown_format_lists_the_valid_names(tmp_path):
    valid = ", ".join(sorted(REGISTERED))
    with pytest.raises(DataError) as e:
        registry.get("otb2015")
    assert "unknown format 'otb2015'" in str(e.value) and valid in str(e.value)
    with pytest.raises(DataError) as e:
        load(SequenceRef(tmp_path, "otb2015"))
    assert str(e.value).startswith(f"{tmp_path}: unknown format") and valid in str(e.value)


def test_not_found_errors_list_the_formats(tmp_path):
    with pytest.raises(DataError) as e:
        find_sequences(tmp_path)
    assert "no sequences found" in str(e.value)
    for f in registry.formats(with_init_box=False):
        assert f"{f.name}  " in str(e.value) and f.layout in str(e.value)
    with pytest.raises(DataError) as e:
        read_sequence(tmp_path)
    assert all(f.layout in str(e.value) for f in registry.formats())


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.get("otb"))
    assert [f.name for f in registry.formats()] == REGISTERED


def test_index_help_lists_the_formats(capsys):
    from tools.data.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(["index", "--help"])
    text = capsys.readouterr().out
    for f in registry.formats():
        assert f"  {f.name}" in text and f.layout in text
