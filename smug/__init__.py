"""smug: explain neural-network predictions with constraint solvers.

The core is solver-neutral: encoders state a question about a model as an IR
:class:`Problem`, and :func:`solve` hands it to any registered backend through a
reduction chain built from the backend's capabilities; every verdict is exact.
"""

from typing import Any

from .config import Config
from .errors import SmugError
from .ir import Problem, ProblemBuilder
from .solving.contract import Backend, Capabilities, SatBackend, SatSession, Solution, SolveParams, Status
from .solving.registry import backend_names, backend_table, get_backend, register
from .solving.run import solve
from .solving.session import SolverSession, open_session

__version__ = "0.1.0"

# torch-dependent names load on first use, so solver-only users never import torch
_LAZY = {
    "MinimalMask": "explain.api",
    "explanation_problem": "explain.api",
    "Explanation": "explain.image",
    "TextExplanation": "explain.text",
    "explain_network": "explain.network",
    "NetworkExplanation": "explain.network",
    "load_onnx": "zoo.onnx",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "explain":  # the package smug.explain is callable as smug.explain.api.explain
        return importlib.import_module(".explain", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'smug' has no attribute {name!r}")


__all__ = [
    "explain",
    "explanation_problem",
    "MinimalMask",
    "Explanation",
    "TextExplanation",
    "explain_network",
    "NetworkExplanation",
    "load_onnx",
    "Config",
    "Problem",
    "ProblemBuilder",
    "solve",
    "open_session",
    "SolverSession",
    "Solution",
    "SolveParams",
    "Status",
    "Capabilities",
    "Backend",
    "SatBackend",
    "SatSession",
    "backend_names",
    "backend_table",
    "get_backend",
    "register",
    "SmugError",
    "__version__",
]
