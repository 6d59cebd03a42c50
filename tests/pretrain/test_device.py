"""Which device a rank gets (pretrain/trainer.py choose_device), with injected GPU counts: more
local ranks than GPUs is an error naming the numbers unless sharing is asked for explicitly."""
import pytest

from pretrain import config as pconfig
from pretrain.trainer import choose_device, share_gpus_allowed


def test_one_gpu_per_local_rank():
    assert [choose_device("auto", r, 4, 4) for r in range(4)] == [("gpu", r) for r in range(4)]
    assert choose_device("gpu", 1, 2, 8) == ("gpu", 1)  # fewer ranks than GPUs: fine


@pytest.mark.parametrize("kind", ["auto", "gpu"])
def test_more_local_ranks_than_gpus_is_an_error_naming_the_numbers(kind):
    with pytest.raises(ValueError) as e:
        choose_device(kind, 2, 3, 2)
    msg = str(e.value)
    assert "local rank 2" in msg and "3 ranks on this host" in msg and "2 GPU(s)" in msg
    assert "runtime.share_gpus=true" in msg and "MDNET_SHARE_GPUS=1" in msg


def test_sharing_only_when_asked_for():
    assert [choose_device("auto", r, 4, 2, share_gpus=True) for r in range(4)] == [
        ("gpu", 0), ("gpu", 1), ("gpu", 0), ("gpu", 1)]
    assert share_gpus_allowed(False, {}) is False
    assert share_gpus_allowed(False, {"MDNET_SHARE_GPUS": "0"}) is False
    assert share_gpus_allowed(False, {"MDNET_SHARE_GPUS": "1"}) is True
    assert share_gpus_allowed(True, {}) is True
    assert pconfig.load(None, ["runtime.share_gpus=true"]).runtime.share_gpus is True
    assert pconfig.load().runtime.share_gpus is False


def test_cpu_whatever_the_rank_count():
    assert choose_device("cpu", 5, 8, 2) == ("cpu", 0)
    assert choose_device("auto", 5, 8, 0) == ("cpu", 0)  # no GPU: CPU ranks, nothing shared
    with pytest.raises(ValueError, match="runtime.device=gpu but MXNet sees no GPU"):
        choose_device("gpu", 0, 1, 0)


@pytest.mark.parametrize("mode,expected", [("fast", "64"), ("exact", None)])
def test_fast_mode_bounds_the_onednn_cache(monkeypatch, mode, expected):
    # Fast mode's region shapes change every step; MXNet's per-shape oneDNN cache is unbounded by
    # default and grew a real-cpu rank to 10.7 GB (OOM-killed at step 300). A user's own value wins.
    from online.config import load_config
    from pretrain.cli import _set_threads

    for var in ("MXNET_MKLDNN_CACHE_NUM", "MXNET_CUDNN_AUTOTUNE_DEFAULT", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config(pconfig.PretrainConfig, None, [f"model.mode={mode}"])
    _set_threads(cfg)
    import os

    assert os.environ.get("MXNET_MKLDNN_CACHE_NUM") == expected
    monkeypatch.setenv("MXNET_MKLDNN_CACHE_NUM", "8")
    _set_threads(cfg)
    assert os.environ["MXNET_MKLDNN_CACHE_NUM"] == "8"
