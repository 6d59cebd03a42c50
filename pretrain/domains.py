"""Domains: every training sequence is one domain, with its usable training and held-out frames.

Stage one of the data path (reader -> sampler -> crops): `find_domains` reads every sequence under
the configured roots through `online.readers` (no frame is decoded except each sequence's first,
which the readers decode once for its size), then every sequence in the configured packs (written
by `mdnet-data pack`; nothing is decoded), and gives each a stable index and name. A packed
sequence keeps the name and root name its folder gave, so a domain is named the same whether it
is read from folders or from a pack. The list is the same on every rank, in the same order, which
is what makes sharding and branch names agree.

`prepare_domain` then finishes a domain on the rank that owns it: the outlier filter
(pretrain/outliers.py) and the split into training frames (the first 1 - val_fraction of the
sequence) and held-out frames (the rest). Frames are split by position, not at random, as the
MDNet author did: neighbouring frames are near-duplicates, so a random split would validate on
frames the network has practically trained on.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import time

from online.readers import find_sequences, load
from online.readers.pack import is_pack_file, read_pack_entries
from online.sequence import DataError, Sequence
from pretrain.outliers import describe_counts, find_outliers


@dataclass
class Domain:
    index: int
    name: str
    sequence: Sequence
    split: int  # frames [0, split) train, [split, len) held out
    train_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_size: tuple = (0, 0)
    outlier_counts: dict = field(default_factory=dict)

    @property
    def train_hint(self) -> int:
        """Annotated frames in the training part (before the outlier filter): the sharding weight."""
        return int((~self.sequence.absent[:self.split]).sum())


def overlap_key(name: str) -> str:
    """Name used to match sequences across benchmarks: lower case, trailing digits/_/- dropped."""
    return re.sub(r"[\d_\-]+$", "", name.lower()) or name.lower()


def split_point(n: int, val_fraction: float) -> int:
    """Index of the first held-out frame: the last `val_fraction` of n frames are held out."""
    return n - int(math.floor(n * val_fraction + 1e-9))


def _names_under(root: str) -> list[str]:
    # A pack's sequences by name (nothing is decoded); a folder's by its sequence folders' names.
    if is_pack_file(Path(root)):
        return [s.name for _, s in read_pack_entries(root)]
    return [ref.path.name for ref in find_sequences(root)]


def find_domains(cfg, log=None, check: bool | None = None) -> list[Domain]:
    """All domains under `cfg.roots` and in `cfg.packs` (a DataConfig), in a fixed order, indexed 0..K-1.

    `check` (default: cfg.check_frames) runs `check_domain` on every domain here. The pretraining
    passes False and checks each rank's own shard instead (`check_owned`): every frame of 10,000
    domains on every rank was most of the start-up.
    """
    check = cfg.check_frames if check is None else check
    packs = tuple(cfg.packs)
    if not cfg.roots and not packs:
        raise DataError("data.roots and data.packs are empty: list at least one dataset root or pack "
                        "in the config (or --set data.roots=[DIR] / data.packs=[POOL.h5])")
    seqs: list[tuple[str, Sequence]] = []
    for root in cfg.roots:
        no_gt: list[Path] = []
        found = [s for ref in find_sequences(root, unannotated=no_gt) for s in load(ref)]
        if log:
            log(f"data: {root}: {len(found)} sequences")
            # Left out, but said: a sequence whose ground-truth file went missing would otherwise
            # just vanish from the training set.
            for folder in no_gt:
                log(f"data: warning: {folder}: frame images but no ground-truth file of a known format: "
                    f"not a domain (left out)")
        seqs.extend((Path(root).name, s) for s in found)
    for pack in packs:
        if not is_pack_file(Path(pack)):
            raise DataError(f"data.packs: {pack} is not a pack (an .h5 file written by mdnet-data pack)"
                            if Path(pack).exists() else f"data.packs: {pack}: no such file")
        # Each packed sequence carries the folder name of the root it was packed from, which is
        # what a folder root contributes below when two sequences share a name.
        found = read_pack_entries(pack)
        if log:
            log(f"data: {pack}: {len(found)} sequences (pack)")
        seqs.extend(found)
    excluded = set(cfg.exclude)
    seqs = [(r, s) for r, s in seqs if s.name not in excluded]
    if cfg.exclude_overlap:
        # Training on a test sequence would inflate the benchmark; matching by normalised name is
        # deliberately loose (it may drop a few extra sequences, never keep an overlapping one).
        test_names = {overlap_key(n) for root in cfg.exclude_overlap for n in _names_under(root)}
        dropped = [s.name for _, s in seqs if overlap_key(s.name) in test_names]
        seqs = [(r, s) for r, s in seqs if overlap_key(s.name) not in test_names]
        if log:
            log(f"data: left out {len(dropped)} sequence(s) that overlap {list(cfg.exclude_overlap)}: "
                f"{', '.join(dropped[:20])}{' ...' if len(dropped) > 20 else ''}")
    if log:
        for _, s in seqs:
            if not s.has_groundtruth:
                why = f" ({s.problems[-1]})" if s.problems else ""
                log(f"data: warning: {s.path}: sequence {s.name!r} has no ground truth{why}: not a domain (left out)")
    seqs = [(r, s) for r, s in seqs if s.has_groundtruth]
    if cfg.max_domains > 0:
        seqs = seqs[:cfg.max_domains]
    # Names identify branches in checkpoints; a sequence name seen under two roots gets its root's
    # folder name appended so both stay distinct and stable.
    counts: dict[str, int] = {}
    for _, s in seqs:
        counts[s.name] = counts.get(s.name, 0) + 1
    domains, seen = [], set()
    for root_name, s in seqs:
        name = s.name if counts[s.name] == 1 else f"{s.name}@{root_name}"
        if name in seen:
            raise DataError(f"two sequences named {s.name!r} under roots named {root_name!r} (a root "
                            f"listed twice, or also packed in data.packs?); rename one or list it "
                            f"in data.exclude")
        seen.add(name)
        domains.append(Domain(index=len(domains), name=name, sequence=s,
                              split=split_point(len(s), cfg.val_fraction)))
    if not domains:
        raise DataError(f"no annotated sequences under {list(cfg.roots) + list(packs)}")
    if check:
        t0 = time.perf_counter()
        frames = sum(check_domain(d) for d in domains)
        if log:
            log(f"data: checked {frames} frame files and their boxes in {len(domains)} domains "
                f"({time.perf_counter() - t0:.1f} s): no truncated frame")
    return domains


def check_domain(domain: Domain) -> int:
    """The quick pass before step 0: every frame file's last bytes (a truncated JPEG or PNG decodes
    with grey rows and would be trained on silently) and every usable box. Nothing is decoded.

    Every rank checks every domain before any collective, so a bad frame stops all ranks with the
    same error instead of one rank failing mid-run while the others wait. Returns the frames checked.
    """
    seq = domain.sequence
    where = f"data: sequence {domain.name!r} ({seq.path})"
    for i in range(len(seq.frames)):
        try:
            seq.frames.check(i)
        except DataError as e:
            raise DataError(f"data: sequence {domain.name!r} frame {i}: {e}") from None
    usable = ~seq.absent
    boxes = seq.boxes
    with np.errstate(invalid="ignore"):
        bad = usable & ~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where} frame {i}: box {boxes[i].tolist()} is not a usable x,y,w,h box but is not "
                        f"marked absent ({int(bad.sum())} such frame(s))")
    return len(seq.frames)


def prepare_domain(domain: Domain, outlier_cfg, log=None) -> Domain:
    """Outlier filter + train/held-out frame lists (decodes the first frame for the image size,
    unless the reader or the pack already knows it: the same value, without 5,000 decodes per rank)."""
    seq = domain.sequence
    if seq.image_size:
        domain.image_size = tuple(int(v) for v in seq.image_size)
    else:
        first = seq.frame(0)
        domain.image_size = (first.shape[1], first.shape[0])
    bad, counts = find_outliers(seq.boxes, seq.absent, domain.image_size, outlier_cfg)
    idx = np.arange(len(seq))
    domain.train_frames = idx[(idx < domain.split) & ~bad]
    domain.val_frames = idx[(idx >= domain.split) & ~bad]
    domain.outlier_counts = counts
    if log:
        log(describe_counts(domain.name, counts, len(seq))
            + f"; {len(domain.train_frames)} train / {len(domain.val_frames)} held-out")
    return domain
