"""``z3:original``: the z3 encoding of the original SMUG code, kept as a comparison row.

``Optimize`` over Int variables ``0 <= m_j <= 1``, each cast to Real, one
product term per variable and row built through the Python API,
``minimize(Sum(m))``, z3's default parameters.  It declares no shared
reductions (no presolve, cuts or greedy start): it answers the problem as
stated, as the original code did.  Its coefficients are exact rationals
(``RealVal(Fraction(float))``), so it answers the same problem as every other
backend, exactly.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..ir import GE, LE, Problem
from ..ir.exact import exact_rhs
from ..solving.contract import Backend, Capabilities, Reporter, Solution, SolveParams
from .z3 import run_optimize, z3_value, z3_version

__all__ = ["Z3OriginalBackend"]


class Z3OriginalBackend(Backend):
    """The z3 encoding of the original SMUG code (see the module docstring)."""

    family = "z3"
    capabilities = Capabilities(
        optimize=True,
        relu=True,
        real_vars=True,
        exact=True,
        native_time_limit=True,
        seed=True,
        max_threads=1,
        proves_bound=True,
        reductions=frozenset(),
    )

    OPTIONS = ()
    INSTALL = "pip install z3-solver"

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name or "z3:original", **options)

    def version(self) -> str | None:
        """z3's version string, or ``None`` when z3 is not installed."""
        return z3_version()

    def solve(
        self, problem: Problem, params: SolveParams, report: Reporter, hint: np.ndarray | None = None
    ) -> Solution:
        """Minimise with the original encoding: Int 0/1 masks cast to Real, ``minimize(Sum(m))``."""
        import z3

        t0 = time.perf_counter()
        ctx = z3.Context()
        opt = z3.Optimize(ctx=ctx)
        n = problem.n_vars
        xs: list[Any] = []
        terms: list[Any] = []
        for j in range(n):
            if problem.is_binary[j]:
                v = z3.Int(f"m{j}", ctx)
                opt.add(v >= int(problem.lb[j]), v <= int(problem.ub[j]))
                terms.append(z3.ToReal(v))
            else:
                v = z3.Real(f"x{j}", ctx)
                lo, hi = (z3.RealVal(Fraction(float(b)), ctx) for b in (problem.lb[j], problem.ub[j]))
                opt.add(v >= lo, v <= hi)
                terms.append(v)
            xs.append(v)
        A: sp.csr_matrix = problem.A
        for i, rhs in enumerate(exact_rhs(problem)):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            prods = [
                z3.RealVal(Fraction(a), ctx) * terms[j]
                for j, a in zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist())
            ]
            lhs = z3.Sum(prods) if prods else z3.RealVal(0, ctx)
            r = z3.RealVal(rhs, ctx)
            s = problem.sense[i]
            opt.add(lhs >= r if s == GE else lhs <= r if s == LE else lhs == r)
        for k in range(problem.n_relu):
            xi, yi = terms[problem.relu_in[k]], terms[problem.relu_out[k]]
            zero = z3.RealVal(0, ctx)
            opt.add(yi == z3.If(xi > zero, xi, zero))
            opt.add(
                xi >= z3.RealVal(Fraction(float(problem.relu_lb[k])), ctx),
                xi <= z3.RealVal(Fraction(float(problem.relu_ub[k])), ctx),
            )
        c = problem.objective
        nz = np.flatnonzero(c)
        if problem.objective_is_integral:
            obj = z3.Sum([int(c[j]) * xs[j] for j in nz.tolist()]) if nz.size else z3.IntVal(0, ctx)
        else:
            prods = [z3.RealVal(Fraction(float(c[j])), ctx) * terms[j] for j in nz.tolist()]
            obj = z3.Sum(prods) if prods else z3.RealVal(0, ctx)
        handle = opt.minimize(obj)

        def read(m: Any) -> tuple[np.ndarray, list[Fraction]]:
            rat = [z3_value(z3, m.eval(v, model_completion=True)) for v in xs]
            return np.array([float(q) for q in rat]), rat

        const = Fraction(float(problem.objective_constant))  # the minimised term leaves the constant out
        return run_optimize(z3, ctx, opt, handle, read, const, problem, params, report, t0, {}, {})
