"""smug: explain neural-network predictions with constraint solvers.

The core is solver-neutral: encoders state a question about a model as an IR
:class:`Problem`, and :func:`solve` hands it to any registered backend.
"""

from typing import Any

from .backends.base import Capabilities, Solution, SolveParams, Status
from .backends.registry import backend_names, backend_table, get_backend, register
from .config import Config
from .errors import SmugError
from .ir import Problem, ProblemBuilder
from .solve import solve

__version__ = "0.1.0"

# torch-dependent names load on first use, so solver-only users never import torch
_LAZY = {
    "explain": "saliency",
    "MinimalMask": "saliency",
    "Explanation": "saliency",
    "TextExplanation": "text_explain",
    "explain_network": "network",
    "NetworkExplanation": "network",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'smug' has no attribute {name!r}")


__all__ = [
    "explain",
    "MinimalMask",
    "Explanation",
    "TextExplanation",
    "explain_network",
    "NetworkExplanation",
    "Config",
    "Problem",
    "ProblemBuilder",
    "solve",
    "Solution",
    "SolveParams",
    "Status",
    "Capabilities",
    "backend_names",
    "backend_table",
    "get_backend",
    "register",
    "SmugError",
    "__version__",
]
