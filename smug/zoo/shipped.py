"""The reference weights and the review corpus that ship inside the package, each checked against a recorded hash.

``smug/zoo/weights/`` holds the weights of ``mnist_mlp``, ``mnist_mlp_3x10``, ``mnist_cnn`` and
``text_cnn`` (with the text CNN's vocabulary), of the model of the MNIST data
``mnist_vae`` (:func:`smug.methods.reconstruct.train_vae`) and the metrics recorded when they
were trained, all by smug's own seeded training code (:func:`smug.zoo.models.train`,
:func:`smug.zoo.text.train_text_cnn`, seed 0); ``smug/zoo/corpora/`` holds the
Rotten Tomatoes snippets (see ``smug/zoo/corpora/README.md`` for their origin and
licence).  ``weights/MANIFEST.json`` records each file's SHA-256; a file whose
hash differs is refused, never loaded.

Refreshing the shipped weights (a release step, not a run-time one)::

    SMUG_CACHE_DIR=/tmp/ship python -c "from smug.zoo.models import pretrained as p; \\
        from smug.zoo.text import pretrained_text_cnn as t; p('mnist_cnn', retrain=True); \\
        p('mnist_mlp', retrain=True); p('mnist_mlp_3x10', retrain=True); t(retrain=True); \\
        from smug.methods.reconstruct import pretrained_vae as v; v(source='cache', retrain=True)"
    python -m smug.zoo.shipped /tmp/ship
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
from pathlib import Path

from smug.errors import SmugError

__all__ = ["WEIGHTS_DIR", "CORPORA_DIR", "ShippedDataError", "shipped_file", "write_manifest"]

#: Where the shipped weights, vocabulary and metrics live.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Where the shipped text corpus lives.
CORPORA_DIR = Path(__file__).resolve().parent / "corpora"
_MANIFEST = WEIGHTS_DIR / "MANIFEST.json"
_WEIGHT_FILES = (
    "mnist_cnn.pt",
    "mnist_cnn.json",
    "mnist_mlp.pt",
    "mnist_mlp.json",
    "mnist_mlp_3x10.pt",
    "mnist_mlp_3x10.json",
    "text_cnn.pt",
    "text_cnn.vocab.json",
    "text_cnn.json",
    "mnist_vae.pt",
    "mnist_vae.json",
)
_CORPUS_FILES = ("rotten_tomatoes_corpus_full.csv.bz2",)


class ShippedDataError(SmugError, FileNotFoundError):
    """A shipped file is missing or does not match its recorded hash (a broken install: reinstall smug)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def _manifest() -> dict[str, str]:
    try:
        data = json.loads(_MANIFEST.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShippedDataError(f"the shipped manifest {_MANIFEST} cannot be read ({exc}); reinstall smug") from None
    files: dict[str, str] = data["files"]
    return files


@functools.cache
def _verified(name: str, size: int, mtime_ns: int) -> Path:
    path = (CORPORA_DIR if name in _CORPUS_FILES else WEIGHTS_DIR) / name
    want = _manifest().get(name)
    if want is None:
        raise ShippedDataError(f"{name!r} is not a shipped file; shipped: {sorted(_manifest())}")
    got = _sha256(path)
    if got != want:
        raise ShippedDataError(
            f"the shipped file {path} has SHA-256 {got[:16]}..., not the recorded {want[:16]}...; "
            "the install is damaged: reinstall smug (pip install --force-reinstall --no-deps smug)"
        )
    return path


def shipped_file(name: str) -> Path:
    """Return the path of shipped file ``name`` after checking its SHA-256 against the manifest.

    Args:
        name: a file name such as ``"mnist_cnn.pt"`` or ``"rotten_tomatoes_corpus_full.csv.bz2"``.

    Raises:
        ShippedDataError: the file is missing, unknown, or its hash differs (the message says to reinstall).
    """
    path = (CORPORA_DIR if name in _CORPUS_FILES else WEIGHTS_DIR) / name
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ShippedDataError(f"the shipped file {path} is missing; reinstall smug") from None
    return _verified(name, st.st_size, st.st_mtime_ns)


def write_manifest() -> dict[str, str]:
    """Record the SHA-256 of every shipped file in ``weights/MANIFEST.json``; returns the mapping."""
    files = {n: _sha256(WEIGHTS_DIR / n) for n in _WEIGHT_FILES}
    files.update({n: _sha256(CORPORA_DIR / n) for n in _CORPUS_FILES})
    _MANIFEST.write_text(json.dumps({"format": "smug-shipped", "version": 1, "files": files}, indent=2) + "\n")
    _manifest.cache_clear()
    _verified.cache_clear()
    return files


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python -m smug.zoo.shipped [TRAINED_CACHE_DIR]", file=sys.stderr)
        return 2
    if argv:
        src = Path(argv[0])
        missing = [n for n in _WEIGHT_FILES if not (src / n).is_file()]
        if missing:
            print(f"{src} lacks {missing}; train the models into it first (see this module's docstring)")
            return 2
        for n in _WEIGHT_FILES:
            shutil.copyfile(src / n, WEIGHTS_DIR / n)
    for name, digest in write_manifest().items():
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
