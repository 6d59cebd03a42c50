"""`mdnet-data pack` and the pack reader: real pool sequences packed and read back pixel-identical,
index and --verify, damaged packs named down to the frame, atomic writes, and pretraining domains
from `data.packs` named as from folders."""
from __future__ import annotations

import io
import json
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from online.readers import discover, find_sequences, read_pack, read_sequence
from online.readers.pack import read_pack_entries, verify_sequence
from online.sequence import DataError
from pretrain.config import DataConfig
from pretrain.domains import find_domains
from tests.helpers import write_otb_sequence
from tools.data.cli import build_parser, main
from tools.data.pack import write_pack

FRAMES = 80  # --frames: keeps the test fast; Deer (71 frames) stays whole


def call(*argv) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(build_parser().parse_args([str(a) for a in argv]), out=out)
    return rc, out.getvalue()


def pool_roots(pool):
    # OTB colour frames, OTB grayscale frames (Vase), and a LaSOT root with the real cut copy.
    return [pool / "OTB" / "Deer", pool / "OTB" / "Vase", pool / "LaSOT"]


@pytest.fixture(scope="module")
def packed(shared_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "pool.h5"
    rc, text = call("pack", *pool_roots(shared_pool), "--out", out, "--frames", FRAMES)
    assert rc == 0, text
    assert f"wrote {out}: 3 sequences, {71 + 2 * FRAMES} frames" in text
    return out


def damaged_copy(packed, tmp_path):
    copy = tmp_path / "damaged.h5"
    shutil.copyfile(packed, copy)
    return copy


def frame_file_offset(pack, group, i) -> int:
    with h5py.File(pack, "r") as f:
        g = f["seq"][group]
        return int(g["data"].id.get_offset() + g["offsets"][i])


def test_frames_boxes_and_flags_identical_to_the_folders(shared_pool, packed):
    folder = [s.head(FRAMES) for root in pool_roots(shared_pool) for s in discover(root)]
    pack = read_pack(packed)
    assert [s.name for s in pack] == [s.name for s in folder] == ["Deer", "Vase", "airplane-1"]
    for p, f in zip(pack, folder):
        assert (p.format, len(p), len(p.frames)) == (f.format, len(f), len(f))
        np.testing.assert_array_equal(p.boxes, f.boxes)
        np.testing.assert_array_equal(p.absent, f.absent)
        for i in range(len(f)):
            assert np.array_equal(p.frame(i), f.frame(i)), (p.name, i)
            assert p.frames.describe(i).endswith("/" + f.frames.describe(i).rsplit("/", 1)[1])
    vase = pack[1]
    assert vase.frame(0).shape == (240, 320, 3)  # grayscale JPEG: three equal channels, as from the folder
    assert np.array_equal(vase.frame(0)[..., 0], vase.frame(0)[..., 2])
    lasot = pack[2]
    assert lasot.problems[0].startswith("full_occlusion.txt has 2788 values for 300 ground-truth lines")
    assert lasot.problems[-1] == f"packed with --frames {FRAMES}: the first {FRAMES} of 300 frames"
    assert lasot.path == f"{packed}:/seq/airplane-1"


def test_index_lists_and_verifies_a_pack(shared_pool, packed):
    rc, text = call("index", packed, "--json", "--verify")
    assert rc == 0
    rows = json.loads(text)
    got = [(r["name"], r["format"], r["frames"], r["annotated"], r["absent"], r["size"]) for r in rows]
    assert got == [("Deer", "otb", 71, 71, 0, [704, 400]), ("Vase", "otb", FRAMES, FRAMES, 0, [320, 240]),
                   ("airplane-1", "lasot", FRAMES, FRAMES, 0, [640, 360])]
    # An uncut sequence is listed exactly as its folder is, path aside.
    _, folder_text = call("index", shared_pool / "OTB" / "Deer", "--json")
    (folder_row,) = json.loads(folder_text)
    assert {**rows[0], "path": ""} == {**folder_row, "path": ""}
    rc, table = call("index", packed)
    assert rc == 0 and table.splitlines()[-1] == f"3 sequences, {71 + 2 * FRAMES} frames"
    assert find_sequences(packed)[0].format == "pack"


def test_a_damaged_frame_is_named(packed, tmp_path, capsys):
    pack = damaged_copy(packed, tmp_path)
    at = frame_file_offset(pack, "Vase", 5) + 300  # inside the JPEG's entropy-coded data
    with open(pack, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0xFF]))
    vase = read_pack(pack)[1]
    vase.frame(4)  # its neighbours are fine
    with pytest.raises(DataError) as e:
        vase.frame(5)
    assert str(e.value).startswith(f"{pack}: sequence 'Vase' frame 5 (0006.jpg): bytes do not match their "
                                   f"checksum")
    # A bit flip in JPEG data often still decodes (to wrong pixels): the CRC catches it anyway.
    rc, text = call("index", pack, "--verify", "--json")
    assert rc == 1
    rows = {r["name"]: r for r in json.loads(text)}
    assert "sequence 'Vase' frame 5 (0006.jpg)" in rows["Vase"]["error"]
    assert "error" not in rows["Deer"] and "error" not in rows["airplane-1"]
    assert "1 sequence(s) with errors" in capsys.readouterr().err
    assert call("index", pack)[0] == 0  # without --verify only the first and last frames are read


def test_altered_annotations_fail_the_sequence_checksum(packed, tmp_path):
    pack = damaged_copy(packed, tmp_path)
    with h5py.File(pack, "r+") as f:
        f["seq/Deer/boxes"][3, 0] += 1
    deer = read_pack(pack)[0]
    deer.frame(3)  # frame bytes are intact
    with pytest.raises(DataError, match=r"sequence 'Deer': sha256 .* does not match the stored .*boxes, flags"):
        verify_sequence(deer)


def test_a_truncated_pack_is_named(packed, tmp_path):
    pack = damaged_copy(packed, tmp_path)
    # Cut while a job has it open: the frame whose bytes are gone is named.
    seqs = read_pack(pack)
    seqs[2].frame(0)
    with open(pack, "r+b") as fh:
        fh.truncate(frame_file_offset(pack, "airplane-1", 40) + 10)
    with pytest.raises(DataError, match=rf"{pack}: sequence 'airplane-1' frame 40 \(00000041.jpg\): only 10 "
                                        rf"of \d+ bytes could be read: the pack is truncated"):
        seqs[2].frame(40)
    seqs[2].frames.pack.close()  # (HDF5 would reuse this process's open handle)
    # Cut before it is opened: HDF5 refuses the file; the error says so and names the pack.
    with pytest.raises(DataError, match=rf"{pack}: damaged pack, HDF5 cannot open it \(a truncated copy\?\)"):
        read_pack(pack)
    rc, text = call("index", pack, "--json")
    assert rc == 1 and "damaged pack" in json.loads(text)[0]["error"]


def test_a_corrupt_source_frame_fails_when_read_as_from_the_folder(tmp_path):
    seq_dir = write_otb_sequence(tmp_path / "data", "corrupt", ["1,1,5,5"] * 3, size=(20, 20),
                                 value=lambda k: 40 * k)
    (seq_dir / "img" / "0003.jpg").write_bytes(b"junk")
    pack = tmp_path / "p.h5"
    write_pack(pack, [str(tmp_path / "data")], log=lambda line: None)
    seq = read_pack(pack)[0]
    assert seq.frame(1).mean() == pytest.approx(40, abs=2)
    with pytest.raises(DataError, match=rf"{pack}: sequence 'corrupt' frame 2 \(0003.jpg\): unreadable or corrupt"):
        seq.frame(2)


def test_bad_roots_write_nothing(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out.h5"
    rc, _ = call("pack", empty, "--out", out)
    assert rc == 2 and f"{empty}: no sequences found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [empty]
    rc, _ = call("pack", empty, "--out", tmp_path / "no" / "out.h5")
    assert rc == 2 and f"the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    # A crash half-way leaves the old pack (or none) under the name, and no temporary file.
    out.write_bytes(b"old")
    import tools.data.pack

    def boom(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(tools.data.pack, "_write_sequence", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_pack(out, [str(_tiny_root(tmp_path / "src", "seq"))], log=lambda line: None)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out.h5", "src"]


def _tiny_root(root, name, value=60):
    write_otb_sequence(root, name, ["2,2,8,8", "3,3,8,8", "4,4,8,8"], size=(32, 24), value=lambda k: value + 10 * k)
    return root


def test_pretraining_domains_from_packs_match_folders(shared_pool, packed, tmp_path):
    roots = tuple(str(r) for r in pool_roots(shared_pool))
    from_folders = find_domains(DataConfig(roots=roots))
    from_pack = find_domains(DataConfig(packs=(str(packed),)))
    assert [d.name for d in from_pack] == [d.name for d in from_folders] == ["Deer", "Vase", "airplane-1"]
    assert [d.split for d in from_pack] == [57, 64, 64]  # 80 frames: the pack's cut, 20% held out
    assert [d.name for d in find_domains(DataConfig(packs=(str(packed),), exclude=("Vase",)))] == \
        ["Deer", "airplane-1"]
    assert [d.name for d in find_domains(DataConfig(packs=(str(packed),),
                                                    exclude_overlap=(str(shared_pool / "OTB" / "Deer"),)))] == \
        ["Vase", "airplane-1"]
    # A pack may also be the test benchmark whose names are left out.
    logged = []
    with pytest.raises(DataError, match="no annotated sequences"):
        find_domains(DataConfig(roots=(roots[0],), exclude_overlap=(str(packed),)), log=logged.append)
    assert "left out 1 sequence(s) that overlap" in logged[-1] and logged[-1].endswith(": Deer")
    with pytest.raises(DataError, match="two sequences named 'Deer'.*also packed in data.packs"):
        find_domains(DataConfig(roots=(roots[0],), packs=(str(packed),)))
    # Equal names under two roots: domains name@root, from the folders and from their pack alike.
    a, b = _tiny_root(tmp_path / "A", "seq", 60), _tiny_root(tmp_path / "B", "seq", 120)
    pack = tmp_path / "ab.h5"
    write_pack(pack, [str(a), str(b)], log=lambda line: None)
    with h5py.File(pack, "r") as f:
        assert [s.decode() for s in f["order"][()]] == ["seq", "seq@B"]
    folder_names = [d.name for d in find_domains(DataConfig(roots=(str(a), str(b))))]
    pack_domains = find_domains(DataConfig(packs=(str(pack),)))
    assert [d.name for d in pack_domains] == folder_names == ["seq@A", "seq@B"]
    assert pack_domains[1].sequence.frame(0).mean() == pytest.approx(120, abs=2)
    with pytest.raises(DataError, match="not a pack"):
        find_domains(DataConfig(packs=(str(a / "seq" / "groundtruth_rect.txt"),)))


def test_threads_pickles_and_what_is_not_a_pack(packed, tmp_path):
    deer = read_pack(packed)[0]
    serial = [deer.frame(i) for i in range(12)]
    with ThreadPoolExecutor(4) as pool:  # the pretraining's prefetch threads share one handle
        threaded = list(pool.map(deer.frame, list(range(12)) * 3))
    assert all(np.array_equal(t, serial[i % 12]) for i, t in enumerate(threaded))
    again = pickle.loads(pickle.dumps(deer))
    assert np.array_equal(again.frame(7), serial[7])
    with pytest.raises(DataError, match="a pack holds many sequences"):
        read_sequence(packed)
    weights = tmp_path / "weights.h5"
    with h5py.File(weights, "w") as f:
        f.attrs["format"] = "mdnet-weights"
    with pytest.raises(DataError, match=r"an HDF5 file but not an mdnet-data pack"):
        read_pack_entries(weights)


def test_pack_help_names_its_options(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pack", "--help"])
    text = capsys.readouterr().out
    for word in ("--out POOL.h5", "--frames N", "unchanged", "data.packs", "temporary name", "sha256"):
        assert word in text
