"""Full-network explanations: optima equal brute force; robust explanations resist completions and attacks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import smug
from smug.encoders import feature_groups
from smug.encoders.network import encode_network, lower_network
from smug.explain.network import NetworkExplanation, explain_network, network_problem
from smug.solving.contract import Status
from smug.solving.registry import get_backend
from smug.testing import brute_force

BACKENDS = ["ortools:scip", "ortools:highs", "ortools:cbc", "z3", "pysmt:yices"]


def _installed(name: str) -> bool:
    return get_backend(name).available()


def _net(seed: int, n_in: int = 8, hidden: int = 6, classes: int = 3, depth: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [n_in] + [hidden] * depth
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], classes))
    return nn.Sequential(*layers).eval()


def _margins(model: nn.Module, X: np.ndarray, target: int) -> np.ndarray:
    m = model.double()
    with torch.no_grad():
        lg = m(torch.from_numpy(np.ascontiguousarray(X))).numpy()
    others = np.delete(lg, target, axis=1)
    return lg[:, target] - others.max(axis=1)


def _brute_baseline(model: nn.Module, x: np.ndarray, target: int, threshold: float) -> float | None:
    """Smallest number of kept features whose masked input (zero baseline) keeps the margin >= threshold."""
    n = x.size
    masks = np.array(list(itertools.product((0.0, 1.0), repeat=n)))
    X = (masks * x.reshape(1, -1)).reshape(-1, *x.shape)
    ok = _margins(model, X, target) >= threshold
    return float(masks[ok].sum(axis=1).min()) if ok.any() else None


def _case(seed: int, n: int) -> tuple[nn.Module, np.ndarray]:
    model = _net(seed, n_in=n)
    x = np.random.default_rng(seed).uniform(0, 1, size=(1, 1, n))
    return model, x


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(4, 10))
def test_raw_encoding_optimum_equals_brute_force(backend: str, seed: int, n: int) -> None:
    """The backend's optimum of the plain cardinality encoding equals brute force over every mask."""
    if not _installed(backend):
        pytest.skip(f"{backend} not installed")
    model, x = _case(seed, n)
    p = network_problem(model, x, backend="ortools:scip", margin=1e-6)
    sol = smug.solve(p, backend, time_limit=20)
    pred = int(np.argmax(lower_network(model, x.shape).forward(x)))
    expect = _brute_baseline(model, x, pred, 1e-6)
    if expect is None:
        assert sol.status == Status.INFEASIBLE
    else:
        assert sol.status == Status.OPTIMAL, sol.message
        assert sol.verified
        assert sol.objective == expect


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(6, 12), window=st.sampled_from([1, (1, 2), (1, 3)]))
def test_explain_network_cardinality_equals_brute_force(seed: int, n: int, window: int | tuple[int, int]) -> None:
    """The pipeline (heuristic + budgeted MILP) finds the brute-force optimum, replayed in float64."""
    model, x = _case(seed, n)
    e = explain_network(model, x, backend="ortools:scip", window=window, time_limit=30)
    ids = feature_groups(x.shape, window=window).reshape(-1)
    G = int(ids.max()) + 1
    masks = np.array(list(itertools.product((0.0, 1.0), repeat=G)))
    X = (masks[:, ids] * x.reshape(1, -1)).reshape(-1, *x.shape)
    ok = _margins(model, X, e.target) >= 1e-6
    if not ok.any():
        assert e.status == Status.INFEASIBLE
        return
    assert e.status == Status.OPTIMAL and e.minimality == "cardinality"
    assert e.objective == masks[ok].sum(axis=1).min()
    assert e.verified and e.replay["masked_margin"] > 0
    assert e.bound == e.objective and e.gap == 0.0


def test_ir_brute_force_agrees_with_torch_brute_force() -> None:
    """smug.testing.brute_force over the IR (completed forward) finds the same optimum as masking in torch."""
    model, x = _case(5, 8)
    low = lower_network(model, x.shape)
    pred = int(np.argmax(low.forward(x)))
    ids = feature_groups(x.shape, window=1)
    enc = encode_network(low, x, pred, ids=ids, threshold=1e-6)
    best, _ = brute_force(enc.problem)
    assert best == _brute_baseline(model, x, pred, 1e-6)


def test_subset_minimal_baseline_is_one_minimal() -> None:
    """Baseline subset mode: valid, and dropping any single kept group breaks the margin."""
    model, x = _case(11, 12)
    e = explain_network(model, x, minimality="subset", time_limit=10)
    assert e.minimality in ("subset", "cardinality") and e.verified  # size 1 when the empty mask fails: optimal
    assert (e.minimality == "cardinality") == (e.mask_size <= 1)
    ids = feature_groups(x.shape, window=1).reshape(-1)
    for g in np.flatnonzero(e.mask_groups):
        m = e.mask_groups.copy()
        m[g] = 0
        xm = (m[ids] * x.reshape(-1)).reshape(1, *x.shape)
        assert _margins(model, xm, e.target)[0] < 1e-6


def _attack(model: nn.Module, x: np.ndarray, kept: np.ndarray, target: int, steps: int = 100) -> float:
    """An independent PGD (Adam on a sigmoid reparametrisation) over the masked features in [0, 1]."""
    m = model.double()
    free = torch.from_numpy(~kept.reshape(x.shape))
    xt = torch.from_numpy(x.copy())
    best = np.inf
    for restart in range(4):
        g = torch.Generator().manual_seed(restart)
        z = torch.randn((1, *x.shape), dtype=torch.float64, generator=g).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.3)
        for _ in range(steps):
            xc = torch.where(free, torch.sigmoid(z), xt)
            lg = m(xc)[0]
            others = torch.cat([lg[:target], lg[target + 1 :]])
            marg = lg[target] - others.max()
            best = min(best, float(marg.detach()))
            opt.zero_grad()
            marg.backward()
            opt.step()
    return best


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(4, 9), depth=st.integers(1, 2))
def test_robust_subset_explanations(seed: int, n: int, depth: int) -> None:
    """Robust + subset: no completion changes the class; every kept feature has a replay-confirmed counterexample."""
    model = _net(seed, n_in=n, depth=depth)
    x = np.random.default_rng(seed).uniform(0, 1, size=(1, 1, n))
    e = explain_network(model, x, masking="robust", minimality="subset", time_limit=30, input_range=(0.0, 1.0))
    assert e.status == Status.FEASIBLE, e.stats
    assert e.minimality == "subset"
    kept = e.mask.reshape(-1) > 0.5
    rng = np.random.default_rng(0)
    R = np.where(kept, x.reshape(-1), rng.uniform(0, 1, size=(2000, n))).reshape(-1, *x.shape)
    assert (_margins(model, R, e.target) > 0).all()
    assert _attack(model, x, kept, e.target) > 0
    assert e.verified
    near = set(e.stats.get("near_groups", []))
    for g in np.flatnonzero(e.mask_groups):
        if int(g) in near:
            continue
        w = e.witnesses[int(g)].reshape(-1)
        allowed = kept.copy()
        allowed[g] = False
        assert np.all(w[allowed] == x.reshape(-1)[allowed])  # only masked features (and g) move
        assert np.all((w >= 0) & (w <= 1))
        assert _margins(model, w.reshape(1, *x.shape), e.target)[0] <= 0  # the class no longer wins


def test_robust_cardinality_is_optimal_and_valid() -> None:
    """Robust + cardinality: proven optimal, no larger than the subset-minimal mask, and valid."""
    model = _net(7, n_in=6)
    x = np.random.default_rng(7).uniform(0, 1, size=(1, 1, 6))
    sub = explain_network(model, x, masking="robust", minimality="subset", time_limit=30)
    card = explain_network(model, x, masking="robust", minimality="cardinality", time_limit=30)
    assert card.status == Status.OPTIMAL and card.minimality == "cardinality"
    assert card.objective <= sub.objective
    assert card.bound == card.objective
    assert card.verified
    kept = card.mask.reshape(-1) > 0.5
    assert _attack(model, x, kept, card.target) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_counterexample_queries_agree_and_replay(backend: str) -> None:
    """The robust verification query: every backend agrees with SCIP, and witnesses replay below the margin."""
    if not _installed(backend):
        pytest.skip(f"{backend} not installed")
    rng = np.random.default_rng(0)
    for seed in range(4):
        model = _net(seed, n_in=6, depth=2)
        x = rng.uniform(0, 1, size=(1, 1, 6))
        low = lower_network(model, x.shape)
        pred = int(np.argmax(low.forward(x)))
        ids = feature_groups(x.shape, window=1)
        mask = rng.integers(0, 2, size=6).astype(np.float64)
        enc = encode_network(
            low, x, pred, ids=ids, masking="robust", threshold=0.0, output="counterexample", fixed_mask=mask
        )
        ref = smug.solve(enc.problem, "ortools:scip", time_limit=20)
        sol = smug.solve(enc.problem, backend, time_limit=20)
        assert (sol.status == Status.INFEASIBLE) == (ref.status == Status.INFEASIBLE), (sol.status, ref.status)
        if sol.status.has_solution:
            assert sol.verified
            w = sol.assignment[enc.input_vars]
            kept = mask[ids.reshape(-1)] > 0
            assert np.allclose(w[kept], x.reshape(-1)[kept])
            assert _margins(model, w.reshape(1, *x.shape), pred)[0] <= 1e-6


@pytest.mark.parametrize("backend", ["z3", "pysmt:yices", "ortools:highs"])
def test_robust_other_backends(backend: str) -> None:
    """SMT and other MILP backends run the robust verification queries too."""
    if not _installed(backend):
        pytest.skip(f"{backend} not installed")
    model = _net(3, n_in=6)
    x = np.random.default_rng(3).uniform(0, 1, size=(1, 1, 6))
    ref = explain_network(model, x, masking="robust", minimality="subset", time_limit=30)
    # the backend answers every exact check (verifier="solver"); the default answers them by LP branch and bound
    e = explain_network(
        model, x, masking="robust", minimality="subset", time_limit=30, backend=backend, verifier="solver"
    )
    assert e.verified and e.minimality == "subset"
    assert e.stats["solver_calls"] > 0 or e.stats["stages"]["solver_checks"] == 0
    assert np.array_equal(e.mask_groups, ref.mask_groups)  # same deletion order, exact checks: same result


def test_explanation_to_dict_and_save(tmp_path: object) -> None:
    """to_dict is JSON-serialisable; save writes json, npz and png."""
    import json
    from pathlib import Path

    model, x = _case(2, 6)
    e = explain_network(model, x, masking="robust", minimality="subset", time_limit=10)
    assert isinstance(e, NetworkExplanation)
    json.dumps(e.to_dict())
    d = Path(str(tmp_path))
    for suffix in (".json", ".npz", ".png"):
        assert e.save(d / f"e{suffix}").exists()


def test_every_relu_backend_solves_the_encoding() -> None:
    """Every installed backend that takes real variables finds the brute-force optimum; the others refuse."""
    from smug.errors import UnsupportedProblemError
    from smug.solving.registry import backend_names

    model, x = _case(21, 6)
    pred = int(np.argmax(lower_network(model, x.shape).forward(x)))
    expect = _brute_baseline(model, x, pred, 1e-6)
    p = network_problem(model, x, margin=1e-6)
    for name in backend_names():
        be = get_backend(name)
        if not be.available():
            continue
        if not be.capabilities.real_vars:
            with pytest.raises(UnsupportedProblemError):
                smug.solve(p, name, time_limit=10)
            continue
        sol = smug.solve(p, name, time_limit=20)
        assert sol.status == Status.OPTIMAL and sol.objective == expect, (name, sol.status, sol.message)


@pytest.mark.parametrize(("seed", "backend"), [(0, "ortools:scip"), (2, "ortools:scip"), (2, "z3")])
def test_robust_checks_in_a_session_equal_fresh_checks(seed: int, backend: str) -> None:
    """The deletion loop and the hitting-set master in open sessions reach the same optimum as fresh solves."""
    model = _net(seed, n_in=8, depth=2)
    x = np.random.default_rng(seed).uniform(0, 1, size=(1, 1, 8))
    # the solver verifier: its checks go to the session (the default one decides them by LP branch and bound)
    kw = dict(
        masking="robust", minimality="cardinality", time_limit=30, backend=backend, verifier="solver",
        traversal="sequential",
    )  # fmt: skip
    fresh = explain_network(model, x, sessions=False, **kw)
    ses = explain_network(model, x, **kw)
    assert ses.stats["session_checks"] >= 1 and "session_checks" not in fresh.stats  # the session really ran
    assert ses.status == fresh.status == Status.OPTIMAL
    assert ses.objective == fresh.objective
    assert np.array_equal(ses.mask_groups, fresh.mask_groups)
    kept = ses.mask.reshape(-1) > 0.5
    assert _attack(model, x, kept, ses.target) > 0
