"""Full-network explanations: the smallest input mask that keeps the prediction itself.

The first-layer SMUG constraints only keep selected neurons active.  Here the
question is asked of the whole network (the SMUG paper's MNIST experiment):
find a minimal set of input groups such that, with only those kept, the
explained class's logit beats every other logit by at least ``delta``.

Two meanings of "masked" (``Config.masking``):

* ``"baseline"``: a masked feature takes its baseline value (the paper's
  setting).  The masked input is a function of the mask, so the question is a
  0-1 MILP / SMT problem over the mask alone.
* ``"robust"``: a masked feature may take *any* value in ``input_range``; the
  kept features alone must guarantee the prediction, whatever the rest is.  That
  is a formally sufficient (abductive) explanation, compare VeriX.  Checking a
  mask is a satisfiability query over real input variables tied to the mask:
  *is there a completion that changes the answer?*

Two kinds of minimality (``Config.minimality``):

* ``"cardinality"``: the fewest groups.  Baseline masking: one MILP / SMT
  optimisation, warm-started by a heuristic mask whose size becomes a budget
  that tightens the first layer's bounds.  Robust masking: an implicit
  hitting-set loop (a 0-1 master over counterexamples + a verification query).
  With a time limit, the best mask comes with a proven lower bound and gap.
* ``"subset"``: a deletion loop drops groups one by one, each check a
  satisfiability query (for baseline masking the query has exactly one
  candidate input, so it is decided by evaluating the network; for robust
  masking: interval bounds first, then a gradient attack, then the solver).
  For robust masking validity is monotone, so the result is subset-minimal;
  for baseline masking it is minimal with respect to removing any single group.

Every mask and every counterexample is replayed through the real model in
float64.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..encoders.groups import feature_groups, group_areas
from ..encoders.image import make_baseline
from ..encoders.network import (
    LoweredNetwork,
    MaxPoolOp,
    NetworkEncoding,
    encode_network,
    linear_margin_bounds,
    lower_network,
)
from ..errors import BoundsError, NonFiniteError, ShapeError, UnsupportedProblemError, ValidationError
from ..ir import Problem, ProblemBuilder
from ..solving.contract import Solution, Status
from ..solving.deadline import Deadline
from ..solving.registry import get_backend, require_installed
from ..solving.run import solve
from ..solving.session import open_session
from .common import check_finite_model, guarded_forward, restores_modes
from .results import save_explanation

__all__ = ["NetworkExplanation", "explain_network", "network_problem", "MINIMALITY_KINDS"]

#: Values of :attr:`NetworkExplanation.minimality`.
MINIMALITY_KINDS = ("cardinality", "subset", "none")


@dataclass
class NetworkExplanation:
    """A full-network explanation of one prediction.

    Attributes:
        mask: 0/1 array shaped like the input: the kept features.
        mask_groups: 0/1 per group (mask variable).
        status: ``optimal`` (cardinality-minimal, proven), ``feasible`` (a valid
            mask, minimality as :attr:`minimality` says), ``infeasible`` (no mask
            can meet ``delta``), ``timeout`` (no valid mask found in time),
            ``unknown`` or ``error``.
        minimality: ``"cardinality"`` (proven fewest groups), ``"subset"`` (no
            kept group can be dropped; for baseline masking: no *single* group)
            or ``"none"``.
        target: the explained class; ``prediction`` the model's class on the input.
        objective: the mask's size (groups, or pixel area with ``objective="area"``).
        bound: proven lower bound on the smallest valid mask; ``gap`` =
            ``(objective - bound) / max(1, objective)``.
        n_relu: ReLUs in the encoded network; ``n_unstable``: how many of them the
            bounds could not fix (the rest are linear).
        verified: the float64 replay agrees: baseline masking: the masked input's
            margin is at least ``delta`` (and positive); robust masking: the
            verification query proved the mask and no random completion nor the
            gradient attack found a counterexample.
        replay: the replay's numbers (margins, attack results).
        witnesses: robust masking: for each kept group, a completion of the
            input that changes the answer when that group is dropped too
            (replay-confirmed), as arrays shaped like the input.
        input: the explained input.
        stats: timings, backend, version, checks, solver calls and more.
        config: the configuration used.
    """

    mask: np.ndarray
    mask_groups: np.ndarray
    status: Status
    minimality: str
    target: int
    prediction: int
    objective: float | None
    bound: float | None
    gap: float | None
    n_relu: int
    n_unstable: int
    verified: bool
    replay: dict[str, Any] = field(default_factory=dict)
    witnesses: dict[int, np.ndarray] = field(default_factory=dict)
    input: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stats: dict[str, Any] = field(default_factory=dict)
    config: Config = field(default_factory=Config)

    @property
    def mask_size(self) -> int:
        """Number of kept groups."""
        return int(np.asarray(self.mask_groups).sum())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no input, no witnesses): for JSON reports and tables."""
        return {
            "status": self.status.value,
            "minimality": self.minimality,
            "verified": self.verified,
            "target": self.target,
            "prediction": self.prediction,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "mask_size": self.mask_size,
            "n_relu": self.n_relu,
            "n_unstable": self.n_unstable,
            "n_witnesses": len(self.witnesses),
            "mask": np.asarray(self.mask).astype(int).tolist(),
            "replay": _jsonable(self.replay),
            "stats": _jsonable(self.stats),
            "config": self.config.to_dict(),
        }

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Input and kept features side by side; returns the matplotlib figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(1, 2, figsize=(6.4, 3.2))
        else:
            fig = ax[0].figure
        img = np.asarray(self.input, dtype=np.float64)
        msk = np.asarray(self.mask, dtype=np.float64)
        if img.ndim == 3:
            show = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
            kept = msk.max(axis=0)
        elif img.ndim == 2:
            show, kept = img, msk
        else:
            show, kept = img.reshape(1, -1), msk.reshape(1, -1)
        lo, hi = float(np.min(show)), float(np.max(show))
        norm = (show - lo) / (hi - lo) if hi > lo else show * 0
        ax[0].imshow(norm, cmap="gray" if norm.ndim == 2 else None)
        ax[0].set_title(f"input: class {self.prediction}")
        ax[1].imshow(norm, cmap="gray" if norm.ndim == 2 else None, alpha=0.35)
        ax[1].imshow(np.ma.masked_where(kept == 0, kept), cmap="autumn", alpha=0.9, vmin=0, vmax=1)
        kind = self.config.masking
        ax[1].set_title(f"{kind} mask: {self.mask_size} groups ({self.status.value}, {self.minimality})", fontsize=8)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig

    def save(self, path: str | Path) -> Path:
        """Save as ``.png`` (the plot), ``.json`` (:meth:`to_dict`) or ``.npz`` (arrays and witnesses)."""
        return save_explanation(
            path,
            self.to_dict,
            lambda: {
                "mask": self.mask,
                "mask_groups": self.mask_groups,
                "input": self.input,
                **{f"witness_{g}": w for g, w in self.witnesses.items()},
            },
            figure=self.plot,
        )


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


# ------------------------------------------------------------------ context
def _per_feature(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    a = np.asarray(value, dtype=np.float64)
    n = int(np.prod(shape))
    if a.size == n:
        a = a.reshape(-1)
    else:
        while a.ndim > len(shape) and a.shape[0] == 1:
            a = a[0]
        try:
            a = np.broadcast_to(a, shape).reshape(-1)
        except ValueError:
            raise ShapeError(
                f"{name} has shape {a.shape}, which does not broadcast to the input shape {shape}"
            ) from None
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{name} contains NaN or infinite values")
    return a.copy()


def _split_ranges(overrides: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, Any] | None]:
    """Per-feature ``input_range`` arrays go to the pipeline; a pair of numbers stays a config field."""
    r = overrides.get("input_range")
    if r is None:
        return overrides, None
    if isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r):
        return overrides, None
    if not isinstance(r, (tuple, list)) or len(r) != 2:
        raise ValidationError("input_range must be a pair (low, high) of numbers or of arrays like the input")
    rest = {k: v for k, v in overrides.items() if k != "input_range"}
    return rest, (r[0], r[1])


class _Context:
    """Everything about one explanation request: model, input, groups, ranges, checks."""

    def __init__(
        self,
        model: nn.Module,
        x: Any,
        target: int | None,
        cfg: Config,
        baseline: Any,
        feature_mask: Any,
        ranges: tuple[Any, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.cfg = cfg
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.array(x))
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the input must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if not torch.is_floating_point(x):
            raise ValidationError(f"the input has dtype {x.dtype}; smug needs floating point")
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ShapeError(
                    f"explain_network() takes one input, got a batch of {x.shape[0]} (shape {tuple(x.shape)}); "
                    "explain each input on its own"
                )
            x = x[0]
        if not torch.isfinite(x).all():
            raise NonFiniteError("the input contains NaN or infinite values")
        self.x = x.detach().double().cpu().numpy().copy()
        self.shape = tuple(self.x.shape)
        check_finite_model(model)
        p0 = next(model.parameters(), None)
        dtype = p0.dtype if p0 is not None and torch.is_floating_point(p0) else torch.float32
        # the model as the caller runs it (its own dtype) must give finite logits, not only the float64 copy
        guarded_forward(model.eval(), torch.from_numpy(self.x.copy()).to(dtype).unsqueeze(0))
        self.model = copy.deepcopy(model).double().cpu().eval()
        logits, _ = guarded_forward(self.model, torch.from_numpy(self.x.copy()).unsqueeze(0))
        self.logits = logits[0].numpy().copy()
        self.n_classes = int(self.logits.shape[0])
        self.prediction = int(np.argmax(self.logits))
        if target is None:
            target = self.prediction
        if isinstance(target, torch.Tensor):
            target = int(target.item())
        if (
            isinstance(target, bool)
            or not isinstance(target, (int, np.integer))
            or not 0 <= int(target) < self.n_classes
        ):
            raise ValidationError(
                f"target {target!r} is out of range: the model has {self.n_classes} classes (0..{self.n_classes - 1})"
            )
        self.target = int(target)
        t0 = time.perf_counter()
        self.net: LoweredNetwork = lower_network(self.model, self.shape)
        self.lower_time = time.perf_counter() - t0
        own = self.net.forward(self.x)
        if own.shape[0] != self.n_classes or not np.allclose(own, self.logits, rtol=1e-7, atol=1e-7):
            raise ValidationError(
                "the lowered network does not reproduce the model's logits; "
                "the model's forward() must be its nn.Sequential layers in order"
            )
        # groups
        if feature_mask is not None:
            if isinstance(feature_mask, torch.Tensor):
                feature_mask = feature_mask.detach().cpu().numpy()
            self.ids = feature_groups(self.shape, feature_mask=feature_mask)
        else:
            self.ids = feature_groups(self.shape, window=cfg.window)
        self.flat_ids = self.ids.reshape(-1)
        self.n_groups = int(self.ids.max()) + 1
        self.weights = group_areas(self.ids).astype(np.float64) if cfg.objective == "area" else np.ones(self.n_groups)
        # masking
        self.delta = float(cfg.delta)
        self.threshold = self.delta + float(cfg.margin)  # what the encodings demand (margin absorbs solver tolerance)
        x0 = self.x.reshape(-1)
        if cfg.masking == "baseline":
            self.base = make_baseline(self.x, cfg.baseline if baseline is None else baseline).reshape(-1)
            self.lo = self.hi = None
        else:
            if baseline is not None:
                raise ValidationError("baseline= is meaningless with masking='robust'; set input_range instead")
            lo_v, hi_v = cfg.input_range if ranges is None else ranges
            self.lo = _per_feature("input_range low", lo_v, self.shape)
            self.hi = _per_feature("input_range high", hi_v, self.shape)
            if (self.lo > self.hi).any():
                i = int(np.flatnonzero(self.lo > self.hi)[0])
                raise BoundsError(
                    f"input_range is empty at feature {i}: low {self.lo[i]!r} is above high {self.hi[i]!r}"
                )
            out = (x0 < self.lo) | (x0 > self.hi)
            if out.any():
                i = int(np.flatnonzero(out)[0])
                raise BoundsError(
                    f"the input has {int(out.sum())} feature(s) outside input_range {tuple(cfg.input_range)!r} "
                    f"(first: feature {i} = {x0[i]!r}); a robust explanation needs the input inside the range"
                )
            self.base = None
        # backend
        be = get_backend(cfg.backend, **cfg.backend_options)
        require_installed(be)
        if not be.capabilities.real_vars:  # ReLUs need real variables (big-M lowers them for MILP)
            raise UnsupportedProblemError(
                f"backend {cfg.backend!r} cannot take ReLU constraints, which the full-network encoding needs; "
                "use a MILP backend such as 'ortools:scip' or an SMT backend such as 'z3'"
            )
        self.backend = be

    # -- evaluation ---------------------------------------------------------
    def margins(self, X: np.ndarray) -> np.ndarray:
        """``logit_t - max_{j != t} logit_j`` for a batch of flat inputs, via the torch model in float64."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, *self.shape)
        out = []
        with torch.no_grad():
            for s in range(0, X.shape[0], 512):
                lg = self.model(torch.from_numpy(np.ascontiguousarray(X[s : s + 512])))
                t = lg[:, self.target]
                lg = lg.clone()
                lg[:, self.target] = -torch.inf
                out.append((t - lg.max(dim=1).values).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def masked(self, masks: np.ndarray) -> np.ndarray:
        """Baseline masking: the masked inputs (B, n_features) of 0/1 group masks (B, G)."""
        masks = np.atleast_2d(np.asarray(masks, dtype=np.float64))
        kept = masks[:, self.flat_ids]
        return self.base + kept * (self.x.reshape(-1) - self.base)

    def region(self, mask_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Robust masking: the box of inputs a mask allows."""
        kept = np.asarray(mask_groups)[self.flat_ids] > 0.5
        x0 = self.x.reshape(-1)
        return np.where(kept, x0, self.lo), np.where(kept, x0, self.hi)

    def remaining(self, t0: float) -> float | None:
        """Seconds of the time limit left since ``t0`` (``None``: no limit)."""
        return Deadline(self.cfg.time_limit, t0).remaining()

    def solve(self, problem: Problem, t0: float, cap: float | None = None, isolate: bool | None = None) -> Solution:
        """Solve with what is left of the time limit.

        ``isolate=None``: in a child process stopped at the limit (the main
        optimisation: every backend ends on time); the many small verification
        queries run in process (``isolate=False``).
        """
        left = Deadline(self.cfg.time_limit, t0).capped(cap).remaining()
        if left is not None and left <= 0.01:
            return Solution(status=Status.TIMEOUT, message="no time left")
        return solve(
            problem,
            self.backend,
            time_limit=left,
            seed=self.cfg.seed,
            threads=self.cfg.threads,
            verbose=self.cfg.verbose,
            isolate=isolate,
        )


# ------------------------------------------------------------------ attacks
def _attack(
    ctx: _Context,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    starts: list[np.ndarray] | None = None,
    restarts: int = 3,
    steps: int = 20,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """PGD inside the box ``[lo, hi]`` minimising the target's margin; returns the best input and its margin
    (the one-box case of :func:`_attack_boxes`)."""
    W, M = _attack_boxes(ctx, lo[None], hi[None], starts=starts, restarts=restarts, steps=steps, seed=seed)
    return W[0], float(M[0])


# ------------------------------------------------------------------ baseline
def _importance(ctx: _Context) -> np.ndarray:
    """Group scores: gradient x (input - baseline) of the target's margin, summed per group."""
    X = torch.from_numpy(ctx.x.copy()).unsqueeze(0).requires_grad_(True)
    lg = ctx.model(X)[0]
    others = lg.clone()
    others[ctx.target] = -torch.inf
    j = int(torch.argmax(others))
    (g,) = torch.autograd.grad(lg[ctx.target] - lg[j], X)
    ref = ctx.base if ctx.base is not None else 0.5 * (ctx.lo + ctx.hi)
    contrib = (g[0].numpy().reshape(-1)) * (ctx.x.reshape(-1) - ref)
    if ctx.base is None:
        contrib = np.abs(g[0].numpy().reshape(-1)) * np.maximum(ctx.x.reshape(-1) - ctx.lo, ctx.hi - ctx.x.reshape(-1))
    return np.bincount(ctx.flat_ids, weights=contrib, minlength=ctx.n_groups)


def _robust_order(ctx: _Context) -> np.ndarray:
    """The groups, least sensitive first, by ``cfg.order`` (robust masking)."""
    if ctx.cfg.order == "occlusion":
        return np.argsort(-_occlusion_margins(ctx), kind="stable")
    return np.argsort(_importance(ctx), kind="stable")


def _occlusion_margins(ctx: _Context) -> np.ndarray:
    """Per group, the margin when that group alone moves to the end of its range that lowers the margin (by the
    gradient's sign); a low margin is a sensitive group."""
    X = torch.from_numpy(ctx.x.copy()).unsqueeze(0).requires_grad_(True)
    lg = ctx.model(X)[0]
    others = lg.clone()
    others[ctx.target] = -torch.inf
    (g,) = torch.autograd.grad(lg[ctx.target] - others.max(), X)
    x0 = ctx.x.reshape(-1)
    far = np.where(g[0].numpy().reshape(-1) > 0, ctx.lo, ctx.hi)
    out = np.empty(ctx.n_groups)
    for s in range(0, ctx.n_groups, 256):
        gs = np.arange(s, min(s + 256, ctx.n_groups))
        sel = ctx.flat_ids[None, :] == gs[:, None]
        out[gs] = ctx.margins(np.where(sel, far[None], x0[None]))
    return out


def _deletion_baseline(ctx: _Context, mask: np.ndarray, order: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Drop groups one by one while the masked input stays valid (each check one exact forward pass)."""
    mask = mask.copy()
    x0 = ctx.x.reshape(-1)
    same = np.bincount(ctx.flat_ids, weights=(x0 != ctx.base).astype(float), minlength=ctx.n_groups) == 0
    mask[same] = 0  # a group equal to its baseline changes nothing
    checks = 0
    for g in order:
        if not mask[g]:
            continue
        mask[g] = 0
        checks += 1
        if ctx.margins(ctx.masked(mask))[0] < ctx.threshold:
            mask[g] = 1
    stats["deletion_checks"] = stats.get("deletion_checks", 0) + checks
    return mask


def _heuristic_baseline(ctx: _Context, stats: dict[str, Any], max_greedy: int = 40) -> np.ndarray | None:
    """A valid mask that no single deletion can shrink, or ``None`` when the heuristics find none.

    Greedy insertion first (add the group that raises the margin most, each step
    one batch of forward passes), then, if that stalls, groups in order of
    gradient x input; finally the deletion loop.
    """
    checks = 0
    mask = np.zeros(ctx.n_groups)
    marg = ctx.margins(ctx.masked(mask))[0]
    checks += 1
    eye = np.eye(ctx.n_groups)
    for _ in range(min(max_greedy, ctx.n_groups)):
        if marg >= ctx.threshold:
            break
        cand = np.flatnonzero(mask == 0)
        trials = mask[None, :] + eye[cand]
        ms = ctx.margins(ctx.masked(trials))
        checks += ms.size
        i = int(np.argmax(ms))
        mask = trials[i]
        marg = ms[i]
    score = _importance(ctx)
    if marg < ctx.threshold:
        order = np.argsort(-score, kind="stable")
        prefixes = np.repeat(mask[None, :], ctx.n_groups + 1, axis=0)
        for k in range(1, ctx.n_groups + 1):
            prefixes[k] = prefixes[k - 1]
            prefixes[k, order[k - 1]] = 1
        ms = ctx.margins(ctx.masked(prefixes))
        checks += ms.size
        ok = np.flatnonzero(ms >= ctx.threshold)
        if ok.size == 0:
            stats["insertion_checks"] = checks
            return None
        mask = prefixes[int(ok[0])].copy()
    stats["insertion_checks"] = checks
    return _deletion_baseline(ctx, mask, np.argsort(score, kind="stable"), stats)


def _baseline(ctx: _Context, t0: float, stats: dict[str, Any]) -> dict[str, Any]:
    cfg = ctx.cfg
    heur = _heuristic_baseline(ctx, stats)
    stats["heuristic_time"] = time.perf_counter() - t0
    res: dict[str, Any] = {"bound": None, "n_relu": 0, "n_unstable": 0}
    if heur is not None:
        stats["heuristic_size"] = float(ctx.weights @ heur)
    if cfg.minimality == "subset" and heur is not None and float(ctx.weights @ heur) > 0:
        # the empty mask is invalid (the heuristic starts there): at least one group is needed
        res.update(mask=heur, status=Status.FEASIBLE, minimality="subset", bound=float(ctx.weights.min()))
        if float(ctx.weights @ heur) <= float(ctx.weights.min()):
            res.update(status=Status.OPTIMAL, minimality="cardinality")
        enc = encode_network(
            ctx.net, ctx.x, ctx.target, ids=ctx.ids, baseline=ctx.base, threshold=ctx.threshold, bounds=cfg.bounds
        )
        res.update(n_relu=enc.n_relu, n_unstable=enc.n_unstable)
        return res
    budget = None
    if heur is not None:
        best = float(ctx.weights @ heur)
        if best <= 0:
            enc = encode_network(ctx.net, ctx.x, ctx.target, ids=ctx.ids, baseline=ctx.base, threshold=ctx.threshold)
            res.update(mask=heur, status=Status.OPTIMAL, minimality="cardinality", bound=0.0)
            res.update(n_relu=enc.n_relu, n_unstable=enc.n_unstable)
            return res
        budget = int(np.floor((best - 1e-9) / ctx.weights.min())) if cfg.objective == "area" else int(best) - 1
    t1 = time.perf_counter()
    enc = encode_network(
        ctx.net,
        ctx.x,
        ctx.target,
        ids=ctx.ids,
        baseline=ctx.base,
        threshold=ctx.threshold,
        bounds=cfg.bounds,
        weights=ctx.weights,
        max_kept=budget,
    )
    stats["build_time"] = time.perf_counter() - t1
    stats["bounds_time"] = enc.bounds_time
    res.update(n_relu=enc.n_relu, n_unstable=enc.n_unstable, problem=enc.problem)
    sol = ctx.solve(enc.problem, t0)
    res["solution"] = sol
    stats.update(_sol_stats(sol))
    if sol.status.has_solution and sol.mask is not None and (heur is None or sol.objective < ctx.weights @ heur):
        mask = sol.mask.astype(np.float64)
        opt = sol.status == Status.OPTIMAL
        res.update(mask=mask, status=sol.status, minimality="cardinality" if opt else "none")
        res["bound"] = sol.bound if not opt else float(ctx.weights @ mask)
        return res
    if heur is not None:
        if sol.status in (Status.INFEASIBLE, Status.OPTIMAL):
            # nothing better than the heuristic mask exists: it is optimal
            res.update(mask=heur, status=Status.OPTIMAL, minimality="cardinality", bound=float(ctx.weights @ heur))
        else:
            # the empty mask is invalid (the heuristic starts there), so at least one group is needed
            lb = max(sol.bound if sol.bound is not None else 0.0, float(ctx.weights.min()))
            res.update(mask=heur, status=Status.FEASIBLE, minimality="subset", bound=float(min(lb, ctx.weights @ heur)))
        return res
    if sol.status == Status.INFEASIBLE:
        res.update(mask=None, status=Status.INFEASIBLE, minimality="none")
        return res
    res.update(mask=None, status=sol.status, minimality="none", bound=sol.bound)
    return res


def _sol_stats(sol: Solution) -> dict[str, Any]:
    return {
        "solver_status": sol.status.value,
        "solve_time": sol.solve_time,
        "solver_message": sol.message,
        "backend_version": sol.version,
    }


# -------------------------------------------------------------------- robust
#: A counterexample must push the margin this far below delta to count (so that
#: its replay, in a different batch or order of float operations, agrees).
_CONFIRM = 1e-9

#: Seconds one exact LP branch-and-bound check may take before it answers "unknown".
_BAB_SECONDS = 6.0
#: A CNN check (sparse CROWN path) whose layer bounds leave more unstable ReLUs than this skips the MILP.
_MILP_UNSTABLE = 2000


#: The largest block of candidates one exact check frees at once (galloping doubles up to it), and the first.
_MAX_BLOCK = 16
_FIRST_BLOCK = 4


class _Verifier:
    """Decides "does every completion of this mask keep the answer?" and collects counterexamples.

    With a ``base`` encoding (the whole input range, counterexample output) and
    ``cfg.sessions``, the solver checks run in one open session on it: each
    check fixes the mask variables, narrows the inputs to the mask's box and
    drops the classes its bounds rule out, all as bound changes.  Otherwise
    each check encodes the network for its own mask (tighter bounds) and solves
    it afresh.
    """

    def __init__(self, ctx: _Context, t0: float, stats: dict[str, Any], base: NetworkEncoding | None = None) -> None:
        self.ctx, self.t0, self.stats = ctx, t0, stats
        for k in ("ibp_proofs", "attack_refutations", "solver_calls", "solver_proofs", "solver_refutations"):
            stats.setdefault(k, 0)
        stats.setdefault("unknown_checks", 0)
        self.max_unstable = 0
        self.recent: list[np.ndarray] = []  # recent counterexamples: good attack starts
        self.base = base if ctx.cfg.sessions and base is not None and base.input_vars is not None else None
        self.session: Any = None
        self._state: dict[str, np.ndarray] = {}
        self.bab: Any = None  # exact LP branch and bound (safe bounds), for networks of affine / ReLU layers
        if ctx.cfg.verifier == "bab":
            from .lpbab import LPBranchAndBound, bab_network

            bnet = bab_network(ctx.net)  # a small CNN's pooling rewritten as ReLUs
            if bnet is not None:
                self.bab = LPBranchAndBound(bnet, ctx.target, ctx.margins)
                stats.setdefault("bab_proofs", 0)
                stats.setdefault("bab_refutations", 0)
                stats.setdefault("bab_nodes", 0)
        # networks with max-pooling: CROWN by sparse back-substitution bounds each check's margins and every
        # layer, and the exact query is a fresh encoding of the check's box with those bounds (far fewer unstable
        # ReLUs than the session's encoding of the whole range)
        self.sparse: Any = None
        if self.bab is None and any(isinstance(op, MaxPoolOp) for op in ctx.net.ops):
            from ..encoders.bounds import SparseCrown

            self.sparse = SparseCrown(ctx.net, ctx.target)
            self.base = None
        self.skipped = False  # the last check skipped its exact query (a large CNN's: see _MILP_UNSTABLE)

    def __call__(self, mask: np.ndarray, *, use_attack: bool = True) -> tuple[str, np.ndarray | None]:
        """``("valid", None)``, ``("invalid", witness)``, ``("near", completion)`` or ``("unknown", None)``.

        ``"near"``: the solver found a completion whose margin is within its
        feasibility tolerance of ``delta`` but that the float64 replay does not
        confirm below it; such a group is kept (the explanation stays valid).
        """
        ctx, stats = self.ctx, self.stats
        lo, hi = ctx.region(mask)
        layers = None
        if self.sparse is not None:
            mlb, layers = self.sparse.bounds(lo, hi)
        else:
            mlb = linear_margin_bounds(ctx.net, lo, hi, ctx.target)
        if mlb.min() > ctx.delta:
            stats["ibp_proofs"] += 1
            return "valid", None
        self.skipped = False
        if layers is not None and sum(int(((lw < 0) & (up > 0)).sum()) for lw, up in layers) > _MILP_UNSTABLE:
            # a large CNN's check with this many unstable ReLUs is beyond what the MILP decides within the cap
            # (measured on mnist_cnn: 9,734 unstable, HiGHS finds nothing in 30 s); the group stays unproven
            self.skipped = True
            stats["skipped_exact"] = stats.get("skipped_exact", 0) + 1
            stats["unknown_checks"] += 1
            return "unknown", None
        if use_attack:
            starts = [np.clip(w, lo, hi) for w in self.recent]
            xa, ma = _attack(
                ctx, lo, hi, starts=starts, restarts=4, steps=40, seed=ctx.cfg.seed + stats["attack_refutations"]
            )
            if ma <= ctx.delta - _CONFIRM:
                stats["attack_refutations"] += 1
                self._remember(xa)
                return "invalid", xa
        if self.bab is not None:
            left = ctx.remaining(self.t0)
            cap = _BAB_SECONDS if left is None else min(left, _BAB_SECONDS)
            r = self.bab.check(lo, hi, ctx.delta, time_limit=cap, confirm=_CONFIRM)
            stats["bab_nodes"] += r.nodes
            if r.verdict == "valid":
                stats["bab_proofs"] += 1
                return "valid", None
            if r.verdict == "invalid" and r.witness is not None:
                stats["bab_refutations"] += 1
                self._remember(r.witness)
                return "invalid", r.witness
            # undecided within its node / time cap: the group is kept, unproven (a MILP's "infeasible" here could
            # not be certified exactly either, and would cost the rest of the time limit)
            stats["bab_unknown"] = stats.get("bab_unknown", 0) + 1
            stats["unknown_checks"] += 1
            return "unknown", None
        if self.base is not None:
            sol, inputs = self._in_session(mask, lo, hi, mlb)
            if sol is None:
                stats["ibp_proofs"] += 1
                return "valid", None
        else:
            enc = encode_network(
                ctx.net,
                ctx.x,
                ctx.target,
                ids=ctx.ids,
                masking="robust",
                input_range=(ctx.lo, ctx.hi),
                threshold=ctx.delta,
                output="counterexample",
                fixed_mask=mask,
                bounds=ctx.cfg.bounds,
                margin_lb=mlb,
                layer_bounds=layers,
            )
            self.max_unstable = max(self.max_unstable, enc.n_unstable)
            if enc.trivially_valid:
                stats["ibp_proofs"] += 1
                return "valid", None
            stats["solver_calls"] += 1
            # a check on a CNN's box is capped as the branch and bound's are (an undecided group is deferred)
            cap = _BAB_SECONDS if self.sparse is not None else None
            sol = ctx.solve(enc.problem, self.t0, cap=cap, isolate=False)
            inputs = enc.input_vars
        if sol.status == Status.INFEASIBLE:
            stats["solver_proofs"] += 1
            return "valid", None
        if sol.status.has_solution and sol.assignment is not None:
            w = sol.assignment[inputs]
            w = np.clip(w, lo, hi)
            m = ctx.margins(w)[0]
            if m > ctx.delta - _CONFIRM:  # on the boundary by the solver's tolerance: push it over
                w2, m2 = _attack(ctx, lo, hi, starts=[w], restarts=0, steps=30)
                w, m = (w2, m2) if m2 < m else (w, m)
            if m <= ctx.delta - _CONFIRM:
                stats["solver_refutations"] += 1
                self._remember(w)
                return "invalid", w
            # the solver's completion meets the counterexample row only within its tolerance:
            # the margin can be pushed to within that tolerance of delta but not (provably) below
            stats["near_counterexamples"] = stats.get("near_counterexamples", 0) + 1
            return "near", w
        stats["unknown_checks"] += 1
        return "unknown", None

    def _in_session(
        self, mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, mlb: np.ndarray
    ) -> tuple[Solution | None, np.ndarray]:
        """The check as bound changes on the open session (``None``: the bounds alone rule out every class)."""
        ctx, enc = self.ctx, self.base
        assert enc is not None and enc.input_vars is not None
        sel_off = mlb[enc.candidates] > ctx.delta  # classes this mask's box rules out
        if sel_off.all():
            return None, enc.input_vars
        if self.session is None:
            self.session = open_session(
                enc.problem,
                ctx.backend,
                seed=ctx.cfg.seed,
                threads=ctx.cfg.threads,
                verbose=ctx.cfg.verbose,
                isolate=False,
            )
            self.max_unstable = max(self.max_unstable, enc.n_unstable)
            p = enc.problem
            self._state = {"m": p.lb[: ctx.n_groups] - 1, "lo": p.lb[enc.input_vars], "hi": p.ub[enc.input_vars]}
            self._state["sel"] = np.zeros(enc.selector_vars.size, dtype=bool)
        s, st = self.session, self._state
        m = np.asarray(mask, dtype=np.float64)
        ch = np.flatnonzero(m != st["m"])
        if ch.size:
            s.fix(ch, m[ch])
        ch = np.flatnonzero((lo != st["lo"]) | (hi != st["hi"]))
        if ch.size:
            s.set_bounds(enc.input_vars[ch], lo[ch], hi[ch])
        if enc.selector_vars.size:
            ch = np.flatnonzero(sel_off != st["sel"])
            if ch.size:
                s.set_bounds(enc.selector_vars[ch], 0.0, np.where(sel_off[ch], 0.0, 1.0))
        st.update(m=m.copy(), lo=lo.copy(), hi=hi.copy(), sel=sel_off.copy())
        self.stats["solver_calls"] += 1
        self.stats["session_checks"] = self.stats.get("session_checks", 0) + 1
        left = ctx.remaining(self.t0)
        if left is not None and left <= 0.01:
            return Solution(status=Status.TIMEOUT, message="no time left"), enc.input_vars
        return s.solve(time_limit=left, objective=False), enc.input_vars

    def close(self) -> None:
        """End the session, if one was opened."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def _remember(self, w: np.ndarray) -> None:
        self.recent = [w, *self.recent[:3]]


def _shrink_witness(ctx: _Context, w: np.ndarray) -> np.ndarray:
    """Restore groups of a counterexample to their original values while it stays a counterexample."""
    x0 = ctx.x.reshape(-1)
    w = w.copy()
    diff = np.bincount(ctx.flat_ids, weights=np.abs(w - x0), minlength=ctx.n_groups)
    for g in np.argsort(diff, kind="stable"):
        if diff[g] == 0:
            continue
        sel = ctx.flat_ids == g
        trial = w.copy()
        trial[sel] = x0[sel]
        if ctx.margins(trial)[0] <= ctx.delta:
            w = trial
    return w


def _deletion_robust(
    ctx: _Context, verify: _Verifier, t0: float, stats: dict[str, Any]
) -> tuple[np.ndarray, dict[int, np.ndarray], bool]:
    """Deletion loop: free groups one by one while the verifier proves the mask; returns (mask, witnesses, complete)."""
    order = _robust_order(ctx)
    mask = np.ones(ctx.n_groups)
    witnesses: dict[int, np.ndarray] = {}
    complete = True
    # a group whose every feature is pinned by the range (lo == hi) changes nothing when masked
    free = np.bincount(ctx.flat_ids, weights=(ctx.hi > ctx.lo).astype(float), minlength=ctx.n_groups)
    mask[free == 0] = 0
    checks = 0
    for g in order:
        if not mask[g]:
            continue
        checks += 1
        left = ctx.remaining(t0)
        if left is not None and left <= 0:
            complete = False
            break
        mask[g] = 0
        verdict, w = verify(mask)
        if verdict == "valid":
            continue
        mask[g] = 1
        if verdict == "invalid" and w is not None:
            witnesses[int(g)] = w.reshape(ctx.shape)
        elif verdict == "near":
            stats.setdefault("near_groups", []).append(int(g))
        else:
            complete = False
    stats["deletion_checks"] = stats.get("deletion_checks", 0) + checks
    return mask, witnesses, complete


def _attack_boxes(
    ctx: _Context,
    LO: np.ndarray,
    HI: np.ndarray,
    *,
    starts: list[np.ndarray] | None = None,
    restarts: int = 2,
    steps: int = 30,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """PGD in float64 inside each of the boxes ``[LO[b], HI[b]]`` at once; per box the best input and its margin
    (the margins are those of the float64 torch model, what a counterexample is replayed with)."""
    B, n = LO.shape
    if not (HI > LO).any():
        steps = 0  # nothing can move: one evaluation decides
    x0 = ctx.x.reshape(-1)
    rng = np.random.default_rng(seed)
    S = [np.clip(x0, LO, HI)]
    S += [np.clip(w.reshape(-1), LO, HI) for w in (starts or [])]
    S += [LO + rng.random((B, n)) * (HI - LO) for _ in range(restarts)]
    R = len(S)
    X = torch.from_numpy(np.stack(S, axis=1).reshape(B * R, n))
    lo_t = torch.from_numpy(np.repeat(LO, R, axis=0))
    hi_t = torch.from_numpy(np.repeat(HI, R, axis=0))
    step = 0.25 * (hi_t - lo_t)
    best_m = np.full(B, np.inf)
    best_x = np.repeat(x0[None], B, axis=0)
    for _ in range(steps + 1):
        X = X.detach().requires_grad_(True)
        lg = ctx.model(X.reshape(-1, *ctx.shape))
        t = lg[:, ctx.target]
        others = lg.clone()
        others[:, ctx.target] = -torch.inf
        marg = t - others.max(dim=1).values
        m = marg.detach().numpy().reshape(B, R)
        r = m.argmin(axis=1)
        better = m[np.arange(B), r] < best_m
        if better.any():
            xs = X.detach().numpy().reshape(B, R, n)
            best_m[better] = m[np.arange(B), r][better]
            best_x[better] = xs[np.flatnonzero(better), r[better]]
        if (best_m <= ctx.delta - _CONFIRM).all():
            break
        (g,) = torch.autograd.grad(marg.sum(), X)
        with torch.no_grad():
            X = torch.maximum(torch.minimum(X - step * torch.sign(g), hi_t), lo_t)
        step = step * 0.85
    return best_x, best_m


def _refute_each(
    ctx: _Context, verify: _Verifier, mask: np.ndarray, cands: list[int], *, seed: int, remember: bool = True
) -> dict[int, np.ndarray]:
    """A batched attack on each candidate group freed alone on top of ``mask``'s freed set; the candidates it
    refutes, with their witnesses (each confirmed by a separate float64 replay; with ``remember``, kept as the
    verifier's next attack starts).
    """
    base_free = mask[ctx.flat_ids] < 0.5
    one = base_free[None, :] | (ctx.flat_ids[None, :] == np.asarray(cands)[:, None])
    x0 = ctx.x.reshape(-1)
    LO, HI = np.where(one, ctx.lo[None], x0[None]), np.where(one, ctx.hi[None], x0[None])
    W, M = _attack_boxes(ctx, LO, HI, starts=verify.recent, seed=seed)
    hit = np.flatnonzero(M <= ctx.delta - _CONFIRM)
    out: dict[int, np.ndarray] = {}
    if hit.size:
        for i, m in zip(hit, ctx.margins(W[hit])):
            if m <= ctx.delta - _CONFIRM:
                out[int(cands[i])] = W[i].reshape(ctx.shape)
                if remember:
                    verify._remember(W[i])
    return out


def _project_witness(
    ctx: _Context, mask: np.ndarray, blk: list[int], w: np.ndarray
) -> tuple[dict[int, np.ndarray], int | None]:
    """A counterexample ``w`` of the freed set plus the block ``blk``, moved onto smaller freed sets (the
    features left out take the input's values): the candidates of the block it refutes alone on top of the
    freed set of ``mask``, with their witnesses, and the length of the shortest prefix of the block it refutes
    (``None``: none shorter than the block).  Every refutation is a float64 replay below ``delta``."""
    x0 = ctx.x.reshape(-1)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    base_free = mask[ctx.flat_ids] < 0.5
    rank = np.full(ctx.n_groups, len(blk))
    rank[blk] = np.arange(len(blk))
    pos = rank[ctx.flat_ids]  # the block position of each feature's group (len(blk): not in the block)
    ks = np.arange(1, len(blk))
    prefix = base_free[None, :] | (pos[None, :] < ks[:, None])
    alone = base_free[None, :] | (pos[None, :] == np.arange(len(blk))[:, None])
    P = np.where(np.vstack([prefix, alone]), w[None], x0[None])
    m = ctx.margins(P)
    bad = m <= ctx.delta - _CONFIRM
    single = {int(g): P[len(ks) + i].reshape(ctx.shape) for i, g in enumerate(blk) if bad[len(ks) + i]}
    hit = np.flatnonzero(bad[: len(ks)])
    return single, (int(ks[hit[0]]) if hit.size else None)


def _longest_prefix(n: int, proven: Any) -> int:
    """The longest ``k <= n`` with ``proven(k)``, assuming ``proven`` is monotone (0 when ``proven(1)`` fails):
    lengths 1, 2, 4, ... until one fails, then bisection; ``O(log k)`` calls."""
    good, k = 0, 1
    while True:
        k = min(k, n)
        if not proven(k):
            bad = k
            break
        good = k
        if k == n:
            return n
        k *= 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if proven(mid):
            good = mid
        else:
            bad = mid
    return good


#: Prefix lengths the batched traversal bounds at once (then every further one up to the remaining count).
def _prefix_lengths(n: int) -> np.ndarray:
    ks = {1, 2, 3, n}
    k = 4.0
    while k < n:
        ks.add(int(k))
        k *= 1.5
    return np.array(sorted(x for x in ks if 1 <= x <= n))


def _batched_robust(
    ctx: _Context, verify: _Verifier, t0: float, stats: dict[str, Any]
) -> tuple[np.ndarray, dict[int, np.ndarray], bool]:
    """The deletion loop, batched (``traversal="batched"``); returns (mask, witnesses, complete).

    Groups are freed least sensitive first (``cfg.order``).  Each round, in this order:

    1. *bounds*: CROWN bounds (:class:`smug.encoders.bounds.BatchBounds`) of the
       freed set plus each of several prefixes of the remaining order, in one
       batched pass; the longest prefix they prove robust is freed at once;
    2. *attack*: a batched PGD over the next candidates, each freed alone on top
       of the freed set; a candidate it refutes (margin below ``delta``, replayed
       in float64) is kept for good: robustness is monotone in the freed set, so
       what fails now fails for every larger freed set;
    3. *exact*: a block of the next candidates goes to the verifier (its linear
       bounds, then the exact query: LP branch and bound with safe bounds,
       :mod:`smug.explain.lpbab`, or the solver session); the block doubles
       after a success and halves after a failure, and a single candidate that
       fails is kept.

    Every kept group was refuted on a subset of the final freed set and the
    final freed set was proven robust, so the mask is subset-minimal (as the
    sequential loop's, for this order, up to which refutations come first).
    """
    from ..encoders.bounds import BatchBounds

    bb = BatchBounds(ctx.net, ctx.target)
    order = _robust_order(ctx)
    mask = np.ones(ctx.n_groups)
    free = np.bincount(ctx.flat_ids, weights=(ctx.hi > ctx.lo).astype(float), minlength=ctx.n_groups)
    mask[free == 0] = 0
    remaining = [int(g) for g in order if mask[g]]
    witnesses: dict[int, np.ndarray] = {}
    complete = True
    st = stats.setdefault(
        "stages",
        {"bound_batches": 0, "bound_boxes": 0, "freed_by_bounds": 0, "bound_steps": 0,
         "attack_batches": 0, "kept_by_attack": 0, "solver_checks": 0, "freed_by_solver": 0,
         "kept_by_solver": 0, "kept_unproven": 0},
    )  # fmt: skip
    x0 = ctx.x.reshape(-1)
    window = 64
    block = _FIRST_BLOCK
    deferred: list[int] = []
    freed_version = 0  # counts the growths of the freed set
    attacked: dict[int, int] = {}  # candidate -> the freed set version it was last attacked on
    unbounded: set[int] = set()  # candidates whose bound alone on top of the freed set failed (CNN path)
    misses = rest = 0  # attack batches in a row that refuted nothing; rounds the attack still rests
    while remaining:
        left = ctx.remaining(t0)
        if left is not None and left <= 0:
            complete = False
            break
        # 1. bounds on prefixes
        base_free = mask[ctx.flat_ids] < 0.5
        rank = np.full(ctx.n_groups, len(remaining) + 1)
        rank[remaining] = np.arange(len(remaining))
        feat_rank = rank[ctx.flat_ids]

        def prefix_bounds(ks: np.ndarray, base_free: np.ndarray = base_free, feat_rank: np.ndarray = feat_rank) -> Any:
            free_f = base_free[None, :] | (feat_rank[None, :] < ks[:, None])
            st["bound_batches"] += 1
            st["bound_boxes"] += int(ks.size)
            return bb.crown(np.where(free_f, ctx.lo[None], x0[None]), np.where(free_f, ctx.hi[None], x0[None]))

        if verify.sparse is None:  # dense bounds: every prefix length of a geometric ladder in one batch
            ks = _prefix_lengths(len(remaining))
            ok = np.flatnonzero(prefix_bounds(ks).min(axis=1) > ctx.delta)
            k = int(ks[ok.max()]) if ok.size else 0
        else:  # sparse bounds cost per box: gallop, then bisect (one box when the next candidate already fails)
            k = _longest_prefix(len(remaining), lambda n: bool(prefix_bounds(np.array([n])).min() > ctx.delta))
        if k:
            mask[remaining[:k]] = 0
            freed_version += 1
            st["freed_by_bounds"] += k
            st["bound_steps"] += 1
            remaining = remaining[k:]
            continue
        if verify.sparse is not None and len(remaining) > 1:
            # a CNN (sparse CROWN, no branch and bound): its exact queries rarely finish, so first bound each of
            # the next candidates alone on top of the freed set; those proven move to the front, best first
            # (the next round frees at least the first of them)
            # (a candidate whose bound failed once is not bounded alone again: the freed set only grows)
            nxt = [g for g in remaining[1:] if g not in unbounded][:16]
            good = []
            if nxt:
                sing = base_free[None, :] | (ctx.flat_ids[None, :] == np.asarray(nxt)[:, None])
                LO1, HI1 = np.where(sing, ctx.lo[None], x0[None]), np.where(sing, ctx.hi[None], x0[None])
                lb1 = bb.crown(LO1, HI1).min(axis=1)
                st["bound_batches"] += 1
                st["bound_boxes"] += len(nxt)
                good = [nxt[i] for i in np.argsort(-lb1) if lb1[i] > ctx.delta]
                unbounded.update(g for g, v in zip(nxt, lb1, strict=True) if v <= ctx.delta)
            unbounded.add(remaining[0])
            if good:
                st["reordered_by_bounds"] = st.get("reordered_by_bounds", 0) + 1
                remaining = good + [g for g in remaining if g not in set(good)]
                continue
        # 2. batched attack on the next candidates, each alone on top of the freed set (a candidate already
        #    attacked on this very freed set is not attacked again: the next exact check decides it)
        #    After two batches in a row that refute nothing the attack rests for 3 rounds, after three for 7,
        #    then for 8 (the exact checks find the counterexamples it misses); a batch that refutes resets it.
        cands = [g for g in remaining[:window] if attacked.get(g) != freed_version]
        if cands and rest > 0:
            rest -= 1
            cands = []
        if cands:
            refuted = _refute_each(ctx, verify, mask, cands, seed=ctx.cfg.seed + st["attack_batches"])
            st["attack_batches"] += 1
            attacked.update((g, freed_version) for g in cands)
            misses = 0 if refuted else misses + 1
            rest = min(2**misses - 1, 8) if misses > 1 else 0
            if refuted:
                witnesses.update(refuted)
                st["kept_by_attack"] += len(refuted)
                remaining = [g for g in remaining if g not in refuted]
                continue
        # 3. the exact check of a block of the next candidates (galloping: doubled after a success, halved
        #    after a failure, a single candidate is kept or freed for good; on a CNN's sparse path one candidate,
        #    which its bounds alone just failed to prove)
        if verify.sparse is not None:
            block = 1
        blk = remaining[: max(1, min(block, len(remaining)))]
        mask[blk] = 0
        st["solver_checks"] += 1
        verdict, w = verify(mask, use_attack=False)
        if verdict == "valid":
            freed_version += 1
            st["freed_by_solver"] += len(blk)
            remaining = remaining[len(blk) :]
            block = min(2 * block, _MAX_BLOCK)
            continue
        mask[blk] = 1
        if len(blk) > 1:
            block = max(1, len(blk) // 2)
            if verdict == "invalid" and w is not None:
                # the block's counterexample, projected: onto the freed set plus each candidate alone (a
                # candidate it still refutes is kept for good) and plus each prefix of the block (the next
                # block stops before the shortest prefix it refutes)
                single, shortest = _project_witness(ctx, mask, blk, w)
                if single:
                    witnesses.update(single)
                    st["kept_by_solver"] += len(single)
                    remaining = [g for g in remaining if g not in single]
                if shortest is not None:
                    block = max(1, min(block, shortest - 1))
            continue
        g = remaining.pop(0)
        if verdict == "invalid" and w is not None:
            witnesses[int(g)] = w.reshape(ctx.shape)
            st["kept_by_solver"] += 1
        elif verdict == "unknown" and not verify.skipped and (verify.bab is not None or verify.sparse is not None):
            deferred.append(g)  # decided in the second pass, against the final freed set
        else:
            st["kept_unproven"] += 1
            if verdict == "near":
                stats.setdefault("near_groups", []).append(int(g))
            else:
                complete = False
    # second pass: the deferred candidates, each on top of the final freed set (monotonicity keeps every
    # earlier decision valid), the attack first (seeded by the counterexamples found since), then a check again.
    # (A shorter cap for the first pass was tried: it loses the counterexamples the branch and bound finds, which
    # seed the attack; 1.5 s left 26 candidates undecided on an image that 6 s decides.)
    st["deferred"] = len(deferred)
    if deferred and complete and (ctx.remaining(t0) is None or ctx.remaining(t0) > 0):
        refuted = _refute_each(ctx, verify, mask, deferred, seed=ctx.cfg.seed + 7919, remember=False)
        witnesses.update(refuted)
        st["kept_by_attack"] += len(refuted)
        for g in deferred:
            if g in refuted:
                continue
            left = ctx.remaining(t0)
            if left is not None and left <= 0:
                complete = False
                st["kept_unproven"] += 1
                continue
            mask[g] = 0
            st["solver_checks"] += 1
            verdict, w = verify(mask, use_attack=False)
            if verdict == "valid":
                st["freed_by_solver"] += 1
                continue
            mask[g] = 1
            if verdict == "invalid" and w is not None:
                witnesses[int(g)] = w.reshape(ctx.shape)
                st["kept_by_solver"] += 1
            else:
                st["kept_unproven"] += 1
                complete = False
    elif deferred:
        st["kept_unproven"] += len(deferred)
        complete = False
    stats["deletion_checks"] = stats.get("deletion_checks", 0) + st["bound_boxes"] + st["solver_checks"]
    return mask, witnesses, complete


def _final_check(ctx: _Context, mask: np.ndarray, t0: float) -> str:
    """Re-check the final mask by a path independent of the traversal: a fresh encoding of this mask alone
    (its own bounds, in numpy) and, unless those bounds prove it, a fresh exact query (no session).

    Returns ``"bounds"``, ``"bab"`` or ``"solver"`` (proven), ``"counterexample"`` (refuted: a bug) or
    ``"unknown"``."""
    from .lpbab import LPBranchAndBound, bab_network

    lo, hi = ctx.region(mask)
    layers = None
    bnet = bab_network(ctx.net)
    if bnet is None and any(isinstance(op, MaxPoolOp) for op in ctx.net.ops):  # fresh CROWN bounds of the box
        from ..encoders.bounds import SparseCrown

        mlb, layers = SparseCrown(ctx.net, ctx.target).bounds(lo, hi)
        if mlb.min() > ctx.delta:
            return "bounds"
    if bnet is not None:  # a fresh exact check of the final box alone
        r = LPBranchAndBound(bnet, ctx.target, ctx.margins).check(lo, hi, ctx.delta, time_limit=30.0)
        if r.verdict == "valid":
            return "bab"
        if r.verdict == "invalid":
            return "counterexample"
    enc = encode_network(
        ctx.net, ctx.x, ctx.target, ids=ctx.ids, masking="robust", input_range=(ctx.lo, ctx.hi),
        threshold=ctx.delta, output="counterexample", fixed_mask=mask, bounds=ctx.cfg.bounds, layer_bounds=layers,
    )  # fmt: skip
    if enc.trivially_valid:
        return "bounds"
    left = ctx.remaining(t0)
    sol = solve(enc.problem, ctx.backend, time_limit=max(left or 0.0, 5.0) if left is not None else None,
                seed=ctx.cfg.seed, threads=ctx.cfg.threads, isolate=False)  # fmt: skip
    if sol.status == Status.INFEASIBLE:
        return "solver"
    if sol.status.has_solution and sol.assignment is not None:
        w = np.clip(sol.assignment[enc.input_vars], lo, hi)
        if ctx.margins(w)[0] <= ctx.delta - _CONFIRM:
            return "counterexample"
        return "near"
    return "unknown"


def _session_base(ctx: _Context) -> NetworkEncoding:
    """The whole-range counterexample encoding the verifier's session opens (each check narrows it by bounds)."""
    return encode_network(
        ctx.net,
        ctx.x,
        ctx.target,
        ids=ctx.ids,
        masking="robust",
        input_range=(ctx.lo, ctx.hi),
        threshold=ctx.delta,
        output="counterexample",
        bounds="interval",
    )


def _robust(ctx: _Context, t0: float, stats: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"bound": None, "witnesses": {}}
    enc0 = _session_base(ctx)
    res.update(n_relu=enc0.n_relu, n_unstable=enc0.n_unstable)
    if ctx.margins(ctx.x.reshape(-1))[0] <= ctx.delta:
        res.update(mask=None, status=Status.INFEASIBLE, minimality="none")
        stats["message"] = "the input itself does not beat every other class by delta: no mask can"
        return res
    verify = _Verifier(ctx, t0, stats, base=enc0)
    try:
        res = _robust_search(ctx, verify, t0, stats, res)
    finally:
        verify.close()
    if res.get("mask") is not None:
        t1 = time.perf_counter()
        res["final_check"] = stats["final_check"] = _final_check(ctx, np.asarray(res["mask"], dtype=np.float64), t0)
        stats["final_check_time"] = time.perf_counter() - t1
        if res["final_check"] == "counterexample":  # never expected: the traversal's proof did not hold
            res["minimality"] = "none"
            stats["message"] = "the final exact check found a counterexample to the mask: please report this"
    return res


def _robust_search(
    ctx: _Context, verify: _Verifier, t0: float, stats: dict[str, Any], res: dict[str, Any]
) -> dict[str, Any]:
    cfg = ctx.cfg
    loop = _batched_robust if cfg.traversal == "batched" else _deletion_robust
    mask, witnesses, complete = loop(ctx, verify, t0, stats)
    stats["deletion_time"] = time.perf_counter() - t0
    res.update(mask=mask, witnesses=witnesses)
    res["status"] = Status.FEASIBLE
    res["minimality"] = "subset" if complete else "none"
    res["n_unstable"] = max(res["n_unstable"], verify.max_unstable)
    if cfg.minimality == "subset":
        return res
    # cardinality: implicit hitting sets over counterexamples, the deletion loop's mask as incumbent
    best = float(ctx.weights @ mask)
    cuts: list[np.ndarray] = []
    x0 = ctx.x.reshape(-1)

    def add_cut(w: np.ndarray) -> None:
        w = _shrink_witness(ctx, w.reshape(-1))
        d = np.bincount(ctx.flat_ids, weights=np.abs(w - x0), minlength=ctx.n_groups) > 0
        cuts.append(d.astype(np.float64))

    for w in witnesses.values():
        add_cut(w)
    lower = 0.0
    iters = 0
    # the 0-1 master: "a cheaper mask that hits every counterexample's groups"; one session gains a cut per round
    b = ProblemBuilder()
    mv = b.add_mask(ctx.n_groups)
    b.add_rows(ctx.weights[None, :], "<=", [best - (1 if cfg.objective == "count" else 1e-9)])
    b.set_objective(mv, ctx.weights)
    master_problem = b.build()
    master = None
    sent = 0
    try:
        while True:
            left = ctx.remaining(t0)
            if left is not None and left <= 0:
                break
            iters += 1
            if cfg.sessions:
                if master is None:
                    master = open_session(
                        master_problem,
                        ctx.backend,
                        seed=cfg.seed,
                        threads=cfg.threads,
                        verbose=cfg.verbose,
                        isolate=False,
                    )
                if len(cuts) > sent:
                    master.add_rows(np.stack(cuts[sent:]), ">=", np.ones(len(cuts) - sent))
                    sent = len(cuts)
                sol = master.solve(time_limit=left)
            else:
                q = master_problem.with_rows(np.stack(cuts), ">=", np.ones(len(cuts))) if cuts else master_problem
                sol = ctx.solve(q, t0, isolate=False)
            stop, mask, best, lower = _master_step(ctx, verify, sol, res, mask, best, lower, add_cut)
            if stop:
                break
    finally:
        if master is not None:
            master.close()
    stats["hitting_set_iterations"] = iters
    stats["cuts"] = len(cuts)
    res["bound"] = lower
    if res["status"] == Status.OPTIMAL and res["witnesses"] == {}:
        # witnesses for the optimal mask: drop each kept group in turn
        for g in np.flatnonzero(res["mask"]):
            trial = res["mask"].copy()
            trial[g] = 0
            verdict, w = verify(trial)
            if verdict == "invalid" and w is not None:
                res["witnesses"][int(g)] = w.reshape(ctx.shape)
    return res


def _master_step(
    ctx: _Context,
    verify: _Verifier,
    sol: Solution,
    res: dict[str, Any],
    mask: np.ndarray,
    best: float,
    lower: float,
    add_cut: Any,
) -> tuple[bool, np.ndarray, float, float]:
    """One hitting-set round on the master's answer: ``(stop, mask, best, lower)``."""
    if sol.status == Status.INFEASIBLE:
        res.update(status=Status.OPTIMAL, minimality="cardinality")
        return True, mask, best, best
    if sol.status == Status.OPTIMAL and sol.mask is not None:
        lower = max(lower, float(sol.objective))
        cand = sol.mask.astype(np.float64)
        verdict, w = verify(cand)
        if verdict == "valid":
            best = float(ctx.weights @ cand)
            res.update(mask=cand, status=Status.OPTIMAL, minimality="cardinality", witnesses={})
            return True, cand, best, best
        if verdict == "invalid" and w is not None:
            add_cut(w)
            return False, mask, best, lower
    if sol.bound is not None:
        lower = max(lower, float(sol.bound))
    return True, mask, best, lower


# ------------------------------------------------------------------ pipeline
def _config(config: Config | None, overrides: dict[str, Any]) -> Config:
    cfg = config or Config()
    return cfg.merged(**overrides) if overrides else cfg


def network_problem(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    feature_mask: Any = None,
    **overrides: Any,
) -> Problem:
    """The IR problem of a full-network explanation, without solving it (for backend comparison studies).

    Baseline masking: the cardinality problem (minimise the mask subject to the
    logit margins).  Robust masking: the verification query for the empty mask
    (a completion of all features that changes the answer), with the mask
    variables free.  Arguments as for :func:`explain_network`.
    """
    overrides, ranges = _split_ranges(overrides)
    cfg = _config(config, overrides)
    ctx = _Context(model, x, target, cfg, baseline, feature_mask, ranges)
    if cfg.masking == "baseline":
        return encode_network(
            ctx.net,
            ctx.x,
            ctx.target,
            ids=ctx.ids,
            baseline=ctx.base,
            threshold=ctx.threshold,
            bounds=cfg.bounds,
            weights=ctx.weights,
        ).problem
    return encode_network(
        ctx.net,
        ctx.x,
        ctx.target,
        ids=ctx.ids,
        masking="robust",
        input_range=(ctx.lo, ctx.hi),
        threshold=ctx.delta,
        output="counterexample",
        bounds=cfg.bounds,
    ).problem


@restores_modes
def explain_network(
    model: nn.Module,
    x: Any,
    target: int | None = None,
    config: Config | None = None,
    *,
    baseline: Any = None,
    feature_mask: Any = None,
    **overrides: Any,
) -> NetworkExplanation:
    """Explain ``model``'s prediction on ``x`` by a minimal mask that keeps the prediction itself.

    Args:
        model: an ``nn.Sequential``-style ReLU network returning logits (see
            :data:`smug.encoders.network.SUPPORTED_NETWORK_LAYERS`).
        x: one input (any shape the model takes, with or without a batch axis of 1
            for 4-D image batches), floating point.
        target: the class to explain (default: the predicted class).
        config: a :class:`~smug.config.Config`; ``**overrides`` replace its fields.
            Relevant: ``backend``, ``masking`` (``"baseline"`` / ``"robust"``),
            ``delta``, ``input_range``, ``minimality`` (``"cardinality"`` /
            ``"subset"``), ``bounds`` (``"interval"`` / ``"lp"``), ``window``,
            ``baseline``, ``objective``, ``margin``, ``time_limit``, ``seed``, ``threads``.
        baseline: baseline masking: the value masked features take, overriding
            ``config.baseline`` (``"zero"``, ``"mean"``, a number or an array like ``x``).
        feature_mask: integer segment map shaped like ``x`` (or broadcastable);
            replaces the window grouping.

    ``input_range`` (robust masking) may also be given as a pair of arrays
    shaped like ``x`` (per-feature ranges, for example an epsilon ball
    ``(x - eps, x + eps)`` clipped to the valid range, as in VeriX); a pair of
    numbers sets ``config.input_range``.

    Returns:
        A :class:`NetworkExplanation`.  A ``delta`` that no mask can meet gives
        status ``infeasible`` (not an exception).

    Raises:
        ValidationError: an unsupported layer (named, with the supported list), a
            bad target, or a model whose forward is not its layers in order.
        BoundsError: robust masking with an input outside ``input_range``.
        UnsupportedProblemError: a backend without ReLU support (``ortools:cpsat``).
    """
    overrides, ranges = _split_ranges(overrides)
    cfg = _config(config, overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny forward passes: threads only contend
    try:
        return _explain_network(model, x, target, cfg, baseline, feature_mask, ranges)
    finally:
        torch.set_num_threads(threads)


def _explain_network(
    model: nn.Module,
    x: Any,
    target: int | None,
    cfg: Config,
    baseline: Any,
    feature_mask: Any,
    ranges: tuple[Any, Any] | None,
) -> NetworkExplanation:
    t0 = time.perf_counter()
    ctx = _Context(model, x, target, cfg, baseline, feature_mask, ranges)
    stats: dict[str, Any] = {"lower_time": ctx.lower_time, "backend": cfg.backend, "n_groups": ctx.n_groups}
    res = _baseline(ctx, t0, stats) if cfg.masking == "baseline" else _robust(ctx, t0, stats)
    stats["total_time"] = time.perf_counter() - t0
    mask_groups = res.get("mask")
    replay: dict[str, Any] = {}
    verified = False
    if mask_groups is not None:
        mask_groups = np.asarray(mask_groups, dtype=np.float64)
        kept = (mask_groups[ctx.flat_ids] > 0.5).astype(np.float64).reshape(ctx.shape)
        if cfg.masking == "baseline":
            xm = ctx.masked(mask_groups)[0]
            m = float(ctx.margins(xm)[0])
            with torch.no_grad():
                lg = ctx.model(torch.from_numpy(xm.reshape(1, *ctx.shape)))[0].numpy()
            replay = {"masked_margin": m, "masked_prediction": int(np.argmax(lg)), "masked_logits": lg}
            verified = m >= ctx.delta and m > 0 and int(np.argmax(lg)) == ctx.target
        else:
            replay, verified = _replay_robust(ctx, mask_groups, res.get("witnesses", {}))
            replay["final_check"] = res.get("final_check")
            verified = verified and res.get("final_check") in ("bounds", "bab", "solver")
    else:
        kept = np.zeros(ctx.shape)
        mask_groups = np.zeros(ctx.n_groups)
    objective = float(ctx.weights @ mask_groups) if res.get("mask") is not None else None
    bound = res.get("bound")
    gap = None
    if objective is not None and bound is not None:
        gap = max(0.0, (objective - bound) / max(1.0, abs(objective)))
    status = res["status"]
    if status.has_solution and not verified:
        stats["message"] = "the float64 replay did not confirm the mask"
    return NetworkExplanation(
        mask=kept,
        mask_groups=mask_groups,
        status=status,
        minimality=res["minimality"],
        target=ctx.target,
        prediction=ctx.prediction,
        objective=objective,
        bound=bound,
        gap=gap,
        n_relu=int(res.get("n_relu", 0)),
        n_unstable=int(res.get("n_unstable", 0)),
        verified=bool(verified),
        replay=replay,
        witnesses=res.get("witnesses", {}),
        input=ctx.x,
        stats=stats,
        config=cfg,
    )


def _replay_robust(
    ctx: _Context, mask_groups: np.ndarray, witnesses: dict[int, np.ndarray], n_random: int = 256
) -> tuple[dict[str, Any], bool]:
    lo, hi = ctx.region(mask_groups)
    rng = np.random.default_rng(ctx.cfg.seed)
    R = lo + rng.random((n_random, lo.size)) * (hi - lo)
    corners = np.where(rng.random((n_random, lo.size)) < 0.5, lo, hi)
    rand_m = ctx.margins(np.concatenate([R, corners]))
    _, atk_m = _attack(ctx, lo, hi, restarts=8, steps=60, seed=ctx.cfg.seed + 1)
    confirmed = {}
    for g, w in witnesses.items():
        trial = mask_groups.copy()
        trial[g] = 0
        tlo, thi = ctx.region(trial)
        wf = w.reshape(-1)
        inside = bool(np.all(wf >= tlo) and np.all(wf <= thi))
        confirmed[int(g)] = bool(inside and ctx.margins(wf)[0] <= ctx.delta)
    replay = {
        "random_min_margin": float(rand_m.min()),
        "attack_min_margin": float(atk_m),
        "witnesses_confirmed": int(sum(confirmed.values())),
        "witnesses": len(witnesses),
    }
    ok = bool(rand_m.min() > ctx.delta and atk_m > ctx.delta and all(confirmed.values()))
    return replay, ok
