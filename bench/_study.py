"""What the study-based bench scripts share: run a spec through ``smug study`` (resuming), report it, and a table.

A bench script is a spec (``bench/specs/*.toml``) plus the few lines that measure what a study cell does not.
"""

from __future__ import annotations

import json
import statistics
import tomllib
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

from smug.study.report import score, write_report
from smug.study.runner import run_study
from smug.study.spec import StudySpec, load_spec, spec_from_dict
from smug.study.store import Store

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "bench" / "specs"


def spec_with(path: Path, *, n: int | None = None, time_limit: float | None = None,
              backends: list[str] | None = None) -> StudySpec:  # fmt: skip
    """The spec at ``path``, with the number of problems per source, the limit or the backends overridden."""
    if n is None and time_limit is None and not backends:
        return load_spec(path)
    data = tomllib.loads(path.read_text())
    if n is not None:
        for p in data["problems"]:
            p["n"] = n
    if time_limit is not None:
        data["time_limit"] = time_limit
    if backends:
        data["backends"] = backends
    return spec_from_dict(data)


def run(spec: StudySpec, out: Path, workers: int = 1) -> list[dict[str, Any]]:
    """Run (or resume) ``spec`` into ``out``, write its report there; the finished cells."""
    run_study(spec, out, workers=workers)
    write_report(out)
    with Store(out, create=False) as store:
        return store.cells()


def table(cells: list[dict[str, Any]], time_limit: float) -> list[str]:
    """Markdown rows: per backend, proven optimal, feasible at the limit, no mask, wrong, median and worst wall,
    and the mean mask size (objective) over the cells with a verified mask."""
    scores = score(cells, time_limit)
    order = [r["label"] for r in scores]
    wrong = {r["label"]: r["wrong"] for r in scores}
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        by[c["label"]].append(c)
    lines = [
        "| backend | proven optimal | feasible at limit | no mask | wrong | median wall (s) | worst wall (s) "
        "| mean mask size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in order:
        cs = by[label]
        opt = sum(c["status"] == "optimal" for c in cs)
        feas = sum(c["status"] == "feasible" for c in cs)
        walls = [c["wall"] for c in cs]
        sizes = [float(Fraction(c["exact_objective"])) for c in cs if c["verified"] and c["exact_objective"]]
        ms = f"{statistics.fmean(sizes):.2f}" if sizes else "-"
        lines.append(
            f"| {label} | {opt}/{len(cs)} | {feas} | {len(cs) - opt - feas} | {wrong[label]} "
            f"| {statistics.median(walls):.3f} | {max(walls):.2f} | {ms} |"
        )
    return lines


def stats(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's recorded solution stats (``decided_by``, ``backend_seconds``, ``certified``, ...)."""
    return json.loads(cell.get("stats") or "{}")
