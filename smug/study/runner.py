"""Running a study: the grid of cells (problem x backend x seed), executed by local workers or on Dask.

A *cell* is one ``smug.solve`` of one problem by one backend (with its options)
and one seed, under the spec's time limit.  :func:`run_study` expands the
spec's problems, skips the cells the store already has, claims the rest and
runs them:

* locally (default) in ``workers`` processes (``concurrent.futures``; a worker
  that dies is replaced and its cells are retried, twice, then recorded as
  ``error``);
* on a Dask distributed cluster (``scheduler="tcp://..."``), or on a
  ``LocalCluster`` it starts (``dask_local=N``); Dask retries tasks whose worker
  died.

Every cell runs its solve in a solver child under the hard time limit (so a
stuck or crashing solver is a recorded outcome, never a hung study) and records
wall time, CPU time and peak memory of the solver process, status, objective,
bound, exact verification, backend version and host.  Results are written to
the store as they arrive.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..solving.pipeline import die_with_parent
from .instances import Instance, expand
from .spec import StudySpec, load_spec, split_options
from .store import Store, cell_key

__all__ = ["Cell", "cells_of", "run_cell", "run_study", "study_status", "RunSummary"]

_MAX_ATTEMPTS = 3


@dataclass
class Cell:
    """One solve of the grid: what to run (``task``, plain data for any worker) and its store fields."""

    key: str
    fields: dict[str, Any]
    task: dict[str, Any]


def cells_of(spec: StudySpec, instances: list[Instance]) -> list[Cell]:
    """The grid in a fixed order: every instance x backend x seed."""
    out = []
    for inst in instances:
        text = inst.problem.to_json()
        for be in spec.backends:
            for seed in spec.seeds:
                key = cell_key(inst.hash, be.name, be.options_json(), seed, spec.time_limit, spec.threads)
                fields = {
                    "key": key,
                    "problem": inst.hash,
                    "name": inst.name,
                    "family": inst.family,
                    "backend": be.name,
                    "label": be.key,
                    "options": be.options_json(),
                    "seed": seed,
                    "time_limit": spec.time_limit,
                    "threads": spec.threads,
                }
                task = {
                    "problem": text,
                    "backend": be.name,
                    "options": dict(be.options),
                    "seed": seed,
                    "time_limit": spec.time_limit,
                    "threads": spec.threads,
                    "memory_limit": spec.memory_limit,
                }
                out.append(Cell(key, fields, task))
    return out


def _cell_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """What a cell keeps of a solution's stats: where the answer came from and where the time went."""
    cert = stats.get("certification") or {}
    out = {
        "decided_by": stats.get("decided_by"),
        "backend_seconds": stats.get("backend_seconds"),
        "certified": cert.get("certified"),
        "certify_seconds": cert.get("seconds"),
        "killed": stats.get("killed"),
    }
    return {k: v for k, v in out.items() if v is not None and (not isinstance(v, float) or math.isfinite(v))}


def run_cell(task: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (in any worker process): solve under the hard limit and measure it; never raises."""
    import multiprocessing as mp

    import smug
    from smug.errors import UnsupportedProblemError
    from smug.ir import Problem
    from smug.solving.registry import get_backend

    if mp.current_process().daemon:
        # Dask's worker processes are daemonic, and a daemonic process may not start the solver child; the
        # child dies with its parent anyway (PR_SET_PDEATHSIG), which is what the daemon flag is for
        mp.current_process().daemon = False
    out: dict[str, Any] = {"host": socket.gethostname()}
    t0 = time.perf_counter()
    try:
        problem = Problem.from_json(task["problem"])
        backend_opts, solve_opts = split_options(task["options"])
        be = get_backend(task["backend"], **backend_opts)
        out["version"] = be.version()
        sol = smug.solve(
            problem,
            be,
            time_limit=task["time_limit"],
            seed=task["seed"],
            threads=task["threads"],
            memory_limit=task.get("memory_limit"),
            isolate=True,
            **solve_opts,
        )
        out.update(
            status=sol.status.value,
            objective=sol.objective,
            exact_objective=None if sol.exact_objective is None else str(sol.exact_objective),
            bound=sol.bound,
            verified=sol.verified,
            cpu=sol.stats.get("cpu_time"),
            peak_mb=sol.stats.get("peak_rss_mb"),
            message=(sol.message or "")[:500],
            stats=json.dumps(_cell_stats(sol.stats)),
        )
    except UnsupportedProblemError as exc:  # the backend cannot state this problem: not a failure of it
        out.update(status="unsupported", message=str(exc)[:500])
    except Exception as exc:  # noqa: BLE001 -- a cell's failure is its outcome
        out.update(status="error", message=f"{type(exc).__name__}: {exc}"[:500], trace=traceback.format_exc()[-2000:])
    out["wall"] = time.perf_counter() - t0
    return out


@dataclass
class RunSummary:
    """What one :func:`run_study` call did."""

    total: int
    already_done: int
    ran: int
    claimed_elsewhere: int
    seconds: float
    folder: Path


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cells", unit="cell", file=sys.stderr, disable=None)  # off on a non-TTY


def _run_local(
    cells: list[Cell],
    workers: int,
    on_result: Callable[[Cell, dict[str, Any]], None],
    fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Run ``cells`` in a pool of ``workers`` processes (``fn``: the cell function, :func:`run_cell` by default);
    a pool broken by a dying worker is replaced and the unfinished cells resubmitted."""
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    pending = {c.key: c for c in cells}
    attempts = dict.fromkeys(pending, 0)
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    while pending:
        broken = False
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent) as pool:
            futures = {pool.submit(fn or run_cell, c.task): c for c in pending.values()}
            for fut in cf.as_completed(futures):
                c = futures[fut]
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken = True
                    attempts[c.key] += 1
                    if attempts[c.key] >= _MAX_ATTEMPTS:
                        res = {"status": "error", "message": f"the worker process died {_MAX_ATTEMPTS} times"}
                    else:
                        continue
                res["attempts"] = attempts[c.key] + 1
                on_result(c, res)
                pending.pop(c.key, None)
        if not broken:
            break


def _run_dask(
    cells: list[Cell], scheduler: str | None, dask_local: int | None, on_result: Callable[[Cell, dict[str, Any]], None]
) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("the Dask path needs dask.distributed: pip install 'dask[distributed]'") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout="30s")
    try:
        futures = {}
        for c in cells:
            f = client.submit(run_cell, c.task, pure=False, retries=_MAX_ATTEMPTS - 1, key=f"smug-cell-{c.key}")
            futures[f.key] = (f, c)
        for fut in as_completed([f for f, _ in futures.values()]):
            c = futures[fut.key][1]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 -- e.g. KilledWorker after the retries
                res = {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500]}
            on_result(c, res)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_study(
    spec: StudySpec | str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    dask_local: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run (or resume) the study ``spec`` into the folder ``out``; finished cells are skipped.

    Args:
        spec: a :class:`StudySpec` or the path of its TOML file.
        out: the study folder (its store is ``out/study.sqlite``).
        workers: local worker processes (default: the machine's core count).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``).
        dask_local: start a Dask ``LocalCluster`` with this many workers.
        progress: a progress bar on stderr.
        log: where status lines go (default: stderr).
    """
    say = log or (lambda s: print(s, file=sys.stderr))
    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    if scheduler is not None and dask_local is not None:
        raise ConfigError("give either a Dask scheduler address or --dask-local N, not both")
    if dask_local is not None and (isinstance(dask_local, bool) or not isinstance(dask_local, int) or dask_local < 1):
        raise ConfigError(f"dask_local must be a positive number of workers, got {dask_local!r}")
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    from ..solving.registry import get_backend, require_installed

    for b in spec.backends:
        require_installed(get_backend(b.name, **split_options(b.options)[0]))
    t0 = time.perf_counter()
    with Store(out) as store:
        previous = store.meta("spec_digest")
        if previous is not None and previous != spec.digest():
            say(
                "note: the spec changed since this folder's last run; cells are keyed by their contents, so only "
                "new cells run and old ones stay in the store"
            )
        store.set_meta("spec", spec.to_dict())
        store.set_meta("spec_digest", spec.digest())
        instances = expand(spec.problems)
        store.add_problems(i.row() for i in instances)
        cells = cells_of(spec, instances)
        done = store.done_keys()
        todo = [c for c in cells if c.key not in done]
        stale = max(600.0, 4 * spec.time_limit + 120)
        mine, others = store.claim([c.key for c in todo], stale)
        run = [c for c in todo if c.key in set(mine)]
        say(
            f"{len(cells)} cells: {len(cells) - len(todo)} done, {len(run)} to run"
            + (f", {len(others)} being run by another run" if others else "")
        )
        bar = _progress(len(run), progress)

        def on_result(c: Cell, res: dict[str, Any]) -> None:
            res.pop("trace", None)
            store.record({**c.fields, **res, "attempts": res.get("attempts", 1)})
            store.refresh_claims()
            if bar is not None:
                bar.update(1)

        try:
            if run:
                if scheduler is not None or dask_local is not None:
                    _run_dask(run, scheduler, dask_local, on_result)
                else:
                    _run_local(run, n_workers, on_result)
        finally:
            if bar is not None:
                bar.close()
    return RunSummary(len(cells), len(cells) - len(todo), len(run), len(others), time.perf_counter() - t0, Path(out))


def study_status(out: str | Path) -> dict[str, Any]:
    """What a study folder holds: cells done (by status and backend), running (open claims), failed."""
    with Store(out, create=False) as store:
        cells = store.cells()
        claims = store.claims()
        spec = store.meta("spec")
    by_status: dict[str, int] = {}
    for c in cells:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    failed = [c for c in cells if c["status"] == "error"]
    return {
        "spec": spec,
        "done": len(cells),
        "by_status": by_status,
        "running": len(claims),
        "running_by": sorted({c["owner"] for c in claims}),
        "failed": [
            {"name": c["name"], "label": c["label"], "seed": c["seed"], "message": c["message"]} for c in failed
        ],
    }
