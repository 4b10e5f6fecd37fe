"""Reference MNIST models, trained deterministically by smug's own code.

* :func:`mnist_mlp` -- the SMUG paper's MLP 784-32-10.
* :func:`mnist_cnn` -- a small CNN whose first layer is ``Conv2d(1, 16, 5)``.
* :func:`train` -- train one of them on the 60k MNIST train split.
* :func:`pretrained` -- load trained weights from the cache, training and
  caching them on first use.
* :func:`model_metrics` -- the metrics recorded when the cached weights were
  trained.

The weights trained by this code (seed 0) ship inside the package
(``smug/zoo/weights/``, each file checked against a recorded SHA-256, see
:mod:`smug.zoo.shipped`), so :func:`pretrained` loads them without training.
Weights trained on this machine (``retrain=True``, or ``source="cache"``) live in
``$SMUG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/smug/models``, else
``~/.cache/smug/models`` (see :func:`cache_dir`), as ``<name>.pt`` (a
``state_dict``) with ``<name>.json`` (the metrics) beside it. Files are written
atomically, so a killed run never leaves a half-written cache, and a cache file
that cannot be loaded is retrained with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from smug.errors import ValidationError
from smug.zoo.data import load_mnist

__all__ = [
    "MODEL_NAMES",
    "SOURCES",
    "cache_dir",
    "check_source",
    "mnist_cnn",
    "mnist_mlp",
    "mnist_mlp_3x10",
    "model_metrics",
    "pretrained",
    "train",
]


def mnist_mlp() -> nn.Sequential:
    """Build an untrained copy of the SMUG paper's MNIST MLP, 784-32-10.

    ``Flatten -> Linear(784, 32) -> ReLU -> Linear(32, 10)``; takes ``(B, 1, 28, 28)``
    (or ``(B, 784)``) inputs in ``[0, 1]`` and returns ``(B, 10)`` logits.
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def mnist_mlp_3x10() -> nn.Sequential:
    """Build an untrained MNIST MLP with three hidden ReLU layers of 10 (784-10-10-10-10), the size of the small
    networks of the verification community (one hidden layer more than the 784-10-10-10 of robust-explanation
    benchmarks).

    ``Flatten -> Linear(784, 10) -> ReLU -> Linear(10, 10) -> ReLU -> Linear(10, 10) -> ReLU ->
    Linear(10, 10)``; takes ``(B, 1, 28, 28)`` (or ``(B, 784)``) inputs in ``[0, 1]`` and returns ``(B, 10)``
    logits.
    """
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(),
        nn.Linear(10, 10),
    )  # fmt: skip


def mnist_cnn() -> nn.Sequential:
    """Build an untrained copy of smug's small MNIST CNN.

    ``Conv2d(1, 16, 5) -> ReLU -> MaxPool2d(2) -> Conv2d(16, 32, 5) -> ReLU ->
    MaxPool2d(2) -> Flatten -> Linear(512, 64) -> ReLU -> Linear(64, 10)``; takes
    ``(B, 1, 28, 28)`` inputs in ``[0, 1]`` and returns ``(B, 10)`` logits.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 5),  # 28 -> 24
        nn.ReLU(),
        nn.MaxPool2d(2),  # 24 -> 12
        nn.Conv2d(16, 32, 5),  # 12 -> 8
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8 -> 4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


_BUILDERS: dict[str, Callable[[], nn.Sequential]] = {
    "mnist_mlp": mnist_mlp,
    "mnist_cnn": mnist_cnn,
    "mnist_mlp_3x10": mnist_mlp_3x10,
}

#: Names accepted by :func:`train`, :func:`pretrained` and :func:`model_metrics`.
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)

# Training recipe per model: epochs, batch size, Adam learning rate.
_RECIPES: dict[str, dict[str, Any]] = {
    "mnist_mlp": {"epochs": 20, "batch_size": 128, "lr": 1e-3},
    "mnist_cnn": {"epochs": 5, "batch_size": 128, "lr": 1e-3},
    "mnist_mlp_3x10": {"epochs": 20, "batch_size": 128, "lr": 1e-3},
}

_EVAL_BATCH = 1000


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValidationError(f"unknown model name {name!r}; known names: {list(MODEL_NAMES)}")
    return name


def cache_dir() -> Path:
    """Return the directory cached weights live in (it need not exist yet).

    ``$SMUG_CACHE_DIR`` if that environment variable is set and non-empty, else
    ``$XDG_CACHE_HOME/smug/models`` if ``XDG_CACHE_HOME`` is set to an absolute
    path (the XDG base-directory rule: a relative one is ignored), else
    ``~/.cache/smug/models``.
    """
    env = os.environ.get("SMUG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "smug" / "models"
    return Path.home() / ".cache" / "smug" / "models"


def _weights_path(name: str) -> Path:
    return cache_dir() / f"{name}.pt"


def _metrics_path(name: str) -> Path:
    return cache_dir() / f"{name}.json"


#: Where :func:`pretrained` and :func:`smug.zoo.text.pretrained_text_cnn` take weights from.
SOURCES: tuple[str, ...] = ("auto", "shipped", "cache")


def check_source(source: str) -> str:
    """Validate a weights ``source`` (one of :data:`SOURCES`) and return it."""
    if source not in SOURCES:
        raise ValidationError(f"source must be one of {list(SOURCES)}, got {source!r}")
    return source


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Turn on ``torch.use_deterministic_algorithms`` for the block, then restore the old mode."""
    was_enabled = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_enabled, warn_only=was_warn_only)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), _EVAL_BATCH):
            logits = model(images[start : start + _EVAL_BATCH])
            correct += int((logits.argmax(dim=1) == labels[start : start + _EVAL_BATCH]).sum())
    return correct / len(images)


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # load_mnist returns read-only cached arrays; copy so torch gets writable memory.
    return torch.from_numpy(np.array(images)), torch.from_numpy(np.array(labels))


def train(
    name: str,
    *,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
    max_train_samples: int | None = None,
    max_test_samples: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a reference model on the MNIST train split, deterministically.

    Weights are initialised after ``torch.manual_seed(seed)`` and mini-batches
    are shuffled by a ``torch.Generator`` seeded with ``seed``, with
    ``torch.use_deterministic_algorithms(True)`` in force; the global torch RNG
    and the deterministic-algorithms mode are restored afterwards, so the
    caller's state is untouched. Two runs with the same arguments on the same
    machine, torch version and thread count give identical weights. Optimiser:
    Adam (learning rate 1e-3), batch size 128, cross-entropy loss.

    Args:
        name: one of :data:`MODEL_NAMES`.
        epochs: passes over the training data; ``None`` uses the model's default
            (20 for ``mnist_mlp`` and ``mnist_mlp_3x10``, 5 for ``mnist_cnn``).
        seed: seed of the initialisation and of the shuffling.
        progress: show a tqdm progress bar.
        max_train_samples: train on only the first this-many training images
            (for quick tests); ``None`` uses all 60000.
        max_test_samples: measure ``test_accuracy`` on only the first this-many
            test images (for quick tests); ``None`` uses all 10000.

    Returns:
        ``(model, metrics)``: the trained model in eval mode, and
        ``{"test_accuracy", "train_seconds", "epochs", "seed", "torch_version",
        "train_samples", "test_samples", "batch_size", "learning_rate"}`` where
        ``test_accuracy`` is measured on the MNIST test split (all 10000 images
        unless ``max_test_samples`` says otherwise).

    Raises:
        ValueError: unknown ``name``, or ``epochs`` / ``max_train_samples`` /
            ``max_test_samples`` not a positive integer.
    """
    _check_name(name)
    recipe = _RECIPES[name]
    n_epochs = recipe["epochs"] if epochs is None else epochs
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1:
        raise ValidationError(f"epochs must be a positive integer or None, got {epochs!r}")
    for arg, value in (
        ("max_train_samples", max_train_samples),
        ("max_test_samples", max_test_samples),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValidationError(f"{arg} must be a positive integer or None, got {value!r}")
    batch_size: int = recipe["batch_size"]
    lr: float = recipe["lr"]

    train_images, train_labels = load_mnist("train")
    x_train, y_train = _as_tensors(train_images[:max_train_samples], train_labels[:max_train_samples])
    test_images, test_labels = load_mnist("test")
    x_test, y_test = _as_tensors(test_images[:max_test_samples], test_labels[:max_test_samples])
    n_train = len(x_train)
    batches_per_epoch = (n_train + batch_size - 1) // batch_size

    # The seeded init and shuffling generator fix every random choice; deterministic algorithms
    # rule out nondeterministic kernels. Both are restored on exit. (The flag is cheap here:
    # the torch._dynamo import it triggers is one torch.optim.Adam pays anyway.)
    with torch.random.fork_rng(devices=[]), deterministic_algorithms():
        torch.manual_seed(seed)
        model = _BUILDERS[name]().float()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        shuffle = torch.Generator().manual_seed(seed)

        start = time.perf_counter()
        model.train()
        with tqdm(
            total=n_epochs * batches_per_epoch,
            desc=f"training {name}",
            unit="batch",
            disable=None if progress else True,  # None: off when the output is not a terminal
        ) as bar:
            for epoch in range(n_epochs):
                order = torch.randperm(n_train, generator=shuffle)
                for b in range(batches_per_epoch):
                    idx = order[b * batch_size : (b + 1) * batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x_train[idx]), y_train[idx])
                    loss.backward()
                    optimizer.step()
                    bar.update(1)
                    if b % 50 == 0 or b == batches_per_epoch - 1:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        train_seconds = time.perf_counter() - start
        model.eval()
        test_accuracy = _accuracy(model, x_test, y_test)

    metrics: dict[str, Any] = {
        "test_accuracy": test_accuracy,
        "train_seconds": round(train_seconds, 3),
        "epochs": n_epochs,
        "seed": seed,
        "torch_version": torch.__version__,
        "train_samples": n_train,
        "test_samples": len(x_test),
        "batch_size": batch_size,
        "learning_rate": lr,
    }
    return model, metrics


def atomic_write(path: Path, write: Callable[[Any], object], *, binary: bool) -> None:
    """Write via ``write(file)`` to a temp file in ``path``'s directory, then ``os.replace`` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a cache is ordinary readable data
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _save(name: str, model: nn.Module, metrics: dict[str, Any]) -> None:
    # Metrics first, weights last: the weights file appearing is the commit point.
    atomic_write(
        _metrics_path(name),
        lambda fh: fh.write(json.dumps({"name": name, **metrics}, indent=2) + "\n"),
        binary=False,
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(_weights_path(name), lambda fh: torch.save(state, fh), binary=True)


def _load(name: str, path: Path | None = None) -> nn.Module:
    state = torch.load(path or _weights_path(name), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"expected a state_dict, found {type(state).__name__}")
    model = _BUILDERS[name]()
    model.load_state_dict(state, strict=True)
    return model


def pretrained(name: str, *, retrain: bool = False, progress: bool = True, source: str = "auto") -> nn.Module:
    """Return a trained reference model: the shipped weights, or the cache, training on a miss.

    ``source="auto"`` (the default) loads the weights shipped inside the package
    (:mod:`smug.zoo.shipped`: trained by :func:`train` with the default recipe and
    seed 0, hash-checked), with no training; if they are missing or damaged it
    warns and falls back to the cache. ``source="shipped"`` insists on the shipped
    weights (a damaged install raises). ``source="cache"`` loads
    ``<cache_dir()>/<name>.pt``, training and caching on a miss. ``retrain=True``
    trains afresh (default recipe, seed 0) and writes the weights and metrics to
    the cache atomically. A cache file that cannot be loaded (corrupt, or from a
    different architecture) is retrained and overwritten with a ``RuntimeWarning``.

    Args:
        name: one of :data:`MODEL_NAMES` (``"mnist_mlp"``, ``"mnist_cnn"``, ``"mnist_mlp_3x10"``).
        retrain: ignore the shipped weights and the cache, train afresh and overwrite the cache.
        progress: show a tqdm progress bar while training.
        source: ``"auto"``, ``"shipped"`` or ``"cache"`` (see above).

    Returns:
        The model (``nn.Sequential``, float32, CPU) in eval mode.

    Raises:
        ValueError: unknown ``name`` or ``source``.
        smug.zoo.shipped.ShippedDataError: ``source="shipped"`` and the shipped file is missing or damaged.
    """
    _check_name(name)
    return shipped_or_cached(
        name, lambda path: _load(name, path), lambda: train(name, progress=progress), source=source, retrain=retrain
    )


def shipped_or_cached(
    name: str,
    load: Callable[[Path], nn.Module],
    train_model: Callable[[], tuple[nn.Module, dict[str, Any]]],
    *,
    source: str = "auto",
    retrain: bool = False,
) -> nn.Module:
    """The loading rule of every reference model: shipped weights, else the cache, else train and cache.

    ``load(path)`` builds the model from a weights file; ``train_model()`` returns
    ``(model, metrics)``, written to the cache as ``<name>.pt`` and ``<name>.json``.
    ``source`` and ``retrain`` as in :func:`pretrained` (which this serves, as does
    :func:`smug.methods.reconstruct.pretrained_vae`). Returns the model, float32, in eval mode.
    """
    check_source(source)
    if not retrain and source != "cache":
        from .shipped import ShippedDataError, shipped_file

        try:
            return load(shipped_file(f"{name}.pt")).float().eval()
        except ShippedDataError as exc:
            if source == "shipped":
                raise
            warnings.warn(f"{exc}; using the cache instead", RuntimeWarning, stacklevel=3)
    weights = _weights_path(name)
    if not retrain and weights.exists():
        try:
            model = load(weights)
        except Exception as exc:  # noqa: BLE001 -- corrupt or incompatible cache: retrain
            warnings.warn(
                f"cached weights {weights} could not be loaded ({type(exc).__name__}: {exc}); "
                f"retraining {name!r} and overwriting the cache",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            return model.float().eval()

    model, metrics = train_model()
    _save(name, model, metrics)
    return model.float().eval()


def model_metrics(name: str, *, source: str = "auto") -> dict[str, Any]:
    """Return the metrics recorded when the ``name`` weights were trained.

    The dict ``test_accuracy``, ``train_seconds``, ``epochs``, ``seed``,
    ``torch_version`` and more (see :func:`train`), read from the shipped
    ``<name>.json`` (``source="auto"`` or ``"shipped"``) or from
    ``<cache_dir()>/<name>.json`` (``source="cache"``, or ``"auto"`` when the
    shipped file is missing).

    Raises:
        ValueError: unknown ``name`` or ``source``.
        FileNotFoundError: nothing cached yet; call :func:`pretrained` first.
    """
    _check_name(name)
    return recorded_metrics(
        name,
        _metrics_path(name),
        source=source,
        missing=f"call smug.zoo.models.pretrained({name!r}) first, or pretrained({name!r}, retrain=True) "
        "if its weights are cached without them",
    )


def recorded_metrics(name: str, cache_path: Path, *, source: str = "auto", missing: str) -> dict[str, Any]:
    """The metrics recorded when reference model ``name`` was trained: the shipped ``<name>.json``
    (``source="auto"`` or ``"shipped"``), else ``cache_path`` (``source="cache"``, or ``"auto"`` when the
    shipped file is missing); serves :func:`model_metrics`, :func:`smug.zoo.text.text_model_metrics` and
    :func:`smug.methods.reconstruct.vae_metrics`.

    Raises:
        ValueError: an unknown ``source``.
        FileNotFoundError: nothing cached at ``cache_path``; the message ends with ``missing`` (the fix).
    """
    check_source(source)
    if source != "cache":
        from .shipped import ShippedDataError, shipped_file

        try:
            return dict(json.loads(shipped_file(f"{name}.json").read_text(encoding="utf-8")))
        except ShippedDataError:
            if source == "shipped":
                raise
    try:
        text = cache_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no cached metrics for {name!r} at {cache_path}; {missing}") from None
    metrics: dict[str, Any] = json.loads(text)
    return metrics
