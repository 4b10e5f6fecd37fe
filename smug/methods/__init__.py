"""Explanation methods with one interface: ``Method(model, ...).attribute(inputs, target=None)``.

Every method takes batch-first inputs and returns attributions shaped like them,
so a study can swap them.  :data:`METHODS` names them for :func:`get_method`:

| name | method |
|---|---|
| ``smug`` | :class:`smug.MinimalMask` (SMUG; ``smug:<backend>`` picks the solver) |
| ``pathwaygrad`` | :class:`PathwayGrad`, Taylor contributions (Khakzar et al., CVPR 2021) |
| ``pathwaygrad-ig`` | :class:`PathwayGrad`, neuron-level Integrated Gradients contributions |
| ``optimised-mask`` | :class:`OptimisedMask`, black-box (Thakur & Fischmeister, ICPR 2020) |
| ``integrated-gradients`` | :class:`IntegratedGradients` (Captum) |
| ``saliency`` | :class:`Saliency`, plain input gradients (Captum) |
| ``occlusion`` | :class:`Occlusion`, sliding-window occlusion (Captum) |
| ``feature-ablation`` | :class:`FeatureAblation`, square-patch ablation (Captum) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn

from ..errors import ConfigError
from .baselines import FeatureAblation, IntegratedGradients, Occlusion, Saliency
from .blackbox import OptimisedMask
from .pathwaygrad import Pathway, PathwayGrad, ReluSite, relu_sites

__all__ = [
    "Attributor",
    "MethodInfo",
    "METHODS",
    "get_method",
    "method_names",
    "method_info",
    "PathwayGrad",
    "Pathway",
    "ReluSite",
    "relu_sites",
    "OptimisedMask",
    "IntegratedGradients",
    "Saliency",
    "Occlusion",
    "FeatureAblation",
]

MapMode = Literal["abs", "positive", "identity"]


class Attributor(Protocol):
    """What every method offers: Captum's ``attribute`` with attributions shaped like ``inputs``."""

    def attribute(self, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
        """Attributions for a batch-first ``inputs`` tensor."""
        ...


def _smug(model: nn.Module, backend: str = "ortools:scip", config: Any = None, **overrides: Any) -> Any:
    """:class:`smug.MinimalMask` with the demo's settings (top_k=200, gamma=0.8, window=2) unless ``config``."""
    from ..explain.api import MinimalMask
    from ..zoo.demo import DEMO_CONFIG

    return MinimalMask(model, backend=backend, config=config or DEMO_CONFIG, **overrides)


@dataclass(frozen=True)
class MethodInfo:
    """A registered method.

    Attributes:
        name: the registry name.
        build: ``build(model, **kwargs)`` -> an :class:`Attributor`.
        summary: one line for tables.
        map_mode: how an attribution becomes a non-negative saliency map for the
            metrics (:func:`smug.study.metrics.to_map`): ``"abs"`` (gradient methods: the
            magnitude matters, the sign flips with the baseline), ``"positive"``
            (perturbation methods: a positive value is a drop of the target logit
            when the region is removed) or ``"identity"`` (already non-negative).
    """

    name: str
    build: Callable[..., Attributor]
    summary: str
    map_mode: MapMode


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("smug", _smug, "SMUG minimal mask x IG base map (solver)", "identity"),
        MethodInfo("pathwaygrad", PathwayGrad, "gradient through the critical pathway (Taylor)", "abs"),
        MethodInfo(
            "pathwaygrad-ig",
            lambda model, **kw: PathwayGrad(model, contribution="ig", **kw),
            "gradient through the critical pathway (neuron IG)",
            "abs",
        ),
        MethodInfo("optimised-mask", OptimisedMask, "black-box optimised random mask", "identity"),
        MethodInfo("integrated-gradients", IntegratedGradients, "Integrated Gradients (Captum)", "abs"),
        MethodInfo("saliency", Saliency, "|input gradient| (Captum)", "abs"),
        MethodInfo("occlusion", Occlusion, "sliding-window occlusion (Captum)", "positive"),
        MethodInfo("feature-ablation", FeatureAblation, "square-patch ablation (Captum)", "positive"),
    )
}

_ALIASES = {"ig": "integrated-gradients", "gradient": "saliency", "blackbox": "optimised-mask", "minimal-mask": "smug"}


def method_names() -> list[str]:
    """The registered method names (``smug:<backend>`` is accepted too)."""
    return list(METHODS)


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of ``name`` (an alias or ``smug:<backend>`` allowed).

    Raises:
        ConfigError: an unknown method name.
        UnknownBackendError, BackendNotInstalledError: ``smug:<backend>`` with an
            unknown or missing backend.
    """
    if not isinstance(name, str):
        raise ConfigError(f"a method name is a string, got {type(name).__name__}")
    key = "smug" if name.startswith("smug:") else _ALIASES.get(name, name)
    if key not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {method_names()} or 'smug:<backend>'")
    if name.startswith("smug:"):  # the backend is checked here, before any model or data is loaded
        from ..solving.registry import get_backend, require_installed

        require_installed(get_backend(name.split(":", 1)[1]))
    return METHODS[key]


def get_method(name: str, model: nn.Module, **kwargs: Any) -> Attributor:
    """Build the method ``name`` for ``model``; ``kwargs`` go to its constructor.

    ``"smug:<backend>"`` builds SMUG with that backend, e.g. ``get_method("smug:ortools:cbc", model)``.

    Raises:
        ConfigError: an unknown name.
    """
    info = method_info(name)
    if name.startswith("smug:"):
        kwargs.setdefault("backend", name.split(":", 1)[1])
    return info.build(model, **kwargs)
