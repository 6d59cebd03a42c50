"""The weight file: round trips, metadata, and clear rejection of every kind of bad file."""
import json
import os

import h5py
import mxnet as mx
import numpy as np
import pytest

from online.network import NetSpec, Trunk, init_trunk, param_names
from online.weights import (FORMAT_VERSION, WeightFile, WeightFileError, build_trunk,
                            load_params_into, load_weights, params_from_trunk, save_weights,
                            trunk_from_weights)

# Narrow widths: the file logic does not depend on size, and the tests stay fast.
SMALL = NetSpec(conv_channels=(8, 16, 32), fc_width=32)


def _trunk(seed=0, spec=SMALL):
    t = Trunk(spec)
    init_trunk(t, seed=seed)
    return t


def _pixels(n=3, seed=0, size=107):
    return mx.nd.array(np.random.default_rng(seed).uniform(0, 255, (n, 3, size, size)))


@pytest.fixture
def saved(tmp_path):
    trunk = _trunk(seed=3)
    path = tmp_path / "w.h5"
    save_weights(path, params_from_trunk(trunk), SMALL,
                 provenance={"config": {"lr": 1e-4, "sizes": (1, 2)}, "steps": 7,
                             "datasets": ["otb"], "git_commit": "abc123"})
    return trunk, path


def test_round_trip_gives_identical_outputs(saved):
    trunk, path = saved
    wf = load_weights(path)
    assert isinstance(wf, WeightFile)
    assert wf.path == str(path)
    assert list(wf.params) == list(param_names(SMALL))
    for name, value in params_from_trunk(trunk).items():
        assert wf.params[name].dtype == np.float32
        np.testing.assert_array_equal(wf.params[name], value)
    loaded = trunk_from_weights(wf)
    x = _pixels()
    np.testing.assert_array_equal(loaded(x).asnumpy(), trunk(x).asnumpy())


def test_metadata_round_trip(saved):
    _, path = saved
    wf = load_weights(path)
    assert wf.spec == SMALL
    assert wf.spec.lrn == SMALL.lrn and wf.spec.conv_channels == (8, 16, 32)
    prov = wf.provenance
    assert prov["steps"] == 7 and prov["datasets"] == ["otb"] and prov["git_commit"] == "abc123"
    assert prov["config"] == {"lr": 1e-4, "sizes": [1, 2]}
    assert "created" in prov
    with h5py.File(path, "r") as f:
        # Readable without this module: plain attributes, JSON provenance, float32 datasets.
        assert f.attrs["format"] == "mdnet-weights"
        assert int(f.attrs["format_version"]) == FORMAT_VERSION
        assert f.attrs["lrn_alpha"] == pytest.approx(5e-4)
        assert "MatConvNet" in f.attrs["lrn_note"]
        assert json.loads(f.attrs["provenance"])["steps"] == 7
        assert f["params/fc4_weight"].dtype == np.float32
        assert f["params/fc4_weight"].shape == (32, SMALL.feat_dim)


def test_created_is_kept_when_given(tmp_path):
    path = tmp_path / "w.h5"
    save_weights(path, params_from_trunk(_trunk()), SMALL, provenance={"created": "yesterday"})
    assert load_weights(path).provenance == {"created": "yesterday"}


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "w.h5"
    save_weights(path, params_from_trunk(_trunk(seed=1)), SMALL)
    save_weights(path, params_from_trunk(_trunk(seed=2)), SMALL)  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["w.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    np.testing.assert_array_equal(load_weights(path).params["conv1_weight"],
                                  params_from_trunk(_trunk(seed=2))["conv1_weight"])


def test_save_rejects_wrong_params(tmp_path):
    params = params_from_trunk(_trunk())
    params.pop("fc5_bias")
    with pytest.raises(WeightFileError, match="fc5_bias"):
        save_weights(tmp_path / "w.h5", params, SMALL)
    assert not os.listdir(tmp_path)


def test_truncated_file(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="truncated or not an HDF5 weight file"):
        load_weights(path)


def test_not_hdf5(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"this is not an HDF5 file\n" * 100)
    with pytest.raises(WeightFileError, match="truncated or not an HDF5 weight file"):
        load_weights(path)


def test_hdf5_without_format(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightFileError, match="not an MDNet weight file"):
        load_weights(path)


def test_wrong_format_version(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(WeightFileError, match=r"format_version 99 .*versions \[1\]"):
        load_weights(path)


def test_missing_param(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        del f["params/conv2_bias"]
        f["params/conv9_weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightFileError) as e:
        load_weights(path)
    msg = str(e.value)
    assert "missing: ['conv2_bias']" in msg and "unexpected: ['conv9_weight']" in msg


def test_wrong_shape_param(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        del f["params/fc5_weight"]
        f["params/fc5_weight"] = np.zeros((32, 31), np.float32)
    with pytest.raises(WeightFileError, match=r"fc5_weight: expected \(32, 32\), found \(32, 31\)"):
        load_weights(path)


def test_metadata_inconsistent_with_params(saved):
    # A file whose attributes describe a different width than its arrays: shapes catch it.
    _, path = saved
    with h5py.File(path, "r+") as f:
        f.attrs["fc_width"] = 64
    with pytest.raises(WeightFileError, match="fc4_weight: expected"):
        load_weights(path)


def test_nonexistent_path(tmp_path):
    with pytest.raises(WeightFileError, match="does not exist"):
        load_weights(tmp_path / "nope.h5")
    with pytest.raises(WeightFileError, match="does not exist"):
        build_trunk(str(tmp_path / "nope.h5"))


def test_build_trunk_random_is_deterministic():
    a, prov = build_trunk("random:5", spec=SMALL)
    b, _ = build_trunk("random:5", spec=SMALL)
    c, _ = build_trunk("random:6", spec=SMALL)
    assert prov == {"source": "random", "seed": 5}
    pa, pb, pc = params_from_trunk(a), params_from_trunk(b), params_from_trunk(c)
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name])
    assert not np.array_equal(pa["conv1_weight"], pc["conv1_weight"])
    assert not np.array_equal(pa["fc4_weight"], pc["fc4_weight"])


def test_build_trunk_random_default_spec():
    trunk, _ = build_trunk("random:0")
    assert trunk.spec == NetSpec()


@pytest.mark.parametrize("bad", ["random:x", "random:", "random:-1", "random:1.5"])
def test_build_trunk_bad_random(bad):
    with pytest.raises(WeightFileError, match="random:SEED"):
        build_trunk(bad, spec=SMALL)


def test_build_trunk_from_file(saved):
    trunk, path = saved
    loaded, prov = build_trunk(str(path))
    assert prov["source"] == "file" and prov["path"] == str(path)
    assert prov["provenance"]["steps"] == 7
    assert loaded.spec == SMALL
    x = _pixels(2)
    np.testing.assert_array_equal(loaded(x).asnumpy(), trunk(x).asnumpy())


def test_build_trunk_spec_mismatch(saved):
    _, path = saved
    with pytest.raises(WeightFileError, match="fc_width: requested 64, file has 32"):
        build_trunk(str(path), spec=NetSpec(conv_channels=(8, 16, 32), fc_width=64))


def test_load_params_into_partial_and_errors():
    src = params_from_trunk(_trunk(seed=1))
    dst = _trunk(seed=2)
    before = params_from_trunk(dst)
    convs = {k: v for k, v in src.items() if k.startswith("conv")}

    with pytest.raises(WeightFileError, match=r"missing parameters \['fc4_weight'"):
        load_params_into(dst, convs)
    loaded = load_params_into(dst, convs, allow_missing=True)
    assert loaded == [f"conv{i}_{k}" for i in (1, 2, 3) for k in ("weight", "bias")]
    after = params_from_trunk(dst)
    np.testing.assert_array_equal(after["conv2_weight"], src["conv2_weight"])
    np.testing.assert_array_equal(after["fc4_weight"], before["fc4_weight"])  # untouched

    with pytest.raises(WeightFileError, match=r"unexpected parameter names \['features.conv1'\]"):
        load_params_into(dst, {**convs, "features.conv1": src["conv1_weight"]}, allow_missing=True)
    with pytest.raises(WeightFileError, match="no parameter names matched"):
        load_params_into(dst, {"module.conv1_weight": src["conv1_weight"]}, allow_missing=True)
    bad = dict(src, conv3_bias=np.zeros(5, np.float32))
    with pytest.raises(WeightFileError, match=r"conv3_bias: expected \(32,\), found \(5,\)"):
        load_params_into(dst, bad)
    # A failed load leaves the trunk unchanged (shapes are checked before anything is written).
    np.testing.assert_array_equal(params_from_trunk(dst)["conv1_weight"], after["conv1_weight"])


def test_load_params_into_uninitialised_trunk():
    with pytest.raises(WeightFileError, match="not initialised"):
        load_params_into(Trunk(SMALL), params_from_trunk(_trunk()))
