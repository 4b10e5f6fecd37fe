"""smug: explain neural-network predictions with constraint solvers.

The core is solver-neutral: encoders state a question about a model as an IR
:class:`Problem`, and :func:`solve` hands it to any registered backend.
"""

from .backends.base import Capabilities, Solution, SolveParams, Status
from .backends.registry import backend_names, backend_table, get_backend, register
from .errors import SmugError
from .ir import Problem, ProblemBuilder
from .solve import solve

__version__ = "0.1.0"

__all__ = [
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
