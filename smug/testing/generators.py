"""Seeded generators of SMUG-like problems, for benchmarks and scaling studies.

They mimic what the image encoder produces for a first layer without needing a
trained model: a smooth, digit-like ``side x side`` image, a first layer that
is either fully connected (every mask variable in every row: *dense*) or a
convolution (each row touches one kernel-sized patch: *sparse*), windows of
pixels grouped into mask variables, and one strict row per kept neuron:
``pre_j(masked) >= gamma * pre_j(original) + margin``.  Because the
all-ones mask reproduces the original pre-activations, every generated problem
is feasible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ValidationError
from ..ir import Problem, ProblemBuilder

__all__ = ["smug_like_problem", "smooth_image", "random_binary_problem"]


def smooth_image(side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side x side`` image in [0, 1] made of a few Gaussian strokes (digit-like: mostly dark)."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = np.zeros((side, side))
    for _ in range(rng.integers(3, 6)):
        cy, cx = rng.uniform(0.25, 0.75, size=2)
        sy, sx = rng.uniform(0.03, 0.12, size=2)
        img += np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    return np.clip(img, 0, 1)


def _window_groups(side: int, window: int) -> sp.csr_matrix:
    cells = -(-side // window)
    r, c = np.mgrid[0:side, 0:side]
    gid = (r // window) * cells + (c // window)
    return sp.csr_matrix(
        (np.ones(side * side), (gid.ravel(), np.arange(side * side))), shape=(cells * cells, side * side)
    )


def smug_like_problem(
    n_mask: int,
    n_rows: int,
    *,
    kind: str = "dense",
    seed: int = 0,
    gamma: float = 0.5,
    side: int = 28,
    kernel: int = 5,
    margin: float = 1e-6,
) -> Problem:
    """A feasible SMUG-shaped problem with ``n_mask`` window variables and ``n_rows`` neuron rows.

    Args:
        n_mask: number of mask variables; must be ``(side / window)**2`` for an
            integer window (for ``side=28``: 784, 196, 49, 16, 4).
        n_rows: neurons kept (rows).  Only neurons with a positive original
            pre-activation are used, as in SMUG.
        kind: ``"dense"`` (fully connected first layer) or ``"sparse"`` (a
            ``kernel x kernel`` convolution; each row touches one patch).
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
        gamma: the SMUG threshold, in ``[0, 1)``.
        side: image side in pixels.
        kernel: convolution kernel size for ``kind="sparse"``.
        margin: the strict rows' margin.
    """
    if kind not in ("dense", "sparse"):
        raise ValidationError(f"kind must be 'dense' or 'sparse', got {kind!r}")
    if not 0 <= gamma < 1:
        raise ValidationError(f"gamma must be in [0, 1), got {gamma!r}")
    cells = int(round(np.sqrt(n_mask)))
    if cells * cells != n_mask or side % cells:
        raise ValidationError(f"n_mask={n_mask} is not (side/window)**2 for side={side} and an integer window")
    window = side // cells
    rng = np.random.default_rng(seed)
    img = smooth_image(side, rng).ravel()
    G = _window_groups(side, window)
    npx = side * side
    rows: list[np.ndarray] = []
    rhs: list[float] = []
    tries = 0
    while len(rows) < n_rows:
        tries += 1
        if tries > 50 * n_rows:
            raise ValidationError(f"could not draw {n_rows} active neurons; lower n_rows")
        w = np.zeros(npx)
        if kind == "dense":
            w = rng.normal(0.0, 1.0 / np.sqrt(npx), size=npx)
        else:
            r0, c0 = rng.integers(0, side - kernel + 1, size=2)
            k = rng.normal(0.0, 1.0 / kernel, size=(kernel, kernel))
            patch = np.zeros((side, side))
            patch[r0 : r0 + kernel, c0 : c0 + kernel] = k
            w = patch.ravel()
        bias = rng.normal(0.0, 0.05)
        contrib = G @ (w * img)  # one coefficient per mask variable
        pre = float(contrib.sum() + bias)
        if pre <= 1e-3:
            continue  # SMUG keeps only neurons that are active on the original input
        rows.append(contrib)
        rhs.append(gamma * pre - bias)
    b = ProblemBuilder()
    m = b.add_mask(n_mask, groups=G, input_shape=(1, side, side))
    A = np.vstack(rows)
    b.add_rows(sp.csr_matrix(A), ">=", np.array(rhs), strict=True, margin=margin)
    b.set_objective(m, 1.0)
    b.metadata.update(
        {
            "generator": "smug_like_problem",
            "n_mask": n_mask,
            "n_rows": n_rows,
            "kind": kind,
            "seed": seed,
            "gamma": gamma,
            "window": window,
        }
    )
    return b.build()


def random_binary_problem(rng: np.random.Generator, *, integral: bool, max_mask: int = 8) -> Problem:
    """A random pure-binary problem with mixed senses, strict rows and sometimes an equality; some are infeasible.

    Right-hand sides sit around a random point, so some problems are feasible and
    some not; with ``integral`` the objective has integer coefficients.  Small
    enough (at most ``max_mask`` mask variables and two extra binaries) for
    :func:`smug.testing.brute.brute_force`.
    """
    n = int(rng.integers(2, max_mask + 1))
    b = ProblemBuilder()
    b.add_mask(n)
    extra = b.add_binary(int(rng.integers(0, 3)))
    nv = n + extra.size
    k = int(rng.integers(1, 5))
    A = rng.normal(size=(k, nv)) * (rng.random((k, nv)) < 0.8)
    x0 = (rng.random(nv) < 0.6).astype(float)
    senses = rng.choice([">=", "<="], size=k)
    lhs0 = A @ x0
    # right-hand sides around a random point: some problems feasible, some not
    shift = rng.normal(scale=0.5, size=k)
    rhs = np.where(senses == ">=", lhs0 + shift, lhs0 - shift)
    strict = rng.random(k) < 0.5
    b.add_rows(A, senses.tolist(), rhs, strict=strict, margin=np.where(strict, 1e-4, 0.0))
    if rng.random() < 0.3:  # an equality over integer coefficients
        cols = rng.choice(nv, size=min(3, nv), replace=False)
        row = np.zeros(nv)
        row[cols] = 1.0
        b.add_rows(row[None, :], "==", [float(rng.integers(0, 3))])
    if integral:
        b.set_objective(np.arange(nv), rng.integers(-1, 4, size=nv).astype(float), constant=float(rng.integers(-2, 3)))
    else:
        b.set_objective(np.arange(nv), rng.normal(size=nv), constant=0.25)
    return b.build()
