"""Explaining a handful of real inputs with a reference model: what ``smug demo`` and ``smug explain`` run."""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..errors import ConfigError
from ..explain.api import explain
from ..explain.image import Explanation

__all__ = [
    "DEMO_CONFIG",
    "TEXT_DEMO_CONFIG",
    "TEXT_MODELS",
    "DemoRow",
    "load_model",
    "load_inputs",
    "capped_config",
    "run_explanations",
    "format_table",
    "load_text_model",
    "load_texts",
    "run_text_explanations",
    "format_text_table",
]

#: The demo's settings: enough neurons and a high enough gamma that the mask shows the digit's evidence.
DEMO_CONFIG = Config(top_k=200, gamma=0.8, window=2, time_limit=60.0)

#: The text demo's settings: 30 of the text CNN's conv neurons kept at half their strength.  With fewer
#: neurons or gamma 0 the minimal masks are one or two words that rarely keep the prediction; with these,
#: the kept words alone usually keep it and removing them often flips it.
TEXT_DEMO_CONFIG = Config(top_k=30, gamma=0.5, time_limit=60.0)

DATASETS = ("mnist", "digits")
TEXT_DATASETS = ("rotten_tomatoes",)
#: Reference text models by name.
TEXT_MODELS = ("text_cnn",)


@dataclass
class DemoRow:
    """One explained input: what the demo table prints."""

    index: int
    label: int
    explanation: Explanation
    seconds: float
    png: Path | None


def load_model(spec: str, *, trust_pickle: bool = False) -> nn.Module:
    """A reference model by name, or a model file, loaded without running code from the file by default.

    ``spec`` is a reference name (:data:`smug.zoo.models.MODEL_NAMES`: ``mnist_cnn``, ``mnist_mlp``,
    ``mnist_mlp_3x10``; the shipped weights)
    or a path to:

    * an ONNX file (``.onnx``; :func:`smug.load_onnx`: the layers smug's encoders read);
    * a TorchScript file (``torch.jit.save``);
    * a ``state_dict`` of a reference architecture (``torch.save(model.state_dict())``
      of a reference architecture built by :mod:`smug.zoo.models`),
      read with ``torch.load(..., weights_only=True)``, which refuses anything
      but tensors and plain containers;
    * a whole pickled module (``torch.save(model)``) only with
      ``trust_pickle=True`` (``--trust-pickle`` on the command line): unpickling
      runs whatever code the file names, so a crafted file can do anything the
      user can. Pass it only for files you made or trust.

    Raises:
        ConfigError: not a reference name nor an existing file; a pickled module
            without ``trust_pickle``; a state_dict that fits no reference architecture.
    """
    import pickle

    from .models import _BUILDERS, MODEL_NAMES, pretrained

    architectures = dict(_BUILDERS)

    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"model must be a reference model name or a file path, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if spec in MODEL_NAMES:
        return pretrained(spec)
    p = Path(spec)
    if not p.is_file():
        names = ", ".join(repr(n) for n in MODEL_NAMES)
        raise ConfigError(f"model {spec!r} is neither a reference model ({names}) nor an existing file")
    if p.suffix.lower() == ".onnx":
        from .onnx import load_onnx

        return load_onnx(p)
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            is_script = any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
        if is_script:
            try:
                return torch.jit.load(str(p), map_location="cpu").eval()
            except Exception as exc:  # noqa: BLE001 -- a damaged archive
                raise ConfigError(f"{spec!r} looks like TorchScript but cannot be loaded: {exc}") from None
    with p.open("rb") as fh:
        magic = fh.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        raise ConfigError(f"{spec!r} is not a model file torch can read (neither torch.save's zip format nor a pickle)")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():  # not a pickle torch understands at all
            raise ConfigError(f"{spec!r} is not a model file torch can read: {str(exc)[:200]}") from None
        if not trust_pickle:
            raise ConfigError(
                f"{spec!r} holds pickled Python objects (a whole module saved with torch.save(model), or other "
                "classes), which torch.load(weights_only=True) refuses: loading them runs whatever code the file "
                "names. If you made or trust the file, pass trust_pickle=True (--trust-pickle); otherwise save "
                "model.state_dict() of a reference architecture, or the model with torch.jit.save"
            ) from None
        obj = torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 -- not a torch file at all
        raise ConfigError(f"{spec!r} is not a model file torch can read: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, nn.Module):
        return obj.eval()
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        for build in architectures.values():
            model = build()
            try:
                model.load_state_dict(obj, strict=True)
            except (RuntimeError, KeyError):
                continue
            return model.float().eval()
        raise ConfigError(
            f"{spec!r} holds a state_dict ({len(obj)} tensors, e.g. {list(obj)[:3]}) that fits no reference "
            f"architecture ({', '.join(architectures)}); save the model with torch.jit.save instead"
        )
    raise ConfigError(f"{spec!r} holds a {type(obj).__name__}, not a torch.nn.Module or a state_dict")


def capped_config(model: nn.Module, x: Any, config: Config, *, warn: bool = False) -> Config:
    """``config`` with ``top_k`` capped at the number of neurons of ``model``'s first layer on input ``x``.

    The demo's ``top_k=200`` suits the reference CNN (6272 first-layer neurons);
    the reference MLP has 32, so there every neuron is constrained (the active ones).
    With ``warn`` a capped ``top_k`` gives a ``UserWarning`` naming both numbers.
    """
    from ..encoders import find_first_layer

    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if xt.dim() == 3:
        xt = xt.unsqueeze(0)
    n_neurons = find_first_layer(model, config.first_layer, example_input=xt).n_neurons(tuple(xt.shape[1:]))
    if config.top_k <= n_neurons:
        return config
    if warn:
        import warnings

        warnings.warn(
            f"top_k={config.top_k} exceeds the first layer's {n_neurons} neurons; using top_k={n_neurons}",
            stacklevel=2,
        )
    return config.merged(top_k=n_neurons)


def load_inputs(dataset: str, split: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels at ``indices`` of a bundled dataset (``mnist`` or ``digits``)."""
    from .data import load_digits, load_mnist

    if dataset == "mnist":
        X, y = load_mnist(split)
    elif dataset == "digits":
        X, y = load_digits()
    else:
        raise ConfigError(f"dataset {dataset!r} is unknown; choose one of {DATASETS}")
    bad = [i for i in indices if not 0 <= i < len(X)]
    if bad:
        raise ConfigError(f"indices {bad} are out of range for {dataset} ({len(X)} inputs)")
    return np.array(X[list(indices)]), np.array(y[list(indices)])


def run_explanations(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    indices: Sequence[int],
    config: Config,
    out_dir: Path | None,
    *,
    progress: bool = True,
) -> list[DemoRow]:
    """Explain each image, show a progress bar, and save ``input | mask | saliency`` PNGs to ``out_dir``."""
    from tqdm import tqdm

    rows = []
    it = tqdm(list(zip(indices, images, labels)), desc="explaining", unit="input", disable=None if progress else True)
    for idx, img, lab in it:
        t0 = time.perf_counter()
        e = explain(model, torch.from_numpy(img), config=config)
        secs = time.perf_counter() - t0
        png = None
        if out_dir is not None:
            png = e.save(Path(out_dir) / f"explanation_{idx:05d}.png")
            e.save(Path(out_dir) / f"explanation_{idx:05d}.json")
        rows.append(DemoRow(int(idx), int(lab), e, secs, png))
        it.set_postfix(status=e.status.value, size=e.mask_size)
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """The demo's table: digit, prediction, mask size, status, verified, time."""
    head = (
        f"{'index':>6} {'digit':>5} {'pred':>4} {'masked':>6} {'compl.':>6} {'mask':>5} {'pixels':>6} "
        f"{'constr.':>7} {'status':<9} {'verified':<8} {'time (s)':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        e = r.explanation
        lines.append(
            f"{r.index:>6} {r.label:>5} {e.prediction:>4} {e.masked_prediction:>6} {e.complement_prediction:>6} "
            f"{e.mask_size:>5} {int(e.mask.sum()):>6} {e.n_constraints:>7} {e.status.value:<9} "
            f"{str(e.verified):<8} {r.seconds:>8.2f}"
        )
    return "\n".join(lines)


def describe(config: Config, extra: dict[str, Any]) -> str:
    """One line stating the settings used, for the demo's header."""
    w = config.window
    return (
        f"backend={config.backend} top_k={config.top_k} gamma={config.gamma} window={w} "
        f"scoring={config.scoring} time_limit={config.time_limit} " + " ".join(f"{k}={v}" for k, v in extra.items())
    )


# ------------------------------------------------------------------------------------ text
def load_text_model(spec: str, vocab_path: str | None = None, *, trust_pickle: bool = False) -> tuple[nn.Module, Any]:
    """A text model and its vocabulary: ``text_cnn`` (the shipped reference weights) or a saved module.

    A saved module (TorchScript, or ``torch.save(model)`` with ``trust_pickle``:
    see :func:`load_model`) needs ``vocab_path``, a vocabulary written by
    :meth:`smug.zoo.text.Vocabulary.save`.
    """
    from .text import Vocabulary, pretrained_text_cnn

    if spec == "text_cnn":
        return pretrained_text_cnn()
    if vocab_path is None:
        raise ConfigError(
            f"text model {spec!r} needs its vocabulary: set vocab = 'path/to/vocab.json' in [input] "
            "(written by smug.zoo.text.Vocabulary.save), or use the reference model 'text_cnn'"
        )
    if not Path(vocab_path).exists():
        raise ConfigError(f"vocabulary file {vocab_path!r} does not exist")
    return load_model(spec, trust_pickle=trust_pickle), Vocabulary.load(vocab_path)


def load_texts(dataset: str, split: str, indices: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """Review snippets and labels (1 fresh, 0 rotten) at ``indices`` of the Rotten Tomatoes split."""
    from .text import load_rotten_tomatoes

    if dataset not in TEXT_DATASETS:
        raise ConfigError(f"text dataset {dataset!r} is unknown; choose one of {TEXT_DATASETS}")
    texts, labels = load_rotten_tomatoes(split)
    bad = [i for i in indices if not 0 <= i < len(texts)]
    if bad:
        raise ConfigError(f"indices {bad} are out of range for {dataset}/{split} ({len(texts)} reviews)")
    return [texts[i] for i in indices], np.array([labels[i] for i in indices])


def run_text_explanations(
    model: nn.Module,
    vocab: Any,
    texts: Sequence[str],
    labels: Sequence[int] | None,
    indices: Sequence[int],
    config: Config,
    out_dir: Path | None,
    *,
    progress: bool = True,
) -> list[DemoRow]:
    """Explain each text with a progress bar; write one JSON each and ``text_explanations.html`` to ``out_dir``."""
    from tqdm import tqdm

    from ..explain.render.text import render_html_page

    rows = []
    labs = list(labels) if labels is not None else [-1] * len(texts)
    it = tqdm(list(zip(indices, texts, labs)), desc="explaining", unit="text", disable=None if progress else True)
    for idx, text, lab in it:
        t0 = time.perf_counter()
        e = explain(model, text, config=config, tokenizer=vocab)
        secs = time.perf_counter() - t0
        if out_dir is not None:
            e.save(Path(out_dir) / f"text_explanation_{idx:05d}.json")
        rows.append(DemoRow(int(idx), int(lab), e, secs, None))
        it.set_postfix(status=e.status.value, kept=e.mask_size)
    if out_dir is not None and rows:
        items = []
        for r in rows:
            e = r.explanation
            label = f", label {e.class_names[r.label] if e.class_names else r.label}" if r.label >= 0 else ""
            items.append(
                {
                    "tokens": e.tokens,
                    "saliency": e.saliency,
                    "kept": e.kept,
                    "heading": f"#{r.index}{label}",
                    "prediction": e._prediction_info(),
                }
            )
        page = Path(out_dir) / "text_explanations.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render_html_page(items, title="SMUG explanations of text"), encoding="utf-8")
        for r in rows:
            r.png = page
    return rows


def format_text_table(rows: list[DemoRow], *, color: bool = False) -> str:
    """The text demo's table (label, prediction with all / kept / removed tokens, mask size) and the marked texts."""
    head = (
        f"{'index':>6} {'label':>6} {'pred':>6} {'kept':>6} {'removed':>7} {'mask':>4} {'tokens':>6} "
        f"{'status':<9} {'verified':<8} {'time (s)':>8}"
    )
    lines = [head, "-" * len(head)]

    def name(e: Any, c: int) -> str:
        return e.class_names[c] if e.class_names and 0 <= c < len(e.class_names) else str(c)

    for r in rows:
        e = r.explanation
        lines.append(
            f"{r.index:>6} {name(e, r.label) if r.label >= 0 else '-':>6} {name(e, e.prediction):>6} "
            f"{name(e, e.masked_prediction):>6} {name(e, e.complement_prediction):>7} {e.mask_size:>4} "
            f"{len(e.positions):>6} {e.status.value:<9} {str(e.verified):<8} {r.seconds:>8.2f}"
        )
    lines.append("")
    for r in rows:
        lines.append(f"#{r.index}: {r.explanation.render(color=color)}")
    return "\n".join(lines)
