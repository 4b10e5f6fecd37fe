"""Typed configuration of an explanation, loadable from TOML.

Every field has a default, a documented range, and an error naming it when it
is out of range; an unknown key is an error that suggests the closest known
one.  The backend is chosen here by name.

Example ``smug.toml``::

    backend = "ortools:scip"
    top_k = 50
    gamma = 0.2
    window = 2
    time_limit = 30

    [backend_options]      # passed to the backend (e.g. encoding for z3)
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "Config",
    "SCORINGS",
    "OBJECTIVES",
    "SALIENCY_RULES",
    "TRUNCATE_MODES",
    "MASKINGS",
    "MINIMALITIES",
    "BOUNDS",
    "TRAVERSALS",
    "ORDERS",
    "VERIFIERS",
]

SCORINGS = ("ig", "activation", "gradient")
OBJECTIVES = ("count", "area")
SALIENCY_RULES = ("max", "sum")
BASELINE_NAMES = ("zero", "mean", "pad")
TRUNCATE_MODES = ("warn", "error")
MASKINGS = ("baseline", "robust")
MINIMALITIES = ("cardinality", "subset")
BOUNDS = ("interval", "lp")
TRAVERSALS = ("batched", "sequential")
ORDERS = ("gradient", "occlusion")
VERIFIERS = ("bab", "solver")


@dataclass(frozen=True)
class Config:
    """How smug explains a prediction.

    Attributes:
        backend: solver backend name (``smug backends`` lists them).
        top_k: how many first-layer neurons (by score) to keep active; >= 1.
        gamma: each kept neuron's masked pre-activation must exceed
            ``gamma`` x its original value; in ``[0, 1)``.
        scoring: how neurons are ranked: ``"ig"`` (Integrated Gradients on the
            first layer's post-activation output), ``"activation"`` or ``"gradient"``.
        ig_steps: Integrated Gradients steps (the paper's 200).
        ig_batch: forward passes per batch when computing IG.
        window: side of the square pixel windows that become one mask variable
            (an ``[h, w]`` pair for rectangles); ignored when a segment map is given.
        baseline: the value a masked feature takes: ``"zero"``, ``"mean"``
            (per-channel mean) or a number.  (A tensor can be passed to the API.)
            For text: ``"zero"`` (the zero embedding) or ``"pad"`` (the
            ``<pad>`` token's embedding); a vector can be passed to the API.
        objective: minimise the number of kept groups (``"count"``) or their
            total pixel area (``"area"``).
        saliency: how the base map combines kept neurons' scores over a pixel:
            ``"max"`` (paper) or ``"sum"``.
        margin: relative margin of the strict constraints (``pre > gamma * orig``
            is stated as ``pre >= gamma * orig + margin * orig``); > 0.
        time_limit: seconds per solve, enforced for every backend (``None``: none).
        seed: random seed for the solver.
        threads: solver threads.
        num_solutions: distinct minimal masks to enumerate.
        first_layer: the first layer's module name (``None``: found automatically).
        verbose: solver log on.
        backend_options: extra options passed to the backend.
        max_len: text only: the most tokens explained (``None``: the model's own
            limit if it has one, else no limit).
        truncate: text only: a longer text is cut with a warning (``"warn"``)
            or refused (``"error"``).
        masking: full-network encoding only: a masked feature takes its
            baseline value (``"baseline"``, the paper's setting) or may take any
            value in ``input_range`` (``"robust"``: a formally sufficient explanation).
        delta: full-network encoding only: the explained logit must beat every
            other logit by at least ``delta`` (>= 0; with 0 it must beat them by
            the relative ``margin``).
        input_range: full-network encoding with ``masking="robust"``: the
            ``[low, high]`` range a masked feature may take.
        minimality: full-network encoding only: ``"cardinality"`` (the solver's
            optimum) or ``"subset"`` (a deletion loop; scales further).
        bounds: full-network encoding only: pre-activation bounds from interval
            arithmetic (``"interval"``) or tightened by LPs (``"lp"``).
        traversal: full-network robust explanations: how the deletion loop
            walks the features (least important first).  ``"batched"``: the
            longest prefix that batched linear bounds prove robust is freed in
            one step, a batched attack refutes candidates ahead, and only what
            is left goes to the solver, one feature at a time;
            ``"sequential"``: one feature per check (bounds, attack, solver).
            Both give a subset-minimal explanation.
        verifier: full-network robust explanations: who answers the exact
            checks.  ``"bab"``: smug's LP branch and bound with safe bounds
            (:mod:`smug.explain.lpbab`) for networks of affine and ReLU layers,
            the backend otherwise; ``"solver"``: always the backend (in a
            session with ``sessions=True``).
        order: full-network robust explanations: the sensitivity order the
            deletion loop frees features in, least sensitive first:
            ``"occlusion"`` (the default; VeriX's: how far the margin drops
            when the group alone moves to the end of its range that lowers it;
            one batched forward pass) or ``"gradient"`` (|gradient| x the
            range's width, per group).  A subset-minimal explanation depends on
            the order; on the reference MLP at eps 0.05 occlusion gave smaller
            explanations, faster (docs/network.md).
        sessions: full-network robust explanations: answer the deletion loop's
            and the hitting-set master's checks in open solver sessions
            (:func:`smug.open_session`; ``False``: encode and solve each check
            afresh, with the bounds of its own mask).
    """

    backend: str = "ortools:scip"
    top_k: int = 10
    gamma: float = 0.0
    scoring: str = "ig"
    ig_steps: int = 200
    ig_batch: int = 50
    window: int | tuple[int, int] = 1
    baseline: str | float = "zero"
    objective: str = "count"
    saliency: str = "max"
    margin: float = 1e-6
    time_limit: float | None = 60.0
    seed: int = 0
    threads: int = 1
    num_solutions: int = 1
    first_layer: str | None = None
    verbose: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)
    max_len: int | None = None
    truncate: str = "warn"
    masking: str = "baseline"
    delta: float = 0.0
    input_range: tuple[float, float] = (0.0, 1.0)
    minimality: str = "cardinality"
    bounds: str = "interval"
    sessions: bool = True
    traversal: str = "batched"
    order: str = "occlusion"
    verifier: str = "bab"

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, expect: str) -> None:
            if not cond:
                raise ConfigError(f"config {key} = {getattr(self, key)!r} is invalid: expected {expect}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(isinstance(self.backend, str) and bool(self.backend), "backend", "a backend name such as 'ortools:scip'")
        need(is_int(self.top_k) and self.top_k >= 1, "top_k", "an integer >= 1")
        need(is_num(self.gamma) and 0 <= self.gamma < 1, "gamma", "a number in [0, 1)")
        need(self.scoring in SCORINGS, "scoring", f"one of {SCORINGS}")
        need(is_int(self.ig_steps) and self.ig_steps >= 1, "ig_steps", "an integer >= 1")
        need(is_int(self.ig_batch) and self.ig_batch >= 1, "ig_batch", "an integer >= 1")
        w = self.window
        if isinstance(w, list):
            object.__setattr__(self, "window", tuple(w))
            w = self.window
        need(
            (is_int(w) and w >= 1) or (isinstance(w, tuple) and len(w) == 2 and all(is_int(v) and v >= 1 for v in w)),
            "window",
            "an integer >= 1 or a pair [height, width]",
        )
        b = self.baseline
        need(
            (isinstance(b, str) and b in BASELINE_NAMES) or is_num(b),
            "baseline",
            f"one of {BASELINE_NAMES} or a number",
        )
        need(self.objective in OBJECTIVES, "objective", f"one of {OBJECTIVES}")
        need(self.saliency in SALIENCY_RULES, "saliency", f"one of {SALIENCY_RULES}")
        need(is_num(self.margin) and 0 < self.margin < 1, "margin", "a number in (0, 1)")
        need(
            self.time_limit is None or (is_num(self.time_limit) and self.time_limit > 0),
            "time_limit",
            "a positive number of seconds (or omit it for no limit)",
        )
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0")
        need(is_int(self.threads) and self.threads >= 1, "threads", "an integer >= 1")
        need(is_int(self.num_solutions) and self.num_solutions >= 1, "num_solutions", "an integer >= 1")
        need(self.first_layer is None or isinstance(self.first_layer, str), "first_layer", "a module name or nothing")
        need(isinstance(self.verbose, bool), "verbose", "true or false")
        need(isinstance(self.backend_options, dict), "backend_options", "a table of backend options")
        need(self.max_len is None or (is_int(self.max_len) and self.max_len >= 1), "max_len", "an integer >= 1")
        need(self.truncate in TRUNCATE_MODES, "truncate", f"one of {TRUNCATE_MODES}")
        need(self.masking in MASKINGS, "masking", f"one of {MASKINGS}")
        need(is_num(self.delta) and self.delta >= 0, "delta", "a number >= 0")
        r = self.input_range
        if isinstance(r, list):
            object.__setattr__(self, "input_range", tuple(r))
            r = self.input_range
        need(
            isinstance(r, tuple) and len(r) == 2 and all(is_num(v) for v in r) and r[0] < r[1],
            "input_range",
            "a pair [low, high] of finite numbers with low < high",
        )
        need(self.minimality in MINIMALITIES, "minimality", f"one of {MINIMALITIES}")
        need(self.bounds in BOUNDS, "bounds", f"one of {BOUNDS}")
        need(isinstance(self.sessions, bool), "sessions", "true or false")
        need(self.traversal in TRAVERSALS, "traversal", f"one of {TRAVERSALS}")
        need(self.order in ORDERS, "order", f"one of {ORDERS}")
        need(self.verifier in VERIFIERS, "verifier", f"one of {VERIFIERS}")

    # ------------------------------------------------------------- building
    @classmethod
    def keys(cls) -> list[str]:
        """Every configuration key."""
        return [f.name for f in fields(cls)]

    @classmethod
    def _check_keys(cls, keys: Any) -> None:
        known = cls.keys()
        for k in keys:
            if k not in known:
                close = difflib.get_close_matches(k, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown config key {k!r}.{hint} Known keys: {', '.join(known)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a mapping; an unknown key raises :class:`~smug.errors.ConfigError` with the closest match."""
        cls._check_keys(data)
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Load from a TOML file; the keys may sit at the top level or under a ``[smug]`` table."""
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
        if "smug" in data and isinstance(data["smug"], dict):
            data = data["smug"]
        return cls.from_dict(data)

    def merged(self, **overrides: Any) -> Config:
        """A copy with some fields replaced (unknown names raise :class:`~smug.errors.ConfigError`)."""
        self._check_keys(overrides)
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for reports and JSON)."""
        d = asdict(self)
        for key in ("window", "input_range"):
            if isinstance(d[key], tuple):
                d[key] = list(d[key])
        return d
