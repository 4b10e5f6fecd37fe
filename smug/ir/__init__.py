"""The solver-neutral intermediate representation: problems, their builder, exact arithmetic, I/O and exports.

:class:`Problem` (in :mod:`smug.ir.problem`) is the data and its validation;
:class:`ProblemBuilder` (:mod:`smug.ir.builder`) builds one incrementally;
:mod:`smug.ir.exact` holds the one copy of the exact rational arithmetic every
verdict rests on; :mod:`smug.ir.io` reads and writes the JSON schema strictly;
:mod:`smug.ir.export` writes SMT-LIB2, MPS and LP text.
"""

from .builder import ProblemBuilder
from .io import SCHEMA_VERSION
from .problem import EQ, GE, LE, Evaluation, Problem

__all__ = ["SCHEMA_VERSION", "LE", "EQ", "GE", "Problem", "ProblemBuilder", "Evaluation"]
