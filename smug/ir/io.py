"""The JSON form of a problem (schema version 1, documented in docs/ir.md): writing, and strict reading.

The reader checks types (booleans are JSON booleans, indices and sizes are
integers, numbers are finite), lengths, index ranges and duplicate entries
*before* it allocates anything, and names the offending field in a
:class:`~smug.errors.SchemaError`.  Unknown keys are errors (with the close
matches), so a misspelt field is never silently ignored.

Nothing here imports :mod:`smug.ir.problem`: :func:`problem_to_dict` reads a
problem's attributes and :func:`problem_kwargs` returns the constructor's
keyword arguments, so ``Problem.to_dict`` / ``Problem.from_dict`` delegate here.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import NonFiniteError, SchemaError

__all__ = ["SCHEMA_VERSION", "problem_to_dict", "problem_kwargs", "load_json_text", "MAX_JSON_DEPTH"]

#: Version of the JSON schema written by ``Problem.to_json``.
SCHEMA_VERSION = 1

#: Deepest nesting the reader accepts (the schema itself needs 3 levels; metadata may nest further).
MAX_JSON_DEPTH = 64

_SENSES = {"<=": -1, "==": 0, "=": 0, ">=": 1}
_SENSE_TO_STR = {-1: "<=", 0: "==", 1: ">="}

_TOP = ("format", "version", "n_mask", "variables", "linear", "relu", "objective", "groups", "metadata")
_VARIABLES = ("lb", "ub", "binary", "names")
_LINEAR = ("shape", "row", "col", "val", "sense", "rhs", "strict", "margin", "names")
_RELU = ("in", "out", "lb", "ub")
_OBJECTIVE = ("coef", "constant")
_GROUPS = ("input_shape", "row", "col", "val", "absent")


def problem_to_dict(p: Any) -> dict[str, Any]:
    """A problem as plain JSON-compatible data."""
    A = p.A.tocoo()
    d: dict[str, Any] = {
        "format": "smug-problem",
        "version": SCHEMA_VERSION,
        "n_mask": p.n_mask,
        "variables": {
            "lb": p.lb.tolist(),
            "ub": p.ub.tolist(),
            "binary": p.is_binary.tolist(),
            "names": p.var_names,
        },
        "linear": {
            "shape": list(p.A.shape),
            "row": A.row.tolist(),
            "col": A.col.tolist(),
            "val": A.data.tolist(),
            "sense": [_SENSE_TO_STR[int(s)] for s in p.sense],
            "rhs": p.rhs.tolist(),
            "strict": p.strict.tolist(),
            "margin": p.margin.tolist(),
            "names": p.row_names,
        },
        "relu": {
            "in": p.relu_in.tolist(),
            "out": p.relu_out.tolist(),
            "lb": p.relu_lb.tolist(),
            "ub": p.relu_ub.tolist(),
        },
        "objective": {"coef": p.objective.tolist(), "constant": p.objective_constant},
        "groups": None,
        "metadata": p.metadata,
    }
    if p.groups is not None:
        G = p.groups.tocoo()
        d["groups"] = {
            "input_shape": list(p.input_shape or ()),
            "row": G.row.tolist(),
            "col": G.col.tolist(),
            "val": G.data.tolist(),
        }
    elif p.input_shape is not None:
        d["groups"] = {"input_shape": list(p.input_shape), "row": [], "col": [], "val": [], "absent": True}
    return d


# ----------------------------------------------------------------------- reading
def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion), stopping past ``limit``."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def load_json_text(text: str) -> Any:
    """Parse JSON text, turning every failure (syntax, absurd nesting) into a :class:`SchemaError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise SchemaError(f"the JSON nests deeper than this reader allows ({MAX_JSON_DEPTH} levels)") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise SchemaError(f"the JSON nests deeper than this reader allows ({MAX_JSON_DEPTH} levels)")
    return data


def _keys(obj: Any, where: str, known: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SchemaError(f"{where} must be a JSON object, got {type(obj).__name__}")
    unknown = [k for k in obj if k not in known]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SchemaError(f"unknown field {where}.{k}{hint}; known fields: {', '.join(known)}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise SchemaError(f"missing field {where}.{missing[0]}")
    return obj


def _int(v: Any, where: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SchemaError(f"{where} must be an integer, got {v!r}")
    if v < lo:
        raise SchemaError(f"{where} must be >= {lo}, got {v}")
    return v


def _list(v: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(v, list):
        raise SchemaError(f"{where} must be a list, got {type(v).__name__}")
    if length is not None and len(v) != length:
        raise SchemaError(f"{where} has {len(v)} entries, expected {length}")
    return v


def _floats(v: Any, where: str, length: int | None = None) -> np.ndarray:
    items = _list(v, where, length)
    for k, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise SchemaError(f"{where}[{k}] must be a number, got {x!r}")
        if isinstance(x, float) and not math.isfinite(x):
            raise NonFiniteError(f"{where}[{k}] is {x!r}; every number in a problem must be finite")
    try:
        arr = np.array(items, dtype=np.float64) if items else np.zeros(0)
    except OverflowError:  # an integer beyond float64's range
        k = next(i for i, x in enumerate(items) if isinstance(x, int) and abs(x) > 2**1023)
        raise NonFiniteError(f"{where}[{k}] = {str(items[k])[:20]}... does not fit in a float64") from None
    if not np.isfinite(arr).all():  # an integer too large for a float
        k = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise NonFiniteError(f"{where}[{k}] = {items[k]!r} does not fit in a float64")
    return arr


def _bools(v: Any, where: str, length: int) -> np.ndarray:
    items = _list(v, where, length)
    for k, x in enumerate(items):
        if not isinstance(x, bool):
            raise SchemaError(f"{where}[{k}] must be true or false, got {x!r}")
    return np.array(items, dtype=bool) if items else np.zeros(0, dtype=bool)


def _indices(v: Any, where: str, length: int | None, upper: int) -> np.ndarray:
    items = _list(v, where, length)
    for k, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int):
            raise SchemaError(f"{where}[{k}] must be an integer index, got {x!r}")
        if not 0 <= x < upper:
            raise SchemaError(f"{where}[{k}] = {x} is out of range 0..{upper - 1}")
    return np.array(items, dtype=np.int64) if items else np.zeros(0, dtype=np.int64)


def _names(v: Any, where: str, length: int) -> list[str] | None:
    if v is None:
        return None
    items = _list(v, where, length)
    for k, x in enumerate(items):
        if not isinstance(x, str):
            raise SchemaError(f"{where}[{k}] must be a string, got {x!r}")
    return items


def _coo(lin: dict[str, Any], where: str, shape: tuple[int, int]) -> sp.csr_matrix:
    val = _floats(lin["val"], f"{where}.val")
    nnz = val.shape[0]
    rows = _indices(lin["row"], f"{where}.row", nnz, max(shape[0], 1) if shape[0] else 0)
    cols = _indices(lin["col"], f"{where}.col", nnz, max(shape[1], 1) if shape[1] else 0)
    if nnz:
        key = rows * max(shape[1], 1) + cols
        uniq, counts = np.unique(key, return_counts=True)
        if (counts > 1).any():
            r, c = divmod(int(uniq[np.flatnonzero(counts > 1)[0]]), max(shape[1], 1))
            raise SchemaError(f"{where} has two entries for row {r}, column {c}; write each entry once")
    return sp.csr_matrix((val, (rows, cols)), shape=shape)


def problem_kwargs(d: Any) -> dict[str, Any]:
    """Check schema-version-1 data strictly and return ``Problem(...)`` keyword arguments.

    Sizes are checked against the data before anything is allocated, so a file
    declaring absurd sizes fails at once with a named error.
    """
    if not isinstance(d, dict):
        raise SchemaError(f"a smug problem is a JSON object, got a {type(d).__name__}")
    if d.get("format") != "smug-problem":
        raise SchemaError("not a smug problem: the top-level 'format' field must be 'smug-problem'")
    version = d.get("version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema version {version!r}; this smug reads version {SCHEMA_VERSION}")
    _keys(d, "problem", _TOP, ("n_mask", "variables", "linear", "relu", "objective"))
    v = _keys(d["variables"], "variables", _VARIABLES, ("lb", "ub", "binary"))
    lin = _keys(d["linear"], "linear", _LINEAR, ("shape", "row", "col", "val", "sense", "rhs", "strict", "margin"))
    relu = _keys(d["relu"], "relu", _RELU, _RELU)
    obj = _keys(d["objective"], "objective", _OBJECTIVE, _OBJECTIVE)

    lb = _floats(v["lb"], "variables.lb")
    n = lb.shape[0]
    ub = _floats(v["ub"], "variables.ub", n)
    is_binary = _bools(v["binary"], "variables.binary", n)
    n_mask = _int(d["n_mask"], "n_mask")
    if n_mask > n:
        raise SchemaError(f"n_mask = {n_mask} exceeds the {n} variables the file lists")
    shape = _list(lin["shape"], "linear.shape", 2)
    m = _int(shape[0], "linear.shape[0]")
    ncols = _int(shape[1], "linear.shape[1]")
    if ncols != n:
        raise SchemaError(f"linear.shape says {ncols} columns but variables list {n} variables")
    senses = _list(lin["sense"], "linear.sense", None)
    if len(senses) != m:  # checked before the matrix is allocated
        raise SchemaError(f"linear.shape says {m} rows but linear.sense has {len(senses)} entries")
    for k, s in enumerate(senses):
        if s not in _SENSES:
            raise SchemaError(f"linear.sense[{k}] = {s!r}; use '<=', '>=' or '=='")
    rhs = _floats(lin["rhs"], "linear.rhs", m)
    strict = _bools(lin["strict"], "linear.strict", m)
    margin = _floats(lin["margin"], "linear.margin", m)
    A = _coo(lin, "linear", (m, n))
    k = len(_list(relu["in"], "relu.in"))
    groups, input_shape = None, None
    g = d.get("groups")
    if g is not None:
        g = _keys(g, "groups", _GROUPS, ("input_shape",))
        dims = _list(g["input_shape"], "groups.input_shape")
        input_shape = tuple(_int(s, f"groups.input_shape[{i}]", 1) for i, s in enumerate(dims))
        absent = g.get("absent", False)
        if not isinstance(absent, bool):
            raise SchemaError(f"groups.absent must be true or false, got {absent!r}")
        if not absent:
            for f in ("row", "col", "val"):
                if f not in g:
                    raise SchemaError(f"missing field groups.{f}")
            nf = math.prod(input_shape)
            groups = _coo(g, "groups", (n_mask, nf))
    meta = d.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise SchemaError(f"metadata must be a JSON object, got {type(meta).__name__}")
    constant = obj["constant"]
    if isinstance(constant, bool) or not isinstance(constant, (int, float)):
        raise SchemaError(f"objective.constant must be a number, got {constant!r}")
    if not math.isfinite(float(constant)):
        raise NonFiniteError(f"objective.constant is {constant!r}; every number in a problem must be finite")
    return dict(
        n_mask=n_mask,
        lb=lb,
        ub=ub,
        is_binary=is_binary,
        var_names=_names(v.get("names"), "variables.names", n),
        A=A,
        sense=[_SENSES[s] for s in senses] if m else np.zeros(0, dtype=np.int8),
        rhs=rhs,
        strict=strict,
        margin=margin,
        row_names=_names(lin.get("names"), "linear.names", m),
        relu_in=_indices(relu["in"], "relu.in", k, max(n, 1) if n else 0),
        relu_out=_indices(relu["out"], "relu.out", k, max(n, 1) if n else 0),
        relu_lb=_floats(relu["lb"], "relu.lb", k),
        relu_ub=_floats(relu["ub"], "relu.ub", k),
        objective=_floats(obj["coef"], "objective.coef", n),
        objective_constant=float(constant),
        groups=groups,
        input_shape=input_shape,
        metadata=dict(meta or {}),
    )
