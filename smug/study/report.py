"""Scoring a study and writing its report: wrong answers first, then solved, PAR-2, the virtual best solver.

Definitions (per backend label, over the cells of the study):

* **solved**: the cell ended ``optimal`` or ``infeasible`` (both proven exactly);
* **wrong**: a cell whose answer contradicts what is known exactly: a
  ``feasible``/``optimal`` answer that is not ``verified`` (its assignment does
  not satisfy the problem exactly); an ``optimal`` claim whose exact objective
  is beaten by another cell's verified solution (so of two disagreeing proven
  optima the higher is wrong); an ``infeasible`` claim on a problem where some
  cell has a verified solution.  Wrong answers are listed first and loudly;
* **PAR-2**: the mean over cells of the wall time when solved, else twice the
  time limit (wrong answers count as unsolved, and so do ``unsupported`` cells:
  problems the backend cannot state, such as ReLU rows on CP-SAT);
* the **virtual best solver** (VBS): per (problem, seed), the fastest solved
  cell of any backend.

:func:`write_report` writes ``report.md`` and a self-contained ``report.html``
(figures embedded) plus ``cactus.png``, ``scatter.png`` and ``families.png``
into the study folder, nothing elsewhere.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from .store import Store

__all__ = ["wrong_answers", "score", "vbs", "family_table", "write_report", "SOLVED"]

SOLVED = ("optimal", "infeasible")


def _frac(v: Any) -> Fraction | None:
    return None if v in (None, "") else Fraction(v)


def _has_verified_value(c: dict[str, Any]) -> bool:
    return c["status"] in ("optimal", "feasible") and bool(c["verified"]) and c["exact_objective"] not in (None, "")


def wrong_answers(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cells whose answers contradict the exact facts of the study (see the module docstring), with a reason."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        by_problem[c["problem"]].append(c)
    out = []
    for group in by_problem.values():
        verified = [c for c in group if c["status"] in ("optimal", "feasible") and c["verified"]]
        best_verified = min((_frac(c["exact_objective"]) for c in verified if c["exact_objective"]), default=None)
        for c in group:
            reason = None
            if c["status"] in ("optimal", "feasible") and not c["verified"]:
                reason = "its solution does not satisfy the problem exactly (not verified)"
            elif c["status"] == "optimal":
                mine = _frac(c["exact_objective"])
                if best_verified is not None and mine is not None and best_verified < mine:
                    reason = f"claims optimum {mine} but a verified solution has {best_verified}"
            elif c["status"] == "infeasible" and verified:
                reason = f"claims infeasible but {verified[0]['label']} has a verified solution"
            if reason:
                out.append({**c, "reason": reason})
    return out


def score(cells: Sequence[dict[str, Any]], time_limit: float) -> list[dict[str, Any]]:
    """Per backend label: cells, solved, optimal, infeasible, wrong, PAR-2, total and median time, and ``best``:
    the cells whose verified exact objective is the best any backend found for that problem (an incumbent at the
    limit counts when no one did better)."""
    wrong = {c["key"] for c in wrong_answers(cells)}
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    best_of: dict[str, Fraction] = {}
    for c in cells:
        by_label[c["label"]].append(c)
        if _has_verified_value(c) and c["key"] not in wrong:
            v = _frac(c["exact_objective"])
            best_of[c["problem"]] = min(best_of.get(c["problem"], v), v)
    rows = []
    for label, group in by_label.items():
        solved = [c for c in group if c["status"] in SOLVED and c["key"] not in wrong]
        par2 = [c["wall"] if (c["status"] in SOLVED and c["key"] not in wrong) else 2 * time_limit for c in group]
        walls = [c["wall"] for c in group if c["wall"] is not None]
        rows.append(
            {
                "label": label,
                "cells": len(group),
                "wrong": sum(1 for c in group if c["key"] in wrong),
                "solved": len(solved),
                "optimal": sum(1 for c in solved if c["status"] == "optimal"),
                "infeasible": sum(1 for c in solved if c["status"] == "infeasible"),
                "feasible": sum(1 for c in group if c["status"] == "feasible" and c["key"] not in wrong),
                "timeout": sum(1 for c in group if c["status"] == "timeout"),
                "error": sum(1 for c in group if c["status"] == "error"),
                "unsupported": sum(1 for c in group if c["status"] == "unsupported"),
                "best": sum(
                    1
                    for c in group
                    if _has_verified_value(c)
                    and c["key"] not in wrong
                    and _frac(c["exact_objective"]) == best_of.get(c["problem"])
                ),
                "par2": statistics.fmean(par2) if par2 else math.nan,
                "total_time": sum(walls),
                "median_time": statistics.median(walls) if walls else math.nan,
                "cpu_time": sum(c["cpu"] or 0.0 for c in group),
                "peak_mb": max((c["peak_mb"] or 0.0 for c in group), default=0.0),
            }
        )
    rows.sort(key=lambda r: (-r["wrong"], -r["solved"], r["par2"]))  # wrong answers first and loudly
    return rows


def vbs(cells: Sequence[dict[str, Any]], time_limit: float) -> dict[str, Any]:
    """The virtual best solver: per (problem, seed) the fastest correct solved cell; its solved count and PAR-2."""
    wrong = {c["key"] for c in wrong_answers(cells)}
    best: dict[tuple[str, int], float] = {}
    slots: set[tuple[str, int]] = set()
    for c in cells:
        slot = (c["problem"], c["seed"])
        slots.add(slot)
        if c["status"] in SOLVED and c["key"] not in wrong:
            best[slot] = min(best.get(slot, math.inf), c["wall"])
    par2 = [best.get(s, 2 * time_limit) for s in slots]
    return {
        "solved": len(best),
        "problems": len(slots),
        "par2": statistics.fmean(par2) if par2 else math.nan,
        "times": sorted(best.values()),
    }


def family_table(cells: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[int, int]]]:
    """``{family: {label: (solved, cells)}}`` (wrong answers not solved)."""
    wrong = {c["key"] for c in wrong_answers(cells)}
    t: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for c in cells:
        e = t[c["family"]][c["label"]]
        e[1] += 1
        e[0] += int(c["status"] in SOLVED and c["key"] not in wrong)
    return {f: {lab: (v[0], v[1]) for lab, v in d.items()} for f, d in sorted(t.items())}


# ---------------------------------------------------------------- figures
def _cactus(cells: Sequence[dict[str, Any]], labels: list[str], time_limit: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = {c["key"] for c in wrong_answers(cells)}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.cm.tab20.colors if len(labels) > 10 else plt.cm.tab10.colors
    for k, lab in enumerate(labels):
        t = sorted(c["wall"] for c in cells if c["label"] == lab and c["status"] in SOLVED and c["key"] not in wrong)
        style = ("-", "--", ":", "-.")[(k // len(colors)) % 4]
        ax.step(
            t,
            range(1, len(t) + 1),
            where="post",
            label=f"{lab} ({len(t)})",
            color=colors[k % len(colors)],
            linestyle=style,
        )
    v = vbs(cells, time_limit)["times"]
    ax.step(
        v,
        range(1, len(v) + 1),
        where="post",
        color="k",
        linestyle="--",
        linewidth=1.6,
        label=f"virtual best ({len(v)})",
    )
    ax.set_xscale("log")
    ax.set_xlabel("wall time (s, log)")
    ax.set_ylabel("cells solved (optimal or infeasible)")
    ax.axvline(time_limit, color="grey", linewidth=0.8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("cactus: cells solved within a time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _scatter(cells: Sequence[dict[str, Any]], labels: list[str], time_limit: float, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = labels[:5]
    pairs = [(a, b) for i, a in enumerate(shown) for b in shown[i + 1 :]]
    if not pairs:
        return None
    t: dict[tuple[str, str, int], float] = {}
    for c in cells:
        t[(c["label"], c["problem"], c["seed"])] = c["wall"] if c["status"] in SOLVED else 2 * time_limit
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows), squeeze=False)
    lo = max(1e-3, min((v for v in t.values() if v > 0), default=1e-3) / 1.5)
    hi = 2 * time_limit * 1.5
    for ax, (a, b) in zip(axes.flat, pairs):
        keys = sorted({(p, s) for (lab, p, s) in t if lab == a} & {(p, s) for (lab, p, s) in t if lab == b})
        xs = [t[(a, p, s)] for p, s in keys]
        ys = [t[(b, p, s)] for p, s in keys]
        ax.scatter(xs, ys, s=10, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"{a} (s)", fontsize=8)
        ax.set_ylabel(f"{b} (s)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    fig.suptitle("pairwise wall times (unsolved at 2x the limit)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _heatmap(cells: Sequence[dict[str, Any]], labels: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    table = family_table(cells)
    fams = list(table)
    M = np.array(
        [[table[f].get(lab, (0, 0))[0] / max(1, table[f].get(lab, (0, 1))[1]) for lab in labels] for f in fams]
    )
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.45 * len(fams)))
    im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(fams)), fams, fontsize=7)
    for i, f in enumerate(fams):
        for j, lab in enumerate(labels):
            s, n = table[f].get(lab, (0, 0))
            ax.text(j, i, f"{s}/{n}", ha="center", va="center", fontsize=6, color="white" if M[i, j] < 0.6 else "k")
    fig.colorbar(im, ax=ax, label="fraction solved")
    ax.set_title("solved per family", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- report
def _fmt(v: Any, spec: str = "{:.3f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return spec.format(v) if isinstance(v, float) else str(v)


def write_report(folder: str | Path) -> dict[str, Path]:
    """Score the study in ``folder`` and write ``report.md``, ``report.html`` and the figures there."""
    folder = Path(folder)
    with Store(folder, create=False) as store:
        cells = store.cells()
        spec = store.meta("spec") or {}
        claims = store.claims()
    time_limit = float(spec.get("time_limit", 1.0))
    scores = score(cells, time_limit)
    labels = [r["label"] for r in scores]
    wrong = wrong_answers(cells)
    v = vbs(cells, time_limit)
    paths: dict[str, Path] = {}
    if cells:
        paths["cactus"] = _cactus(cells, labels, time_limit, folder / "cactus.png")
        sc = _scatter(cells, labels, time_limit, folder / "scatter.png")
        if sc is not None:
            paths["scatter"] = sc
        paths["families"] = _heatmap(cells, labels, folder / "families.png")
    md = [f"# Study {spec.get('name', '')}: {len(cells)} cells, time limit {time_limit:g} s", ""]
    if claims:
        md += [f"*{len(claims)} cells are still running or were left by a killed run; rerun `smug study run`.*", ""]
    md += ["## Wrong answers", ""]
    if wrong:
        md += [f"**{len(wrong)} WRONG ANSWER(S)** (cells whose answer contradicts an exact fact of the study):", ""]
        md += ["| backend | problem | seed | status | reason |", "|---|---|---|---|---|"]
        md += [f"| {w['label']} | {w['name']} | {w['seed']} | {w['status']} | {w['reason']} |" for w in wrong]
    else:
        md += ["None: every answer agrees with the exact facts of the study."]
    md += ["", "## Backends", ""]
    md += [
        "| backend | cells | wrong | solved | optimal | infeasible | feasible | best found | timeout | error "
        "| unsupported | PAR-2 (s) | total (s) | median (s) | CPU (s) | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in scores:
        md.append(
            f"| {r['label']} | {r['cells']} | {'**' + str(r['wrong']) + '**' if r['wrong'] else 0} | {r['solved']} "
            f"| {r['optimal']} | {r['infeasible']} | {r['feasible']} | {r['best']} | {r['timeout']} | {r['error']} "
            f"| {r['unsupported']} "
            f"| {_fmt(r['par2'])} | {_fmt(r['total_time'], '{:.1f}')} | {_fmt(r['median_time'])} "
            f"| {_fmt(r['cpu_time'], '{:.1f}')} | {_fmt(r['peak_mb'], '{:.0f}')} |"
        )
    md.append(f"| *virtual best* | {v['problems']} | | {v['solved']} | | | | | | | | {_fmt(v['par2'])} | | | | |")
    md += ["", "## Per family (solved / cells)", ""]
    table = family_table(cells)
    md += ["| family | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for f, d in table.items():
        md.append(f"| {f} | " + " | ".join("{}/{}".format(*d.get(lab, (0, 0))) for lab in labels) + " |")
    md += [
        "",
        "Solved: optimal or infeasible, proven exactly. Best found: the verified objective equals the best any "
        "backend found for the problem (a proven optimum or the best incumbent). PAR-2: mean wall time, "
        "unsolved cells at twice the limit. Virtual best: per problem and seed, the fastest correct solved cell.",
    ]
    for name in ("cactus", "scatter", "families"):
        if name in paths:
            md += ["", f"![{name}]({paths[name].name})"]
    paths["md"] = folder / "report.md"
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")
    paths["html"] = folder / "report.html"
    paths["html"].write_text(_html(md, paths), encoding="utf-8")
    return paths


def _html(md: list[str], paths: dict[str, Path]) -> str:
    """A self-contained HTML page of the Markdown report (tables and headings; figures inlined)."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>smug study</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}strong{color:#b00}img{max-width:100%}",
        "</style></head><body>",
    ]
    in_table = False
    for line in md:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
                continue
            row = "".join(
                f"<td><strong>{html.escape(c.strip('*'))}</strong></td>"
                if c.startswith("**")
                else f"<td><em>{html.escape(c.strip('*'))}</em></td>"
                if c.startswith("*") and c.endswith("*") and len(c) > 1
                else f"<td>{html.escape(c)}</td>"
                for c in cells
            )
            out.append(f"<tr>{row}</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("!["):
            name = line[2 : line.index("]")]
            data = base64.b64encode(paths[name].read_bytes()).decode()
            out.append(f"<p><img alt='{name}' src='data:image/png;base64,{data}'></p>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            text = html.escape(line).replace("**", "")
            out.append(f"<p>{text}</p>")
    if in_table:
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
