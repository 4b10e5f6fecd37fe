"""The study spec: which problems, which backends (with options), limits and repeats; read from TOML, strictly.

The minimal form::

    problems = ["dir/*.json"]
    backends = ["ortools:highs", "z3"]
    time_limit = 5
    seeds = [0]

In full, a problem entry is a glob of IR JSON files or a table naming a
generated source, and a backend entry is a name or a table with options (so
encodings are compared as well as solvers)::

    name = "encodings"
    time_limit = 10
    seeds = [0, 1]
    threads = 1
    memory_limit = 2048          # MiB per solver process (optional)

    [[problems]]
    glob = "instances/*.json"    # family: the folder name, unless given
    family = "mine"

    [[problems]]
    source = "synthetic"         # smug_like_problem: n problems of growing size
    n = 12
    seed = 0

    [[problems]]
    source = "smug"              # SMUG first-layer problems of a reference model
    model = "mnist_mlp"          # (trained and cached on first use)
    dataset = "mnist"
    n = 10
    top_k = 25
    gamma = 0.8
    window = 2

    [[backends]]
    name = "z3"
    label = "z3-pb"
    options = { encoding = "pb" }

    [[backends]]                 # options named in SOLVE_OPTIONS go to smug.solve:
    name = "z3"                  # an ablation of the shared reductions
    label = "z3-pb-nopresolve"
    options = { encoding = "pb", presolve = false }

Other sources: ``network`` (full-network problems of a reference MLP on MNIST
or the 8x8 digits) and ``text`` (SMUG problems of the reference text CNN on
Rotten Tomatoes reviews).  Every unknown key is an error with the close match.
"""

from __future__ import annotations

import difflib
import glob as _glob
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "StudySpec",
    "ProblemSource",
    "BackendSpec",
    "load_spec",
    "spec_from_dict",
    "SOURCES",
    "SOLVE_OPTIONS",
    "split_options",
]

#: Keys of a backend's ``options`` that go to :func:`smug.solve` (the shared reductions), not to the backend:
#: so an ablation of presolve, cuts, the greedy start or the certifier is a backend entry like any other.
SOLVE_OPTIONS: tuple[str, ...] = ("presolve", "cuts", "greedy", "certify")


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A backend entry's options as (the backend's own, :data:`SOLVE_OPTIONS` for :func:`smug.solve`)."""
    backend = {k: v for k, v in options.items() if k not in SOLVE_OPTIONS}
    return backend, {k: v for k, v in options.items() if k in SOLVE_OPTIONS}


_TOP = ("name", "problems", "backends", "time_limit", "seeds", "threads", "memory_limit")
#: The keys each generated source takes (besides ``source`` and ``family``).
SOURCES: dict[str, tuple[str, ...]] = {
    "glob": ("glob",),
    "synthetic": ("n", "seed", "kinds", "sizes", "gamma"),
    "smug": ("model", "dataset", "split", "n", "start", "top_k", "gamma", "window", "scoring"),
    "network": ("model", "dataset", "n", "start", "window", "delta"),
    "text": ("n", "start", "top_k", "gamma", "split"),
}
_BACKEND = ("name", "label", "options")


def _unknown(keys: Any, known: tuple[str, ...], where: str) -> None:
    for k in keys:
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {k!r} in {where}{hint}; known: {', '.join(known)}")


@dataclass(frozen=True)
class ProblemSource:
    """One entry of ``problems``: a glob of IR JSON files, or a generated source with its parameters."""

    source: str
    params: dict[str, Any] = field(default_factory=dict)
    family: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The TOML/JSON form (``source`` first; a plain glob stays a table here)."""
        d: dict[str, Any] = {"source": self.source, **self.params}
        if self.family is not None:
            d["family"] = self.family
        return d


@dataclass(frozen=True)
class BackendSpec:
    """One entry of ``backends``: a registered name, its options, and the label the report uses."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def key(self) -> str:
        """The label (default: the name, plus the options when there are any)."""
        if self.label:
            return self.label
        if not self.options:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items())) + "]"

    def options_json(self) -> str:
        """The options as canonical JSON (part of a cell's key in the store)."""
        return json.dumps(self.options, sort_keys=True)


@dataclass(frozen=True)
class StudySpec:
    """A parsed study spec (see the module docstring); :func:`load_spec` reads one from TOML."""

    problems: tuple[ProblemSource, ...]
    backends: tuple[BackendSpec, ...]
    time_limit: float
    seeds: tuple[int, ...] = (0,)
    threads: int = 1
    memory_limit: int | None = None
    name: str = "study"

    def __post_init__(self) -> None:
        if not self.problems:
            raise ConfigError("a study needs at least one entry in problems")
        if not self.backends:
            raise ConfigError("a study needs at least one entry in backends")
        t = self.time_limit
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"time_limit must be a positive number of seconds, got {t!r}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"seeds must be a non-empty list of integers, got {list(self.seeds)!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds has duplicates: {list(self.seeds)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")
        m = self.memory_limit
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 64):
            raise ConfigError(f"memory_limit is MiB per solver process, at least 64; got {m!r}")
        keys = [b.key for b in self.backends]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"two backends share the label {dup[0]!r}; give one a label = '...'")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what :func:`spec_from_dict` reads back)."""
        d: dict[str, Any] = {
            "name": self.name,
            "problems": [p.to_dict() for p in self.problems],
            "backends": [{"name": b.name, "options": dict(b.options), "label": b.label} for b in self.backends],
            "time_limit": self.time_limit,
            "seeds": list(self.seeds),
            "threads": self.threads,
        }
        if self.memory_limit is not None:
            d["memory_limit"] = self.memory_limit
        return d

    def to_toml(self) -> str:
        """The spec as TOML text that :func:`load_spec` reads back to an equal spec."""
        lines = [f"name = {json.dumps(self.name)}", f"time_limit = {self.time_limit!r}"]
        lines.append(f"seeds = {json.dumps(list(self.seeds))}")
        lines.append(f"threads = {self.threads}")
        if self.memory_limit is not None:
            lines.append(f"memory_limit = {self.memory_limit}")
        for p in self.problems:
            lines.append("\n[[problems]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in p.to_dict().items()]
        for b in self.backends:
            lines.append("\n[[backends]]")
            lines.append(f"name = {json.dumps(b.name)}")
            if b.label:
                lines.append(f"label = {json.dumps(b.label)}")
            if b.options:
                lines.append("options = { " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in b.options.items()) + " }")
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        """A short hash of the spec (recorded with the study)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise ConfigError(f"cannot write {v!r} in a spec")


def _problem_source(entry: Any, k: int) -> ProblemSource:
    where = f"problems[{k}]"
    if isinstance(entry, str):
        return ProblemSource("glob", {"glob": entry})
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a glob string or a table, got {type(entry).__name__}")
    entry = dict(entry)
    family = entry.pop("family", None)
    if family is not None and not isinstance(family, str):
        raise ConfigError(f"{where}.family must be a string")
    if "glob" in entry and "source" not in entry:
        entry["source"] = "glob"
    source = entry.pop("source", None)
    if source not in SOURCES:
        close = difflib.get_close_matches(str(source), list(SOURCES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}.source {source!r} is unknown{hint}; choose one of {', '.join(SOURCES)}")
    _unknown(entry, SOURCES[source], where)
    if source == "glob" and not isinstance(entry.get("glob"), str):
        raise ConfigError(f"{where}.glob must be a string such as 'dir/*.json'")
    n = entry.get("n")
    if source != "glob" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"{where}.n must be a positive integer (how many problems), got {n!r}")
    return ProblemSource(source, entry, family)


def _backend(entry: Any, k: int) -> BackendSpec:
    from ..solving.registry import get_backend

    where = f"backends[{k}]"
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a backend name or a table, got {type(entry).__name__}")
    _unknown(entry, _BACKEND, where)
    name, options, label = entry.get("name"), entry.get("options", {}), entry.get("label", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a backend name")
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options must be a table")
    if not isinstance(label, str):
        raise ConfigError(f"{where}.label must be a string")
    for key in SOLVE_OPTIONS:
        v = options.get(key)
        if v is not None and not isinstance(v, bool) and not (key == "certify" and isinstance(v, str)):
            raise ConfigError(f"{where}.options.{key} must be true or false, got {v!r}")
    # unknown names and options fail here, before any work
    get_backend(name, **split_options(options)[0])
    return BackendSpec(name, dict(options), label)


def spec_from_dict(data: Any) -> StudySpec:
    """A :class:`StudySpec` from parsed TOML / JSON data, checked strictly."""
    if not isinstance(data, dict):
        raise ConfigError(f"a study spec is a table, got {type(data).__name__}")
    _unknown(data, _TOP, "the spec")
    for req in ("problems", "backends", "time_limit"):
        if req not in data:
            tables = [t for t in data.get("problems", []) if isinstance(t, dict) and req in t]
            hint = (
                f" ({req!r} sits inside a [[problems]] table: in TOML, top-level keys go before the first table)"
                if tables
                else ""
            )
            raise ConfigError(f"the spec needs {req!r}{hint}")
    problems, backends = data["problems"], data["backends"]
    if not isinstance(problems, list) or not isinstance(backends, list):
        raise ConfigError("problems and backends must be lists")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list):
        raise ConfigError(f"seeds must be a list of integers, got {seeds!r}")
    return StudySpec(
        problems=tuple(_problem_source(p, k) for k, p in enumerate(problems)),
        backends=tuple(_backend(b, k) for k, b in enumerate(backends)),
        time_limit=data["time_limit"],
        seeds=tuple(seeds),
        threads=data.get("threads", 1),
        memory_limit=data.get("memory_limit"),
        name=str(data.get("name", "study")),
    )


def load_spec(path: str | Path) -> StudySpec:
    """Read a study spec from a TOML file; relative globs and ONNX model paths are taken from the file's folder."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"study spec {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study spec {str(p)!r} is not valid TOML: {exc}") from None
    spec = spec_from_dict(data)
    fixed = []
    for src in spec.problems:
        if src.source == "glob" and not Path(src.params["glob"]).expanduser().is_absolute():
            src = ProblemSource("glob", {"glob": str(p.parent / src.params["glob"])}, src.family)
        model = src.params.get("model")
        if isinstance(model, str) and model.lower().endswith(".onnx") and not Path(model).expanduser().is_absolute():
            src = ProblemSource(src.source, {**src.params, "model": str(p.parent / model)}, src.family)
        fixed.append(src)
    spec = StudySpec(
        tuple(fixed), spec.backends, spec.time_limit, spec.seeds, spec.threads, spec.memory_limit, spec.name
    )
    for src in spec.problems:
        if src.source == "glob" and not _glob.glob(str(Path(src.params["glob"]).expanduser()), recursive=True):
            raise ConfigError(f"problems glob {src.params['glob']!r} matches no file")
    return spec
