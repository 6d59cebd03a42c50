"""ImageNet-VID: `Annotations/VID/<split>/.../<video>/000000.xml` (corner boxes, one object per
track id) mirrored by `Data/VID/<split>/.../<video>/000000.JPEG`.

One video folder holds one Sequence per track id, named `<video>_<trackid>`; a corner box becomes
`xmin, ymin, xmax-xmin, ymax-ymin`. A dataset root (the folder holding `Annotations/VID`) is
walked for every video folder.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from online.sequence import DataError, ImageFiles, Sequence

from .common import image_size, mark_invalid, natural_key, require_dir, seq_name
from .registry import Format, register


def _vid_data_dir(ann_dir: Path) -> Path:
    # Annotations/VID/<split>/.../<video> is mirrored by Data/VID/<split>/.../<video>.
    parts = list(ann_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "Annotations":
            parts[i] = "Data"
            return Path(*parts)
    raise DataError(f"{ann_dir}: not under an Annotations/ folder; give the Data/ folder explicitly")


def _xml_int(node, tag: str, xml_path: Path) -> int:
    found = node.find(tag)
    if found is None or found.text is None:
        raise DataError(f"{xml_path}: missing <{tag}>")
    try:
        return int(float(found.text))
    except ValueError:
        raise DataError(f"{xml_path}: <{tag}> is {found.text!r}, expected a number") from None


def read_imagenet_vid(ann_dir: str | Path, data_dir: str | Path | None = None) -> list[Sequence]:
    """One ImageNet-VID video: one Sequence per track id, named `<video>_<trackid>`.

    A track's Sequence spans the frames from its first to its last appearance (so frame 0 holds
    its initial box); frames in between where the track has no object are absent.
    """
    ann_dir = require_dir(Path(ann_dir))
    data_dir = require_dir(Path(data_dir) if data_dir is not None else _vid_data_dir(ann_dir))
    xmls = sorted((p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml"),
                  key=lambda p: natural_key(p.name))
    if not xmls:
        raise DataError(f"{ann_dir}: no .xml annotation files")
    tracks: dict[int, dict[int, np.ndarray]] = {}
    size = None
    for t, xml_path in enumerate(xmls):
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError) as e:
            raise DataError(f"{xml_path}: unreadable annotation ({e})") from None
        if size is None and root.find("size") is not None:
            size = (_xml_int(root, "size/width", xml_path), _xml_int(root, "size/height", xml_path))
        for obj in root.iter("object"):
            tid = _xml_int(obj, "trackid", xml_path)
            x1, y1 = _xml_int(obj, "bndbox/xmin", xml_path), _xml_int(obj, "bndbox/ymin", xml_path)
            x2, y2 = _xml_int(obj, "bndbox/xmax", xml_path), _xml_int(obj, "bndbox/ymax", xml_path)
            # Corner box -> x,y,w,h as pytracking's ImagenetVID loader does (w = xmax - xmin).
            tracks.setdefault(tid, {})[t] = np.array([x1, y1, x2 - x1, y2 - y1], np.float64)
    frame_paths = [data_dir / (p.stem + ".JPEG") for p in xmls]
    if not frame_paths[0].is_file():
        # Some copies lower-case the extension.
        frame_paths = [data_dir / (p.stem + ".jpg") for p in xmls]
    frames_all = ImageFiles(frame_paths)
    if size is None:
        size = image_size(frames_all)
    sequences = []
    for tid in sorted(tracks):
        boxes_by_t = tracks[tid]
        first, last = min(boxes_by_t), max(boxes_by_t)
        n = last - first + 1
        boxes = np.full((n, 4), np.nan)
        absent = np.ones(n, bool)
        for t, box in boxes_by_t.items():
            boxes[t - first] = box
            absent[t - first] = False
        problems: list[str] = []
        if n < len(xmls):
            problems.append(f"track {tid} appears in frames {first + 1}..{last + 1} of {len(xmls)}: "
                            f"the sequence covers that span")
        if absent.any():
            problems.append(f"track {tid} has no object in {int(absent.sum())} frame(s) of its span: "
                            f"marked absent")
        absent = mark_invalid(boxes, absent, size, "annotation", problems)
        sequences.append(Sequence(
            name=f"{seq_name(ann_dir)}_{tid}", frames=ImageFiles(frame_paths[first:last + 1]), boxes=boxes,
            absent=absent, format="imagenet-vid", path=str(ann_dir), problems=problems,
            frames_on_disk=len(xmls)))
    return sequences


def _read_one(path: Path) -> Sequence:
    # read_sequence() promises one Sequence; a video folder holds one per track.
    raise DataError(f"{path}: an ImageNet-VID video holds one sequence per track; "
                    f"use read_imagenet_vid() or discover()")


def _detect(p: Path) -> bool:
    return "Annotations" in Path(os.path.abspath(p)).parts and any(p.glob("*.xml"))


def _find_in_root(root: Path) -> list[Path] | None:
    ann_root = root / "Annotations" / "VID"
    if not ann_root.is_dir():
        return None
    # train/ILSVRC2015_VID_train_0000/<video>/ and val/<video>/: any folder holding .xml files.
    found = []
    for dirpath, dirnames, filenames in os.walk(ann_root):
        dirnames.sort(key=natural_key)
        if any(f.lower().endswith(".xml") for f in filenames):
            found.append(Path(dirpath))
    return found


register(Format(
    "imagenet-vid", "Annotations/VID/.../<video>/*.xml + Data/VID/.../<video>/*.JPEG; "
                    "one sequence per track id",
    _detect, _read_one, read_all=read_imagenet_vid, find_in_root=_find_in_root))
