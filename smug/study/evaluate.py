"""The comparison study: every explanation method on real inputs, scored with :mod:`smug.study.metrics`.

:func:`run_image_study` runs each method on the first ``n`` MNIST test images
for one reference model and writes, under ``out_dir/<model>/``:

- ``study.sqlite``: the study store (:class:`smug.study.store.Store`, the one
  crash-safe store of every study kind), one row per (model, method, input),
  committed as soon as it is computed, so an interrupted study loses at most the
  row in flight and a rerun resumes where it stopped (rows already there are
  skipped, failed ones retried); a folder written by an older version
  (``rows.jsonl``) is imported when the store is first opened;
- ``rows.jsonl``: the same rows exported as JSON lines at the end of a run (for JSONL readers);
- ``maps/<method>/<index>.npy``: the saliency maps of the first ``figure_inputs`` inputs;
- ``summary.csv``, ``summary.json``, ``summary.md``: one row per method;
- ``figure.png``: those inputs (rows) x each method's map (columns);
- ``curves.png``: each method's insertion and deletion curves, averaged over the inputs.

Per input, every method gets the same measurements:

- ``saliency_metric`` (**lower is better**), with the best box's ``box_area`` and ``box_probability``;
- ``sparsity`` (**lower is sparser**): for SMUG the minimal mask's kept fraction
  (the pixels the solver proved sufficient); for the other methods, whose maps
  are dense, the fraction of pixels holding 90% of the map's mass
  (``mass90_fraction``, reported for every method, SMUG included);
- ``nonzero_fraction``: the fraction of pixels with a non-zero map value;
- ``insertion_auc`` (**higher is better**) and ``deletion_auc`` (**lower is better**), zero baseline;
- ``seconds``: wall-clock time of the method's ``attribute`` call for that one input.

SMUG runs with the demo's settings (top_k=200, gamma=0.8, window=2); ``top_k`` is
capped at the first layer's neuron count (32 for ``mnist_mlp``, so every active
neuron is constrained there).

Maps are made non-negative per method (:attr:`smug.methods.MethodInfo.map_mode`).
A method that raises on an input gets a row with ``error`` set and no metrics; a
rerun retries those inputs.

:func:`run_text_study` does the same for the reference text CNN on the first
``n`` Rotten Tomatoes test reviews, with the text methods (SMUG on tokens,
PathwayGrad, Integrated Gradients and the gradient norm on the embeddings, the
optimised mask over tokens, token occlusion; :mod:`smug.methods.text`) and the text metrics: the saliency metric's text
form, best over thresholds of each token map (:func:`smug.study.metrics.best_text_saliency_metric`;
``box_area`` then holds the kept-token fraction and ``box_probability`` the
probability with only those tokens), sparsity over tokens, and insertion /
deletion over tokens.  It writes ``figure.png`` (token maps of a few reviews)
and ``figure.html`` (the same reviews shaded per method) as well.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:  # torch loads on first use, so `smug --help` and `smug backends` stay fast
    import torch

__all__ = [
    "IMAGE_METHODS",
    "TEXT_METHODS",
    "run_text_study",
    "StudyResult",
    "run_image_study",
    "summarise",
    "format_markdown",
    "write_summary",
    "plot_map_grid",
    "plot_mean_curves",
    "read_rows",
    "study_lock",
    "add_arguments",
    "run_from_args",
    "main",
]

#: The image study's default methods (SMUG with the demo's settings on SCIP first).
IMAGE_METHODS: tuple[str, ...] = (
    "smug:ortools:scip",
    "pathwaygrad",
    "pathwaygrad-ig",
    "optimised-mask",
    "integrated-gradients",
    "saliency",
    "occlusion",
    "feature-ablation",
)

#: The text study's default methods (SMUG with the text demo's settings on two backends first).
TEXT_METHODS: tuple[str, ...] = (
    "smug:ortools:scip",
    "smug:z3",
    "pathwaygrad",
    "optimised-mask",
    "integrated-gradients",
    "saliency",
    "occlusion",
)

#: Reference text models (run by :func:`run_text_study`).
TEXT_MODEL_NAMES: tuple[str, ...] = ("text_cnn",)

#: Summary columns: (key, header, format); the header's arrow gives the better direction.
_SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("method", "method", "{}"),
    ("n", "inputs", "{}"),
    ("saliency_metric_mean", "saliency metric ↓ (mean)", "{:.3f}"),
    ("saliency_metric_median", "(median)", "{:.3f}"),
    ("box_area_mean", "box area", "{:.3f}"),
    ("box_probability_mean", "box prob.", "{:.3f}"),
    ("sparsity_mean", "sparsity ↓", "{:.3f}"),
    ("mass90_fraction_mean", "90% mass ↓", "{:.3f}"),
    ("insertion_auc_mean", "insertion AUC ↑", "{:.3f}"),
    ("deletion_auc_mean", "deletion AUC ↓", "{:.3f}"),
    ("seconds_mean", "s / input (mean)", "{:.3f}"),
    ("seconds_median", "(median)", "{:.3f}"),
    ("errors", "errors", "{}"),
]


@dataclass
class StudyResult:
    """What a study produced.

    Attributes:
        rows: one dict per (method, input) (see the module docstring for the keys).
        summary: one dict per method (means and medians).
        paths: the files written (``store``, ``rows``, ``summary_csv``, ``summary_json``, ``summary_md``,
            ``figure``).
    """

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    paths: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------- rows on disk
#: The store's record kind of this study's rows (:meth:`smug.study.store.Store.put_record`).
ROW_KIND = "evaluate"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _row_key(r: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (r.get("model"), r.get("method"), r.get("index"))


def _store_key(r: dict[str, Any]) -> str:
    return json.dumps(list(_row_key(r)))


def _parse_rows(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The rows of ``rows.jsonl`` bytes, one per (model, method, input) key, and how many lines were dropped.

    A line that is not a JSON object (a torn write) is dropped; of several rows
    with one key (two runs that raced), a successful row beats an error row and
    a later one beats an earlier one.
    """
    by_key: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    dropped = 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if not isinstance(row, dict):
            dropped += 1
            continue
        key = _row_key(row)
        old = by_key.get(key)
        if old is not None:
            dropped += 1
            if row.get("error") and not old.get("error"):
                continue
        by_key[key] = row
    return list(by_key.values()), dropped


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a study: ``path`` is its folder (``<out>/<model>``, read from its ``study.sqlite``) or a
    ``rows.jsonl`` file (the export, or a folder of an older smug version), one row per (model, method, input).

    Reading the store works while a study writes to it (WAL mode); a JSONL file's
    torn lines are skipped and its duplicate keys collapsed.
    """
    from .store import STORE_NAME, Store

    p = Path(path)
    if p.is_dir() or p.name == STORE_NAME:
        folder = p if p.is_dir() else p.parent
        if not (folder / STORE_NAME).exists():
            return []
        with Store(folder, create=False) as store:
            return store.records(ROW_KIND)
    return _parse_rows(p.read_bytes())[0] if p.exists() else []


def _import_legacy_rows(store: Any, out: Path) -> int:
    """On the store's first opening, move the successful rows of an older version's ``rows.jsonl`` into it
    (torn lines and duplicates dropped).  Returns how many rows came in."""
    if store.meta("rows_imported", False):
        return 0
    legacy = out / "rows.jsonl"
    rows = [r for r in _parse_rows(legacy.read_bytes())[0] if not r.get("error")] if legacy.exists() else []
    for r in rows:
        store.put_record(ROW_KIND, _store_key(r), r)
    store.set_meta("rows_imported", True)
    return len(rows)


def _export_rows(store: Any, out: Path) -> Path:
    """Write every row as ``rows.jsonl`` (a derived copy for JSONL readers; the store is the record), atomically."""
    path = out / "rows.jsonl"
    _write_atomic(path, "".join(json.dumps(r) + "\n" for r in store.records(ROW_KIND)))
    return path


@contextlib.contextmanager
def study_lock(out: Path) -> Iterator[Path]:
    """Hold the exclusive lock of the study folder ``out`` (``out/.lock``) for the block.

    A second study on the same folder fails at once with a :class:`ConfigError`
    naming the process that holds it, instead of writing every row twice.  The
    lock is an ``flock``: the kernel releases it when its holder dies, even by
    SIGKILL, so a crashed run never leaves the folder locked.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    lock_path = out / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"another study (pid {holder}) is writing to {out}; wait for it to finish, or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield lock_path
    finally:
        os.close(fd)  # releases the flock


def _open_rows(out: Path, key: str, resume: bool) -> tuple[Any, set[tuple[str, int]]]:
    """The study's store (``out/study.sqlite``; emptied of this study's rows unless ``resume``; an older
    ``rows.jsonl`` imported once) and the (method, index) pairs already done for model ``key``.

    Failed rows are not done: a rerun retries them (and its result replaces them)."""
    from .store import Store

    store = Store(out)
    try:
        if not resume:
            store.drop_records(ROW_KIND)
            store.set_meta("rows_imported", True)
        _import_legacy_rows(store, out)
        done = {(r["method"], r["index"]) for r in store.records(ROW_KIND, failed=False) if r.get("model") == key}
    except BaseException:
        store.close()
        raise
    return store, done


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads (``None``: as is); yields the count in effect."""
    import torch

    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield threads if threads is not None else old
    finally:
        torch.set_num_threads(old)


def _record(
    store: Any,
    row: dict[str, Any],
    map_path: Path | None,
    measure: Callable[..., tuple[dict[str, Any], np.ndarray]],
    *args: Any,
) -> None:
    """Run ``measure(*args)`` for one (method, input), save its map to ``map_path`` (if given), store the row.

    An exception becomes the row's ``error``: one failing input must not lose the study.  The row is one
    committed transaction of the store, so a kill at any point loses at most the row being computed.
    """
    try:
        fields, m = measure(*args)
        row.update(fields)
        if map_path is not None:
            map_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(map_path, m.astype(np.float32))
    except Exception as exc:  # noqa: BLE001 -- recorded in the row, retried by a rerun
        row["error"] = f"{type(exc).__name__}: {exc}"
    clean = {k: _finite(v) for k, v in row.items()}
    store.put_record(ROW_KIND, _store_key(clean), clean, failed=bool(clean.get("error")))


def _finished_rows(store: Any, key: str, methods: Sequence[str], n: int, threads: int) -> tuple[list, list]:
    """The study's rows for model ``key`` (the first ``n`` inputs, the chosen methods) and their summary."""
    rows = [r for r in store.records(ROW_KIND) if r.get("model") == key and r["method"] in methods and r["index"] < n]
    summary = summarise(rows, methods)
    for srow in summary:
        srow["threads"] = threads
    return rows, summary


def _smug_options(name: str, model: torch.nn.Module, x: torch.Tensor, opts: dict[str, Any]) -> dict[str, Any]:
    """SMUG's options for this model: the demo's ``top_k=200``, capped at the first layer's neuron count."""
    if not name.startswith("smug") or "top_k" in opts or "config" in opts:
        return opts
    from ..zoo.demo import DEMO_CONFIG, capped_config

    return {**opts, "top_k": capped_config(model, x, DEMO_CONFIG).top_k}


def _finite(v: Any) -> Any:
    """``v`` with every non-finite float (also inside lists and dicts) replaced by ``None`` (JSON has no NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_finite(e) for e in v]
    if isinstance(v, dict):
        return {k: _finite(e) for k, e in v.items()}
    return v


# ---------------------------------------------------------------------- one input
def _measure_image(
    model: torch.nn.Module,
    method: str,
    attributor: Any,
    map_mode: str,
    x: torch.Tensor,
    steps: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """Run one method on one input ``(1, C, H, W)`` and measure it: (row fields, the map)."""
    from .metrics import insertion_deletion, saliency_metric, sparsity, to_map

    with warnings.catch_warnings():
        # top_k may cover every first-layer neuron (capped for small layers): SMUG then constrains the active ones
        warnings.filterwarnings("ignore", message=r"only \d+ of the first layer's neurons are active")
        t0 = time.perf_counter()
        attr = attributor.attribute(x)
        seconds = time.perf_counter() - t0
    m = to_map(attr[0], map_mode)
    sm = saliency_metric(model, x[0], m)
    idl = insertion_deletion(model, x[0], m, steps=steps)
    row: dict[str, Any] = {
        "seconds": seconds,
        "target": sm.target,
        "saliency_metric": sm.score,
        "box_area": sm.area,
        "box_probability": sm.probability,
        "nonzero_fraction": sparsity(m),
        "mass90_fraction": sparsity(m, mass=0.9),
        "insertion_auc": idl.insertion_auc,
        "deletion_auc": idl.deletion_auc,
        "insertion_curve": [round(float(v), 5) for v in idl.insertion],
        "deletion_curve": [round(float(v), 5) for v in idl.deletion],
    }
    _sparsity_fields(row, method, attributor)
    return row, m


def _sparsity_fields(row: dict[str, Any], method: str, attributor: Any) -> Any:
    """Add the sparsity fields (and, for SMUG, the explanation's status and mask); returns SMUG's explanation."""
    explanations = getattr(attributor, "explanations", None)
    if method.startswith("smug") and explanations:
        e = explanations[0]
        row.update(
            top_k=e.config.top_k,
            gamma=e.config.gamma,
            sparsity=e.kept_fraction,
            sparsity_definition="mask kept fraction",
            status=e.status.value,
            verified=bool(e.verified),
            mask_size=e.mask_size,
            masked_probability=e.masked_probability,
            masked_prediction=e.masked_prediction,
        )
        return e
    row.update(sparsity=row["mass90_fraction"], sparsity_definition="fraction holding 90% of the map's mass")
    return None


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="input", disable=None if enabled else True)


def run_image_study(
    model_name: str,
    n: int = 100,
    methods: Sequence[str] = IMAGE_METHODS,
    *,
    dataset: str = "mnist",
    split: str = "test",
    out_dir: str | Path = "bench/results/study",
    progress: bool = True,
    resume: bool = True,
    figure_inputs: int = 6,
    method_options: dict[str, dict[str, Any]] | None = None,
    curve_steps: int = 56,
    threads: int | None = 1,
    trust_pickle: bool = False,
) -> StudyResult:
    """Run every method on the first ``n`` images and score them; write rows, tables and a figure.

    Args:
        model_name: ``mnist_cnn``, ``mnist_mlp`` (trained and cached on first use) or a saved module's path.
        n: how many inputs (the first ``n`` of the split).
        methods: registry names (:func:`smug.methods.method_names`; ``smug:<backend>`` for SMUG,
            which uses the demo's settings: top_k=200, gamma=0.8, window=2).
        dataset: ``mnist`` or ``digits``.
        split: ``test`` or ``train`` (MNIST only).
        out_dir: results go to ``out_dir/<model stem>/``.
        progress: show a progress bar per method.
        resume: keep the rows already in the store and skip their (method, input) pairs;
            ``False`` starts the study afresh.
        figure_inputs: how many inputs the figure shows (their maps are saved).
        method_options: per method name, keyword arguments for its constructor.
        curve_steps: insertion / deletion curve segments.
        threads: torch's intra-op threads during the study (restored afterwards; ``None``: leave
            as is).  One thread gives steadier timings on a shared machine: with two threads
            competing with other jobs, a small convolution can take ten times longer.
        trust_pickle: allow a model file that is a whole pickled module (loading it runs code
            from the file; see :func:`smug.zoo.demo.load_model`).

    Returns:
        A :class:`StudyResult`.
    """

    from ..methods import method_info
    from ..zoo.demo import load_inputs, load_model

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    if isinstance(figure_inputs, bool) or not isinstance(figure_inputs, int) or figure_inputs < 1:
        raise ConfigError(f"figure_inputs must be a positive int (the inputs the figure shows), got {figure_inputs!r}")
    for name in methods:
        method_info(name)  # unknown names fail before any work
    model = load_model(model_name, trust_pickle=trust_pickle)
    model_key = Path(model_name).stem
    images, labels = load_inputs(dataset, split, list(range(n)))
    out = Path(out_dir) / model_key
    with study_lock(out):  # a second study on this folder fails at once; a crash frees the lock
        store, done = _open_rows(out, model_key, resume)
        opts = method_options or {}
        with store, _torch_threads(threads) as used_threads:
            _run_methods(
                model=model,
                model_key=model_key,
                methods=methods,
                images=images,
                labels=labels,
                store=store,
                done=done,
                opts=opts,
                figure_inputs=figure_inputs,
                curve_steps=curve_steps,
                progress=progress,
                dataset=f"{dataset}/{split}",
                out=out,
            )
            rows, summary = _finished_rows(store, model_key, methods, n, used_threads)
            rows_path = _export_rows(store, out)
        paths = {"rows": rows_path, "store": store.path,
                 **write_summary(summary, out, title=_title(model_key, dataset, split, n))}  # fmt: skip
        fig_path = out / "figure.png"
        shown = list(range(min(figure_inputs, n)))
        plot_map_grid(images[shown], labels[shown], out / "maps", methods, shown, fig_path, title=model_key)
        paths["figure"] = fig_path
        paths["curves"] = plot_mean_curves(rows, methods, out / "curves.png", title=model_key)
        return StudyResult(rows, summary, paths)


def _run_methods(
    *,
    model: torch.nn.Module,
    model_key: str,
    methods: Sequence[str],
    images: np.ndarray,
    labels: np.ndarray,
    store: Any,
    done: set[tuple[str, int]],
    opts: dict[str, dict[str, Any]],
    figure_inputs: int,
    curve_steps: int,
    progress: bool,
    dataset: str,
    out: Path,
) -> None:
    """Every method on every input not yet in ``done``; each row stored at once."""
    import torch

    from ..methods import get_method, method_info

    with torch.no_grad():
        predictions = model(torch.from_numpy(images)).argmax(1).tolist()
    for name in methods:
        todo = [i for i in range(len(images)) if (name, i) not in done]
        if not todo:
            continue
        options = _smug_options(name, model, torch.from_numpy(images[:1].copy()), opts.get(name, {}))
        attributor = get_method(name, model, **options)
        mode = method_info(name).map_mode
        maps_dir = out / "maps" / _safe(name)
        for i in _progress(todo, len(todo), name, progress):
            x = torch.from_numpy(images[i : i + 1].copy())
            row: dict[str, Any] = {
                "model": model_key,
                "dataset": dataset,
                "method": name,
                "index": i,
                "label": int(labels[i]),
                "prediction": int(predictions[i]),
                "correct": int(labels[i]) == int(predictions[i]),
            }
            map_path = maps_dir / f"{i:05d}.npy" if i < figure_inputs else None
            _record(store, row, map_path, _measure_image, model, name, attributor, mode, x, curve_steps)


def _title(model: str, dataset: str, split: str, n: int) -> str:
    return f"Model `{model}`, the first {n} {dataset}/{split} inputs."


# ------------------------------------------------------------------------------ text
class _SmugText:
    """SMUG on token ids with the text demo's settings (``attribute(ids (1, L)) -> (1, L)``)."""

    def __init__(self, model: Any, vocab: Any, backend: str):
        from ..explain.api import MinimalMask
        from ..zoo.demo import TEXT_DEMO_CONFIG

        self.mm = MinimalMask(model, backend=backend, config=TEXT_DEMO_CONFIG, tokenizer=vocab)

    @property
    def explanations(self) -> list[Any]:
        return self.mm.explanations

    def attribute(self, ids: Any, target: Any = None) -> Any:
        return self.mm.attribute(ids, target=target)


_TEXT_TABLE_NAMES = ("pathwaygrad", "optimised-mask", "integrated-gradients", "saliency", "occlusion")


def _check_text_method(name: Any) -> None:
    """Fail before any work on a text method name that :func:`_text_method` would refuse."""
    if isinstance(name, str) and (name == "smug" or name.startswith("smug:")):
        from ..methods import method_info

        method_info(name if ":" in name else "smug:ortools:scip")  # checks the backend
        return
    if name not in _TEXT_TABLE_NAMES:
        raise ConfigError(f"unknown text method {name!r}; choose from {list(TEXT_METHODS)} or 'smug:<backend>'")


def _text_method(name: str, model: Any, vocab: Any, options: dict[str, Any]) -> tuple[Any, str]:
    """(attributor, map mode) of a text method."""
    from ..methods.text import (
        TextIntegratedGradients,
        TextOcclusion,
        TextOptimisedMask,
        TextPathwayGrad,
        TextSaliency,
    )

    if name.startswith("smug"):
        return _SmugText(model, vocab, name.split(":", 1)[1] if ":" in name else "ortools:scip"), "identity"
    table = {  # gradient norms and the optimised mask are non-negative already
        "pathwaygrad": (TextPathwayGrad, "identity"),
        "optimised-mask": (TextOptimisedMask, "identity"),
        "integrated-gradients": (TextIntegratedGradients, "positive"),
        "saliency": (TextSaliency, "identity"),
        "occlusion": (TextOcclusion, "positive"),
    }
    if name not in table:
        raise ConfigError(f"unknown text method {name!r}; choose from {list(TEXT_METHODS)} or 'smug:<backend>'")
    cls, mode = table[name]
    return cls(model, **options), mode


def _resample(curve: np.ndarray, points: int = 21) -> list[float]:
    fr = np.linspace(0.0, 1.0, curve.size)
    return [round(float(v), 5) for v in np.interp(np.linspace(0.0, 1.0, points), fr, curve)]


def _measure_text(model: Any, method: str, attributor: Any, map_mode: str, ids: Any) -> tuple[dict[str, Any], Any]:
    """Run one text method on one review ``(1, L)`` and measure it: (row fields, the token map)."""
    from .metrics import best_text_saliency_metric, sparsity, text_insertion_deletion, text_saliency_metric

    t0 = time.perf_counter()
    attr = attributor.attribute(ids)
    seconds = time.perf_counter() - t0
    raw = np.asarray(attr[0].detach().double().numpy())
    m = np.maximum(raw, 0.0) if map_mode == "positive" else np.abs(raw) if map_mode == "abs" else raw
    sm = best_text_saliency_metric(model, ids[0], m)
    idl = text_insertion_deletion(model, ids[0], m)
    row: dict[str, Any] = {
        "seconds": seconds,
        "target": sm.target,
        "tokens": int(ids.shape[1]),
        "saliency_metric": sm.score,
        "box_area": sm.kept_fraction,
        "box_probability": sm.probability,
        "nonzero_fraction": sparsity(m),
        "mass90_fraction": sparsity(m, mass=0.9) if m.sum() > 0 else 0.0,
        "insertion_auc": idl.insertion_auc,
        "deletion_auc": idl.deletion_auc,
        "insertion_curve": _resample(idl.insertion),
        "deletion_curve": _resample(idl.deletion),
    }
    e = _sparsity_fields(row, method, attributor)
    if e is not None:
        row["mask_metric"] = text_saliency_metric(model, ids[0], e.kept.astype(int)).score
    return row, m


def run_text_study(
    model_name: str = "text_cnn",
    n: int = 100,
    methods: Sequence[str] = TEXT_METHODS,
    *,
    split: str = "test",
    out_dir: str | Path = "bench/results/study",
    progress: bool = True,
    resume: bool = True,
    figure_inputs: int = 6,
    method_options: dict[str, dict[str, Any]] | None = None,
    threads: int | None = 1,
) -> StudyResult:
    """Run every text method on the first ``n`` Rotten Tomatoes reviews of ``split``; write rows, tables, figures.

    Args:
        model_name: ``text_cnn`` (the reference text CNN, trained and cached on first use).
        n: how many reviews.
        methods: names from :data:`TEXT_METHODS` (``smug:<backend>`` for SMUG with the text demo's
            settings, top_k=30 and gamma=0.5).
        split: the Rotten Tomatoes split.
        out_dir: results go to ``out_dir/<model>/``.
        progress: show a progress bar per method.
        resume: keep the rows already written and skip their (method, review) pairs.
        figure_inputs: how many reviews the figures show.
        method_options: per method name, keyword arguments for its constructor.
        threads: torch's intra-op threads during the study (restored afterwards).

    Returns:
        A :class:`StudyResult`.
    """
    import torch

    from ..zoo.demo import load_text_model, load_texts

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    if isinstance(figure_inputs, bool) or not isinstance(figure_inputs, int) or figure_inputs < 1:
        raise ConfigError(f"figure_inputs must be a positive int (the inputs the figure shows), got {figure_inputs!r}")
    if model_name not in TEXT_MODEL_NAMES:
        raise ConfigError(f"the text study runs the reference models {TEXT_MODEL_NAMES}, got {model_name!r}")
    for name in methods:
        _check_text_method(name)  # unknown names and backends fail before any work
    model, vocab = load_text_model(model_name)
    texts, labels = load_texts("rotten_tomatoes", split, list(range(n)))
    limit = getattr(model, "max_len", None)
    seqs = [vocab.encode(t, max_len=limit, truncate="silent") for t in texts]
    out = Path(out_dir) / model_name
    with study_lock(out):  # a second study on this folder fails at once; a crash frees the lock
        store, done = _open_rows(out, model_name, resume)
        opts = method_options or {}
        with store, _torch_threads(threads) as used_threads:
            for name in methods:
                todo = [i for i in range(n) if (name, i) not in done]
                if not todo:
                    continue
                attributor, mode = _text_method(name, model, vocab, opts.get(name, {}))
                maps_dir = out / "maps" / _safe(name)
                for i in _progress(todo, len(todo), name, progress):
                    ids = torch.tensor([seqs[i]])
                    with torch.no_grad():
                        pred = int(model(ids).argmax(1))
                    row: dict[str, Any] = {
                        "model": model_name,
                        "dataset": f"rotten_tomatoes/{split}",
                        "method": name,
                        "index": i,
                        "label": int(labels[i]),
                        "prediction": pred,
                        "correct": int(labels[i]) == pred,
                    }
                    map_path = maps_dir / f"{i:05d}.npy" if i < figure_inputs else None
                    _record(store, row, map_path, _measure_text, model, name, attributor, mode, ids)
            rows, summary = _finished_rows(store, model_name, methods, n, used_threads)
            rows_path = _export_rows(store, out)
        for srow in summary:
            mine = [r for r in rows if r["method"] == srow["method"] and r.get("mask_metric") is not None]
            if mine:
                srow["mask_metric_mean"] = float(np.mean([r["mask_metric"] for r in mine]))
        title = f"Model `{model_name}`, the first {n} rotten_tomatoes/{split} reviews."
        paths = {"rows": rows_path, "store": store.path, **write_summary(summary, out, title=title)}
        md = paths["summary_md"]
        md.write_text(
            md.read_text()
            + "\nFor text, *box area* is the kept-token fraction and *box prob.* the probability with only those "
            "tokens (the best threshold of each token map); sparsity and 90% mass count tokens; insertion and "
            "deletion add / remove tokens (zero embedding).\n"
            + "".join(
                f"- `{srow['method']}`: the saliency metric of the minimal mask itself is "
                f"{srow['mask_metric_mean']:.3f} (mean).\n"
                for srow in summary
                if "mask_metric_mean" in srow
            )
        )
        shown = list(range(min(figure_inputs, n)))
        tokens = [vocab.decode(seqs[i]) for i in shown]
        paths["figure"] = plot_token_grid(tokens, [int(labels[i]) for i in shown], out / "maps", methods, shown,
                                          out / "figure.png", title=model_name)  # fmt: skip
        paths["figure_html"] = _token_page(tokens, out / "maps", methods, shown, out / "figure.html")
        paths["curves"] = plot_mean_curves(rows, methods, out / "curves.png", title=model_name)
        return StudyResult(rows, summary, paths)


def plot_token_grid(
    tokens: Sequence[Sequence[str]],
    labels: Sequence[int],
    maps_dir: Path,
    methods: Sequence[str],
    indices: Sequence[int],
    path: Path,
    title: str = "",
) -> Path:
    """One panel per review: a (method x token) heat map, each method's row scaled to its own maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(indices)
    width = max(8.0, 0.34 * max(len(t) for t in tokens) + 2.5)
    fig, axes = plt.subplots(panels, 1, figsize=(width, (0.32 * len(methods) + 1.1) * panels), squeeze=False)
    for ax, idx, toks, lab in zip(axes[:, 0], indices, tokens, labels):
        grid = np.zeros((len(methods), len(toks)))
        for r, name in enumerate(methods):
            f = maps_dir / _safe(name) / f"{idx:05d}.npy"
            if f.exists():
                m = np.load(f).astype(np.float64)
                top = float(np.abs(m).max())
                grid[r] = m / top if top > 0 else m
        ax.imshow(np.ma.masked_where(grid <= 0, grid), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(toks)))
        ax.set_xticklabels(toks, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels([m.replace("smug:ortools:", "smug/").replace("smug:", "smug/") for m in methods], fontsize=7)
        ax.set_title(f"review #{idx} (label {lab})", fontsize=8, loc="left")
    if title:
        fig.suptitle(f"{title}: token maps (each row scaled to its maximum)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _token_page(
    tokens: Sequence[Sequence[str]], maps_dir: Path, methods: Sequence[str], indices: Sequence[int], path: Path
) -> Path:
    from ..explain.render.text import render_html_page

    items = []
    for idx, toks in zip(indices, tokens):
        for name in methods:
            f = maps_dir / _safe(name) / f"{idx:05d}.npy"
            if f.exists():
                m = np.load(f).astype(np.float64)
                items.append({"tokens": list(toks), "saliency": m, "kept": (m > 0).astype(int),
                              "heading": f"review #{idx}: {name}"})  # fmt: skip
    path.write_text(render_html_page(items, title="Token maps per method"), encoding="utf-8")
    return path


# ------------------------------------------------------------------------ summaries
def summarise(rows: Sequence[dict[str, Any]], methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One dict per method: counts, means and medians of the measurements (rows with ``error`` left out)."""
    order = list(methods) if methods is not None else list(dict.fromkeys(r["method"] for r in rows))
    keys = [
        "saliency_metric",
        "box_area",
        "box_probability",
        "sparsity",
        "nonzero_fraction",
        "mass90_fraction",
        "insertion_auc",
        "deletion_auc",
        "seconds",
    ]
    out = []
    for name in order:
        mine = [r for r in rows if r["method"] == name]
        ok = [r for r in mine if not r.get("error")]
        s: dict[str, Any] = {"method": name, "n": len(ok), "errors": len(mine) - len(ok)}
        for k in keys:
            v = np.array([r[k] for r in ok if r.get(k) is not None], dtype=np.float64)
            s[f"{k}_mean"] = float(v.mean()) if v.size else None
            s[f"{k}_median"] = float(np.median(v)) if v.size else None
        if any("verified" in r for r in ok):
            s["verified_fraction"] = float(np.mean([bool(r.get("verified")) for r in ok]))
            s["optimal_fraction"] = float(np.mean([r.get("status") == "optimal" for r in ok]))
            s["masked_probability_mean"] = float(np.mean([r["masked_probability"] for r in ok]))
        out.append(s)
    return out


def format_markdown(summary: Sequence[dict[str, Any]], title: str = "") -> str:
    """The summary as a markdown table (arrows in the headers: ↓ lower is better, ↑ higher is better)."""
    head = "| " + " | ".join(h for _, h, _ in _SUMMARY_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in _SUMMARY_COLUMNS) + "|"
    lines = [title, ""] if title else []
    lines += [head, sep]
    for s in summary:
        cells = [fmt.format(s[k]) if s.get(k) is not None else "–" for k, _, fmt in _SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    smug_rows = [s for s in summary if "verified_fraction" in s]
    if smug_rows:
        lines.append("")
        for s in smug_rows:
            lines.append(
                f"- `{s['method']}`: {s['optimal_fraction']:.0%} of masks proven optimal, "
                f"{s['verified_fraction']:.0%} verified by replay; mean probability on the masked input "
                f"{s['masked_probability_mean']:.3f}."
            )
    lines += [
        "",
        "Sparsity: SMUG's minimal-mask kept fraction; for the other methods the fraction of pixels holding "
        "90% of the map's mass (the `90% mass` column gives that for every method).",
    ]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: a kill leaves the old or the new."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_summary(summary: Sequence[dict[str, Any]], out: Path, title: str = "") -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.json`` and ``summary.md`` to ``out`` (each atomically); returns their paths."""
    import io

    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary_csv": out / "summary.csv", "summary_json": out / "summary.json", "summary_md": out / "summary.md"}
    keys = list(dict.fromkeys(k for s in summary for k in s))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for s in summary:
        w.writerow(s)
    _write_atomic(paths["summary_csv"], buf.getvalue())
    _write_atomic(paths["summary_json"], json.dumps(list(summary), indent=2))
    _write_atomic(paths["summary_md"], format_markdown(summary, title))
    return paths


def plot_map_grid(
    images: np.ndarray,
    labels: Sequence[int],
    maps_dir: Path,
    methods: Sequence[str],
    indices: Sequence[int],
    path: Path,
    title: str = "",
) -> Path:
    """A grid: one row per input (the image first), one column per method's map over the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(indices), len(methods) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
    for r, (idx, img) in enumerate(zip(indices, images)):
        show = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        axes[r, 0].imshow(show, cmap="gray")
        axes[r, 0].set_ylabel(f"#{idx} ({labels[r]})", fontsize=8)
        for c, name in enumerate(methods, start=1):
            ax = axes[r, c]
            ax.imshow(show, cmap="gray", alpha=0.45)
            f = maps_dir / _safe(name) / f"{idx:05d}.npy"
            if f.exists():
                m = np.load(f)
                top = float(m.max())
                shown = np.ma.masked_where(m <= 1e-3 * top, m)  # hide the numerically-zero background
                ax.imshow(shown, cmap="jet", alpha=0.75, vmin=0, vmax=top if top > 0 else 1)
            if r == 0:
                ax.set_title(name.replace("smug:ortools:", "smug/"), fontsize=7)
    axes[0, 0].set_title("input", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_mean_curves(rows: Sequence[dict[str, Any]], methods: Sequence[str], path: Path, title: str = "") -> Path:
    """Each method's insertion and deletion curves averaged over its inputs (:func:`smug.study.metrics.plot_curves`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import InsertionDeletion, plot_curves

    results = {}
    for name in methods:
        mine = [r for r in rows if r["method"] == name and not r.get("error") and r.get("insertion_curve")]
        if not mine:
            continue
        ins = np.mean([r["insertion_curve"] for r in mine], axis=0)
        dele = np.mean([r["deletion_curve"] for r in mine], axis=0)
        fr = np.linspace(0.0, 1.0, ins.size)
        results[name] = InsertionDeletion(
            fr, ins, dele, float(np.trapezoid(ins, fr)), float(np.trapezoid(dele, fr)), target=-1
        )
    fig = plot_curves(results, title=f"{title}: mean over inputs" if title else None)
    fig.set_size_inches(11, 4.2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's command-line options (for ``smug evaluate`` or ``python -m smug.study.evaluate``)."""
    parser.add_argument(
        "models",
        nargs="*",
        default=["mnist_cnn", "mnist_mlp", "text_cnn"],
        help="reference models or paths (text_cnn runs the text study on Rotten Tomatoes reviews)",
    )
    parser.add_argument("--n", type=int, default=100, help="inputs per model (the first n of the split)")
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated method names (images: {','.join(IMAGE_METHODS)}; text: {','.join(TEXT_METHODS)})",
    )
    parser.add_argument("--out", default="bench/results/study", help="output folder")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"], help="image dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument("--figure-inputs", type=int, default=6)
    parser.add_argument("--fresh", action="store_true", help="discard earlier rows instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow model files that are whole pickled modules (loading one runs code from the file)",
    )


def _check_models(models: Sequence[str]) -> None:
    """Every model is a reference name or an existing file (checked before anything loads)."""
    from ..zoo.models import MODEL_NAMES

    for m in models:
        if m not in MODEL_NAMES and m not in TEXT_MODEL_NAMES and not Path(m).is_file():
            raise ConfigError(
                f"model {m!r} is neither a reference model ({', '.join(MODEL_NAMES + TEXT_MODEL_NAMES)}) "
                "nor an existing file"
            )


def run_from_args(args: argparse.Namespace) -> list[StudyResult]:
    """Run the study for parsed :func:`add_arguments` options; prints each model's table.

    Every model, method and backend name and ``--n`` is checked before the first model loads.
    """
    from ..methods import method_info

    chosen = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if isinstance(args.n, bool) or not isinstance(args.n, int) or args.n < 1:
        raise ConfigError(f"--n must be a positive integer, got {args.n!r}")
    if args.figure_inputs < 1:
        raise ConfigError(f"--figure-inputs must be a positive integer, got {args.figure_inputs}")
    _check_models(args.models)
    for model in args.models:
        for name in chosen or (TEXT_METHODS if model in TEXT_MODEL_NAMES else IMAGE_METHODS):
            _check_text_method(name) if model in TEXT_MODEL_NAMES else method_info(name)
    results = []
    for model in args.models:
        common = dict(
            n=args.n,
            split=args.split,
            out_dir=args.out,
            progress=not args.quiet,
            resume=not args.fresh,
            figure_inputs=args.figure_inputs,
        )
        if model in TEXT_MODEL_NAMES:
            res = run_text_study(model, methods=chosen or TEXT_METHODS, **common)
        else:
            res = run_image_study(
                model,
                methods=chosen or IMAGE_METHODS,
                dataset=args.dataset,
                trust_pickle=getattr(args, "trust_pickle", False),
                **common,
            )
        print(res.paths["summary_md"].read_text())
        print(f"rows: {res.paths['rows']}\nfigure: {res.paths['figure']}\ncurves: {res.paths['curves']}")
        results.append(res)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m smug.study.evaluate [models...] [--n N] [--methods a,b] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="smug evaluate", description="compare explanation methods on MNIST digits and Rotten Tomatoes reviews"
    )
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
