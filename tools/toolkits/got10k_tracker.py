"""The GOT-10k toolkit (`pip install got10k`, github.com/got-10k/toolkit) driving MDNet.

    from got10k.experiments import ExperimentGOT10k, ExperimentOTB, ExperimentLaSOT
    from tools.toolkits.got10k_tracker import MDNetGOT10k, LocalExperimentOTB

    tracker = MDNetGOT10k(weights=None, mode="fast")   # the shipped model; name "MDNet-fast"
    ExperimentOTB("/data/OTB", version=2015).run(tracker)      # or ExperimentGOT10k("/data/GOT-10k", subset="val")
    LocalExperimentOTB("/data/my-otb-subset", 2015).run(tracker)   # a local subset: no download

got10k calls `init(image, box)` on the first frame and `update(image) -> box` on every other one,
with PIL images (RGB, which the project's tracker takes as they are) and boxes x, y, w, h (the
project's convention too: online/sequence.py). `is_deterministic` is True: the same seed gives the
same boxes on the same CPU, so ExperimentGOT10k runs one repetition, not three.
"""
from __future__ import annotations

import os

import numpy as np
from got10k.datasets import OTB
from got10k.experiments import ExperimentOTB
from got10k.trackers import Tracker

from online.loading import build_tracker


class MDNetGOT10k(Tracker):
    def __init__(self, weights=None, mode: str = "exact", seed: int = 0, overrides=(), name: str | None = None,
                 trunk=None):
        super().__init__(name=name or f"MDNet-{mode}", is_deterministic=True)
        # One tracker for every sequence: `initialize` rebuilds the target's fc4-fc6, optimiser,
        # memory and random stream (seed, 0), so each sequence starts as a fresh mdnet-track run.
        self.tracker = build_tracker(weights, mode, seed, overrides=overrides, trunk=trunk)

    @staticmethod
    def _rgb(image) -> np.ndarray:
        image = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        if image.size == 0:
            raise ValueError(f"empty image: shape {image.shape}")
        return image

    def init(self, image, box):
        self.tracker.initialize(self._rgb(image), np.asarray(box, dtype=np.float64))

    def update(self, image):
        return np.asarray(self.tracker.track(self._rgb(image)).box, dtype=np.float64)


class LocalExperimentOTB(ExperimentOTB):
    """ExperimentOTB on a local folder that holds only some of the version's sequences.

    got10k's ExperimentOTB builds `OTB(root_dir, version, download=True)`, which fetches every
    sequence of the version that is missing; this one reads what is there (download=False; a
    missing sequence is a warning of got10k's, and only the version's sequence names are found).
    The rest -- run, report, curves -- is got10k's own code.
    """

    def __init__(self, root_dir, version=2015, result_dir="results", report_dir="reports"):
        # ExperimentOTB.__init__ without the download: the same four attributes it sets.
        self.dataset = OTB(root_dir, version, download=False)
        self.result_dir = os.path.join(result_dir, "OTB" + str(version))
        self.report_dir = os.path.join(report_dir, "OTB" + str(version))
        self.nbins_iou = 21
        self.nbins_ce = 51
