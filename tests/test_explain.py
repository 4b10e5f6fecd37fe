"""The SMUG pipeline end to end on small real models (sklearn digits), checked through torch itself."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

import smug
from smug.config import Config
from smug.errors import (
    BackendNotInstalledError,
    ConfigError,
    NonFiniteError,
    ShapeError,
    UnknownBackendError,
    ValidationError,
)
from smug.explain.api import MinimalMask, explain
from smug.zoo.data import load_digits


def _train(model: nn.Module, epochs: int = 30) -> nn.Module:
    X, y = load_digits()
    X, y = torch.tensor(X[:1200]), torch.tensor(y[:1200])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits_cnn():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    return _train(m)


@pytest.fixture(scope="module")
def digits_mlp():
    torch.manual_seed(0)
    return _train(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)))


@pytest.fixture(scope="module")
def test_images():
    X, y = load_digits()
    return torch.tensor(X[1500:1510]), y[1500:1510]


def _first_layer_pre(model: nn.Module, xs: torch.Tensor) -> np.ndarray:
    """Pre-activations of the first layer (BatchNorm included) through torch, float64."""
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m64[1](m64[0](xs.double())).flatten(1).numpy()


def test_models_are_real(digits_cnn, digits_mlp):
    X, y = load_digits()
    Xt, yt = torch.tensor(X[1200:]), y[1200:]
    for m in (digits_cnn, digits_mlp):
        with torch.no_grad():
            acc = (m(Xt).argmax(1).numpy() == yt).mean()
        assert acc > 0.85


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_mask_is_minimal_by_brute_force_through_torch(digits_cnn, test_images, gamma):
    # window 4 on 8x8: 4 groups, so every mask can be replayed through the real model
    x = test_images[0][0]
    e = explain(digits_cnn, x, backend="ortools:scip", top_k=8, gamma=gamma, window=4, time_limit=30)
    assert e.status == smug.Status.OPTIMAL and e.verified
    neurons = e.neurons
    orig = _first_layer_pre(digits_cnn, x[None])[0, neurons]
    ids = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 4, 0), 4, 1)
    best = None
    for bits in itertools.product([0, 1], repeat=4):
        keep = torch.from_numpy(np.array(bits)[ids]).float()
        pre = _first_layer_pre(digits_cnn, (x * keep)[None])[0, neurons]
        if np.all(pre > gamma * orig):
            best = sum(bits) if best is None else min(best, sum(bits))
    assert e.mask_size == best
    # the pixel mask is the group mask expanded
    assert e.mask.sum() == 16 * e.mask_size


@pytest.mark.parametrize("backend", ["ortools:scip", "ortools:cpsat", "z3", "pysmt:yices", "ortools:highs"])
def test_backends_agree_on_the_minimal_mask_size(digits_mlp, test_images, backend):
    x = test_images[0][3]
    ref = explain(digits_mlp, x, backend="ortools:scip", top_k=6, gamma=0.3, window=2, time_limit=60)
    e = explain(digits_mlp, x, backend=backend, top_k=6, gamma=0.3, window=2, time_limit=60)
    assert ref.status == e.status == smug.Status.OPTIMAL
    assert e.verified and e.mask_size == ref.mask_size
    assert e.stats["backend"] == backend and e.stats["version"]


def test_replay_holds_and_saliency_follows_the_rule(digits_cnn, test_images):
    x = test_images[0][1]
    e = explain(digits_cnn, x, top_k=10, gamma=0.2)
    assert e.verified and e.stats["max_replay_margin"] > 0
    pre_orig = _first_layer_pre(digits_cnn, x[None])[0]
    keep = torch.from_numpy(e.mask).float()
    pre_m = _first_layer_pre(digits_cnn, (x * keep)[None])[0]
    assert np.all(pre_m[e.neurons] > 0.2 * pre_orig[e.neurons])
    # saliency is zero outside the mask and equals the base map inside
    assert np.all(e.saliency[e.mask == 0] == 0)
    np.testing.assert_allclose(e.saliency[e.mask == 1], e.base_map[e.mask == 1])
    # base map: each pixel takes the max score of the kept neurons whose 3x3 field covers it
    oc, oh, ow = np.unravel_index(e.neurons, (4, 8, 8))
    expect = np.zeros((8, 8))
    covered = np.zeros((8, 8), bool)
    for _c, i, j, s in zip(oc, oh, ow, e.scores[e.neurons]):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                r, q = i + di, j + dj
                if 0 <= r < 8 and 0 <= q < 8:
                    expect[r, q] = s if not covered[r, q] else max(expect[r, q], s)
                    covered[r, q] = True
    np.testing.assert_allclose(e.base_map, expect)
    assert e.masked_prediction in range(10) and 0 <= e.complement_probability <= 1


def test_area_objective_and_segment_maps(digits_mlp, test_images):
    x = test_images[0][2]
    seg = np.zeros((8, 8), dtype=int)
    seg[:, 4:] = 1
    seg[6:, :] = 7  # ids need not be contiguous (Captum convention)
    e = explain(digits_mlp, x, feature_mask=seg, objective="area", top_k=4)
    assert e.status == smug.Status.OPTIMAL and e.verified
    assert len(e.mask_groups) == 3
    # every segment is kept or dropped whole
    for sid in (0, 1, 7):
        vals = np.unique(e.mask[seg == sid])
        assert vals.size == 1


def test_alternative_minimal_masks(digits_mlp, test_images):
    x = test_images[0][4]
    e = explain(digits_mlp, x, top_k=3, window=2, num_solutions=3)
    masks = [e.mask, *e.alternatives]
    assert len({m.tobytes() for m in masks}) == len(masks)
    assert all(m.sum() == e.mask.sum() for m in masks)


def test_minimal_mask_captum_style(digits_cnn, test_images):
    xs, ys = test_images
    mm = MinimalMask(digits_cnn, backend="ortools:scip", top_k=5)
    attr = mm.attribute(xs[:3], target=torch.tensor(ys[:3]), baselines=0.0)
    assert attr.shape == xs[:3].shape
    assert [e.target for e in mm.explanations] == list(ys[:3])
    for i, e in enumerate(mm.explanations):
        assert torch.equal(attr[i, 0], torch.from_numpy(e.saliency).float())
    attr2 = mm.attribute(
        xs[:2], baselines=torch.zeros_like(xs[:2]), feature_mask=torch.zeros(1, 1, 8, 8, dtype=torch.long)
    )
    assert attr2.shape == xs[:2].shape
    with pytest.raises(ShapeError, match="batch"):
        mm.attribute(xs[0])
    with pytest.raises(ShapeError, match="target has 2 entries"):
        mm.attribute(xs[:3], target=[1, 2])


def test_save_and_plot(digits_cnn, test_images, tmp_path):
    e = explain(digits_cnn, test_images[0][0], top_k=5)
    png = e.save(tmp_path / "e.png")
    assert png.stat().st_size > 5000
    d = json.loads(e.save(tmp_path / "e.json").read_text())
    assert d["verified"] and d["mask_size"] == e.mask_size and d["config"]["top_k"] == 5
    z = np.load(e.save(tmp_path / "e.npz"))
    assert np.array_equal(z["mask"], e.mask)
    with pytest.raises(ValidationError, match=".png, .json or .npz"):
        e.save(tmp_path / "e.gif")


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(x=torch.rand(2, 1, 8, 8)), ShapeError, "batch of 2"),
        (dict(x=torch.rand(8, 8)), ShapeError, r"\(C, H, W\)"),
        (dict(x=torch.zeros(1, 8, 8, dtype=torch.uint8)), ValidationError, "x.float"),
        (dict(x=torch.full((1, 8, 8), float("nan"))), NonFiniteError, "NaN"),
        (dict(target=10), ValidationError, "out of range"),
        (dict(target=-1), ValidationError, "out of range"),
        (dict(top_k=0), ConfigError, "top_k"),
        (dict(top_k=10_000), ValidationError, "exceeds"),
        (dict(gamma=1.0), ConfigError, "gamma"),
        (dict(window=9), ValidationError, "window"),
        (dict(feature_mask=np.zeros((5, 5), dtype=int)), ShapeError, "shape"),
        (dict(backend="ortools:sciq"), UnknownBackendError, "ortools:scip"),
        (dict(backend="pysmt:msat"), BackendNotInstalledError, "pysmt-install --msat"),
        (dict(baseline="blur"), ValidationError, "blur"),
        (dict(config=Config(baseline="mean"), gamma=0.99999999), ConfigError, "gamma"),
    ],
)
def test_bad_input_gets_a_named_error(digits_cnn, test_images, kwargs, error, words):
    x = kwargs.pop("x", test_images[0][0])
    with pytest.raises(error, match=words):
        explain(digits_cnn, x, **kwargs)


def test_unsupported_first_layer_is_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 4)
            self.out = nn.Linear(4, 10)

        def forward(self, x):
            return self.out(self.rnn(x[:, 0])[0][:, -1])

    with pytest.raises(ValidationError, match="rnn"):
        explain(Odd(), torch.rand(1, 8, 8))


def test_config_object_and_overrides(digits_mlp, test_images):
    cfg = Config(top_k=4, gamma=0.1)
    e = explain(digits_mlp, test_images[0][0], config=cfg, window=2)
    assert e.config.top_k == 4 and e.config.window == 2 and e.n_constraints <= 4


# --- MinimalMask as a Captum citizen -------------------------------------------------------


def test_minimal_mask_accepts_captum_input_and_target_forms(digits_mlp, test_images):
    xs, ys = test_images
    mm = MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2)
    ref = mm.attribute(xs[:3], target=torch.tensor(ys[:3]))
    (tup,) = mm.attribute((xs[:3],), target=torch.tensor(ys[:3]).view(3, 1))  # 1-tuple in, 1-tuple out
    assert torch.equal(tup, ref)
    as_np = mm.attribute(xs[:3].numpy(), target=[(int(t),) for t in ys[:3]])  # numpy in, numpy out
    assert isinstance(as_np, np.ndarray) and as_np.dtype == np.float32
    np.testing.assert_array_equal(as_np, ref.numpy())
    assert [e.target for e in mm.explanations] == list(ys[:3])
    with pytest.raises(ValidationError, match="tuple of 2 inputs"):
        mm.attribute((xs[:3], xs[:3]))
    with pytest.raises(ValidationError, match="multi-dimensional output"):
        mm.attribute(xs[:2], target=[(1, 2), (0, 1)])
    with pytest.raises(ShapeError, match=r"\(B,\) or \(B, 1\)"):
        mm.attribute(xs[:2], target=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValidationError, match="torch.stack"):
        mm.attribute([xs[0], xs[1]])
    with pytest.raises(ValidationError, match="floating point"):
        mm.attribute((xs[:2] * 255).to(torch.uint8))


def test_minimal_mask_keeps_the_models_and_inputs_dtype_and_the_model(digits_mlp, test_images):
    xs, ys = test_images
    m64 = copy.deepcopy(digits_mlp).double().train()
    mm = MinimalMask(m64, backend="ortools:scip", top_k=4, window=2)
    attr, status = mm.attribute(xs[:2].double(), target=torch.tensor(ys[:2]), return_status=True)
    assert attr.dtype == torch.float64 and attr.shape == xs[:2].shape
    assert m64.training and next(m64.parameters()).dtype == torch.float64  # the model as it was given
    assert [s["proven"] for s in status] == [True, True] and status == mm.statuses
    f32 = MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2).attribute(xs[:2], target=ys[:2].tolist())
    assert f32.dtype == torch.float32
    # a float32 input to a float64 model: attributions keep the input's dtype, masks are the same
    assert torch.equal((attr != 0), (f32 != 0))


def test_minimal_mask_warns_or_raises_on_an_unproven_sample(digits_mlp, test_images, monkeypatch):
    import smug.explain.api as api
    from smug.errors import UnprovenExplanationError, UnprovenExplanationWarning
    from smug.solving.contract import Status

    real = api.explain
    calls = []

    def one_times_out(*args, **kwargs):
        e = real(*args, **kwargs)
        calls.append(e)
        if len(calls) == 2:
            e.status = Status.FEASIBLE  # as a time-limited solve leaves it
        return e

    monkeypatch.setattr(api, "explain", one_times_out)
    xs, _ = test_images
    mm = MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2)
    with pytest.warns(UnprovenExplanationWarning, match=r"1 of 3 masks are not proven.*sample 1: feasible") as rec:
        mm.attribute(xs[:3])
    assert rec[0].filename == __file__  # the warning points at the caller's line
    assert [s["proven"] for s in mm.statuses] == [True, False, True]
    calls.clear()
    with pytest.raises(UnprovenExplanationError, match="sample 1"):
        MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2, on_unproven="raise").attribute(xs[:3])
    with pytest.raises(ValidationError, match="on_unproven"):
        MinimalMask(digits_mlp, on_unproven="maybe")
    with pytest.raises(ValidationError, match="n_jobs"):
        MinimalMask(digits_mlp, n_jobs=0)


def test_minimal_mask_in_worker_processes_equals_one_process(digits_mlp, test_images):
    xs, ys = test_images
    one = MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2)
    two = MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2, n_jobs=2, progress=False)
    a, b = one.attribute(xs[:4], target=ys[:4].tolist()), two.attribute(xs[:4], target=ys[:4].tolist())
    assert torch.equal(a, b)
    assert [e.mask_size for e in one.explanations] == [e.mask_size for e in two.explanations]
    assert one.statuses == two.statuses


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_minimal_mask_on_cuda_returns_attributions_on_the_inputs_device(digits_mlp, test_images):
    xs, ys = test_images
    model = copy.deepcopy(digits_mlp).cuda()
    attr = MinimalMask(model, backend="ortools:scip", top_k=4, window=2).attribute(
        xs[:2].cuda(), target=ys[:2].tolist()
    )
    assert attr.device.type == "cuda" and next(model.parameters()).device.type == "cuda"
    cpu = MinimalMask(digits_mlp, backend="ortools:scip", top_k=4, window=2).attribute(xs[:2], target=ys[:2].tolist())
    assert torch.equal((attr.cpu() != 0), (cpu != 0))
