"""The ``smug`` command.

``smug demo`` explains a handful of MNIST test digits with the reference CNN
(``smug demo --text``: Rotten Tomatoes reviews with the reference text CNN);
``smug explain --config FILE.toml`` runs the same on chosen inputs and settings
(``smug explain --text "a raw review"`` explains raw text with a text model);
``smug explain-network`` finds minimal masks that keep the whole network's
prediction (baseline or robust masking, cardinality or subset minimality);
``smug evaluate`` compares explanation methods (SMUG, PathwayGrad, the optimised
mask, Captum's gradient methods) on MNIST test images and Rotten Tomatoes reviews;
``smug backends`` lists every backend with its installation status;
``smug solve PROBLEM.json`` solves a serialised IR problem with any backend;
``smug export PROBLEM.json --format smt2|mps`` writes it for outside solvers.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser", "EXIT_CODES"]

#: ``smug solve``'s exit status per solution status; 2 is bad input (``smug: error: ...``) for every command.
EXIT_CODES: dict[str, int] = {
    "optimal": 0,
    "error": 1,
    "feasible": 3,
    "infeasible": 4,
    "timeout": 5,
    "unknown": 6,
}


def _check_backend(name: Any) -> None:
    """Fail fast (before any model, data or problem is loaded) on an unknown or missing backend."""
    from .solving.registry import get_backend, require_installed

    require_installed(get_backend(name))


def _check_positive(value: Any, flag: str, *, integer: bool = False, allow_none: bool = False) -> None:
    import math

    from .errors import ConfigError

    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive finite number"
        raise ConfigError(f"{flag} must be {kind}, got {value!r}")


def _check_indices(indices: Any, flag: str = "--indices") -> None:
    from .errors import ConfigError

    bad = [i for i in indices or [] if i < 0]
    if bad:
        raise ConfigError(f"{flag} must be non-negative, got {bad}")


def _check_output_file(path: Any, flag: str) -> None:
    """The folder an output file goes to must exist and be a folder (checked before the slow work)."""
    import os
    from pathlib import Path

    from .errors import ConfigError

    if not path:
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path!r}: the folder {str(parent)!r} does not exist; create it first")
    if Path(path).is_dir():
        raise ConfigError(f"{flag} {path!r} is a folder; give a file name")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {path!r}: the folder {str(parent)!r} is not writable")


def _check_output_dir(path: Any, flag: str = "--out", force: bool = True) -> None:
    """The output folder must be a folder; without ``force`` it must also be new or empty (no silent overwrite)."""
    from pathlib import Path

    from .errors import ConfigError

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path!r} is a file, not a folder")
    if not force and p.is_dir():
        n = sum(1 for _ in p.iterdir())
        if n:
            raise ConfigError(
                f"{flag} {path!r} already holds {n} file(s) from an earlier run; choose another {flag}, "
                "or pass --force to overwrite its files"
            )


def _cmd_backends(args: argparse.Namespace) -> int:
    from .solving.registry import backend_table

    rows = backend_table()
    if args.json:
        print(
            json.dumps(
                [
                    {"name": r.name, "installed": r.installed, "version": r.version, "install_hint": r.install_hint}
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    w = max(len(r.name) for r in rows)
    print(f"{'backend':<{w}}  {'installed':<9}  version / install with")
    print(f"{'-' * w}  {'-' * 9}  {'-' * 40}")
    for r in rows:
        detail = r.version if r.installed else r.install_hint
        print(f"{r.name:<{w}}  {'yes' if r.installed else 'no':<9}  {detail}")
    return 0


def _cmd_solve(args: argparse.Namespace) -> int:
    import numpy as np

    from .ir import Problem
    from .solving.run import solve

    _check_positive(args.time_limit, "--time-limit", allow_none=True)
    _check_positive(args.threads, "--threads", integer=True)
    _check_positive(args.num_solutions, "--num-solutions", integer=True)
    _check_output_file(args.output, "--output")
    _check_backend(args.backend)
    problem = Problem.from_json(args.problem)
    sol = solve(
        problem,
        args.backend,
        time_limit=args.time_limit,
        seed=args.seed,
        threads=args.threads,
        num_solutions=args.num_solutions,
        verbose=args.verbose,
    )
    out = sol.to_dict()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
    print(
        f"{sol.backend}: {sol.status.value}, objective {sol.objective}, bound {sol.bound}, "
        f"verified {sol.verified}, {sol.total_time:.3f} s"
    )
    if sol.mask is not None:
        kept = [int(i) for i in np.flatnonzero(np.asarray(sol.mask) > 0.5)]
        print(f"mask: {len(kept)} of {problem.n_mask} kept: {kept}")
    if sol.status.value == "error" and sol.message:
        print(f"smug: solver error: {sol.message}", file=sys.stderr)
    return EXIT_CODES[sol.status.value]


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import ConfigError
    from .ir import Problem

    _check_output_file(args.output, "--output")
    fmt = args.format
    if fmt is None:  # from the output file's extension
        ext = Path(args.output).suffix.lower().lstrip(".") if args.output else ""
        fmt = {"smt2": "smt2", "smt": "smt2", "mps": "mps", "lp": "lp"}.get(ext)
        if fmt is None:
            raise ConfigError(
                f"cannot tell the format from {args.output!r}: give -o a .smt2, .mps or .lp file, or --format"
                if args.output
                else "give --format smt2|mps|lp (or -o FILE with one of those extensions)"
            )
    problem = Problem.from_json(args.problem)
    text = {"smt2": problem.to_smtlib2, "mps": problem.to_mps, "lp": problem.to_lp}[fmt]()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _run_demo(
    model_spec: str,
    dataset: str,
    split: str,
    indices: list[int],
    config: Any,
    out: str,
    *,
    cap_top_k: bool = False,
    trust_pickle: bool = False,
    force: bool = True,
) -> int:
    from pathlib import Path

    from .zoo.demo import capped_config, describe, format_table, load_inputs, load_model, run_explanations

    _check_backend(config.backend)
    _check_indices(indices)
    _check_output_dir(out, force=force)
    images, labels = load_inputs(dataset, split, indices)  # bad indices fail before a model is loaded
    model = load_model(model_spec, trust_pickle=trust_pickle)
    if len(images):
        # the demo's 200 neurons; the MLP's first layer has 32 (silent in the demo, a warning for explain)
        config = capped_config(model, images[0], config, warn=not cap_top_k)
    print(describe(config, {"model": model_spec, "data": f"{dataset}/{split}"}))
    rows = run_explanations(model, images, labels, indices, config, Path(out))
    print(format_table(rows))
    print(f"\nPNGs (input | minimal mask | saliency) and JSON written to {Path(out).resolve()}")
    return 0 if all(r.explanation.verified for r in rows) else 1


def _run_text_demo(
    model_spec: str,
    vocab_path: str | None,
    texts: list[str],
    labels: Any,
    indices: list[int],
    config: Any,
    out: str,
    source: str,
    trust_pickle: bool = False,
    force: bool = True,
) -> int:
    from pathlib import Path

    from .zoo.demo import describe, format_text_table, load_text_model, run_text_explanations

    _check_backend(config.backend)
    _check_output_dir(out, force=force)
    model, vocab = load_text_model(model_spec, vocab_path, trust_pickle=trust_pickle)
    print(describe(config, {"model": model_spec, "data": source}))
    rows = run_text_explanations(model, vocab, texts, labels, indices, config, Path(out))
    print(format_text_table(rows, color=sys.stdout.isatty()))
    print(f"\nHTML page (tokens shaded by saliency, kept tokens marked) and JSON written to {Path(out).resolve()}")
    print("columns: pred = on the full text, kept = on the kept tokens only, removed = with the kept tokens masked")
    return 0 if all(r.explanation.verified for r in rows) else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .zoo.demo import DEMO_CONFIG, TEXT_DEMO_CONFIG, load_texts

    _check_positive(args.n, "-n", integer=True)
    cfg = (TEXT_DEMO_CONFIG if args.text else DEMO_CONFIG).merged(**({"backend": args.backend} if args.backend else {}))
    _check_backend(cfg.backend)
    if args.text:
        indices = list(range(args.n))
        texts, labels = load_texts("rotten_tomatoes", "test", indices)
        model = args.model or "text_cnn"
        return _run_text_demo(
            model, None, texts, labels, indices, cfg, args.out, "rotten_tomatoes/test", args.trust_pickle, args.force
        )
    model = args.model or "mnist_cnn"
    return _run_demo(
        model, "mnist", "test", list(range(args.n)), cfg, args.out, cap_top_k=True, trust_pickle=args.trust_pickle,
        force=args.force,
    )  # fmt: skip


_INPUT_KEYS = ("model", "dataset", "split", "indices", "texts", "vocab")


def _cmd_explain(args: argparse.Namespace) -> int:
    import tomllib

    from .config import Config
    from .errors import ConfigError
    from .zoo.demo import TEXT_DATASETS, TEXT_DEMO_CONFIG, TEXT_MODELS, load_texts

    data: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {args.config!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {args.config!r} is not valid TOML: {exc}") from None
    inputs = data.pop("input", {})
    if not isinstance(inputs, dict):
        raise ConfigError("[input] must be a table with model, dataset, split and indices (or texts)")
    unknown = set(inputs) - set(_INPUT_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [input]; known: {', '.join(_INPUT_KEYS)}")
    texts = args.text if args.text is not None else inputs.get("texts")
    model = args.model or inputs.get("model")
    dataset = inputs.get("dataset")
    is_text = texts is not None or model in TEXT_MODELS or dataset in TEXT_DATASETS or inputs.get("vocab") is not None
    settings = data.get("smug", data)
    if not isinstance(settings, dict):
        raise ConfigError("[smug] must be a table of settings, e.g. top_k = 30")
    Config.from_dict(settings)  # unknown keys and bad values are named before anything loads
    # text starts from the text demo's settings (top_k=30, gamma=0.5): the image defaults give 1-token masks
    cfg = (TEXT_DEMO_CONFIG if is_text else Config()).merged(**settings)
    if args.backend:
        cfg = cfg.merged(backend=args.backend)
    if not is_text:
        indices = args.indices if args.indices is not None else list(inputs.get("indices", [0, 1, 2]))
        return _run_demo(
            model or "mnist_cnn",
            dataset or "mnist",
            inputs.get("split", "test"),
            indices,
            cfg,
            args.out,
            trust_pickle=args.trust_pickle,
            force=args.force,
        )
    model = model or "text_cnn"
    if texts is not None:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ConfigError('texts must be a list of strings, e.g. texts = ["a gorgeous, witty film"]')
        indices = list(range(len(texts)))
        return _run_text_demo(
            model, inputs.get("vocab"), list(texts), None, indices, cfg, args.out, "raw text", args.trust_pickle,
            args.force,
        )  # fmt: skip
    split = inputs.get("split", "test")
    indices = args.indices if args.indices is not None else list(inputs.get("indices", [0, 1, 2]))
    _check_backend(cfg.backend)
    texts, labels = load_texts(dataset or "rotten_tomatoes", split, indices)
    source = f"{dataset or 'rotten_tomatoes'}/{split}"
    return _run_text_demo(
        model, inputs.get("vocab"), texts, labels, indices, cfg, args.out, source, args.trust_pickle, args.force
    )


def _cmd_explain_network(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from .config import Config
    from .errors import ConfigError
    from .explain.network import explain_network
    from .zoo.demo import load_inputs, load_model
    from .zoo.onnx import fit_inputs

    cfg = Config(
        backend=args.backend,
        masking=args.masking,
        minimality=args.minimality,
        window=args.window,
        delta=args.delta,
        time_limit=args.time_limit,
        traversal=args.traversal,
        order=args.order,
    )
    if args.eps is not None:
        _check_positive(args.eps, "--eps")
        if cfg.masking != "robust":
            raise ConfigError("--eps sets the range of masked pixels for robust masking: add --masking robust")
    _check_indices(args.indices)
    _check_output_dir(args.out, force=args.force)
    _check_backend(cfg.backend)
    images, labels = load_inputs(args.dataset, "test", args.indices)  # bad indices fail before any training
    model = load_model(args.model, trust_pickle=args.trust_pickle)
    images = fit_inputs(model, images, f"{args.dataset} images")  # an ONNX graph's declared input shape
    print(
        f"model={args.model} backend={cfg.backend} masking={cfg.masking} minimality={cfg.minimality} "
        f"window={cfg.window} delta={cfg.delta} time_limit={cfg.time_limit}" + (f" eps={args.eps}" if args.eps else "")
    )
    head = (
        f"{'index':>6} {'digit':>5} {'pred':>4} {'status':<9} {'minimality':<11} {'mask':>5} {'bound':>6} "
        f"{'unstable':>9} {'verified':<8} {'time (s)':>8}"
    )
    print(head + "\n" + "-" * len(head))
    out = Path(args.out)
    ok = True
    for idx, img, lab in zip(args.indices, images, labels):
        extra = {}
        if args.eps:
            extra["input_range"] = (np.clip(img - args.eps, 0.0, 1.0), np.clip(img + args.eps, 0.0, 1.0))
        t0 = time.perf_counter()
        e = explain_network(model, np.array(img), config=cfg, **extra)
        secs = time.perf_counter() - t0
        e.save(out / f"network_{idx:05d}.png")
        e.save(out / f"network_{idx:05d}.json")
        bound = "-" if e.bound is None else f"{e.bound:g}"
        print(
            f"{idx:>6} {int(lab):>5} {e.prediction:>4} {e.status.value:<9} {e.minimality:<11} {e.mask_size:>5} "
            f"{bound:>6} {f'{e.n_unstable}/{e.n_relu}':>9} {str(e.verified):<8} {secs:>8.2f}"
        )
        ok = ok and (e.verified or e.status.value == "infeasible")
    print(f"\nPNGs and JSON written to {out.resolve()}")
    return 0 if ok else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .study.evaluate import run_from_args

    _check_output_dir(args.out)
    results = run_from_args(args)
    failed = sum(1 for res in results for r in res.rows if r.get("error"))
    if failed:
        print(
            f"smug: {failed} (method, input) row(s) failed; see their 'error' field (a rerun retries them)",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from .study.report import write_report
    from .study.runner import run_study, study_status

    if args.study_command == "run":
        if args.workers is not None:
            _check_positive(args.workers, "--workers", integer=True)
        _check_output_dir(args.out)
        res = run_study(
            args.spec,
            args.out,
            workers=args.workers,
            scheduler=args.scheduler,
            dask_local=args.dask_local,
            progress=not args.quiet,
        )
        paths = write_report(args.out)
        print(f"{res.ran} cells run, {res.already_done} were done, in {res.seconds:.1f} s; report: {paths['md']}")
        if res.claimed_elsewhere:
            print(f"{res.claimed_elsewhere} cells are being run by another run on this store; rerun when it ends")
        return 0
    if args.study_command == "report":
        paths = write_report(args.folder)
        print(paths["md"].read_text())
        print(f"report: {paths['md']} and {paths['html']}")
        return 0
    if args.study_command == "export":
        from .study.store import Store

        _check_output_file(args.output, "--output")
        with Store(args.folder, create=False) as store:
            print(f"wrote {store.export(args.output)}")
        return 0
    st = study_status(args.folder)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    spec = st["spec"] or {}
    print(f"study {spec.get('name', '?')}: {st['done']} cells done " + str(st["by_status"]))
    print(
        f"running (claimed, not finished): {st['running']}"
        + (f" by {', '.join(st['running_by'])}" if st["running"] else "")
    )
    print(f"failed (status error): {len(st['failed'])}")
    for f in st["failed"][:20]:
        print(f"  {f['label']} on {f['name']} seed {f['seed']}: {f['message']}")
    return 0


def _cmd_instances(args: argparse.Namespace) -> int:
    from .study.instances import expand, write_library
    from .study.spec import load_spec

    _check_output_dir(args.out)
    spec = load_spec(args.spec)
    table = write_library(expand(spec.problems), args.out, formats=args.formats)
    print(f"wrote the instances and {table}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``smug`` command."""
    p = argparse.ArgumentParser(prog="smug", description="Provably minimal explanations with constraint solvers.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="explain a handful of MNIST test digits (or reviews, with --text)")
    d.add_argument("-n", type=int, default=6, help="how many test inputs")
    d.add_argument("--text", action="store_true", help="explain Rotten Tomatoes test reviews with the text CNN")
    d.add_argument("--model", help="mnist_cnn (default) or mnist_mlp; text_cnn with --text")
    d.add_argument("--backend", help="solver backend (default: the config's, ortools:scip)")
    d.add_argument("--out", default="smug-demo", help="folder for the PNG / HTML and JSON files")
    d.add_argument("--force", action="store_true", help="write into an --out folder that already holds files")
    d.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a model file that is a whole pickled module (loading it runs code from the file)",
    )
    d.set_defaults(func=_cmd_demo)

    x = sub.add_parser("explain", help="explain chosen inputs (images or text) with settings from a TOML file")
    x.add_argument(
        "--config",
        help="TOML file: smug settings, and an [input] table (model, dataset, split, indices; or texts, vocab)",
    )
    x.add_argument(
        "--model",
        help="mnist_cnn, mnist_mlp, text_cnn, or a model file (TorchScript, a state_dict; see --trust-pickle)",
    )
    x.add_argument("--indices", type=int, nargs="*", help="input indices in the dataset")
    x.add_argument("--text", nargs="+", help="raw text(s) to explain with a text model (default text_cnn)")
    x.add_argument("--backend", help="overrides the config's backend")
    x.add_argument("--out", default="smug-explanations", help="folder for the PNG / HTML and JSON files")
    x.add_argument("--force", action="store_true", help="write into an --out folder that already holds files")
    x.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a model file that is a whole pickled module (loading it runs code from the file)",
    )
    x.set_defaults(func=_cmd_explain)

    n = sub.add_parser("explain-network", help="minimal masks that keep the whole network's prediction")
    n.add_argument(
        "--model",
        default="mnist_mlp",
        help="mnist_mlp (the paper's 784-32-10), mnist_mlp_3x10 (784-10-10-10-10), mnist_cnn, "
        "a model file (.onnx, TorchScript, state_dict)",
    )
    n.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    n.add_argument("--indices", type=int, nargs="*", default=[0, 1, 2], help="test input indices")
    n.add_argument("--masking", default="baseline", choices=["baseline", "robust"])
    n.add_argument("--minimality", default="cardinality", choices=["cardinality", "subset"])
    n.add_argument(
        "--traversal", default="batched", choices=["batched", "sequential"],
        help="robust masking: how the deletion loop walks the features",
    )  # fmt: skip
    n.add_argument(
        "--order", default="occlusion", choices=["occlusion", "gradient"],
        help="robust masking: the sensitivity order features are freed in, least sensitive first",
    )  # fmt: skip
    n.add_argument("--window", type=int, default=1, help="side of the pixel windows")
    n.add_argument("--delta", type=float, default=0.0, help="logit margin the explained class must keep")
    n.add_argument("--eps", type=float, default=None, help="robust masking: masked pixels range over x +- eps")
    n.add_argument("--backend", default="ortools:scip")
    n.add_argument("--time-limit", type=float, default=60.0)
    n.add_argument("--out", default="smug-network", help="folder for the PNG and JSON files")
    n.add_argument("--force", action="store_true", help="write into an --out folder that already holds files")
    n.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a model file that is a whole pickled module (loading it runs code from the file)",
    )
    n.set_defaults(func=_cmd_explain_network)

    v = sub.add_parser("evaluate", help="compare explanation methods on real inputs (saliency metric, sparsity, ...)")
    from .study.evaluate import add_arguments

    add_arguments(v)
    v.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("backends", help="list the solver backends and whether they are installed")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=_cmd_backends)

    s = sub.add_parser("solve", help="solve a serialised IR problem (JSON)")
    s.add_argument("problem", help="path to a problem JSON file (Problem.to_json)")
    s.add_argument("--backend", default="ortools:scip", help="backend name (see `smug backends`)")
    s.add_argument("--time-limit", type=float, default=None, help="seconds, enforced for every backend")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--num-solutions", type=int, default=1, help="distinct optimal masks to enumerate")
    s.add_argument("--verbose", action="store_true")
    s.add_argument("-o", "--output", help="write the solution as JSON here")
    s.set_defaults(func=_cmd_solve)

    st = sub.add_parser("study", help="backend comparison studies: run a spec, report, status, export")
    stsub = st.add_subparsers(dest="study_command", required=True)
    r = stsub.add_parser("run", help="run (or resume) a study spec into a folder")
    r.add_argument("spec", help="the study spec (TOML)")
    r.add_argument("--out", required=True, help="the study folder (its store: study.sqlite)")
    r.add_argument("--workers", type=int, default=None, help="local worker processes (default: the core count)")
    r.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    r.add_argument("--dask-local", type=int, default=None, help="start a Dask LocalCluster with N workers")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    rp = stsub.add_parser("report", help="(re)build the report of a study folder")
    rp.add_argument("folder")
    ss = stsub.add_parser("status", help="what a study folder holds: done, running, failed")
    ss.add_argument("folder")
    ss.add_argument("--json", action="store_true")
    ex = stsub.add_parser("export", help="export the cells to CSV or Parquet")
    ex.add_argument("folder")
    ex.add_argument("-o", "--output", required=True, help="a .csv or .parquet file")
    st.set_defaults(func=_cmd_study)

    ins = sub.add_parser("instances", help="write a problem library (JSON, MPS, SMT-LIB2 + instances.csv) from a spec")
    ins.add_argument("spec", help="a study spec; its problems are written")
    ins.add_argument("--out", required=True)
    ins.add_argument("--formats", nargs="+", default=["json", "mps", "smt2"], choices=["json", "mps", "smt2"])
    ins.set_defaults(func=_cmd_instances)

    e = sub.add_parser("export", help="export a serialised IR problem for outside solvers")
    e.add_argument("problem")
    e.add_argument("--format", choices=["smt2", "mps", "lp"], help="default: from the -o file's extension")
    e.add_argument("-o", "--output")
    e.set_defaults(func=_cmd_export)
    for parser in list(sub.choices.values()) + list(stsub.choices.values()):
        parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter  # --help shows every default
    return p


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    # the command's warnings are about the user's settings or inputs, not a line of smug's code
    print(f"smug: warning: {message}", file=file if file is not None else sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smug`` command; returns the exit status.

    Every error on bad input is one line ``smug: error: ...`` on stderr with
    exit status 2 (argparse's own usage errors too), raised before any model,
    data or problem is loaded; ``smug solve`` exits with :data:`EXIT_CODES`.
    """
    from .errors import SmugError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except SmugError as exc:
        print(f"smug: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written: name it, no traceback
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print(f"smug: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smug: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
