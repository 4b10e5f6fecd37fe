"""Tests of smug.encoders: feature groupings and the exact first-layer affine encoder.

The central property: for random first layers (conv geometries, linear layers,
folded BatchNorm), groupings, baselines, neuron subsets and masks,
``C @ m + d`` from :meth:`FirstLayer.affine_rows` equals what torch's own
modules compute (in float64) on the masked input.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from smug.encoders import (
    FirstLayer,
    feature_groups,
    find_first_layer,
    group_areas,
    groups_matrix,
    make_baseline,
    window_groups,
)
from smug.errors import NonFiniteError, ShapeError, ValidationError
from smug.ir import ProblemBuilder

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ helpers
def _randomise_bn(bn: nn.Module, rng: np.random.Generator) -> None:
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(rng.normal(size=n)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 3.0, size=n)))
        if bn.weight is not None:
            bn.weight.copy_(torch.from_numpy(rng.normal(size=n)))
            bn.bias.copy_(torch.from_numpy(rng.normal(size=n)))


def _reference_baseline(kind: str, x: np.ndarray, rng: np.random.Generator) -> tuple[object, np.ndarray]:
    """A baseline spec for the encoder and the array it stands for, computed independently."""
    if kind == "zero":
        return "zero", np.zeros_like(x)
    if kind == "scalar":
        v = float(rng.normal())
        return v, np.full_like(x, v)
    if kind == "tensor":
        b = rng.normal(size=x.shape)
        return torch.from_numpy(b), b
    assert kind == "mean"
    axes = tuple(range(1, x.ndim)) if x.ndim >= 3 else None
    if axes is None:
        return "mean", np.full_like(x, x.mean())
    return "mean", np.broadcast_to(x.mean(axis=(-2, -1), keepdims=True), x.shape).copy()


def _grouping(kind: str, shape: tuple[int, ...], rng: np.random.Generator, data: st.DataObject) -> np.ndarray:
    H, W = shape[-2:]
    if kind == "window":
        wh = data.draw(st.integers(1, H), label="wh")
        ww = data.draw(st.integers(1, W), label="ww")
        return feature_groups(shape, window=(wh, ww))
    if kind == "segments":  # shared by all channels, arbitrary integer ids
        return feature_groups(shape, feature_mask=rng.integers(-5, 9, size=(1, H, W)))
    if kind == "per_channel":
        return feature_groups(shape, feature_mask=torch.from_numpy(rng.integers(0, 7, size=shape)))
    return feature_groups(shape)


def _check_property(
    layer: FirstLayer,
    reference: nn.Module,
    x: np.ndarray,
    ids: np.ndarray,
    baseline_kind: str,
    rng: np.random.Generator,
) -> None:
    """C m + d from the encoder == the torch reference on masked inputs, for random neurons and masks."""
    spec, base = _reference_baseline(baseline_kind, x, rng)
    with torch.no_grad():
        n_out = reference(torch.from_numpy(x)[None]).numel()
    k = int(rng.integers(1, n_out + 1))
    neurons = rng.choice(n_out, size=k, replace=False)
    C, d = layer.affine_rows(x, spec, ids, neurons)
    G = int(ids.max()) + 1
    assert sp.isspmatrix_csr(C) and C.shape == (k, G) and C.dtype == np.float64
    assert d.shape == (k,)
    masks = [np.zeros(G), np.ones(G)] + [rng.integers(0, 2, size=G).astype(np.float64) for _ in range(4)]
    for m in masks:
        xm = base + m[ids] * (x - base)
        with torch.no_grad():
            ref = reference(torch.from_numpy(xm)[None]).numpy().ravel()[neurons]
        got = C @ m + d
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * (1.0 + np.abs(ref).max()))


# ---------------------------------------------------------- the property
@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    cin = draw(st.integers(1, 3), label="cin")
    cout = draw(st.integers(1, 6), label="cout")
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if cin % g == 0 and cout % g == 0]), label="groups")
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]), label="pad_kind")
    stride = (1, 1) if pad_kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding: object = {
        "int": draw(st.integers(0, 2)),
        "tuple": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        "same": "same",
        "valid": "valid",
    }[pad_kind]
    zpad = draw(st.none() | st.tuples(*[st.integers(0, 2)] * 4), label="zeropad (l, r, t, b)")
    if pad_kind == "same":
        ph = pw = 10**6
    elif pad_kind == "valid":
        ph = pw = 0
    else:
        p = padding if isinstance(padding, tuple) else (padding, padding)
        ph, pw = 2 * p[0], 2 * p[1]
    if zpad is not None:
        ph, pw = ph + zpad[2] + zpad[3], pw + zpad[0] + zpad[1]
    H = draw(st.integers(max(5, dil[0] * (kh - 1) + 1 - ph), 12), label="H")
    W = draw(st.integers(max(5, dil[1] * (kw - 1) + 1 - pw), 12), label="W")
    return dict(
        cin=cin,
        cout=cout,
        groups=groups,
        kernel=(kh, kw),
        dilation=dil,
        stride=stride,
        padding=padding,
        zpad=zpad,
        H=H,
        W=W,
        bias=draw(st.booleans(), label="bias"),
        bn=draw(st.booleans(), label="bn"),
        grouping=draw(st.sampled_from(["window", "segments", "per_channel", "pixels"]), label="grouping"),
        baseline=draw(st.sampled_from(["zero", "scalar", "tensor", "mean"]), label="baseline"),
        trace=draw(st.booleans(), label="trace"),
        seed=draw(st.integers(0, 2**31 - 1), label="seed"),
    )


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(case=conv_cases(), data=st.data())
def test_conv_affine_rows_match_torch(case: dict, data: st.DataObject) -> None:
    rng = np.random.default_rng(case["seed"])
    torch.manual_seed(case["seed"])
    mods: list[nn.Module] = []
    if case["zpad"] is not None:
        mods.append(nn.ZeroPad2d(case["zpad"]))
    mods.append(
        nn.Conv2d(
            case["cin"],
            case["cout"],
            case["kernel"],
            stride=case["stride"],
            padding=case["padding"],
            dilation=case["dilation"],
            groups=case["groups"],
            bias=case["bias"],
        )
    )
    if case["bn"]:
        bn = nn.BatchNorm2d(case["cout"])
        _randomise_bn(bn, rng)
        mods.append(bn)
    model = nn.Sequential(*mods, nn.ReLU(), nn.Flatten()).eval()
    reference = copy.deepcopy(nn.Sequential(*mods)).double().eval()
    shape = (case["cin"], case["H"], case["W"])
    x = rng.normal(size=shape)
    if case["trace"]:
        layer = find_first_layer(model, example_input=torch.from_numpy(x)[None].float())
        assert layer.in_shape == shape
    else:
        layer = find_first_layer(model)
    assert layer.kind == "conv2d"
    assert layer.modules == tuple(str(i) for i in range(len(mods)))
    with torch.no_grad():
        out = reference(torch.from_numpy(x)[None])[0]
    assert layer.out_shape(shape) == tuple(out.shape)
    np.testing.assert_allclose(layer.preactivations(x), out.numpy().ravel(), rtol=1e-12, atol=1e-12)
    ids = _grouping(case["grouping"], shape, rng, data)
    _check_property(layer, reference, x, ids, case["baseline"], rng)


@SETTINGS
@given(
    cin=st.integers(1, 3),
    H=st.integers(2, 6),
    W=st.integers(2, 6),
    out=st.integers(1, 8),
    bias=st.booleans(),
    bn=st.booleans(),
    trace=st.booleans(),
    grouping=st.sampled_from(["window", "segments", "per_channel", "pixels"]),
    baseline=st.sampled_from(["zero", "scalar", "tensor", "mean"]),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_linear_affine_rows_match_torch(
    cin: int,
    H: int,
    W: int,
    out: int,
    bias: bool,
    bn: bool,
    trace: bool,
    grouping: str,
    baseline: str,
    seed: int,
    data: st.DataObject,
) -> None:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Flatten(), nn.Linear(cin * H * W, out, bias=bias)]
    if bn:
        b = nn.BatchNorm1d(out)
        _randomise_bn(b, rng)
        mods.append(b)
    model = nn.Sequential(*mods, nn.ReLU(), nn.Linear(out, 2)).eval()
    reference = copy.deepcopy(nn.Sequential(*mods)).double().eval()
    shape = (cin, H, W)
    x = rng.normal(size=shape)
    example = torch.from_numpy(x)[None].float() if trace else None
    layer = find_first_layer(model, example_input=example)
    assert layer.kind == "linear" and layer.name == "1"
    assert layer.out_shape(shape) == (out,)
    ids = _grouping(grouping, shape, rng, data)
    _check_property(layer, reference, x, ids, baseline, rng)


def test_inception_sized_layer_is_exact_on_a_sample() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 64, 7, stride=2, padding=3)
    layer = find_first_layer(nn.Sequential(conv, nn.ReLU()))
    x = rng.random((3, 64, 64))
    ids = feature_groups(x.shape, window=4)
    neurons = rng.choice(64 * 32 * 32, size=500, replace=False)
    C, d = layer.affine_rows(x, "mean", ids, neurons)
    ref_conv = copy.deepcopy(conv).double()
    base = make_baseline(x, "mean")
    for _ in range(3):
        m = rng.integers(0, 2, size=C.shape[1]).astype(np.float64)
        with torch.no_grad():
            ref = ref_conv(torch.from_numpy(base + m[ids] * (x - base))[None]).numpy().ravel()[neurons]
        np.testing.assert_allclose(C @ m + d, ref, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------- groups
def test_window_groups_partial_edges_and_counts() -> None:
    ids = window_groups((5, 7), 2)
    assert ids.shape == (5, 7) and ids.dtype == np.int64
    assert ids.max() + 1 == 3 * 4
    assert ids[0, 0] == 0 and ids[0, 6] == 3 and ids[4, 0] == 8 and ids[4, 6] == 11
    assert np.bincount(ids.ravel()).tolist() == [4, 4, 4, 2, 4, 4, 4, 2, 2, 2, 2, 1]
    rect = window_groups((5, 7), (2, 3))
    assert rect.max() + 1 == 3 * 3
    assert rect[1, 2] == 0 and rect[1, 3] == 1 and rect[2, 0] == 3
    assert np.bincount(rect.ravel()).tolist() == [6, 6, 2, 6, 6, 2, 3, 3, 1]
    assert (window_groups((4, 4), 4) == 0).all()
    assert window_groups((3, 3), 1).ravel().tolist() == list(range(9))


@pytest.mark.parametrize("window", [6, (2, 8), (6, 1)])
def test_window_larger_than_image_is_an_error(window: object) -> None:
    with pytest.raises(ValidationError, match=r"window .* larger than the image 5x7"):
        window_groups((5, 7), window)


@pytest.mark.parametrize("window", [0, -1, (0, 2), (1, 2, 3), 1.5, True])
def test_bad_windows_are_errors(window: object) -> None:
    with pytest.raises(ValidationError, match="window"):
        window_groups((5, 7), window)


def test_feature_groups_window_shares_channels() -> None:
    ids = feature_groups((3, 5, 7), window=2)
    assert ids.shape == (3, 5, 7) and ids.dtype == np.int64
    assert (ids[0] == ids[1]).all() and (ids[1] == ids[2]).all()
    assert (ids[0] == window_groups((5, 7), 2)).all()
    assert feature_groups((3, 4, 5)).max() + 1 == 20  # default: one group per pixel
    assert feature_groups((10,), window=3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


def test_feature_mask_remapping_and_broadcast() -> None:
    mask = np.array([[10, -3], [7, 10]])
    expect = np.array([[2, 0], [1, 2]])
    for m in (mask, mask[None], mask[None, None], torch.from_numpy(mask), mask.astype(np.float32)):
        ids = feature_groups((3, 2, 2), feature_mask=m)
        assert ids.shape == (3, 2, 2) and ids.dtype == np.int64
        assert all((ids[c] == expect).all() for c in range(3))
    full = np.arange(12).reshape(3, 2, 2) * 5
    assert (feature_groups((3, 2, 2), feature_mask=full) == np.arange(12).reshape(3, 2, 2)).all()


def test_feature_mask_errors() -> None:
    with pytest.raises(ShapeError, match=r"\(3, 3\).*\(3, 2, 2\)"):
        feature_groups((3, 2, 2), feature_mask=np.zeros((3, 3), dtype=int))
    with pytest.raises(ValidationError, match="integer"):
        feature_groups((1, 2, 2), feature_mask=np.array([[0.5, 1], [1, 2]]))
    with pytest.raises(ValidationError, match="NaN"):
        feature_groups((1, 2, 2), feature_mask=np.array([[np.nan, 1], [1, 2]]))
    with pytest.raises(ValidationError, match="not both"):
        feature_groups((1, 2, 2), window=1, feature_mask=np.zeros((2, 2), dtype=int))
    with pytest.raises(ValidationError):
        feature_groups((1, 2, 2), feature_mask=np.array([["a", "b"], ["c", "d"]]))


def test_groups_matrix_is_the_ir_groups_matrix() -> None:
    ids = feature_groups((2, 3, 4), window=2)
    Gm = groups_matrix(ids)
    assert sp.isspmatrix_csr(Gm) and Gm.shape == (4, 24)
    assert (np.asarray(Gm.sum(axis=0)).ravel() == 1).all()
    f = np.ravel_multi_index((1, 2, 3), (2, 3, 4))
    assert Gm[ids[1, 2, 3], f] == 1.0
    b = ProblemBuilder()
    m = b.add_mask(Gm.shape[0], groups=Gm, input_shape=ids.shape)
    b.set_objective(m, 1.0)
    p = b.build()
    assert (p.groups != Gm).nnz == 0 and p.input_shape == (2, 3, 4)
    with pytest.raises(ValidationError):
        groups_matrix(np.array([-1, 0]))


def test_group_areas_count_pixels_not_channels() -> None:
    ids = feature_groups((3, 5, 7), window=2)
    assert group_areas(ids).tolist() == [4, 4, 4, 2, 4, 4, 4, 2, 2, 2, 2, 1]
    per_channel = np.stack([np.zeros((2, 2), int), np.ones((2, 2), int)])
    per_channel[1, 0, 0] = 0
    assert group_areas(per_channel).tolist() == [4, 3]  # group 0 covers all 4 pixels; group 1 three of them
    assert group_areas(np.array([0, 0, 1])).tolist() == [2, 1]


# --------------------------------------------------------------- baselines
def test_make_baseline_options() -> None:
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    assert (make_baseline(x) == 0).all() and (make_baseline(x, None) == 0).all()
    assert (make_baseline(torch.from_numpy(x), 0.25) == 0.25).all()
    per_channel = make_baseline(x, np.array([1.0, 2.0])[:, None, None])
    assert per_channel.shape == x.shape and (per_channel[1] == 2).all()
    mean = make_baseline(x, "mean")
    assert np.allclose(mean[0], x[0].mean()) and np.allclose(mean[1], x[1].mean())
    assert make_baseline(x, torch.ones(1, 2, 3, 4)).shape == x.shape


def test_make_baseline_errors() -> None:
    x = np.zeros((2, 3, 4))
    with pytest.raises(ShapeError, match=r"\(5,\).*\(2, 3, 4\)"):
        make_baseline(x, np.zeros(5))
    with pytest.raises(NonFiniteError):
        make_baseline(x, float("nan"))
    with pytest.raises(NonFiniteError):
        make_baseline(x, np.full((2, 3, 4), np.nan))
    with pytest.raises(ValidationError, match="'zero'.*'mean'"):
        make_baseline(x, "median")


# -------------------------------------------------------------- discovery
class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


class _MyConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class _WithCustom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = _Scale()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pre(x))


@pytest.mark.parametrize(
    ("model", "needles"),
    [
        (nn.Sequential(nn.LSTM(4, 8), nn.Linear(8, 2)), ["'0'", "LSTM", "Supported", "Conv2d"]),
        (nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU()), ["'0'", "Conv3d"]),
        (nn.Sequential(nn.Conv1d(1, 2, 3)), ["'0'", "Conv1d"]),
        (_WithCustom(), ["'pre'", "_Scale"]),
        (nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)), ["'0'", "ReLU"]),
        (nn.Sequential(_MyConv(1, 2, 3)), ["'0'", "_MyConv"]),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), ["'0'", "reflect"]),
        (nn.Sequential(nn.ConstantPad2d(1, 0.5), nn.Conv2d(1, 2, 3)), ["'0'", "0.5"]),
        (nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(1, 2, 3)), ["'0'", "ReflectionPad2d"]),
        (nn.Sequential(nn.ZeroPad2d(1), nn.Flatten(), nn.Linear(16, 2)), ["Flatten"]),
    ],
)
def test_unsupported_first_layers_are_named(model: nn.Module, needles: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        find_first_layer(model)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_model_without_a_layer_is_an_error() -> None:
    with pytest.raises(ValidationError, match="no nn.Linear or nn.Conv2d"):
        find_first_layer(nn.Sequential(nn.Flatten()))


class _OutOfOrder(nn.Module):
    """Registers the head before the features, but runs the features first."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2 * 6 * 6, 3)
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_name_selection_and_tracing() -> None:
    torch.manual_seed(0)
    model = _OutOfOrder().eval()
    _randomise_bn(model.features[1], np.random.default_rng(0))
    assert find_first_layer(model).name == "head"  # registration order is wrong here...
    by_name = find_first_layer(model, name="features.0")
    traced = find_first_layer(model, example_input=torch.rand(1, 1, 8, 8))
    shaped = find_first_layer(model, example_input=(1, 8, 8))
    for layer in (by_name, traced, shaped):
        assert layer.name == "features.0" and layer.kind == "conv2d"
        assert layer.modules == ("features.0", "features.1")
    assert traced.in_shape == (1, 8, 8) and by_name.in_shape == (1, None, None)
    x = np.random.default_rng(1).normal(size=(1, 8, 8))
    with torch.no_grad():
        ref = model.features[:2].double()(torch.from_numpy(x)[None]).numpy().ravel()
    np.testing.assert_allclose(by_name.preactivations(x), ref, rtol=1e-12, atol=1e-12)
    assert not any(m.training for m in model.modules())


def test_unknown_and_container_names() -> None:
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Flatten())
    with pytest.raises(ValidationError, match=r"no module named 'features\.0'.*'0\.0'"):
        find_first_layer(model, name="features.0")
    with pytest.raises(ValidationError, match="container"):
        find_first_layer(model, name="0")
    assert find_first_layer(model, name="0.0").name == "0.0"


class _Normalising(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv((x - 0.5) / 0.2)


def test_tracing_detects_hidden_preprocessing() -> None:
    model = _Normalising()
    assert find_first_layer(model).name == "conv"  # the walk cannot see it
    with pytest.raises(ValidationError, match="unchanged"):
        find_first_layer(model, example_input=torch.rand(1, 1, 6, 6))


def test_tracing_restores_training_mode_and_running_stats() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    before = model[1].running_mean.clone()
    with pytest.warns(UserWarning, match="training mode"):
        layer = find_first_layer(model, example_input=torch.rand(1, 1, 6, 6))
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, before)
    assert layer.modules == ("0", "1")


def test_batchnorm_training_mode_warns_and_folds_running_stats() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.BatchNorm1d(4))
    _randomise_bn(model[2], np.random.default_rng(3))
    model.train()
    with pytest.warns(UserWarning, match="training mode"):
        layer = find_first_layer(model)
    x = np.random.default_rng(0).normal(size=(1, 2, 3))
    ref_model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(x)[None]).numpy().ravel()
    np.testing.assert_allclose(layer.preactivations(x), ref, rtol=1e-12, atol=1e-12)


def test_batchnorm_without_running_stats_is_an_error() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    with pytest.raises(ValidationError, match="running statistics"):
        find_first_layer(model)


def test_eval_mode_does_not_warn_and_same_padding_is_resolved_like_torch() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = find_first_layer(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"), nn.BatchNorm2d(1)).eval())
    assert layer.padding == (1, 2, 1, 2)
    layer = find_first_layer(
        nn.Sequential(nn.ZeroPad2d((1, 0, 2, 3)), nn.Conv2d(1, 1, (2, 5), padding="same", dilation=(3, 1)))
    )
    assert layer.padding == (2 + 1, 3 + 2, 1 + 2, 0 + 2)
    assert layer.kernel_size == (2, 5) and layer.dilation == (3, 1)


# ------------------------------------------------------------ validation
def test_affine_rows_input_errors() -> None:
    layer = find_first_layer(nn.Sequential(nn.Conv2d(2, 3, 3)))
    x = np.zeros((2, 5, 5))
    ids = feature_groups(x.shape)
    with pytest.raises(ValidationError, match="out of range"):
        layer.affine_rows(x, "zero", ids, [27])
    with pytest.raises(ShapeError, match="ids have shape"):
        layer.affine_rows(x, "zero", np.zeros((4, 4), dtype=int), [0])
    with pytest.raises(ShapeError, match="input channel"):
        layer.affine_rows(np.zeros((3, 5, 5)), "zero", ids, [0])
    with pytest.raises(ShapeError, match="smaller than"):
        layer.out_shape((2, 2, 8))
    with pytest.raises(NonFiniteError):
        layer.affine_rows(np.full((2, 5, 5), np.nan), "zero", ids, [0])
    C, d = layer.affine_rows(x, "zero", ids[0], [])  # (H, W) ids broadcast over channels; no neurons
    assert C.shape == (0, 25) and d.shape == (0,)
    lin = find_first_layer(nn.Linear(6, 2))
    assert lin.name == "" and lin.out_shape((2, 3)) == (2,)
    with pytest.raises(ShapeError, match="6 input features"):
        lin.out_shape((7,))


# ------------------------------------------------------- receptive fields
def _changed_by_pixel(reference: nn.Module, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``changed[n, p]``: does perturbing spatial position p (all channels) change neuron n?"""
    C, H, W = x.shape
    with torch.no_grad():
        base = reference(torch.from_numpy(x)[None]).numpy().ravel()
        out = np.zeros((base.size, H * W), dtype=bool)
        for p in range(H * W):
            xp = x.copy()
            xp[:, p // W, p % W] += rng.uniform(0.5, 1.5, size=C)
            out[:, p] = np.abs(reference(torch.from_numpy(xp)[None]).numpy().ravel() - base) > 1e-12
    return out


@pytest.mark.parametrize(
    "mods",
    [
        lambda: [nn.ZeroPad2d((1, 0, 2, 1)), nn.Conv2d(2, 4, (3, 2), stride=2, dilation=(2, 1), groups=2)],
        lambda: [nn.Conv2d(3, 2, 4, padding="same", dilation=2), nn.BatchNorm2d(2)],
        lambda: [nn.Flatten(), nn.Linear(2 * 5 * 6, 4)],
    ],
)
def test_receptive_fields_match_finite_differences(mods: object) -> None:
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    layers = mods()
    if isinstance(layers[-1], nn.BatchNorm2d):
        _randomise_bn(layers[-1], rng)
    model = nn.Sequential(*layers).eval()
    if isinstance(layers[-1], nn.Linear):
        with torch.no_grad():
            layers[-1].weight[:, :40] = 0.0  # channel 0 entirely, and the first 10 pixels of channel 1
        shape = (2, 5, 6)
    else:
        conv = next(m for m in layers if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            conv.weight[0, :, :, 0] = 0.0  # a dead kernel column: those taps are outside neuron 0's field
        shape = (conv.in_channels, 5, 6)
    layer = find_first_layer(model)
    x = rng.normal(size=shape)
    reference = copy.deepcopy(model).double()
    expected = _changed_by_pixel(reference, x, rng)
    n = expected.shape[0]
    neurons = np.arange(n)
    R = layer.receptive_fields(shape, neurons)
    assert sp.isspmatrix_csr(R) and R.shape == (n, 30)
    assert set(np.unique(R.data)) <= {1.0}
    assert (R.toarray().astype(bool) == expected).all()
    sub = rng.choice(n, size=min(5, n), replace=False)
    assert (layer.receptive_fields(shape, sub).toarray().astype(bool) == expected[sub]).all()


def test_module_names_alias() -> None:
    layer = find_first_layer(nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval())
    assert layer.module_names == layer.modules == ("0", "1", "2")
