"""Backends by name: the built-in ones and third-party ones from the ``smug.backends`` entry point group.

A third-party package registers a backend in its ``pyproject.toml``::

    [project.entry-points."smug.backends"]
    "mysolver" = "mypkg.smug_backend:MySolverBackend"

The object an entry point names is a :class:`~smug.solving.contract.Backend`
subclass (or any callable taking ``name`` and keyword options and returning a
backend).  At run time :func:`register` does the same.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..errors import BackendNotInstalledError, UnknownBackendError
from .contract import Backend

__all__ = [
    "ENTRY_POINT_GROUP",
    "register",
    "get_backend",
    "backend_names",
    "BackendInfo",
    "backend_table",
]

ENTRY_POINT_GROUP = "smug.backends"

# name -> (module, class name, options); imported lazily so a missing solver never breaks import smug
_BUILTIN: dict[str, tuple[str, str, dict[str, Any]]] = {
    "z3": ("smug.backends.z3", "Z3Backend", {}),
    "z3:original": ("smug.backends.z3_original", "Z3OriginalBackend", {}),
    "pysmt:msat": ("smug.backends.pysmt", "PySMTBackend", {"solver": "msat"}),
    "pysmt:z3": ("smug.backends.pysmt", "PySMTBackend", {"solver": "z3"}),
    "pysmt:cvc5": ("smug.backends.pysmt", "PySMTBackend", {"solver": "cvc5"}),
    "pysmt:yices": ("smug.backends.pysmt", "PySMTBackend", {"solver": "yices"}),
    "ortools:scip": ("smug.backends.ortools_milp", "ORToolsMILPBackend", {"solver": "SCIP"}),
    "ortools:highs": ("smug.backends.ortools_milp", "ORToolsMILPBackend", {"solver": "HIGHS"}),
    "ortools:cbc": ("smug.backends.ortools_milp", "ORToolsMILPBackend", {"solver": "CBC"}),
    "ortools:cpsat": ("smug.backends.ortools_cpsat", "ORToolsCPSATBackend", {}),
    "gurobi": ("smug.backends.gurobi", "GurobiBackend", {}),
    "pysat:rc2": ("smug.backends.pysat_rc2", "RC2Backend", {}),
    "pyscipopt": ("smug.backends.pyscipopt", "PySCIPOptBackend", {}),
}

_REGISTERED: dict[str, Callable[..., Backend]] = {}
_entry_points_loaded = False


def register(name: str, factory: Callable[..., Backend], *, replace: bool = False) -> None:
    """Register ``factory`` (a Backend subclass or callable ``(name, **options) -> Backend``) under ``name``."""
    if not replace and (name in _REGISTERED or name in _BUILTIN):
        raise ValueError(f"a backend named {name!r} is already registered; pass replace=True to override it")
    _REGISTERED[name] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTERED or ep.name in _BUILTIN:
            continue
        _REGISTERED[ep.name] = _LazyEntryPoint(ep)


class _LazyEntryPoint:
    def __init__(self, ep: Any) -> None:
        self.ep = ep

    def __call__(self, name: str, **options: Any) -> Backend:
        return self.ep.load()(name=name, **options)


def backend_names() -> list[str]:
    """Every backend name: built-in first, then registered and entry-point ones."""
    _load_entry_points()
    return list(_BUILTIN) + [n for n in _REGISTERED if n not in _BUILTIN]


def get_backend(name: str | Backend, **options: Any) -> Backend:
    """Instantiate the backend registered under ``name`` with backend-specific ``options``.

    A :class:`Backend` instance is returned as it is (options then must be empty).
    Raises :class:`~smug.errors.UnknownBackendError` (with close matches) for
    an unknown name.  Does not check that the solver is installed; see
    :func:`require_installed`.
    """
    if isinstance(name, Backend):
        if options:
            raise ValueError("options cannot be given together with a Backend instance")
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend instance, got {type(name).__name__}")
    _load_entry_points()
    if name in _REGISTERED:
        return _REGISTERED[name](name=name, **options)
    if name in _BUILTIN:
        mod, cls, opts = _BUILTIN[name]
        klass = getattr(importlib.import_module(mod), cls)
        return klass(name=name, **{**opts, **options})
    names = backend_names()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownBackendError(f"unknown backend {name!r}.{hint} Known backends: {', '.join(names)}")


def require_installed(backend: Backend) -> None:
    """Raise :class:`~smug.errors.BackendNotInstalledError` with the install command if ``backend`` is missing."""
    if not backend.available():
        raise BackendNotInstalledError(
            f"backend {backend.name!r} is not installed. Install it with: {backend.install_hint()}"
        )


@dataclass
class BackendInfo:
    """One row of ``smug backends``."""

    name: str
    installed: bool
    version: str | None
    install_hint: str
    capabilities: Any


def backend_table() -> list[BackendInfo]:
    """Installation status of every backend (what ``smug backends`` prints)."""
    rows = []
    for n in backend_names():
        try:
            b = get_backend(n)
            v = b.version()
            rows.append(BackendInfo(n, v is not None, v, b.install_hint(), b.capabilities))
        except Exception as exc:  # a broken third-party backend must not hide the others
            rows.append(BackendInfo(n, False, None, f"failed to load: {type(exc).__name__}: {exc}", None))
    return rows
