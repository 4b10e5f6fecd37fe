"""The first layer after a text model's embedding as an exact affine function of a token mask.

SMUG explains a text classifier with one 0/1 variable ``m_t`` per maskable
token position: a kept token (``m_t = 1``) keeps its embedding, a masked one
(``m_t = 0``) is replaced by a baseline vector ``b`` (zero by default)::

    x_m[p] = b + m_t (x[p] - b)        (p the position of variable t)

``<pad>`` positions never get a variable and keep their own embedding.  The
first layer after the embedding is affine, so each of its neurons'
pre-activation on ``x_m`` is affine in ``m``: ``pre(m) = C m + d``.
:func:`find_text_first_layer` extracts the embedding matrix and that layer
from a PyTorch model, and :meth:`TextFirstLayer.affine_rows` computes ``C``
and ``d`` exactly in float64, vectorised over neurons and kernel taps.

Supported first layers after the ``nn.Embedding`` (``nn.Dropout`` and
``nn.Identity`` in between are skipped):

* ``nn.Conv1d`` over the embedding sequence transposed to ``(B, E, L)``, with
  ``groups=1`` and ``padding_mode="zeros"``, any kernel size, stride, dilation
  and padding (integers, ``"same"`` or ``"valid"``);
* ``nn.Linear`` over the embeddings flattened in C order to ``(B, L * E)``
  (optionally after ``nn.Flatten``), which fixes the sequence length ``L``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NonFiniteError, ShapeError, ValidationError
from .groups import neuron_indices, to_numpy
from .layers import SKIPPED_LAYERS

__all__ = ["TextFirstLayer", "find_text_first_layer", "TEXT_BASELINE_OPTIONS", "SUPPORTED_TEXT_FIRST_LAYERS"]

#: The named baselines :meth:`TextFirstLayer.baseline_vector` understands (besides a length-E vector).
TEXT_BASELINE_OPTIONS = ("zero", "pad")

#: Human-readable list of the layers smug can encode after an embedding (used in error messages).
SUPPORTED_TEXT_FIRST_LAYERS = (
    "nn.Conv1d over the (B, E, L) embedding sequence (groups=1, padding_mode='zeros'; any kernel size, stride, "
    "dilation and padding incl. 'same'/'valid'), or nn.Linear over the embeddings flattened to (B, L*E) "
    "(optionally after nn.Flatten); nn.Dropout and nn.Identity between the embedding and the layer are skipped"
)


def _display(name: str, module: nn.Module) -> str:
    label = repr(name) if name else "(the model itself)"
    return f"{label} ({type(module).__module__}.{type(module).__qualname__})"


def _unsupported(name: str, module: nn.Module, why: str = "") -> ValidationError:
    extra = f" ({why})" if why else ""
    return ValidationError(
        f"the layer after the embedding, {_display(name, module)}, is not supported{extra}. "
        f"Supported: {SUPPORTED_TEXT_FIRST_LAYERS}."
    )


def _is_exact(module: nn.Module, base: type) -> bool:
    return isinstance(module, base) and type(module).forward is base.forward


@dataclass(eq=False)
class TextFirstLayer:
    """An embedding and the affine layer right after it, in float64.

    Attributes:
        name: module name of the affine layer.
        kind: ``"conv1d"`` or ``"linear"``.
        embedding_name: module name of the ``nn.Embedding``.
        embedding: the embedding matrix ``(V, E)``, float64.
        weight: ``(out_channels, E, kernel_size)`` for conv1d, ``(out_features, L * E)`` for linear.
        bias: ``(out,)`` (zeros when the layer has none).
        pad_id: the id of ``<pad>`` (the embedding's ``padding_idx``, else 0);
            positions holding it never get a mask variable.
        stride: conv stride.
        padding: conv zero padding ``(left, right)`` (``"same"`` resolved as PyTorch does).
        dilation: conv dilation.
        kernel_size: conv kernel size.
        seq_len: the fixed sequence length of a linear layer (``in_features // E``); ``None`` for conv.
        modules: names of the modules from the embedding to the layer, in order
            (the last one's output equals :meth:`preactivations`).
    """

    name: str
    kind: Literal["conv1d", "linear"]
    embedding_name: str
    embedding: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    pad_id: int = 0
    stride: int = 1
    padding: tuple[int, int] = (0, 0)
    dilation: int = 1
    kernel_size: int = 1
    seq_len: int | None = None
    modules: tuple[str, ...] = ()

    # ------------------------------------------------------------- geometry
    @property
    def module_names(self) -> tuple[str, ...]:
        """Alias of :attr:`modules`; the last one is the module whose output equals :meth:`preactivations`."""
        return self.modules

    @property
    def vocab_size(self) -> int:
        """Number of embedding rows (token ids ``0..vocab_size-1``)."""
        return int(self.embedding.shape[0])

    @property
    def embed_dim(self) -> int:
        """Embedding width ``E``."""
        return int(self.embedding.shape[1])

    @property
    def out_channels(self) -> int:
        """Output channels (conv1d) or output features (linear)."""
        return int(self.weight.shape[0])

    def out_len(self, seq_len: int) -> int:
        """Output positions of a conv1d on ``seq_len`` tokens (1 for linear).

        Raises:
            ShapeError: the sequence (padded) is shorter than the dilated kernel,
                or a linear layer gets a length other than :attr:`seq_len`.
        """
        L = self._check_len(seq_len)
        if self.kind == "linear":
            return 1
        left, right = self.padding
        span = self.dilation * (self.kernel_size - 1) + 1
        n = (L + left + right - span) // self.stride + 1
        if L + left + right < span:
            raise ShapeError(
                f"a sequence of {L} token(s) (padded to {L + left + right}) is shorter than the dilated kernel "
                f"({span} positions) of layer {self.name!r}"
            )
        return int(n)

    def out_shape(self, seq_len: int) -> tuple[int, ...]:
        """The layer's output shape for one sequence: ``(out_channels, L_out)`` for conv1d, ``(out_features,)``."""
        if self.kind == "linear":
            self._check_len(seq_len)
            return (self.out_channels,)
        return (self.out_channels, self.out_len(seq_len))

    def n_neurons(self, seq_len: int) -> int:
        """Number of neurons (output units) for one sequence of ``seq_len`` tokens."""
        return int(np.prod(self.out_shape(seq_len)))

    def unravel_neurons(self, neurons: Any, seq_len: int) -> tuple[np.ndarray, ...]:
        """Output coordinates of flat neuron indices: ``(channel, position)`` for conv1d, ``(feature,)`` for linear."""
        out = self.out_shape(seq_len)
        return np.unravel_index(self._neurons(neurons, int(np.prod(out))), out)

    # ---------------------------------------------------------- validation
    def _check_len(self, seq_len: int) -> int:
        if isinstance(seq_len, (bool, np.bool_)) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ShapeError(f"sequence length must be a positive integer, got {seq_len!r}")
        if self.kind == "linear" and int(seq_len) != self.seq_len:
            raise ShapeError(
                f"layer {self.name!r} is a Linear over {self.seq_len} flattened embeddings "
                f"({self.weight.shape[1]} features), so it takes sequences of exactly {self.seq_len} tokens "
                f"(pad shorter ones with id {self.pad_id}), got {seq_len}"
            )
        return int(seq_len)

    def _ids(self, ids: Any) -> np.ndarray:
        arr = to_numpy(ids)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1:
            raise ShapeError(f"ids must be one sequence of token ids, shape (L,) or (1, L); got shape {arr.shape}")
        if arr.size == 0:
            raise ValidationError("empty text: nothing to explain (the id sequence is empty)")
        if arr.dtype.kind not in "iu":
            raise ValidationError(f"ids must be integer token ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise ValidationError(
                f"token id {int(arr[bad][0])} at position {int(np.flatnonzero(bad)[0])} is out of range; "
                f"the embedding {self.embedding_name!r} has {self.vocab_size} rows (ids 0..{self.vocab_size - 1})"
            )
        self._check_len(arr.shape[0])
        return arr

    @staticmethod
    def _neurons(neurons: Any, n_out: int) -> np.ndarray:
        return neuron_indices(neurons, n_out)

    def baseline_vector(self, baseline: Any = "zero") -> np.ndarray:
        """The embedding a masked token takes, as a float64 vector of length ``E``.

        Args:
            baseline: ``"zero"`` (default; also ``None``): the zero vector;
                ``"pad"``: the ``<pad>`` row of the embedding (zero when the
                embedding has a ``padding_idx``); or an array / tensor of
                length ``E``.

        Raises:
            ValidationError: an unknown name.
            ShapeError: a vector whose length is not ``E``.
            NonFiniteError: NaN or infinite entries.
        """
        if baseline is None or (isinstance(baseline, str) and baseline in ("zero", "zeros")):
            return np.zeros(self.embed_dim)
        if isinstance(baseline, str) and baseline == "pad":
            return self.embedding[self.pad_id].copy()
        if isinstance(baseline, str):
            raise ValidationError(
                f"unknown text baseline {baseline!r}; use one of {TEXT_BASELINE_OPTIONS} or a vector of length "
                f"{self.embed_dim} (the embedding width)"
            )
        vec = to_numpy(baseline, dtype=np.float64)
        if vec.ndim == 2 and vec.shape[0] == 1:
            vec = vec[0]
        if vec.shape != (self.embed_dim,):
            raise ShapeError(
                f"a baseline vector must have the embedding width {self.embed_dim} (shape ({self.embed_dim},)), "
                f"got shape {vec.shape}"
            )
        if not np.isfinite(vec).all():
            raise NonFiniteError(f"baseline vector contains {int((~np.isfinite(vec)).sum())} NaN or infinite value(s)")
        return vec.copy()

    def mask_positions(self, ids: Any, maskable: Any = None) -> np.ndarray:
        """The token positions that get a mask variable, in variable order (int64, sorted).

        Args:
            ids: the token ids ``(L,)``.
            maskable: ``None`` (default): every position not holding
                :attr:`pad_id`; or a boolean array of length ``L``; or integer
                positions.  Pad positions may not be maskable.

        Raises:
            ValidationError: a maskable position out of range, repeated, or holding ``<pad>``.
            ShapeError: a boolean selector of the wrong length.
        """
        arr = self._ids(ids)
        L = arr.shape[0]
        is_pad = arr == self.pad_id
        if maskable is None:
            return np.flatnonzero(~is_pad).astype(np.int64)
        sel = to_numpy(maskable)
        if sel.dtype.kind == "b":
            if sel.shape != (L,):
                raise ShapeError(f"a boolean maskable selector needs shape ({L},), got {sel.shape}")
            pos = np.flatnonzero(sel).astype(np.int64)
        else:
            if sel.size and sel.dtype.kind not in "iu":
                raise ValidationError(f"maskable must be booleans or integer positions, got dtype {sel.dtype}")
            pos = sel.astype(np.int64).ravel()
            bad = (pos < 0) | (pos >= L)
            if bad.any():
                raise ValidationError(f"maskable position {int(pos[bad][0])} is out of range for {L} tokens")
            if np.unique(pos).size != pos.size:
                raise ValidationError("maskable positions must not repeat")
            pos = np.sort(pos)
        if is_pad[pos].any():
            raise ValidationError(
                f"position {int(pos[is_pad[pos]][0])} holds <pad> (id {self.pad_id}); pad positions never get "
                "a mask variable"
            )
        return pos

    # ------------------------------------------------------- computations
    def embed(self, ids: Any) -> np.ndarray:
        """The embeddings of ``ids``, ``(L, E)`` float64."""
        return self.embedding[self._ids(ids)]

    def masked_embeddings(self, ids: Any, mask: Any, *, baseline: Any = "zero", maskable: Any = None) -> np.ndarray:
        """The ``(L, E)`` float64 embeddings with mask ``mask`` applied.

        ``mask`` has one entry per variable (see :meth:`mask_positions`): 1 keeps
        the token, 0 replaces its embedding by the baseline vector.  Values in
        between interpolate.  Non-maskable positions keep their embedding.

        Raises:
            ShapeError: ``mask`` does not have one entry per variable.
        """
        pos = self.mask_positions(ids, maskable)
        x = self.embed(ids)
        m = to_numpy(mask, dtype=np.float64).ravel()
        if m.shape != (pos.size,):
            raise ShapeError(f"mask has {m.size} entries but there are {pos.size} mask variables (maskable tokens)")
        base = self.baseline_vector(baseline)
        x[pos] = base[None, :] + m[:, None] * (x[pos] - base[None, :])
        return x

    def preactivations_from_embeddings(self, embedded: Any) -> np.ndarray:
        """The layer's output on ``(L, E)`` embeddings, float64, flattened in C order (torch, float64)."""
        x = to_numpy(embedded, dtype=np.float64)
        if x.ndim == 3 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 2 or x.shape[1] != self.embed_dim:
            raise ShapeError(f"embeddings must have shape (L, {self.embed_dim}), got {x.shape}")
        self._check_len(x.shape[0])
        if not np.isfinite(x).all():
            raise NonFiniteError(f"embeddings contain {int((~np.isfinite(x)).sum())} NaN or infinite value(s)")
        t = torch.from_numpy(np.ascontiguousarray(x))
        W, b = torch.from_numpy(self.weight), torch.from_numpy(self.bias)
        if self.kind == "linear":
            return F.linear(t.reshape(1, -1), W, b)[0].numpy()
        self.out_len(x.shape[0])
        tp = F.pad(t.T[None], self.padding)
        return F.conv1d(tp, W, b, stride=self.stride, dilation=self.dilation)[0].numpy().ravel()

    def preactivations(self, ids: Any) -> np.ndarray:
        """The layer's output (pre-activation) on the token ids, float64, flattened in C order.

        ``(out_channels, L_out)`` flattened for conv1d, ``(out_features,)`` for linear.
        """
        return self.preactivations_from_embeddings(self.embed(ids))

    def affine_rows(
        self, ids: Any, neurons: Any, *, baseline: Any = "zero", maskable: Any = None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Exact affine form ``pre = C @ m + d`` of the chosen neurons' pre-activations in the token mask ``m``.

        For every 0/1 vector ``m`` with one entry per mask variable (the
        positions :meth:`mask_positions` returns, in that order), ``C @ m + d``
        equals ``preactivations_from_embeddings(masked_embeddings(ids, m,
        baseline=baseline, maskable=maskable))[neurons]`` up to float64 rounding.

        Args:
            ids: the token ids ``(L,)`` (or ``(1, L)``).
            neurons: flat indices into :meth:`preactivations` (or a boolean selector).
            baseline: the masked tokens' embedding: ``"zero"``, ``"pad"`` or a
                length-``E`` vector (see :meth:`baseline_vector`).
            maskable: which positions get variables (default: all non-pad ones).

        Returns:
            ``(C, d)``: ``C`` a ``k x T`` float64 CSR matrix (``k`` neurons,
            ``T`` variables; a variable outside a neuron's window has no entry
            in its row), ``d`` a float64 vector of length ``k``.
        """
        arr = self._ids(ids)
        L = arr.shape[0]
        pos = self.mask_positions(arr, maskable)
        T = pos.size
        var_of = np.full(L, -1, dtype=np.int64)
        var_of[pos] = np.arange(T, dtype=np.int64)
        x = self.embedding[arr]
        base = self.baseline_vector(baseline)
        z = x.copy()  # what each position contributes when its variable is 0
        z[pos] = base
        delta = np.zeros_like(x)  # what switching its variable to 1 adds
        delta[pos] = x[pos] - base
        nrn = self._neurons(neurons, self.n_neurons(L))
        k = nrn.size
        if self.kind == "linear":
            Wk = self.weight.reshape(self.out_channels, L, self.embed_dim)[nrn]  # (k, L, E)
            d = self.bias[nrn] + np.einsum("kle,le->k", Wk, z)
            dense = np.einsum("kle,le->kl", Wk[:, pos, :], delta[pos]) if T else np.zeros((k, 0))
            C = sp.csr_matrix(dense, shape=(k, T))
            return C, d
        L_out = self.out_len(L)
        o, j = np.divmod(nrn, L_out)
        taps = np.arange(self.kernel_size, dtype=np.int64)
        p = j[:, None] * self.stride - self.padding[0] + self.dilation * taps[None, :]  # (k, K)
        valid = (p >= 0) & (p < L)
        pc = np.clip(p, 0, L - 1)
        Wo = self.weight[o]  # (k, E, K)
        d = self.bias[o] + (np.einsum("kea,kae->ka", Wo, z[pc]) * valid).sum(axis=1)
        vals = np.einsum("kea,kae->ka", Wo, delta[pc])
        cols = var_of[pc]
        keep = valid & (cols >= 0)
        rows = np.broadcast_to(np.arange(k, dtype=np.int64)[:, None], keep.shape)[keep]
        C = sp.csr_matrix((vals[keep], (rows, cols[keep])), shape=(k, T))
        C.sort_indices()
        return C, d

    def receptive_fields(self, seq_len: int, neurons: Any) -> sp.csr_matrix:
        """Which token positions each chosen neuron depends on: a ``k x seq_len`` 0/1 float64 CSR matrix.

        A position is in a neuron's field when its window covers the position
        (conv taps falling on the zero padding are not positions) and some
        weight on it is non-zero; for a linear layer, every position with a
        non-zero weight.
        """
        L = self._check_len(seq_len)
        nrn = self._neurons(neurons, self.n_neurons(L))
        k = nrn.size
        if self.kind == "linear":
            W3 = self.weight.reshape(self.out_channels, L, self.embed_dim)[nrn]
            R = sp.csr_matrix((W3 != 0).any(axis=2).astype(np.float64), shape=(k, L))
        else:
            L_out = self.out_len(L)
            o, j = np.divmod(nrn, L_out)
            p = j[:, None] * self.stride - self.padding[0] + self.dilation * np.arange(self.kernel_size)[None, :]
            tap_nz = (self.weight != 0).any(axis=1)[o]  # (k, K)
            keep = (p >= 0) & (p < L) & tap_nz
            rows = np.broadcast_to(np.arange(k)[:, None], keep.shape)[keep]
            R = sp.csr_matrix((np.ones(rows.size), (rows, p[keep])), shape=(k, L))
            R.sum_duplicates()
            R.data[:] = 1.0
        R.sort_indices()
        return R

    def forward_embeddings(self, model: nn.Module, ids: Any, embedded: Any) -> torch.Tensor:
        """Run ``model`` with its embedding's output replaced by ``embedded``; returns the model's output.

        ``ids`` is a ``(B, L)`` (or ``(L,)``) id batch giving the model its
        input shape; ``embedded`` is ``(B, L, E)`` (or ``(L, E)``), cast to the
        embedding's output dtype.  Works for any model whose embedding module is
        :attr:`embedding_name` -- use it to replay masked inputs through the real
        model (e.g. a ``copy.deepcopy(model).double()``).
        """
        modules = dict(model.named_modules())
        if self.embedding_name not in modules:
            raise ValidationError(f"model has no module named {self.embedding_name!r} (the embedding)")
        tid = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(np.asarray(ids), dtype=torch.int64)
        if tid.dim() == 1:
            tid = tid.unsqueeze(0)
        emb = embedded if isinstance(embedded, torch.Tensor) else torch.from_numpy(np.asarray(embedded))
        if emb.dim() == 2:
            emb = emb.unsqueeze(0)
        if tuple(emb.shape[:2]) != tuple(tid.shape):
            raise ShapeError(f"embeddings of shape {tuple(emb.shape)} do not match ids of shape {tuple(tid.shape)}")

        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
            return emb.to(dtype=out.dtype, device=out.device)

        handle = modules[self.embedding_name].register_forward_hook(hook)
        try:
            return model(tid)
        finally:
            handle.remove()


# ------------------------------------------------------------- discovery
def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in model.named_modules():
        if next(m.children(), None) is None or next(m.parameters(recurse=False), None) is not None:
            out.append((name, m))
    return out


def _valid_names(model: nn.Module, wanted: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    layers = [n for n, m in model.named_modules() if n and isinstance(m, (nn.Embedding, nn.Linear, nn.Conv1d))]
    close = difflib.get_close_matches(wanted, names, n=3)
    shown = list(dict.fromkeys(close + layers + names))[:12]
    more = f", ... ({len(names)} in all)" if len(names) > len(shown) else ""
    return ", ".join(repr(n) for n in shown) + more


def find_text_first_layer(model: nn.Module, name: str | None = None, *, pad_id: int | None = None) -> TextFirstLayer:
    """Find a text model's ``nn.Embedding`` and the affine layer right after it.

    Modules are taken in registration order (the order of
    ``model.named_modules()``, which for ``nn.Sequential`` and ordinary
    ``__init__`` code is the order they run in): the first ``nn.Embedding``, and
    the first module after it that is not ``nn.Dropout`` / ``nn.Identity`` /
    ``nn.Flatten``.  With ``name``, that module is the named one and the
    embedding is the last ``nn.Embedding`` registered before it.

    Args:
        model: the text classifier.
        name: module name of the affine layer (optional).
        pad_id: the ``<pad>`` id (default: the embedding's ``padding_idx``, else 0).

    Raises:
        ValidationError: no embedding; an unknown ``name``; an embedding with
            ``max_norm`` (it rescales rows on lookup); or an unsupported layer
            after the embedding (the message names it and lists what is supported).
        ShapeError: a layer whose input width does not match the embedding.
    """
    if not isinstance(model, nn.Module):
        raise ValidationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seq = _leaves(model)
    if name is not None:
        modules = dict(model.named_modules())
        if name not in modules:
            raise ValidationError(
                f"model has no module named {name!r}; valid names include {_valid_names(model, name)}"
            )
        idx = next((i for i, (_, m) in enumerate(seq) if m is modules[name]), None)
        if idx is None:
            raise _unsupported(name, modules[name], "it is a container; name the layer inside it")
        emb_idx = next((i for i in range(idx - 1, -1, -1) if isinstance(seq[i][1], nn.Embedding)), None)
        if emb_idx is None:
            raise ValidationError(f"found no nn.Embedding registered before {_display(name, modules[name])}")
    else:
        emb_idx = next((i for i, (_, m) in enumerate(seq) if isinstance(m, nn.Embedding)), None)
        if emb_idx is None:
            raise ValidationError(
                "found no nn.Embedding in the model; smug's text encoder masks token embeddings, so the model "
                "must start with an nn.Embedding over token ids"
            )
        idx = emb_idx + 1
        while idx < len(seq) and (isinstance(seq[idx][1], SKIPPED_LAYERS) or isinstance(seq[idx][1], nn.Flatten)):
            idx += 1
        if idx >= len(seq):
            raise ValidationError(
                f"found no layer after the embedding {_display(*seq[emb_idx])}; "
                f"supported: {SUPPORTED_TEXT_FIRST_LAYERS}"
            )
    emb_name, emb = seq[emb_idx]
    if not _is_exact(emb, nn.Embedding):
        raise ValidationError(f"{_display(emb_name, emb)} overrides nn.Embedding.forward; smug cannot encode it")
    if emb.max_norm is not None:
        raise ValidationError(
            f"{_display(emb_name, emb)} has max_norm={emb.max_norm}: it rescales embedding rows on lookup, "
            "which smug does not model; renormalise the weights once and set max_norm=None"
        )
    between = [n for n, _ in seq[emb_idx + 1 : idx]]
    for n, m in seq[emb_idx + 1 : idx]:
        if not (isinstance(m, SKIPPED_LAYERS) or isinstance(m, nn.Flatten)):
            raise _unsupported(
                n, m, "only nn.Dropout, nn.Identity and nn.Flatten may sit between the embedding and the first layer"
            )
    lname, layer = seq[idx]
    E = int(emb.embedding_dim)
    table = emb.weight.detach().cpu().double().numpy().copy()
    pid = pad_id if pad_id is not None else (emb.padding_idx if emb.padding_idx is not None else 0)
    if not 0 <= int(pid) < table.shape[0]:
        raise ValidationError(f"pad_id {pid} is out of range for an embedding with {table.shape[0]} rows")
    has_flatten = any(isinstance(m, nn.Flatten) for _, m in seq[emb_idx + 1 : idx])
    common: dict[str, Any] = dict(
        name=lname, embedding_name=emb_name, embedding=table, pad_id=int(pid), modules=(emb_name, *between, lname)
    )
    if _is_exact(layer, nn.Conv1d):
        if has_flatten:
            raise _unsupported(lname, layer, "a Conv1d after nn.Flatten")
        if layer.groups != 1:
            raise _unsupported(lname, layer, f"groups={layer.groups}; only groups=1 is supported")
        if layer.padding_mode != "zeros":
            raise _unsupported(lname, layer, f"padding_mode={layer.padding_mode!r}; only 'zeros' is supported")
        if layer.in_channels != E:
            raise ShapeError(
                f"{_display(lname, layer)} has {layer.in_channels} input channels but the embedding "
                f"{emb_name!r} has width {E}; smug expects the conv to run over the (B, E, L) embeddings"
            )
        K, s, dil = int(layer.kernel_size[0]), int(layer.stride[0]), int(layer.dilation[0])
        if isinstance(layer.padding, str):
            if layer.padding == "valid":
                pad = (0, 0)
            elif layer.padding == "same":  # PyTorch puts the odd extra position on the right
                total = dil * (K - 1)
                pad = (total // 2, total - total // 2)
            else:
                raise _unsupported(lname, layer, f"padding={layer.padding!r}")
        else:
            pad = (int(layer.padding[0]), int(layer.padding[0]))
        W = layer.weight.detach().cpu().double().numpy().copy()
        b = layer.bias.detach().cpu().double().numpy().copy() if layer.bias is not None else np.zeros(W.shape[0])
        return TextFirstLayer(
            kind="conv1d", weight=W, bias=b, stride=s, padding=pad, dilation=dil, kernel_size=K, **common
        )
    if _is_exact(layer, nn.Linear):
        if layer.in_features % E:
            raise ShapeError(
                f"{_display(lname, layer)} has {layer.in_features} input features, not a multiple of the embedding "
                f"width {E}; smug expects a Linear over the (B, L*E) flattened embeddings"
            )
        W = layer.weight.detach().cpu().double().numpy().copy()
        b = layer.bias.detach().cpu().double().numpy().copy() if layer.bias is not None else np.zeros(W.shape[0])
        return TextFirstLayer(kind="linear", weight=W, bias=b, seq_len=layer.in_features // E, **common)
    raise _unsupported(lname, layer)
