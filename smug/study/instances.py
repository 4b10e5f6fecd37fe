"""Problem instances of a study: expand the spec's sources into named IR problems, and write a problem library.

:func:`expand` turns one :class:`~smug.study.spec.ProblemSource` into
:class:`Instance` objects (name, family, problem, metadata); every instance has
a content hash (:func:`problem_hash`, SHA-256 of the canonical JSON), which is
what the store keys cells by, so the same problem reached by two routes is one
problem.  :func:`write_library` writes instances as IR JSON plus MPS and
SMT-LIB2, with a metadata table, so outside solvers run the same instances
(``smug instances``).
"""

from __future__ import annotations

import csv
import glob as _glob
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SmugError
from ..ir import Problem
from .spec import ProblemSource

__all__ = ["Instance", "expand", "problem_hash", "write_library", "METADATA_FIELDS"]

#: Columns of a library's ``instances.csv``.
METADATA_FIELDS = ("name", "family", "hash", "source", "n_vars", "n_mask", "n_rows", "nnz", "density", "n_relu", "meta")


def problem_hash(p: Problem) -> str:
    """SHA-256 (hex) of the problem's canonical JSON: equal problems, equal hashes."""
    return hashlib.sha256(p.to_json().encode("utf-8")).hexdigest()


@dataclass
class Instance:
    """One problem of a study: a unique name, its family (for per-family tables), the problem, metadata."""

    name: str
    family: str
    problem: Problem
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    _hash: str | None = None

    @property
    def hash(self) -> str:
        """:func:`problem_hash` of the problem (computed once)."""
        if self._hash is None:
            self._hash = problem_hash(self.problem)
        return self._hash

    def row(self) -> dict[str, Any]:
        """The instance's ``instances.csv`` row."""
        p = self.problem
        cells = p.n_rows * p.n_vars
        return {
            "name": self.name,
            "family": self.family,
            "hash": self.hash,
            "source": self.source,
            "n_vars": p.n_vars,
            "n_mask": p.n_mask,
            "n_rows": p.n_rows,
            "nnz": int(p.A.nnz),
            "density": round(p.A.nnz / cells, 6) if cells else 0.0,
            "n_relu": p.n_relu,
            "meta": json.dumps(self.meta, sort_keys=True),
        }


def _globbed(src: ProblemSource) -> Iterator[Instance]:
    paths = sorted(_glob.glob(str(Path(src.params["glob"]).expanduser()), recursive=True))
    if not paths:
        raise ConfigError(f"problems glob {src.params['glob']!r} matches no file")
    for path in paths:
        p = Path(path)
        try:
            problem = Problem.from_json(str(p))
        except SmugError as exc:
            raise ConfigError(f"problem file {path!r}: {exc}") from None
        yield Instance(p.stem, src.family or p.parent.name or "files", problem, "glob", {"path": str(p)})


def _synthetic(src: ProblemSource) -> Iterator[Instance]:
    from ..testing.generators import smug_like_problem

    n, seed = src.params["n"], int(src.params.get("seed", 0))
    kinds = list(src.params.get("kinds", ["dense", "sparse"]))
    sizes = list(src.params.get("sizes", [(16, 8), (49, 12), (49, 24), (196, 16), (196, 40), (784, 20)]))
    gamma = float(src.params.get("gamma", 0.5))
    for k in range(n):
        kind = kinds[k % len(kinds)]
        n_mask, n_rows = sizes[(k // len(kinds)) % len(sizes)]
        p = smug_like_problem(int(n_mask), int(n_rows), kind=kind, seed=seed + k, gamma=gamma)
        yield Instance(
            f"synthetic-{kind}-{n_mask}x{n_rows}-s{seed + k}",
            src.family or f"synthetic-{kind}",
            p,
            "synthetic",
            {"kind": kind, "n_mask": n_mask, "n_rows": n_rows, "seed": seed + k, "gamma": gamma},
        )


def _smug(src: ProblemSource) -> Iterator[Instance]:
    from ..explain.api import explanation_problem
    from ..zoo.demo import DEMO_CONFIG, capped_config, load_inputs
    from ..zoo.models import pretrained

    prm = src.params
    model_name = prm.get("model", "mnist_mlp")
    dataset, split = prm.get("dataset", "mnist"), prm.get("split", "test")
    start, n = int(prm.get("start", 0)), prm["n"]
    overrides = {k: prm[k] for k in ("top_k", "gamma", "window", "scoring") if k in prm}
    images, labels = load_inputs(dataset, split, list(range(start, start + n)))
    model = pretrained(model_name, progress=False)
    cfg = capped_config(model, images[0], DEMO_CONFIG.merged(**overrides))
    for i, (img, lab) in enumerate(zip(images, labels)):
        p = explanation_problem(model, img, config=cfg)
        yield Instance(
            f"smug-{model_name}-{dataset}{start + i}",
            src.family or f"smug-{model_name}",
            p,
            "smug",
            {"model": model_name, "dataset": dataset, "index": start + i, "label": int(lab), **overrides},
        )


def _network(src: ProblemSource) -> Iterator[Instance]:
    from ..explain.network import network_problem
    from ..zoo.demo import load_inputs
    from ..zoo.models import pretrained

    prm = src.params
    model_name = prm.get("model", "mnist_mlp")
    dataset, start, n = prm.get("dataset", "mnist"), int(prm.get("start", 0)), prm["n"]
    images, _ = load_inputs(dataset, "test", list(range(start, start + n)))
    label = Path(model_name).stem
    if str(model_name).lower().endswith(".onnx"):  # a network in the format verification users share
        from ..zoo.onnx import fit_inputs, load_onnx

        path = Path(model_name).expanduser()
        if not path.is_file():
            raise ConfigError(f"the network source's ONNX model {model_name!r} does not exist")
        model = load_onnx(path)
        images = fit_inputs(model, images, f"{dataset} images given to {model_name!r}")
    else:
        model = pretrained(model_name, progress=False)
    for i, img in enumerate(images):
        p = network_problem(model, img, window=int(prm.get("window", 2)), delta=float(prm.get("delta", 0.0)))
        yield Instance(
            f"network-{label}-{dataset}{start + i}",
            src.family or f"network-{label}",
            p,
            "network",
            {"model": model_name, "dataset": dataset, "index": start + i},
        )


def _text(src: ProblemSource) -> Iterator[Instance]:
    from ..explain.api import explanation_problem
    from ..zoo.demo import TEXT_DEMO_CONFIG, load_texts
    from ..zoo.text import pretrained_text_cnn

    prm = src.params
    start, n = int(prm.get("start", 0)), prm["n"]
    texts, _ = load_texts("rotten_tomatoes", prm.get("split", "test"), list(range(start, start + n)))
    model, vocab = pretrained_text_cnn()
    cfg = TEXT_DEMO_CONFIG.merged(**{k: prm[k] for k in ("top_k", "gamma") if k in prm})
    for i, t in enumerate(texts):
        p = explanation_problem(model, t, config=cfg, tokenizer=vocab)
        yield Instance(f"text-review{start + i}", src.family or "text", p, "text", {"index": start + i})


_EXPANDERS = {"glob": _globbed, "synthetic": _synthetic, "smug": _smug, "network": _network, "text": _text}


def expand(sources: Sequence[ProblemSource]) -> list[Instance]:
    """Every instance of ``sources``, in order; names are made unique (``name``, ``name~2``, ...)."""
    out: list[Instance] = []
    seen: dict[str, int] = {}
    for src in sources:
        for inst in _EXPANDERS[src.source](src):
            k = seen.get(inst.name, 0) + 1
            seen[inst.name] = k
            if k > 1:
                inst.name = f"{inst.name}~{k}"
            out.append(inst)
    return out


def write_library(
    instances: Sequence[Instance],
    out: str | Path,
    *,
    formats: Sequence[str] = ("json", "mps", "smt2"),
) -> Path:
    """Write each instance as ``<family>/<name>.json`` (and ``.mps``, ``.smt2``) under ``out``, plus
    ``instances.csv`` (:data:`METADATA_FIELDS`); returns the CSV's path.  Existing files are replaced."""
    out = Path(out)
    bad = [f for f in formats if f not in ("json", "mps", "smt2")]
    if bad:
        raise ConfigError(f"unknown format(s) {bad}; choose from json, mps, smt2")
    rows = []
    for inst in instances:
        d = out / inst.family
        d.mkdir(parents=True, exist_ok=True)
        writers = {"json": inst.problem.to_json, "mps": inst.problem.to_mps, "smt2": inst.problem.to_smtlib2}
        for f in formats:
            tmp = d / f".{inst.name}.{f}.tmp"
            tmp.write_text(writers[f](), encoding="utf-8")
            tmp.replace(d / f"{inst.name}.{f}")
        rows.append(inst.row())
    table = out / "instances.csv"
    with table.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(METADATA_FIELDS))
        w.writeheader()
        w.writerows(rows)
    return table
