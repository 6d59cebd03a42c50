"""The MDNet online tracker (py-MDNet's `run_mdnet`), for one target or several in one video.

Per target: a fresh fc6 and private copies of fc4/fc5 (each target fine-tunes its own fc4-fc6);
conv1-3 are shared by all targets and frozen. Online training only ever sees cached conv3
features: every crop goes through the convs once, the fc layers are trained on stored features.

First frame (per target): 500 positives (IoU >= 0.7), 5000 negatives (IoU <= 0.5, half uniform
around the target, half anywhere in the image), 1000 box-regression samples (IoU >= 0.6) and the
first 200 update negatives are cropped and pushed through the convs once; fc4-fc6 train for 50
iterations on minibatches of 32 positives + the 96 hardest of 1024 negatives (hardness = the
current net's positive score, inference mode; online/online_training.py); the box regressor is fitted on the conv3 features.

Every frame: 256 gaussian candidates around the previous estimate (not the regressed box, as in
py-MDNet); the estimate is the mean of the top-5 by fc6 positive output, success when their mean
is > 0. On failure the search widens (trans x trans_growth = 1.1 per frame, up to 1.5); on success it resets,
the regressor refines the top-5 and 50 positives + 200 negatives of the estimate are stored.
Updates: long-term every 10 frames (positives of the last 100 successful frames, the first
frame's always kept; negatives of the last 20), short-term on failure (positives of the last 20).

Several targets: `MultiTracker` crops the candidates of all targets and runs them through the
convs in ONE batched pass per frame (likewise the update samples), then scores each target with
its own fc4-fc6. Each target draws from its own `np.random.Generator` seeded by (seed, index) and
its dropout masks come from that generator (not MXNet's global RNG), so target k of a multi-target
run follows exactly the same random path as a single-target run with `target_index=k`. The
conv results of one image do not depend on where it sits in the batch on the CPU backend measured
(MKLDNN, bitwise equal), so the boxes are identical; another backend may differ by float rounding.

Two feature sources (online/features.py, `TrackerConfig.mode`): `exact` crops every box (MDNet);
`fast` runs conv1-3 once per region around each target at the target's scale and pools every box
with RoIAlign (online/roi.py). Everything after the conv3 features -- fc4-fc6, online training on
cached features, hard mining, box regression, the memory rules -- is the same code in both modes.
Two options change MDNet's online rules, and fast mode turns both on by default (`auto`,
TrackerConfig.resolved; measured in docs/benchmarks.md, "Real time on a 2-core CPU"): `online_fc4`
(first: fc4 is trained on the first frame, then frozen, and the memory holds each sample's 512-d
fc4 output, so updates train fc5-fc6 on it) and `stored_region` (candidates: a successful frame's
samples are pooled from the candidates' map instead of a second region pass, keeping those it
holds). Exact mode keeps MDNet's rules.

GPU readiness: everything runs on `ctx`; every forward has a fixed batch shape (convs and fc
inference: `batch_test`, padded; training: `batch_pos + batch_neg`), so hybridized graphs are
planned once. Network time (forward/backward, synchronised) accumulates in `net_s`.
"""
from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from online import trunk_precision
from online.bbreg import BBRegressor
from online.boxes import valid_box
from online.features import CropFeatures, RoIFeatures, Timer
from online.head import Fc4Embedding, TargetHead
from online.network import NetSpec, Trunk
from online.online_training import OnlineTrainer
from online.sampling import SamplerSpec, sample_boxes, sample_by_iou
from online.tracker_config import TrackerConfig


@dataclass
class TrackResult:
    box: np.ndarray  # x, y, w, h (box-regressed when success and bbreg is on)
    score: float  # mean raw fc6 positive output of the top-k candidates
    success: bool  # score > 0


class _Target:
    """All state of one tracked target: its fc4-fc6, optimiser, sample memory, RNG and search."""

    def __init__(self, index: int, trunk: Trunk, cfg: TrackerConfig, ctx, seed: int, timer: Timer):
        self.index = index
        self.cfg = cfg
        self.ctx = ctx
        self.timer = timer
        self.spec: NetSpec = trunk.spec
        # Private generator: the same (seed, index) gives the same random path alone or with others.
        self.rng = np.random.default_rng([int(seed), int(index)])
        prefix = f"target{index}_"
        self.prefix = prefix
        # fc4 trained from the first frame on (train, first) or frozen from the start (frozen).
        fc4 = cfg.online_fc4 != "frozen"  # (resolved by MultiTracker: never "auto" here)
        self.train_head = TargetHead(self.spec, prefix, train=True, fc4=fc4)
        params = self.train_head.collect_params()
        params.initialize(mx.init.Zero(), ctx=ctx, force_reinit=True)
        for name, dst in self.train_head.online_layers().items():
            src = getattr(trunk.fcs, name)
            dst.weight.set_data(src.weight.data(ctx).copy())
            dst.bias.set_data(src.bias.data(ctx).copy())
        # Fresh fc6, paper init N(0, 0.01) / 0, drawn from the target's generator.
        fc6 = self.train_head.fc6
        fc6.weight.set_data(mx.nd.array(self.rng.normal(0.0, 0.01, fc6.weight.shape), ctx=ctx))
        fc6.bias.set_data(mx.nd.zeros(fc6.bias.shape, ctx=ctx))
        fc6.weight.lr_mult = cfg.lr_mult_fc6
        fc6.bias.lr_mult = cfg.lr_mult_fc6
        # fc4 frozen: its outputs are what the head reads (computed once per sample, stored).
        self.fc4 = None if fc4 else Fc4Embedding(trunk.fcs.fc4, ctx, cfg.mining_dtype)
        self._graphs(self.train_head)
        self._memory()

    def _graphs(self, train_head) -> None:
        """The inference and mining graphs over `train_head`'s parameters, and the trainer."""
        cfg, ctx = self.cfg, self.ctx
        fc4 = self.fc4 is None
        params = train_head.collect_params()
        self.train_head = train_head
        self.eval_head = TargetHead(self.spec, self.prefix, train=False, params=params, fc4=fc4)
        # Three graphs over the same parameters, each with one fixed input shape: training
        # (batch_pos + batch_neg rows), inference (batch_test) and the mining pass (batch_neg_cand).
        mine_head = TargetHead(self.spec, self.prefix, train=False, params=params, fc4=fc4)
        for head in (self.train_head, self.eval_head, mine_head):
            head.hybridize(static_alloc=True, static_shape=True)
        # The head's input: conv features, or their fc4 outputs when fc4 is frozen.
        self.in_dim = self.spec.feat_dim if fc4 else self.spec.fc_width
        self._eval_buf = mx.nd.zeros((cfg.batch_test, self.in_dim), ctx=ctx)
        self.trainer = OnlineTrainer(self.train_head, mine_head, cfg, self.spec, ctx, self.timer)

    def _freeze_fc4(self) -> None:
        """online_fc4 = first: after the first frame's training, fc4 (now adapted to this target)
        is frozen; fc5-fc6 keep their parameters (shared by name) in a head that reads fc4 outputs."""
        self.fc4 = Fc4Embedding(self.train_head.fcs.fc4, self.ctx, self.cfg.mining_dtype)
        self._graphs(TargetHead(self.spec, self.prefix, train=True, params=self.train_head.collect_params(),
                                fc4=False))

    def inputs(self, feats: mx.nd.NDArray) -> mx.nd.NDArray:
        """What the head reads: conv features, or (fc4 frozen) their fc4 outputs."""
        if self.fc4 is None:
            return feats
        t0 = time.perf_counter()
        out = self.fc4(feats)
        out.wait_to_read()
        dt = time.perf_counter() - t0
        self.timer.net_s += dt
        self.timer.add("fc4_s", dt)
        return out

    def _memory(self):
        """Empty sample memory and search state (filled by initialize)."""
        cfg = self.cfg
        self.bbreg: BBRegressor | None = None
        self.pos_first = None  # first frame's positives: always part of long-term updates
        self.pos_mem: deque = deque(maxlen=max(cfg.n_frames_long - 1, 1))
        self.neg_mem: deque = deque(maxlen=cfg.n_frames_short)
        self.box = None  # search centre for the next frame (the unregressed estimate)
        self.trans = cfg.trans
        self.frame = 0
        self.last: TrackResult | None = None

    # --- samplers, as in py-MDNet's run_tracker.py (online/sampling.py) ---
    def _sampler(self, kind, trans=0.0, scale=1.0, aspect=None) -> SamplerSpec:
        return SamplerSpec(kind, trans=trans, scale=scale, aspect=aspect, min_size=self.cfg.min_box_size)

    def init_samples(self, box, size, window=None) -> dict:
        """First-frame samples. `window` (x, y, w, h): where whole-image negatives are drawn (fast
        mode, when the image is too large for one region at the target's scale); default the image."""
        cfg, rng = self.cfg, self.rng
        out = {}
        # Box-regression samples: IoU >= overlap_bbreg AND area within area_bbreg x the target's
        # (py-MDNet's scale_range [1, 2]).
        out["bbreg"] = (sample_by_iou(rng, self._sampler("uniform", cfg.trans_bbreg, cfg.scale_bbreg,
                                                          cfg.aspect_bbreg), box, size, cfg.n_bbreg,
                                      (cfg.overlap_bbreg, 1.0), area_range=cfg.area_bbreg)
                        if cfg.bbreg else np.zeros((0, 4)))
        out["pos"] = sample_by_iou(rng, self._sampler("gaussian", cfg.trans_pos, cfg.scale_pos), box, size,
                                   cfg.n_pos_init, (cfg.overlap_pos_init, 1.0))
        half = cfg.n_neg_init // 2
        out["neg"] = np.concatenate([
            sample_by_iou(rng, self._sampler("uniform", cfg.trans_neg_init, cfg.scale_neg_init), box, size,
                          cfg.n_neg_init - half, (0.0, cfg.overlap_neg_init)),
            self._whole_negatives(box, size, half, window)])
        out["neg_update"] = sample_by_iou(rng, self._sampler("uniform", cfg.trans_neg, cfg.scale_neg), box, size,
                                          cfg.n_neg_update, (0.0, cfg.overlap_neg_init))
        for k in ("pos", "neg"):
            if len(out[k]) == 0:
                raise RuntimeError(f"target {self.index}: no first-frame {k} samples could be drawn around "
                                   f"{np.round(box, 1).tolist()} in a {size[0]}x{size[1]} image")
        return out

    def _whole_negatives(self, box, size, n, window) -> np.ndarray:
        spec = self._sampler("whole", scale=self.cfg.scale_neg_whole)
        band = (0.0, self.cfg.overlap_neg_init)
        if window is None or (window[2] >= size[0] and window[3] >= size[1]):
            return sample_by_iou(self.rng, spec, box, size, n, band)
        # Sample in window coordinates (IoU does not change under a shift), then shift back.
        shift = np.array([window[0], window[1], 0.0, 0.0])
        found = sample_by_iou(self.rng, spec, np.asarray(box) - shift, (window[2], window[3]), n, band)
        return found + shift

    def candidates(self, size) -> np.ndarray:
        return sample_boxes(self.rng, self._sampler("gaussian", self.trans, self.cfg.scale), self.box, size,
                            self.cfg.n_samples)

    def update_samples(self, box, size, neg_draw: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Positives and negatives to store around `box`; `neg_draw` x n_neg_update negatives are
        drawn when the caller keeps only some of them (stored_region = candidates)."""
        cfg, rng = self.cfg, self.rng
        pos = sample_by_iou(rng, self._sampler("gaussian", cfg.trans_pos, cfg.scale_pos), box, size,
                            cfg.n_pos_update, (cfg.overlap_pos_update, 1.0))
        neg = sample_by_iou(rng, self._sampler("uniform", cfg.trans_neg, cfg.scale_neg), box, size,
                            cfg.n_neg_update * neg_draw, (0.0, cfg.overlap_neg_update))
        return pos, neg

    # --- network pieces ---
    def scores(self, feats: mx.nd.NDArray) -> mx.nd.NDArray:
        """Raw fc6 outputs (N, 2) in inference mode, in fixed batches of batch_test."""
        b = self.cfg.batch_test
        n = feats.shape[0]
        outs = []
        for start in range(0, n, b):
            end = min(start + b, n)
            if end - start == b:
                outs.append(self.eval_head(feats[start:end]))
            else:
                self._eval_buf[:end - start] = feats[start:end]
                outs.append(self.eval_head(self._eval_buf)[:end - start])
        return outs[0] if len(outs) == 1 else mx.nd.concat(*outs, dim=0)

    # --- the tracking steps ---
    def initialize(self, box, size, feats: dict):
        cfg = self.cfg
        self.box = np.asarray(box, dtype=np.float64).copy()
        if cfg.bbreg and feats["bbreg_boxes"] is not None and len(feats["bbreg_boxes"]):
            t0 = time.perf_counter()
            self.bbreg = BBRegressor(cfg.lambda_bbreg, cfg.overlap_bbreg, cfg.bbreg_max_area_change).fit(
                feats["bbreg"].asnumpy(), feats["bbreg_boxes"], self.box)
            self.timer.add("bbreg_s", time.perf_counter() - t0)
        self.trainer.reset(cfg.lr_init)
        self.trainer.train(self.inputs(feats["pos"]), self.inputs(feats["neg"]), cfg.maxiter_init, self.rng)
        if cfg.online_fc4 == "first":
            self._freeze_fc4()  # from here on the head reads fc4 outputs of the trained fc4
        # py-MDNet uses a separate optimiser (fresh momentum) for the online updates.
        self.trainer.reset(cfg.lr_update)
        # Copies: a slice would keep the whole first-frame feature batch (~6700 rows) alive.
        self.pos_first = self.inputs(feats["pos"]).copy()
        self.neg_mem.append(self.inputs(feats["neg_update"]).copy())
        self.trans = cfg.trans
        self.frame = 0
        self.last = TrackResult(self.box.copy(), float("nan"), True)

    def estimate(self, cands: np.ndarray, feats: mx.nd.NDArray, size) -> TrackResult:
        """`feats`: the candidates' conv features (box regression reads them; the head reads
        `inputs(feats)`)."""
        cfg = self.cfg
        x = self.inputs(feats)
        t0 = time.perf_counter()
        s = self.scores(x)[:, 1].asnumpy()
        self.timer.net_s += time.perf_counter() - t0
        top = np.argsort(-s, kind="stable")[:cfg.top_k]
        score = float(s[top].mean())
        success = score > 0
        est = cands[top].mean(axis=0)
        # Widen the search after a failure, back to normal after a success (py-MDNet expand_trans).
        self.trans = cfg.trans if success else min(self.trans * cfg.trans_growth, cfg.trans_limit)
        out = est
        if success and self.bbreg is not None:
            t0 = time.perf_counter()
            top_feats = mx.nd.take(feats, mx.nd.array(top, ctx=self.ctx, dtype="int32")).asnumpy()
            t1 = time.perf_counter()
            # Not cut to the image: like the estimate (and py-MDNet), a refined box may extend past
            # the border when the target does; its centre stays near the candidates' (inside).
            out = self.bbreg.predict(top_feats, cands[top]).mean(axis=0)
            self.timer.net_s += t1 - t0
            self.timer.add("bbreg_s", time.perf_counter() - t1)
        self.box = est  # the next frame searches around the unregressed estimate (py-MDNet)
        self.frame += 1
        self.last = TrackResult(np.asarray(out, dtype=np.float64), score, bool(success))
        return self.last

    def remember(self, pos: mx.nd.NDArray, neg: mx.nd.NDArray):
        # Copies: slices would pin the frame's whole conv output batch for up to 100 frames.
        self.pos_mem.append(self.inputs(pos).copy())
        self.neg_mem.append(self.inputs(neg).copy())

    def update(self):
        """Short-term update after a failure, long-term every long_interval frames."""
        cfg = self.cfg
        all_pos = [self.pos_first, *self.pos_mem]
        if not self.last.success:
            pos_list = all_pos[-cfg.n_frames_short:]
        elif self.frame % cfg.long_interval == 0:
            pos_list = all_pos
        else:
            return
        neg_list = list(self.neg_mem)
        t0 = time.perf_counter()
        pos = pos_list[0] if len(pos_list) == 1 else mx.nd.concat(*pos_list, dim=0)
        neg = neg_list[0] if len(neg_list) == 1 else mx.nd.concat(*neg_list, dim=0)
        self.timer.add("memory_s", time.perf_counter() - t0)
        if pos.shape[0] == 0 or neg.shape[0] == 0:
            return
        self.trainer.train(pos, neg, cfg.maxiter_update, self.rng)


class MultiTracker:
    """Tracks several targets in one video; the convs run once per frame for all of them."""

    # stored_region = candidates: negatives drawn per frame, x n_neg_update, of which those the
    # candidates' map holds are kept (on OTB Crossing ~10% of MDNet's +-2-target-size draw).
    STORED_NEG_DRAW = 8

    def __init__(self, trunk: Trunk, config: TrackerConfig = TrackerConfig(), ctx=None, seed: int = 0):
        self.trunk = trunk
        self.cfg = config
        self.ctx = ctx if ctx is not None else mx.cpu()
        self.seed = int(seed)
        self.timer = Timer()
        # `auto` resolved once, here: the config the targets see names the precision that runs.
        mining = trunk_precision.resolve_mining_dtype(config.mining_dtype, config.mode, self.ctx)
        trunk_precision.check_supported(mining, self.ctx, field="mining_dtype")
        # The mode-dependent `auto` fields too (online_fc4, stored_region: TrackerConfig.resolved).
        if mining != config.mining_dtype or config.resolved() != config:
            self.cfg = config = dataclasses.replace(config.resolved(), mining_dtype=mining)
        if config.mode == "fast":
            self.features = RoIFeatures(trunk, config.max_region, self.ctx, self.timer, config.fast_stride,
                                        config.trunk_dtype)
        else:
            self.features = CropFeatures(trunk, config.batch_test, self.ctx, self.timer, config.trunk_dtype)
        self.targets: list[_Target] = []

    @property
    def net_s(self) -> float:
        """Seconds spent inside network forward/backward passes so far (synchronised)."""
        return self.timer.net_s

    def initialize(self, image: np.ndarray, boxes, indices=None) -> None:
        """Start tracking `boxes` (K, 4) in `image`; target k uses RNG index `indices[k]` (default k)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        indices = list(range(len(boxes))) if indices is None else [int(i) for i in indices]
        if len(indices) != len(boxes) or len(set(indices)) != len(indices):
            raise ValueError(f"need one distinct index per box: {len(boxes)} boxes, indices {indices}")
        size = (image.shape[1], image.shape[0])
        for b in boxes:
            if not valid_box(b, size):
                raise ValueError(f"initial box {b.tolist()} is empty or outside the {size[0]}x{size[1]} image")
        self.targets = [_Target(i, self.trunk, self.cfg, self.ctx, self.seed, self.timer) for i in indices]
        self.features.new_image()
        t0 = time.perf_counter()
        samples = [t.init_samples(b, size, self.features.window(b, size))
                   for t, b in zip(self.targets, boxes)]
        self.timer.add("sample_s", time.perf_counter() - t0)
        keys = ("bbreg", "pos", "neg", "neg_update")
        # One conv pass (exact: batched crops; fast: one region per target, shared where they overlap).
        feats = self.features(image, [(s[k], b) for s, b in zip(samples, boxes) for k in keys])
        n = len(keys)
        for j, (t, b) in enumerate(zip(self.targets, boxes)):
            f = dict(zip(keys, feats[j * n:(j + 1) * n]))
            f["bbreg_boxes"] = samples[j]["bbreg"]
            t.initialize(b, size, f)

    def track(self, image: np.ndarray) -> list[TrackResult]:
        if not self.targets:
            raise RuntimeError("MultiTracker.track before initialize")
        size = (image.shape[1], image.shape[0])
        self.features.new_image()
        t0 = time.perf_counter()
        cands = [t.candidates(size) for t in self.targets]
        self.timer.add("sample_s", time.perf_counter() - t0)
        # One conv pass for the candidates of every target (fast: each around its previous box).
        searched = [(c, t.box) for t, c in zip(self.targets, cands)]
        feats = self.features(image, searched)
        results = [t.estimate(c, f, size) for t, c, f in zip(self.targets, cands, feats)]
        # Successful targets store samples around their estimate: again one conv pass for all
        # (stored_region = own), or pooled from the candidates' maps (candidates).
        t0 = time.perf_counter()
        if self.cfg.stored_region == "candidates":
            # Of the samples drawn, keep those the target's candidates' map holds (no second conv
            # pass), pooled at that map's scale (the search centre's, g[1]): the positives, and of
            # STORED_NEG_DRAW x n_neg_update negatives the first n_neg_update held (the map reaches
            # ~1 target size around the search centre: the near ones). A frame that keeps no
            # positive or no negative stores nothing.
            n_neg = self.cfg.n_neg_update
            stored = []
            for t, r, g in zip(self.targets, results, searched):
                if r.success:
                    p, n = t.update_samples(t.box, size, self.STORED_NEG_DRAW)
                    p, n = p[self.features.covered(p, g[1], g)], n[self.features.covered(n, g[1], g)][:n_neg]
                    if len(p) and len(n):
                        stored.append((t, p, n, g[1]))
            reuse = {"reuse": True}
        else:
            stored = [(t, *t.update_samples(t.box, size), t.box) for t, r in zip(self.targets, results) if r.success]
            reuse = {}
        self.timer.add("sample_s", time.perf_counter() - t0)
        if stored:
            f = self.features(image, [(g, a) for t, p, n, a in stored for g in (p, n)], **reuse)
            for j, (t, _, _, _) in enumerate(stored):
                t.remember(f[2 * j], f[2 * j + 1])
        for t in self.targets:
            t.update()
        return results


class MDNetTracker:
    """One target: `initialize(image, box)`, then `track(image) -> TrackResult` per frame.

    `target_index` picks the random stream (seed, index); a multi-target run's target k equals a
    single run with target_index=k.
    """

    def __init__(self, trunk: Trunk, config: TrackerConfig = TrackerConfig(), ctx=None, seed: int = 0,
                 target_index: int = 0):
        self._multi = MultiTracker(trunk, config, ctx, seed)
        self.target_index = int(target_index)

    @property
    def net_s(self) -> float:
        return self._multi.net_s

    @property
    def timer(self) -> Timer:
        return self._multi.timer

    @property
    def config(self) -> TrackerConfig:
        return self._multi.cfg

    def initialize(self, image: np.ndarray, box) -> None:
        self._multi.initialize(image, np.asarray(box, dtype=np.float64).reshape(1, 4), [self.target_index])

    def track(self, image: np.ndarray) -> TrackResult:
        return self._multi.track(image)[0]
