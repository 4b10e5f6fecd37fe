"""CROWN by sparse back-substitution through convolutions and max-pooling (:class:`SparseCrown`).

Properties: on random small CNNs (overlapping and padded pooling windows,
pooling right after the input, pooling before a ReLU) every margin bound is at
most the sampled and vertex minimum and never below the interval bound; every
layer bound contains every sampled value entering its layer; on MLPs it is at
least as tight as the dense CROWN of :class:`BatchBounds` (same relaxation,
plus early concretisation); the encoding with those layer bounds gives z3's
exact verdict; and on the shipped CNN it proves boxes the old bounds (intervals
up to the last pooling layer) could not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_network_encoding import conv_nets  # tests/ is on sys.path (pytest's rootdir-relative import)
from torch import nn

import smug
from smug.encoders.bounds import BatchBounds, SparseCrown
from smug.encoders.network import AffineOp, MaxPoolOp, ReluOp, encode_network, interval_bounds, lower_network
from smug.errors import ShapeError
from smug.solving.contract import Status

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _samples(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, n: int = 1500) -> np.ndarray:
    return np.vstack([lo + rng.random((n, lo.size)) * (hi - lo), np.where(rng.random((n, lo.size)) < 0.5, lo, hi)])


def _layer_values(net, S: np.ndarray) -> list[np.ndarray]:
    """The values entering every ReLU and max-pooling layer, for a batch of inputs."""
    out, h = [], S
    for op in net.ops:
        if isinstance(op, AffineOp):
            h = (op.W @ h.T).T + op.b
        elif isinstance(op, ReluOp):
            out.append(h)
            h = np.maximum(h, 0)
        else:
            assert isinstance(op, MaxPoolOp)
            out.append(h)
            w = op.windows
            h = np.where(w[None] >= 0, h[:, np.maximum(w, 0)], -np.inf).max(axis=2)
    return out


def _hostile_cnns() -> list[tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    return [
        # overlapping, padded pooling windows between two convolutions
        (nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2, stride=1, padding=1), nn.Conv2d(3, 2, 2),
                       nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 4)).double(), (1, 6, 6)),
        # pooling straight on the input, then before a ReLU
        (nn.Sequential(nn.MaxPool2d(2, stride=1), nn.Conv2d(1, 2, 2), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                       nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)).double(), (1, 6, 6)),
    ]  # fmt: skip


def _check_box(net, lo, hi, t, rng):
    sc = SparseCrown(net, t)
    mlb, layers = sc.bounds(lo, hi)
    S = _samples(lo, hi, rng)
    lg = net.forward(S)
    truth = (lg[:, [t]] - lg).min(axis=0)
    truth[t] = np.inf
    assert np.all(mlb <= truth), (mlb, truth)
    ib = interval_bounds(net, lo, hi, t)["margin_lb"]
    assert np.all(mlb >= ib - 1e-6)
    vals = _layer_values(net, S)
    assert len(vals) == len(layers)
    for v, (low, upp) in zip(vals, layers, strict=True):
        assert np.all(v >= low) and np.all(v <= upp)
    return mlb, ib


@pytest.mark.parametrize("case", [0, 1])
def test_hostile_cnns_bounds_are_sound(case):
    model, shape = _hostile_cnns()[case]
    net = lower_network(model, shape)
    rng = np.random.default_rng(case)
    gains = []
    for eps in (0.02, 0.1, 0.3, 1.0):
        x = rng.random(int(np.prod(shape)))
        t = int(net.forward(x).argmax())
        lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
        mlb, ib = _check_box(net, lo, hi, t, rng)
        fin = np.isfinite(mlb)
        gains.append((mlb[fin] - ib[fin]).mean())
    assert max(gains) > 1e-3  # the back-substitution really tightens something on these networks


@SETTINGS
@given(conv_nets(), st.floats(0.01, 0.5), st.integers(0, 1000))
def test_random_cnns_bounds_are_sound(case, eps, seed):
    model, shape = case
    net = lower_network(model.double().eval(), shape)
    rng = np.random.default_rng(seed)
    x = rng.random(int(np.prod(shape)))
    t = int(net.forward(x).argmax())
    _check_box(net, np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1), t, rng)


@pytest.mark.parametrize("hidden", [(8,), (7, 7, 7)])
def test_on_mlps_at_least_as_tight_as_dense_crown(hidden):
    torch.manual_seed(1)
    layers: list[nn.Module] = [nn.Flatten()]
    w = 6
    for h in hidden:
        layers += [nn.Linear(w, h), nn.ReLU()]
        w = h
    net = lower_network(nn.Sequential(*layers, nn.Linear(w, 3)).double(), (6,))
    rng = np.random.default_rng(0)
    x = rng.random(6)
    t = int(net.forward(x).argmax())
    eps = rng.uniform(0.05, 0.6, size=(20, 1))
    LO, HI = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    dense = BatchBounds(net, t).crown(LO, HI)
    sparse = SparseCrown(net, t).margins(LO, HI)
    fin = np.isfinite(dense)
    assert np.all(sparse[fin] >= dense[fin] - 1e-7)
    for i in range(LO.shape[0]):
        _check_box(net, LO[i], HI[i], t, rng)


def test_layer_bounds_keep_the_exact_verdict():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Flatten(),
                          nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)).double()  # fmt: skip
    shape = (1, 4, 4)
    net = lower_network(model, shape)
    rng = np.random.default_rng(7)
    answers = set()
    for frac in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.5):
        x = rng.random(16)
        t = int(net.forward(x).argmax())
        lo, hi = np.clip(x - 0.2, 0, 1), np.clip(x + 0.2, 0, 1)
        mlb, layers = SparseCrown(net, t).bounds(lo, hi)
        lg = net.forward(_samples(lo, hi, rng))
        sampled = np.delete((lg[:, [t]] - lg).min(axis=0), t).min()
        delta = float(mlb.min() + frac * (sampled - mlb.min()))  # from "bounds prove it" to "refuted"
        ids = np.arange(16).reshape(shape)
        verdicts = []
        for lb in (None, layers):
            enc = encode_network(net, x, t, ids=ids, masking="robust", input_range=(lo, hi), threshold=delta,
                                 output="counterexample", fixed_mask=np.zeros(16), layer_bounds=lb)  # fmt: skip
            if enc.trivially_valid:
                verdicts.append(True)
                continue
            sol = smug.solve(enc.problem, "z3", time_limit=60)
            assert sol.status in (Status.INFEASIBLE, Status.OPTIMAL, Status.FEASIBLE), sol.message
            verdicts.append(sol.status == Status.INFEASIBLE)
        assert verdicts[0] == verdicts[1]
        answers.add(verdicts[0])
    assert answers == {True, False}


def test_layer_bounds_cut_unstable_relus():
    model, shape = _hostile_cnns()[0]
    net = lower_network(model, shape)
    rng = np.random.default_rng(2)
    counts = []
    for eps in (0.05, 0.1, 0.2, 0.4):
        x = rng.random(36)
        t = int(net.forward(x).argmax())
        lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
        _, layers = SparseCrown(net, t).bounds(lo, hi)
        kw = dict(ids=np.arange(36).reshape(shape), masking="robust", input_range=(lo, hi), output="counterexample",
                  fixed_mask=np.zeros(36))  # fmt: skip
        counts.append([encode_network(net, x, t, layer_bounds=lb, **kw).n_unstable for lb in (None, layers)])
    assert all(b <= a for a, b in counts) and any(b < a for a, b in counts), counts


def test_layer_bounds_of_the_wrong_shape_are_named():
    model, shape = _hostile_cnns()[0]
    net = lower_network(model, shape)
    x = np.full(36, 0.5)
    kw = dict(ids=np.arange(36).reshape(shape), masking="robust", input_range=(0.0, 1.0), output="counterexample")
    _, layers = SparseCrown(net, 0).bounds(np.zeros(36), np.ones(36))
    with pytest.raises(ShapeError, match="layer_bounds holds 3 pairs"):
        encode_network(net, x, 0, layer_bounds=layers[:3], **kw)
    with pytest.raises(ShapeError, match="layer_bounds: a pair has"):
        encode_network(net, x, 0, layer_bounds=[(lo[:-1], hi[:-1]) for lo, hi in layers], **kw)
    with pytest.raises(ValueError, match="must both hold 36 values"):
        SparseCrown(net, 0).bounds(np.zeros(35), np.ones(35))


def test_the_shipped_cnn_proves_boxes_the_old_bounds_could_not():
    from smug.zoo.data import load_mnist
    from smug.zoo.models import pretrained

    model = pretrained("mnist_cnn", progress=False)
    net = lower_network(model.double().eval(), (1, 28, 28))
    X, _ = load_mnist("test")
    x0 = np.asarray(X[0], dtype=np.float64).reshape(-1)
    t = int(net.forward(x0).argmax())
    rng = np.random.default_rng(0)
    free = rng.random(784) < 0.3  # 30 % of the pixels free in the 0.05 ball
    lo, hi = np.where(free, np.clip(x0 - 0.05, 0, 1), x0), np.where(free, np.clip(x0 + 0.05, 0, 1), x0)
    bb = BatchBounds(net, t)
    old = bb.interval(lo, hi)[0]
    new, _ = SparseCrown(net, t).bounds(lo, hi)
    assert new.min() > 0 >= old.min()
    assert np.allclose(bb.crown(lo, hi)[0], new)  # BatchBounds.crown takes this path for pooled networks


@SETTINGS
@given(conv_nets(), st.integers(0, 1000))
def test_pools_as_relus_computes_the_same_network(case, seed):
    from smug.encoders.network import pools_as_relus
    from smug.explain.lpbab import _supported

    model, shape = case
    net = lower_network(model.double().eval(), shape)
    r = pools_as_relus(net)
    X = np.random.default_rng(seed).normal(size=(64, int(np.prod(shape))))
    assert np.allclose(r.forward(X), net.forward(X), rtol=1e-12, atol=1e-12)
    assert not any(isinstance(op, MaxPoolOp) for op in r.ops)
    assert _supported(r)  # alternating affine and ReLU layers: the branch and bound takes it


def test_a_small_cnn_goes_to_the_branch_and_bound_and_a_large_one_does_not():
    from smug.explain.lpbab import bab_network
    from smug.zoo.models import pretrained

    model, shape = _hostile_cnns()[0]
    net = lower_network(model, shape)
    r = bab_network(net)
    assert r is not None and r is not net
    big = lower_network(pretrained("mnist_cnn", progress=False).double().eval(), (1, 28, 28))
    assert bab_network(big) is None


def test_a_small_cnn_robust_explanation_is_exactly_proven_and_subset_minimal():
    from smug.explain.network import explain_network

    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 6), nn.ReLU(),
                          nn.Linear(6, 3)).double()  # fmt: skip
    x = np.random.default_rng(2).random((1, 1, 5, 5))
    rng_ = (np.clip(x[0] - 0.5, 0, 1), np.clip(x[0] + 0.5, 0, 1))
    e = explain_network(model, torch.from_numpy(x), masking="robust", minimality="subset", time_limit=60,
                        input_range=rng_)  # fmt: skip
    assert e.minimality == "subset" and e.verified
    assert e.stats["final_check"] == "bab" and e.stats["bab_nodes"] > 0  # the pooled network went to the BaB
    kept = [int(g) for g in np.flatnonzero(e.mask_groups)]
    assert kept
    assert sorted(e.witnesses) == sorted(kept)
    net = lower_network(model, (1, 5, 5))
    t = e.target
    for g in kept:  # each kept pixel's counterexample: inside the box with it freed, and below delta
        w = np.asarray(e.witnesses[g]).reshape(-1)
        lg = net.forward(w)
        assert lg[t] - np.delete(lg, t).max() <= 0


def test_longest_prefix_finds_the_threshold_in_logarithmically_many_calls():
    from smug.explain.network import _longest_prefix

    for n in (1, 2, 3, 7, 50, 196):
        for thr in range(0, n + 1):
            calls = []

            def proven(k, n=n, thr=thr, calls=calls):
                calls.append(k)
                assert 1 <= k <= n
                return k <= thr

            assert _longest_prefix(n, proven) == thr
            assert len(calls) <= 2 * int(np.ceil(np.log2(n + 1))) + 1
