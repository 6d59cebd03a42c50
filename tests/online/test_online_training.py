"""Online training (online/online_training.py): the fast loop computes what the reference loop did.

The reference below is the loop the tracker ran before (gluon.Trainer, gluon.utils.clip_global_norm,
mining scores in batch_test chunks, a wait per parameter): the new one must give the same float32
weights, bitwise, with clipping active and inactive. bf16 mining is checked against fp32 mining on
the negatives it picks (it may differ only where scores are within bf16 rounding).
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from online import trunk_precision
from online.config import ConfigError
from online.features import Timer
from online.head import TargetHead
from online.mining import select_hardest
from online.network import NetSpec
from online.online_training import OnlineTrainer, PoolScorer, perm_stream
from online.tracker_config import TrackerConfig

SPEC = NetSpec(conv_channels=(16, 32, 64), fc_width=64)


def _heads(seed: int):
    """A train head and two inference heads (batch_test chunks, one pool batch) over the same params."""
    train = TargetHead(SPEC, "t_", train=True)
    params = train.collect_params()
    params.initialize(mx.init.Normal(0.05), ctx=mx.cpu(), force_reinit=True)
    rs = np.random.RandomState(seed)
    for p in params.values():
        p.set_data(mx.nd.array(rs.normal(0, 0.05, p.shape)))
    params["t_fc6_weight"].lr_mult = params["t_fc6_bias"].lr_mult = 10.0
    heads = [train, TargetHead(SPEC, "t_", train=False, params=params),
             TargetHead(SPEC, "t_", train=False, params=params)]
    for h in heads:
        h.hybridize(static_alloc=True, static_shape=True)
    return heads


def _reference_train(train_head, eval_head, cfg, pos, neg, iterations, rng, trainer):
    """The tracker's training loop before online_training.py (gluon.Trainer based)."""
    bp, bn, bc = cfg.batch_pos, cfg.batch_neg, cfg.batch_neg_cand
    keep = 1.0 - SPEC.dropout
    width = SPEC.fc_width
    params = list(train_head.collect_params().values())
    labels = mx.nd.array(np.r_[np.ones(bp), np.zeros(bn)])
    m4 = mx.nd.zeros((bp + bn, width))
    m5 = mx.nd.zeros((bp + bn, width))
    pos_idx = mx.nd.array(perm_stream(rng, pos.shape[0], bp * iterations), dtype="int32")
    neg_idx = mx.nd.array(perm_stream(rng, neg.shape[0], bc * iterations), dtype="int32")
    for it in range(iterations):
        m4[:] = (rng.random((bp + bn, width), dtype=np.float32) < keep) * np.float32(1.0 / keep)
        m5[:] = (rng.random((bp + bn, width), dtype=np.float32) < keep) * np.float32(1.0 / keep)
        pos_b = mx.nd.take(pos, pos_idx[it * bp:(it + 1) * bp])
        cand = mx.nd.take(neg, neg_idx[it * bc:(it + 1) * bc])
        scores = mx.nd.concat(*[eval_head(cand[s:s + cfg.batch_test]) for s in range(0, bc, cfg.batch_test)], dim=0)
        hard = select_hardest(scores[:, 1].asnumpy(), bn)
        neg_b = mx.nd.take(cand, mx.nd.array(hard, dtype="int32"))
        x = mx.nd.concat(pos_b, neg_b, dim=0)
        with autograd.record():
            loss = train_head(x, m4, m5, labels)
        loss.backward()
        gluon.utils.clip_global_norm([p.grad() for p in params], cfg.grad_clip, check_isfinite=False)
        trainer.step(1)
        for p in params:
            p.data().wait_to_read()


@pytest.mark.parametrize("grad_clip", [10.0, 1e-3])  # 1e-3: clipping active in every iteration
def test_fast_loop_equals_reference_bitwise(grad_clip):
    cfg = TrackerConfig(batch_neg_cand=256, batch_test=64, grad_clip=grad_clip, mining_dtype="fp32")
    rs = np.random.RandomState(0)
    pos = mx.nd.array(np.maximum(rs.normal(0, 1, (80, SPEC.feat_dim)), 0))
    neg = mx.nd.array(np.maximum(rs.normal(0, 1, (600, SPEC.feat_dim)), 0))
    results = []
    for use_new in (False, True):
        train, eval_head, mine_head = _heads(1)
        rng = np.random.default_rng(7)
        if use_new:
            t = OnlineTrainer(train, mine_head, cfg, SPEC, mx.cpu(), Timer())
            for lr, iters in ((cfg.lr_init, 6), (cfg.lr_update, 4)):  # two phases, fresh momentum each
                t.reset(lr)
                t.train(pos, neg, iters, rng)
        else:
            for lr, iters in ((cfg.lr_init, 6), (cfg.lr_update, 4)):
                trainer = gluon.Trainer(train.collect_params(), "sgd", {"learning_rate": lr, "momentum": cfg.momentum,
                                                                        "wd": cfg.weight_decay}, kvstore=None,
                                        update_on_kvstore=False)
                _reference_train(train, eval_head, cfg, pos, neg, iters, rng, trainer)
        results.append({k.split("_", 1)[1]: v.data().asnumpy() for k, v in train.collect_params().items()})
        results[-1]["rng_next"] = rng.random(3)
    ref, new = results
    assert set(ref) == set(new)
    for k in ref:
        assert np.array_equal(ref[k], new[k]), f"{k} differs (max {np.abs(ref[k] - new[k]).max()})"
    # And training did move the weights (the comparison is not of two untouched copies).
    train0, _, _ = _heads(1)
    assert not np.array_equal(train0.fcs.fc4.weight.data().asnumpy(), new["fc4_weight"])


def test_timer_parts_add_up():
    cfg = TrackerConfig(batch_neg_cand=256, batch_test=64, mining_dtype="fp32")
    train, _, mine = _heads(2)
    timer = Timer()
    t = OnlineTrainer(train, mine, cfg, SPEC, mx.cpu(), timer)
    t.reset(cfg.lr_init)
    rs = np.random.RandomState(1)
    t.train(mx.nd.array(rs.rand(50, SPEC.feat_dim)), mx.nd.array(rs.rand(300, SPEC.feat_dim)), 3,
            np.random.default_rng(0))
    p = timer.parts
    assert p["train_s"] > 0 and 0 < p["train_mining_s"] < p["train_s"]
    assert p["train_s"] == pytest.approx(p["train_host_s"] + timer.net_s)


def test_mining_dtype_is_validated_and_refused_without_the_instructions():
    with pytest.raises(ConfigError, match="mining_dtype"):
        TrackerConfig(mining_dtype="int8")
    with pytest.raises(ConfigError, match="mining_dtype=bf16 needs a CPU with avx512_bf16"):
        trunk_precision.check_supported("bf16", mx.cpu(), flags={"avx2"}, field="mining_dtype")
    with pytest.raises(ConfigError, match="use mining_dtype=fp32 on a GPU"):
        trunk_precision.check_supported("bf16", mx.gpu(0), field="mining_dtype")


@pytest.mark.skipif(not trunk_precision.cpu_flags() & {"avx512_bf16", "amx_bf16"},
                    reason="bf16 mining runs only on a CPU with avx512_bf16 (refused elsewhere, tested above)")
def test_bf16_mining_picks_the_same_hard_negatives_up_to_rounding():
    _, _, mine = _heads(3)
    params = {k.split("_", 1)[1]: v for k, v in mine.collect_params().items()}
    rs = np.random.RandomState(2)
    cand = mx.nd.array(np.maximum(rs.normal(0, 1, (256, SPEC.feat_dim)), 0))
    fp32 = PoolScorer(mine, params, 256, "fp32", mx.cpu())
    bf16 = PoolScorer(mine, params, 256, "bf16", mx.cpu())
    s32 = fp32(fp32.prepare(cand))
    s16 = bf16(bf16.prepare(cand))
    assert s16.dtype == np.float32 and s16.shape == s32.shape == (256,)
    # bf16 keeps 8 bits of mantissa: scores within ~1% of their spread; not equal (it is bf16).
    spread = s32.max() - s32.min()
    assert 0 < np.abs(s16 - s32).max() < 0.02 * spread
    same = len(set(select_hardest(s32, 96)) & set(select_hardest(s16, 96)))
    assert same >= 90, f"only {same} of the 96 hardest negatives agree"


@pytest.mark.skipif(not trunk_precision.cpu_flags() & {"avx512_bf16", "amx_bf16"},
                    reason="bf16 mining runs only on a CPU with avx512_bf16")
def test_bench_compares_mining_dtypes(capsys):
    import json

    from tools.bench import cli as bench

    small = ["n_pos_init=20", "n_neg_init=60", "n_bbreg=20", "maxiter_init=2", "maxiter_update=2",
             "n_pos_update=10", "n_neg_update=20", "batch_test=32", "n_samples=32", "batch_neg_cand=96", "batch_neg=32"]
    argv = ["track", "--weights", "random:0", "--widths", "8,16,16,16", "--frames", "3", "--json",
            "--mining-dtype", "fp32,bf16", "--profile", "--profile-repeats", "1"]
    argv += [a for o in small for a in ("--set", o)]
    assert bench.main(bench.build_parser().parse_args(argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["runs"]) == {"mining-fp32", "mining-bf16"}
    for name, run in report["runs"].items():
        assert name == f"mining-{run['mining_dtype']}" and run["fps"] > 0
        assert 0 < run["phases"]["first_frame"]["of_which_mining_s"] < run["phases"]["first_frame"]["training_s"]
    ops = report["online_update"]
    assert set(ops) == {"fp32", "bf16"}
    assert "mining: score 96 negatives (bf16), to host" in ops["bf16"]["ms_per_iteration"]
    assert "per update: the pool as the scorer reads it" in ops["bf16"]["ms_per_update"]
    with pytest.raises(SystemExit, match="--mining-dtype 'fp32,int8'"):
        bench.main(bench.build_parser().parse_args(["track", "--mining-dtype", "fp32,int8"]))


def test_auto_mining_dtype_is_bf16_only_in_fast_mode_on_a_bf16_cpu():
    resolve = trunk_precision.resolve_mining_dtype
    assert resolve("auto", "fast", mx.cpu(), flags={"avx512_bf16"}) == (
        "bf16" if mx.runtime.Features().is_enabled("MKLDNN") else "fp32")
    assert resolve("auto", "fast", mx.cpu(), flags={"avx2", "avx512f"}) == "fp32"
    assert resolve("auto", "exact", mx.cpu(), flags={"avx512_bf16"}) == "fp32"
    assert resolve("auto", "fast", mx.gpu(0), flags={"avx512_bf16"}) == "fp32"
    for given in ("fp32", "bf16"):
        assert resolve(given, "exact", mx.cpu(), flags=set()) == given
    # The tracker runs (and reports) the resolved precision.
    from online.network import NetSpec as Spec
    from online.tracker import MultiTracker
    from online.weights import build_trunk
    trunk, _ = build_trunk("random:0", spec=Spec(conv_channels=(8, 8, 8), fc_width=8))
    tracker = MultiTracker(trunk, TrackerConfig(mode="exact", mining_dtype="auto"))
    assert tracker.cfg.mining_dtype == "fp32"
    with pytest.raises(ValueError, match="fp32 or bf16 here, got 'auto'"):
        PoolScorer(None, {f"fc{i}_{k}": None for i in (4, 5, 6) for k in ("weight", "bias")}, 8, "auto", mx.cpu())


def test_frozen_fc4_head_is_the_full_head_with_fc4_held_fixed():
    # online_fc4 frozen: the head reads fc4's ReLU output (Fc4Embedding, computed once per sample) and
    # runs dropout -> fc5 -> fc6 with the same masks: the same loss and scores as the full head, and
    # training it changes fc5-fc6 exactly as training the full head with fc4's learning rate 0 would.
    from online.head import Fc4Embedding
    full, full_eval, _ = _heads(4)
    tail = TargetHead(SPEC, "f_", train=True, fc4=False)
    tail_eval = TargetHead(SPEC, "f_", train=False, params=tail.collect_params(), fc4=False)
    tail.collect_params().initialize(mx.init.Zero(), ctx=mx.cpu(), force_reinit=True)
    assert set(tail.online_layers()) == {"fc5"} and set(full.online_layers()) == {"fc4", "fc5"}
    for name in ("fc5_weight", "fc5_bias", "fc6_weight", "fc6_bias"):
        tail.collect_params()[f"f_{name}"].set_data(full.collect_params()[f"t_{name}"].data().copy())
    embed = Fc4Embedding(full.fcs.fc4, mx.cpu())
    rs = np.random.RandomState(5)
    x = mx.nd.array(np.maximum(rs.normal(0, 1, (128, SPEC.feat_dim)), 0))
    m4 = mx.nd.array((rs.rand(128, SPEC.fc_width) < 0.5) * 2.0)
    m5 = mx.nd.array((rs.rand(128, SPEC.fc_width) < 0.5) * 2.0)
    y = mx.nd.array(np.r_[np.ones(32), np.zeros(96)])
    h4 = embed(x)
    assert h4.shape == (128, SPEC.fc_width) and embed(x[:0]).shape == (0, SPEC.fc_width)
    np.testing.assert_allclose(tail(h4, m4, m5, y).asnumpy(), full(x, m4, m5, y).asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(tail_eval(h4).asnumpy(), full_eval(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_trainer_with_frozen_fc4_trains_fc5_fc6_on_512d_rows(dtype):
    if dtype == "bf16" and not trunk_precision.cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        pytest.skip("bf16 mining needs avx512_bf16")
    cfg = TrackerConfig(batch_neg_cand=256, batch_test=64, mining_dtype=dtype, online_fc4="frozen")
    train = TargetHead(SPEC, "g_", train=True, fc4=False)
    params = train.collect_params()
    params.initialize(mx.init.Normal(0.05), ctx=mx.cpu(), force_reinit=True)
    mine = TargetHead(SPEC, "g_", train=False, params=params, fc4=False)
    for h in (train, mine):
        h.hybridize(static_alloc=True, static_shape=True)
    before = {k: v.data().asnumpy().copy() for k, v in params.items()}
    t = OnlineTrainer(train, mine, cfg, SPEC, mx.cpu(), Timer())
    assert [w.name for w, _ in t.scorer.fc] == ["g_fc5_weight", "g_fc6_weight"]
    t.reset(cfg.lr_init)
    rs = np.random.RandomState(1)
    t.train(mx.nd.array(rs.rand(50, SPEC.fc_width)), mx.nd.array(rs.rand(300, SPEC.fc_width)), 3,
            np.random.default_rng(0))
    assert all(not np.array_equal(before[k], v.data().asnumpy()) for k, v in params.items() if "weight" in k)
