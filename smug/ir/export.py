"""Exports that say exactly what the IR says: SMT-LIB2, MPS and LP text.

* **SMT-LIB2** (:func:`to_smtlib2`, :func:`smtlib2_lowering`): every number is
  the exact rational its float denotes, strict rows are ``>= rhs + margin``
  summed exactly.  Variable names are the problem's own where they are legal
  SMT-LIB symbols, quoted (``|a b|``) where they are not; reserved words,
  theory symbols (``true``, ``not``, ...) and names no quoting can hold get a
  suffix, and no two variables ever share a symbol.  Encodings: ``"ite"``
  (standard QF_LRA: a binary enters rows as ``(ite b c 0)``), ``"int"``
  (binaries are Int in [0, 1], rows over binaries only are exactly scaled
  integer rows) and ``"pb"`` (rows over binaries only, exactly scaled, as z3's
  ``(_ pbge k c1 .. cn)`` pseudo-Boolean constraints while their coefficients
  fit ``pb_limit``).  Fixed binaries (``lb == ub``) are written as constants.
* **MPS** (:func:`to_mps`) and **LP** (:func:`to_lp`): after the big-M
  lowering of ReLUs.  A strict row keeps its margin exactly: it is written as
  ``A x - t >= rhs`` with a column ``t`` fixed at the margin (one column per
  distinct margin), so the file holds the IR's floats unchanged; the objective
  constant is a column fixed at 1.  Numbers are written with ``repr``, which
  every correctly rounding reader turns back into the same float64.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .exact import exact_rhs, frac, scaled_row

__all__ = [
    "SMT_ENCODINGS",
    "SmtLowering",
    "smtlib2_lowering",
    "row_assertion",
    "lower_row",
    "smt_symbol",
    "smt_number",
    "to_smtlib2",
    "to_mps",
    "to_lp",
]

#: The SMT-LIB2 encodings :func:`smtlib2_lowering` writes.
SMT_ENCODINGS = ("ite", "int", "pb")

_LE, _EQ, _GE = -1, 0, 1

#: Words that cannot be declared as symbols: SMT-LIB2 reserved words, commands, and the symbols of the
#: Core, Ints, Reals and Reals_Ints theories (plus z3's pseudo-Boolean names).
_RESERVED = frozenset(
    """
    ! _ as let exists forall match par NUMERAL DECIMAL STRING BINARY HEXADECIMAL
    assert check-sat check-sat-assuming declare-const declare-datatype declare-datatypes declare-fun
    declare-sort define-fun define-fun-rec define-funs-rec define-sort echo exit get-assertions
    get-assignment get-info get-model get-option get-proof get-unsat-assumptions get-unsat-core get-value
    pop push reset reset-assertions set-info set-logic set-option minimize maximize
    true false not and or xor => = distinct ite + - * / < <= > >= div mod abs to_real to_int is_int
    Bool Int Real pbge pble pbeq
    """.split()
)
_SIMPLE = re.compile(r"[A-Za-z~!@$%^&*_+=<>.?/\-][A-Za-z0-9~!@$%^&*_+=<>.?/\-]*\Z")


def smt_symbol(name: str, used: set[str], j: int) -> str:
    """The SMT-LIB2 symbol for a variable called ``name`` (index ``j``), unique among ``used`` (which it joins).

    A legal simple symbol is kept as it is; anything else printable is quoted
    (``|a b|``); a reserved word, a theory symbol, or a name containing ``|``,
    ``\\`` or unprintable characters gets the suffix ``~j`` (more ``~`` until
    unique).  The symbol's identity is its text without the bars, so ``a`` and
    ``|a|`` count as the same.
    """
    content = name
    bad = not content or any(ch in "|\\" or not ch.isprintable() for ch in content)
    if bad:
        content = "".join("_" if ch in "|\\" or not ch.isprintable() else ch for ch in content) or "v"
    if bad or content in _RESERVED or content in used:
        content = f"{content}~{j}"
        while content in used or content in _RESERVED:
            content += "~"
    used.add(content)
    return content if _SIMPLE.match(content) else f"|{content}|"


def smt_number(q: Fraction | int | float, real: bool = True) -> str:
    """SMT-LIB2 text of an exact rational (``real``: a Real literal, else an Int literal)."""
    q = Fraction(q) if not isinstance(q, float) else Fraction(q)
    n, d = q.numerator, q.denominator
    if not real:
        assert d == 1, "an Int literal must be an integer"
        return str(n) if n >= 0 else f"(- {-n})"
    body = f"{abs(n)}.0" if d == 1 else f"(/ {abs(n)}.0 {d}.0)"
    return f"(- {body})" if n < 0 else body


def _sum(terms: list[str], zero: str) -> str:
    if not terms:
        return zero
    if len(terms) == 1:
        return terms[0]
    return f"(+ {' '.join(terms)})"


def _round_rhs(r: Fraction, sense: int) -> int | None:
    """Integer right-hand side of a row whose left side is an integer: ``lhs >= r`` iff ``lhs >= ceil(r)``.

    ``None``: an equality no integer satisfies.
    """
    if sense == _GE:
        return math.ceil(r)
    if sense == _LE:
        return math.floor(r)
    return int(r) if r.denominator == 1 else None


@dataclass
class SmtLowering:
    """A problem as SMT-LIB2 declarations and assertions (see :func:`smtlib2_lowering`).

    Attributes:
        symbols: per variable, its symbol (``None`` for a fixed binary, written as a constant).
        fixed: per variable, ``-1`` (free) or the 0/1 value a fixed binary takes.
        declarations: ``declare-const`` lines (with the bounds of real variables).
        assertions: one ``(assert ...)`` per row and ReLU.
        objective: the objective over the free variables as a term.
        objective_constant: the exact constant (the problem's plus its fixed binaries').
        integral_objective: the objective term is an Int-valued sum.
        n_pb_rows, n_arith_rows: how many rows became pseudo-Boolean / arithmetic.
        constant_false: some row can never hold (its assertion is ``false``).
    """

    symbols: list[str | None]
    fixed: np.ndarray
    encoding: str
    declarations: list[str] = field(default_factory=list)
    assertions: list[str] = field(default_factory=list)
    objective: str = "0.0"
    objective_constant: Fraction = Fraction(0)
    integral_objective: bool = False
    n_pb_rows: int = 0
    n_arith_rows: int = 0
    constant_false: bool = False

    def text(self) -> str:
        """Declarations and assertions, one per line."""
        return "\n".join(self.declarations + self.assertions)


def smtlib2_lowering(
    problem: Any,
    *,
    encoding: str = "ite",
    names: bool = True,
    pb_limit: int | None = 2**30,
    int_objective: bool = True,
) -> SmtLowering:
    """Declarations and assertions for ``problem`` under one encoding (see the module docstring).

    ``names=False`` uses ``b{j}`` / ``x{j}`` symbols (fast to parse and to map back);
    ``pb_limit``: the largest ``|k| + sum |c_j|`` of a pseudo-Boolean row (z3 5.4
    gets larger ones wrong); bigger rows stay linear arithmetic.  ``int_objective``: an
    objective with integer coefficients on binaries becomes an Int-valued term (else Real).
    """
    if encoding not in SMT_ENCODINGS:
        raise ValueError(f"unknown SMT-LIB2 encoding {encoding!r}; choose one of {', '.join(SMT_ENCODINGS)}")
    p = problem
    n = p.n_vars
    fixed = np.full(n, -1, dtype=np.int8)
    fb = p.is_binary & (p.lb == p.ub)
    fixed[fb] = p.lb[fb].astype(np.int8)
    used: set[str] = set()
    symbols: list[str | None] = []
    for j in range(n):
        if fixed[j] >= 0:
            symbols.append(None)
        elif names:
            symbols.append(smt_symbol(p.name_of(j), used, j))
        else:
            symbols.append(f"b{j}" if p.is_binary[j] else f"x{j}")
    low = SmtLowering(symbols=symbols, fixed=fixed, encoding=encoding)
    int_vars = encoding == "int"

    def bin_term(j: int, q: Fraction) -> str:
        return _bin_term(low, j, q)

    for j in range(n):
        s = symbols[j]
        if s is None:
            continue
        if p.is_binary[j]:
            low.declarations.append(
                f"(declare-const {s} Int)(assert (<= 0 {s} 1))" if int_vars else f"(declare-const {s} Bool)"
            )
        else:
            lo, hi = smt_number(frac(p.lb[j])), smt_number(frac(p.ub[j]))
            low.declarations.append(f"(declare-const {s} Real)(assert (<= {lo} {s} {hi}))")
    for r in range(p.n_relu):
        xi, yi = p.relu_in[r], p.relu_out[r]
        low.assertions.append(f"(assert (= {symbols[yi]} (ite (> {symbols[xi]} 0.0) {symbols[xi]} 0.0)))")
        lo, hi = smt_number(frac(p.relu_lb[r])), smt_number(frac(p.relu_ub[r]))
        low.assertions.append(f"(assert (<= {lo} {symbols[xi]} {hi}))")

    A = p.A
    rq = exact_rhs(p)
    for i in range(p.n_rows):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        low.assertions.append(lower_row(low, p, A.indices[lo:hi], A.data[lo:hi], int(p.sense[i]), rq[i], pb_limit))

    c = p.objective
    const = frac(p.objective_constant)
    for j in np.flatnonzero((c != 0) & (fixed == 1)).tolist():
        const += frac(c[j])
    low.objective_constant = const
    nz = np.flatnonzero((c != 0) & (fixed < 0)).tolist()
    integral = int_objective and bool(all(p.is_binary[j] and float(c[j]).is_integer() for j in nz))
    low.integral_objective = integral
    terms = []
    for j in nz:
        q = frac(c[j])
        if p.is_binary[j]:
            if integral:
                terms.append(
                    f"(* {smt_number(q, False)} {symbols[j]})"
                    if int_vars
                    else f"(ite {symbols[j]} {smt_number(q, False)} 0)"
                )
            else:
                terms.append(bin_term(j, q))
        else:
            terms.append(f"(* {smt_number(q)} {symbols[j]})")
    low.objective = _sum(terms, "0" if integral else "0.0")
    return low


def _bin_term(low: SmtLowering, j: int, q: Fraction) -> str:
    """A binary's contribution ``q * x_j`` as a Real term."""
    s = low.symbols[j]
    return f"(* {smt_number(q)} (to_real {s}))" if low.encoding == "int" else f"(ite {s} {smt_number(q)} 0.0)"


def lower_row(
    low: SmtLowering, p: Any, cols: np.ndarray, vals: np.ndarray, sense: int, rhs: Fraction, pb_limit: int | None
) -> str:
    """``(assert ...)`` for the row ``sum vals * x[cols] (sense) rhs`` (``rhs`` exact, margins applied), any columns:
    fixed binaries move into the right-hand side (for rows added to an open session, too)."""
    fx = low.fixed[cols]
    one = fx == 1
    if one.any():
        rhs = rhs - sum((frac(v) for v in vals[one]), Fraction(0))
    keep = fx < 0
    return row_assertion(low, p, cols[keep], vals[keep], sense, rhs, pb_limit)


def row_assertion(
    low: SmtLowering,
    p: Any,
    cols: np.ndarray,
    vals: np.ndarray,
    sense: int,
    rhs: Fraction,
    pb_limit: int | None = 2**30,
) -> str:
    """``(assert ...)`` for ``sum vals * x[cols] (sense) rhs`` (exact) under ``low.encoding``.

    ``cols`` must be free variables of ``low`` (fixed binaries moved into ``rhs``).
    """
    op = {_GE: ">=", _LE: "<=", _EQ: "="}[sense]
    syms = low.symbols

    def bin_term(j: int, q: Fraction) -> str:
        return _bin_term(low, j, q)

    if cols.size == 0:
        holds = rhs <= 0 if sense == _GE else rhs >= 0 if sense == _LE else rhs == 0
        if not holds:
            low.constant_false = True
        return "(assert true)" if holds else "(assert false)"
    all_bin = bool(p.is_binary[cols].all())
    if low.encoding == "ite" or not all_bin:
        terms = [
            bin_term(j, frac(v)) if p.is_binary[j] else f"(* {smt_number(frac(v))} {syms[j]})"
            for j, v in zip(cols.tolist(), vals.tolist())
        ]
        low.n_arith_rows += 1
        return f"(assert ({op} {_sum(terms, '0.0')} {smt_number(rhs)}))"
    ints, r = scaled_row(vals, rhs)
    k = _round_rhs(r, sense)
    if k is None:
        low.constant_false = True
        return "(assert false)"
    if low.encoding == "int":
        terms = [f"(* {smt_number(cf, False)} {syms[j]})" for j, cf in zip(cols.tolist(), ints)]
        low.n_arith_rows += 1
        return f"(assert ({op} {_sum(terms, '0')} {smt_number(k, False)}))"
    if pb_limit is not None and abs(k) + sum(abs(cf) for cf in ints) > pb_limit:
        # z3 keeps pseudo-Boolean coefficients in machine ints: larger ones overflow silently
        low.n_arith_rows += 1
        terms = [bin_term(j, frac(v)) for j, v in zip(cols.tolist(), vals.tolist())]
        return f"(assert ({op} {_sum(terms, '0.0')} {smt_number(rhs)}))"
    lits, coefs = [], []
    for j, cf in zip(cols.tolist(), ints):
        if cf < 0:  # c x = c + |c| (not x)
            lits.append(f"(not {syms[j]})")
            coefs.append(-cf)
            k -= cf
        else:
            lits.append(syms[j])
            coefs.append(cf)
    kind = {_GE: "pbge", _LE: "pble", _EQ: "pbeq"}[sense]
    low.n_pb_rows += 1
    return f"(assert ((_ {kind} {k} {' '.join(map(str, coefs))}) {' '.join(lits)}))"


def to_smtlib2(
    problem: Any,
    *,
    optimize: bool = True,
    objective_bound: float | Fraction | None = None,
    strict_bound: bool = False,
    encoding: str = "ite",
) -> str:
    """The problem as SMT-LIB2 text (see the module docstring).

    With ``optimize=True`` it ends with ``(minimize ...)`` (a z3 / OptiMathSAT
    extension) and ``(check-sat)``; with ``objective_bound`` it asserts
    ``objective <= bound`` (``<`` with ``strict_bound``) instead, exactly, for
    plain SMT solvers.  ``encoding="pb"`` text is for z3 only.
    """
    low = smtlib2_lowering(problem, encoding=encoding, names=True, int_objective=False)
    out = ["; smug problem exported to SMT-LIB2"]
    if objective_bound is None and optimize:
        out.append("(set-option :produce-models true)")
    elif encoding != "pb":
        out.append(f"(set-logic {'QF_LIRA' if encoding == 'int' else 'QF_LRA'})")
    out += low.declarations + low.assertions
    if objective_bound is not None:
        rhs = Fraction(objective_bound) - low.objective_constant
        out.append(f"(assert ({'<' if strict_bound else '<='} {low.objective} {smt_number(rhs)}))")
    elif optimize:
        const = low.objective_constant
        out.append(f"(minimize {low.objective if const == 0 else f'(+ {low.objective} {smt_number(const)})'})")
    out.append("(check-sat)")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------- MPS and LP
@dataclass
class _Linear:
    """A ReLU-free problem's rows in the form MPS and LP write, with strict margins as fixed columns."""

    n: int
    cols: list[str]
    rows: list[str]
    entries: list[list[tuple[int, float]]]  # per row: (column, coefficient)
    sense: list[int]
    rhs: list[float]
    lb: list[float]
    ub: list[float]
    binary: list[bool]
    objective: list[tuple[int, float]]


def _linear(problem: Any) -> _Linear:
    p = problem.linearize_relus()
    n = p.n_vars
    cols = [f"x{j}" for j in range(n)]
    lb, ub, binary = p.lb.tolist(), p.ub.tolist(), p.is_binary.tolist()
    margins: dict[float, int] = {}
    A = p.A
    entries: list[list[tuple[int, float]]] = []
    for i in range(p.n_rows):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        row = list(zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist()))
        if p.strict[i]:
            m = float(p.margin[i])
            if m not in margins:
                margins[m] = len(cols)
                cols.append(f"smug_margin_{len(margins) - 1}")
                lb.append(m)
                ub.append(m)
                binary.append(False)
            # >: A x >= rhs + m  <=>  A x - t >= rhs with t = m;  <: A x + t <= rhs
            row.append((margins[m], -1.0 if p.sense[i] == _GE else 1.0))
        entries.append(row)
    obj = [(j, float(v)) for j, v in enumerate(p.objective.tolist()) if v != 0]
    if p.objective_constant != 0:
        obj.append((len(cols), float(p.objective_constant)))
        cols.append("smug_objective_constant")
        lb.append(1.0)
        ub.append(1.0)
        binary.append(False)
    return _Linear(
        n=len(cols),
        cols=cols,
        rows=[f"c{i}" for i in range(p.n_rows)],
        entries=entries,
        sense=[int(s) for s in p.sense],
        rhs=p.rhs.tolist(),
        lb=lb,
        ub=ub,
        binary=binary,
        objective=obj,
    )


def to_mps(problem: Any) -> str:
    """Free-format MPS text (ReLUs lowered to big-M rows; strict margins and the constant as fixed columns)."""
    L = _linear(problem)
    out = ["* smug problem", "NAME smug", "ROWS", " N obj"]
    out += [f" {'G' if s == _GE else 'L' if s == _LE else 'E'} {r}" for r, s in zip(L.rows, L.sense)]
    out.append("COLUMNS")
    by_col: list[list[tuple[str, float]]] = [[] for _ in range(L.n)]
    for j, v in L.objective:
        by_col[j].append(("obj", v))
    for i, row in enumerate(L.entries):
        for j, v in row:
            by_col[j].append((L.rows[i], v))
    in_int = False
    for j in range(L.n):
        if L.binary[j] != in_int:
            out.append("    MARKER 'MARKER' " + ("'INTORG'" if L.binary[j] else "'INTEND'"))
            in_int = L.binary[j]
        for r, v in by_col[j] or [("obj", 0.0)]:
            out.append(f"    {L.cols[j]} {r} {v!r}")
    if in_int:
        out.append("    MARKER 'MARKER' 'INTEND'")
    out.append("RHS")
    out += [f"    rhs {r} {v!r}" for r, v in zip(L.rows, L.rhs) if v != 0]
    out.append("BOUNDS")
    for j in range(L.n):
        c, lo, hi = L.cols[j], L.lb[j], L.ub[j]
        if lo == hi:
            out.append(f" FX bnd {c} {lo!r}")
        elif L.binary[j]:
            out.append(f" BV bnd {c}")
        else:
            out.append(f" LO bnd {c} {lo!r}")
            out.append(f" UP bnd {c} {hi!r}")
    out.append("ENDATA")
    return "\n".join(out) + "\n"


def _lp_terms(terms: list[tuple[int, float]], cols: list[str]) -> str:
    if not terms:
        return f"+0 {cols[0]}" if cols else "0"
    return " ".join(f"{'+' if v >= 0 else '-'}{abs(v)!r} {cols[j]}" for j, v in terms)


def to_lp(problem: Any) -> str:
    """CPLEX LP text (ReLUs lowered to big-M rows; strict margins and the constant as fixed columns)."""
    L = _linear(problem)
    out = ["\\ smug problem", "Minimize", f" obj: {_lp_terms(L.objective, L.cols)}", "Subject To"]
    for r, row, s, b in zip(L.rows, L.entries, L.sense, L.rhs):
        op = ">=" if s == _GE else "<=" if s == _LE else "="
        out.append(f" {r}: {_lp_terms(row, L.cols)} {op} {b!r}")
    out.append("Bounds")
    for j in range(L.n):
        c, lo, hi = L.cols[j], L.lb[j], L.ub[j]
        out.append(f" {c} = {lo!r}" if lo == hi else f" {lo!r} <= {c} <= {hi!r}")
    bins = [L.cols[j] for j in range(L.n) if L.binary[j]]
    if bins:
        out.append("Binaries")
        out += [f" {c}" for c in bins]
    out.append("End")
    return "\n".join(out) + "\n"
