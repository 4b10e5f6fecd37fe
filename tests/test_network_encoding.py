"""Full-network encoding: lowering and IR logits equal torch's float64 forward; bounds are sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from smug.encoders import feature_groups
from smug.encoders.network import (
    MaxPoolOp,
    encode_network,
    interval_bounds,
    linear_margin_bounds,
    lower_network,
)

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_nets(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """Random small CNNs: Conv2d / BatchNorm2d / ReLU / AvgPool2d / MaxPool2d / Dropout / Flatten / Linear."""
    seed = draw(st.integers(0, 10_000))
    torch.manual_seed(seed)
    C = draw(st.integers(1, 2))
    H = draw(st.integers(4, 6))
    W = draw(st.integers(4, 6))
    layers: list[nn.Module] = []
    c_out = draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    layers.append(
        nn.Conv2d(
            C,
            c_out,
            k,
            stride=draw(st.integers(1, 2)),
            padding=draw(st.integers(0, 1)),
            bias=draw(st.booleans()),
            padding_mode=draw(st.sampled_from(["zeros", "reflect"])) if k > 1 else "zeros",
        )
    )
    if draw(st.booleans()):
        bn = nn.BatchNorm2d(c_out)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
        layers.append(bn)
    layers.append(nn.ReLU())
    with torch.no_grad():
        _, _, h_out, w_out = nn.Sequential(*layers).eval()(torch.zeros(1, C, H, W)).shape
    pool = draw(st.sampled_from(["none", "avg", "max"])) if min(h_out, w_out) >= 2 else "none"
    if pool == "avg":
        layers.append(nn.AvgPool2d(2, stride=draw(st.integers(1, 2)), ceil_mode=draw(st.booleans())))
    elif pool == "max":
        layers.append(nn.MaxPool2d(2, stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1))))
    layers += [nn.Dropout(0.3), nn.Flatten()]
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():
        n_flat = model(torch.zeros(1, C, H, W)).shape[1]
    hidden = draw(st.integers(2, 6))
    tail = [nn.Linear(n_flat, hidden), nn.Identity()]
    if draw(st.booleans()):
        bn1 = nn.BatchNorm1d(hidden)
        bn1.running_mean.uniform_(-0.5, 0.5)
        bn1.running_var.uniform_(0.5, 2.0)
        tail.append(bn1)
    tail += [nn.ReLU(), nn.Linear(hidden, draw(st.integers(2, 4)))]
    model = nn.Sequential(model, *tail).eval()
    return model, (C, H, W)


@st.composite
def mlps(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """Random small MLPs on a (1, h, w) input: Flatten, Linear/ReLU stacks."""
    torch.manual_seed(draw(st.integers(0, 10_000)))
    h, w = draw(st.integers(2, 4)), draw(st.integers(2, 3))
    sizes = [h * w] + draw(st.lists(st.integers(2, 6), min_size=1, max_size=3)) + [draw(st.integers(2, 4))]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.pop()
    return nn.Sequential(*layers).eval(), (1, h, w)


def _torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    m = model.double().eval()
    with torch.no_grad():
        return m(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


@SETTINGS
@given(net=st.one_of(conv_nets(), mlps()), data=st.data())
def test_lowered_forward_equals_torch(net: tuple[nn.Module, tuple[int, ...]], data: st.DataObject) -> None:
    """The lowered network reproduces torch's float64 logits on random inputs."""
    model, shape = net
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    X = rng.uniform(-1, 1, size=(5, *shape))
    low = lower_network(model, shape)
    np.testing.assert_allclose(low.forward(X.reshape(5, -1)), _torch_logits(model, X), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(net=st.one_of(conv_nets(), mlps()), data=st.data())
def test_ir_logits_equal_torch_on_random_masks(net: tuple[nn.Module, tuple[int, ...]], data: st.DataObject) -> None:
    """Baseline masking: for random masks the IR assignment is feasible and its logits are torch's."""
    model, shape = net
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.uniform(0, 1, size=shape)
    base = rng.uniform(0, 1, size=shape) if data.draw(st.booleans()) else np.zeros(shape)
    ids = feature_groups(shape, window=data.draw(st.sampled_from([1, 2])))
    low = lower_network(model, shape)
    bounds = data.draw(st.sampled_from(["interval", "lp"]))
    enc = encode_network(low, x, 0, ids=ids, baseline=base, threshold=-1e9, bounds=bounds)
    p = enc.problem
    assert enc.n_relu == low.n_relu_neurons
    assert enc.n_unstable + enc.n_active + enc.n_inactive == enc.n_relu
    assert p.n_relu == enc.n_unstable  # stable ReLUs are linear, not ReLU constraints
    H, h0 = enc.logits
    G = int(ids.max()) + 1
    for _ in range(4):
        mask = rng.integers(0, 2, size=G).astype(np.float64)
        v = enc.complete(mask)
        ev = p.evaluate(v, tol=1e-9)
        assert ev.feasible, ev.summary()  # includes: every ReLU input inside its declared (sound) bounds
        kept = mask[ids.reshape(-1)]
        xm = (base.reshape(-1) + kept * (x.reshape(-1) - base.reshape(-1))).reshape(1, *shape)
        np.testing.assert_allclose(H @ v + h0, _torch_logits(model, xm)[0], rtol=1e-9, atol=1e-9)


@SETTINGS
@given(net=st.one_of(conv_nets(), mlps()), data=st.data())
def test_robust_encoding_and_bounds_sound(net: tuple[nn.Module, tuple[int, ...]], data: st.DataObject) -> None:
    """Robust masking: any completion inside the range fits the encoding; interval and linear bounds hold."""
    model, shape = net
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.uniform(0, 1, size=shape)
    ids = feature_groups(shape, window=1)
    G = int(ids.max()) + 1
    low = lower_network(model, shape)
    mask = rng.integers(0, 2, size=G).astype(np.float64)
    enc = encode_network(
        low, x, 0, ids=ids, masking="robust", input_range=(0.0, 1.0), threshold=1e9, output="counterexample"
    )
    kept = mask[ids.reshape(-1)] > 0
    lo, hi = np.where(kept, x.reshape(-1), 0.0), np.where(kept, x.reshape(-1), 1.0)
    ib = interval_bounds(low, lo, hi, 0)
    lin = linear_margin_bounds(low, lo, hi, 0)
    for _ in range(4):
        xc = np.where(kept, x.reshape(-1), rng.uniform(0, 1, size=kept.size))
        v = enc.complete(mask, inputs=xc)
        ev = enc.problem.evaluate(v, tol=1e-9)
        assert ev.feasible, ev.summary()
        lg = _torch_logits(model, xc.reshape(1, *shape))[0]
        np.testing.assert_allclose(enc.logits[0] @ v + enc.logits[1], lg, rtol=1e-9, atol=1e-9)
        llo, lhi = ib["logits"]
        assert np.all(lg >= llo - 1e-9) and np.all(lg <= lhi + 1e-9)
        marg = lg[0] - lg
        assert np.all(marg[1:] >= lin[1:] - 1e-9)
        assert np.all(lin[1:] >= ib["margin_lb"][1:] - 1e-12)  # never looser than intervals


def test_lp_bounds_tighter_or_equal() -> None:
    """LP tightening never leaves more unstable ReLUs than interval bounds (two hidden layers)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    shape = (1, 3, 3)
    x = np.random.default_rng(0).uniform(0, 1, size=shape)
    low = lower_network(model, shape)
    ids = feature_groups(shape, window=1)
    a = encode_network(low, x, 0, ids=ids, threshold=0.0, bounds="interval")
    b = encode_network(low, x, 0, ids=ids, threshold=0.0, bounds="lp")
    assert b.n_unstable <= a.n_unstable
    assert b.bounds_time > 0


def test_maxpool_is_encoded_with_relus() -> None:
    """MaxPool2d becomes a chain of ReLUs (k*k - 1 per output window)."""
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
    low = lower_network(model, (1, 4, 4))
    assert isinstance(low.ops[0], MaxPoolOp)
    assert low.n_relu_neurons == 4 * 3


def test_budget_bounds_stabilise_relus() -> None:
    """A kept-count budget tightens first-layer bounds: never more unstable ReLUs than without."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 3))
    shape = (1, 4, 4)
    x = np.random.default_rng(1).uniform(0, 1, size=shape)
    low = lower_network(model, shape)
    ids = feature_groups(shape, window=1)
    free = encode_network(low, x, 0, ids=ids, threshold=0.0)
    tight = encode_network(low, x, 0, ids=ids, threshold=0.0, max_kept=1)
    assert tight.n_unstable <= free.n_unstable
    with pytest.raises(ValueError):
        encode_network(low, x, 0, ids=ids, threshold=0.0, max_kept=-1)
