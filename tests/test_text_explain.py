"""SMUG for text end to end: smug.explain on token ids and strings, checked against torch by brute force."""

from __future__ import annotations

import copy
import itertools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import smug
from smug import Config
from smug.encoders.text import find_text_first_layer
from smug.errors import ConfigError, ShapeError, ValidationError
from smug.explain.api import explanation_problem
from smug.explain.render.text import render_html_page
from smug.explain.text import TextExplanation
from smug.zoo.text import TextCNN, Tokenizer, Vocabulary

FAST = {"ig_steps": 16, "time_limit": 20}
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _ConvNet(nn.Module):
    """Embedding -> Conv1d -> ReLU module -> max-pool -> Linear, any conv geometry."""

    def __init__(self, V: int, E: int, out: int, **conv: Any):
        super().__init__()
        self.embedding = nn.Embedding(V, E, padding_idx=0)
        self.conv = nn.Conv1d(E, out, **conv)
        self.act = nn.ReLU()
        self.fc = nn.Linear(out, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        h = self.act(self.conv(self.embedding(ids).transpose(1, 2)))
        return self.fc(h.amax(dim=2))


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
    return model.eval()


@st.composite
def _cases(draw: st.DrawFn) -> dict[str, Any]:
    V, E = draw(st.integers(4, 12)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    if draw(st.booleans()):
        K, s, dil = draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        pad = draw(st.integers(0, 2))
        model: nn.Module = _ConvNet(V, E, draw(st.integers(2, 6)), kernel_size=K, stride=s, padding=pad, dilation=dil)
        L = draw(st.integers(max(1, dil * (K - 1) + 1 - 2 * pad), 9))
    else:
        L = draw(st.integers(2, 7))
        model = nn.Sequential(nn.Embedding(V, E, padding_idx=0), nn.Flatten(1), nn.Linear(L * E, 6), nn.ReLU())
        model.append(nn.Linear(6, 3))
    ids = draw(st.lists(st.integers(1, V - 1), min_size=L, max_size=L))
    if L > 2 and draw(st.booleans()):
        ids[draw(st.integers(0, L - 1))] = 0  # one pad position: it must get no variable
    return {
        "model": _seeded(model, seed),
        "ids": torch.tensor(ids),
        "gamma": draw(st.sampled_from([0.0, 0.3, 0.7])),
        "top_k": draw(st.integers(1, 8)),
        "baseline": draw(st.sampled_from(["zero", "pad", "vector"])),
        "E": E,
    }


def _torch_layer_outputs(model: nn.Module, ids: torch.Tensor, embs: np.ndarray, module: str) -> np.ndarray:
    """Reference: run a float64 copy of the model with the embedding's output replaced, capture ``module``."""
    m64 = copy.deepcopy(model).double().eval()
    mods = dict(m64.named_modules())
    emb_name = next(n for n, m in m64.named_modules() if isinstance(m, nn.Embedding))
    captured: dict[str, torch.Tensor] = {}
    e = torch.from_numpy(embs)
    h1 = mods[emb_name].register_forward_hook(lambda m, i, o: e)
    h2 = mods[module].register_forward_hook(lambda m, i, o: captured.__setitem__("o", o.detach()))
    try:
        with torch.no_grad():
            m64(ids.expand(embs.shape[0], -1))
    finally:
        h1.remove()
        h2.remove()
    return captured["o"].reshape(embs.shape[0], -1).numpy()


def _brute_force_min(case: dict[str, Any], e: TextExplanation, base: np.ndarray) -> int:
    model, ids = case["model"], case["ids"]
    layer = find_text_first_layer(model)
    table = layer.embedding
    x = table[ids.numpy()]
    T = e.positions.size
    masks = np.array(list(itertools.product([0, 1], repeat=T)), dtype=np.float64)
    embs = np.repeat(x[None], len(masks) + 1, axis=0)
    for r, m in enumerate(masks, start=1):
        embs[r, e.positions] = base + m[:, None] * (x[e.positions] - base)
    out = _torch_layer_outputs(model, ids, embs, layer.name)
    orig = out[0, e.neurons]
    cfg = e.config
    ok = np.all(out[1:, e.neurons] >= cfg.gamma * orig + cfg.margin * orig, axis=1)
    assert ok[-1], "keeping every token must satisfy the constraints"
    return int(masks[ok].sum(axis=1).min())


@PROPS
@given(_cases())
def test_explanation_is_minimal_by_brute_force_through_torch(case: dict[str, Any]) -> None:
    base: Any = case["baseline"]
    layer = find_text_first_layer(case["model"])
    if base == "vector":
        base = np.linspace(-1, 1, case["E"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer active neurons than top_k
        e = smug.explain(case["model"], case["ids"], top_k=case["top_k"], gamma=case["gamma"], baseline=base, **FAST)
    assert isinstance(e, TextExplanation)
    assert e.status == smug.Status.OPTIMAL and e.verified
    ids = case["ids"].numpy()
    assert e.positions.tolist() == np.flatnonzero(ids != 0).tolist()  # pad positions get no variable
    assert not e.kept[ids == 0].any()
    bvec = layer.baseline_vector(base)
    assert e.mask_size == _brute_force_min(case, e, bvec)
    # replay: the kept-tokens-only probability is torch's on the masked embeddings
    x = layer.embedding[ids]
    xm = x.copy()
    xm[e.positions] = bvec + e.mask_groups[:, None] * (x[e.positions] - bvec)
    m64 = copy.deepcopy(case["model"]).double()
    with torch.no_grad():
        p = torch.softmax(layer.forward_embeddings(m64, case["ids"], torch.from_numpy(xm)), dim=1)[0]
    assert e.masked_probability == pytest.approx(float(p[e.target]), abs=1e-12)


def test_saliency_is_the_best_kept_neuron_covering_each_token() -> None:
    model = _seeded(_ConvNet(12, 4, 6, kernel_size=3, padding=1), 3)
    ids = torch.tensor([3, 5, 7, 2, 9, 4, 11, 6])
    e = smug.explain(model, ids, top_k=8, gamma=0.5, **FAST)
    layer = find_text_first_layer(model)
    L_out = layer.out_len(len(ids))
    want = np.zeros(len(ids))
    total = np.zeros(len(ids))
    for n in e.neurons:
        j = int(n) % L_out
        for tap in range(3):
            p = j - 1 + tap
            if 0 <= p < len(ids):
                want[p] = max(want[p], e.scores[n]) if want[p] else e.scores[n]
                total[p] += e.scores[n]
    np.testing.assert_allclose(e.base_map, want)
    np.testing.assert_allclose(e.saliency, want * e.kept)
    e2 = smug.explain(model, ids, top_k=8, gamma=0.5, saliency="sum", **FAST)
    np.testing.assert_allclose(e2.base_map, total)  # the sum over the covering kept neurons, by hand
    assert np.abs(total - want).max() > 1e-6  # the two rules differ on this input


# ----------------------------------------------------------------- strings and a tokenizer
def _vocab() -> Vocabulary:
    return Vocabulary.build(["a good film", "a bad film , truly bad", "good acting and a good plot"])


def _model_for(vocab: Vocabulary, seed: int = 0) -> TextCNN:
    torch.manual_seed(seed)
    return TextCNN(len(vocab), embed_dim=8, n_filters=12, kernel_size=3, max_len=6, class_names=("neg", "pos")).eval()


def test_a_string_with_a_vocabulary_names_the_tokens_and_classes(tmp_path: Path) -> None:
    vocab = _vocab()
    model = _model_for(vocab)
    e = smug.explain(model, "A good film, truly!", tokenizer=vocab, top_k=5, **FAST)
    assert e.tokens == ["a", "good", "film", ",", "truly", "<unk>"]  # "!" is not in the vocabulary
    assert e.ids.tolist() == vocab.encode("a good film , truly !")
    assert e.class_names == ["neg", "pos"]
    assert set(e.kept_tokens) <= set(e.tokens) and len(e.kept_tokens) == e.mask_size
    plain = e.render(color=False)
    assert plain.count("[") == e.mask_size
    assert "\x1b[" in e.render()
    assert "minimal mask" in str(e)
    page = e.save(tmp_path / "e.html").read_text()
    assert page.count('class="tok kept"') == e.mask_size + 1  # + the legend's sample
    data = json.loads(e.save(tmp_path / "e.json").read_text())
    assert data["kept_tokens"] == e.kept_tokens and data["class_names"] == ["neg", "pos"]
    assert set(np.load(e.save(tmp_path / "e.npz"))) >= {"ids", "kept", "saliency"}
    with pytest.raises(ValidationError, match=r"\.html, \.json or \.npz"):
        e.save(tmp_path / "e.png")


def test_same_problem_as_explanation_problem_and_backends_agree() -> None:
    vocab = _vocab()
    model = _model_for(vocab, seed=1)
    text = "good acting and a bad plot"
    problem = explanation_problem(model, text, tokenizer=vocab, top_k=6, gamma=0.4, **FAST)
    assert problem.metadata["modality"] == "text" and problem.n_mask == 6
    sizes = {b: smug.solve(problem, b, time_limit=20).objective for b in ("ortools:scip", "z3", "ortools:cpsat")}
    e = smug.explain(model, text, tokenizer=vocab, top_k=6, gamma=0.4, **FAST)
    assert set(sizes.values()) == {e.mask_size}


def test_callable_tokenizer_and_pad_baseline() -> None:
    vocab = _vocab()
    model = _model_for(vocab)
    e = smug.explain(model, "bad film", tokenizer=lambda s: vocab.encode(s), baseline="pad", top_k=3, **FAST)
    assert e.tokens == [f"#{i}" for i in vocab.encode("bad film")]
    assert e.verified


def test_linear_first_layer_pads_to_its_length() -> None:
    vocab = _vocab()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(len(vocab), 4, padding_idx=0), nn.Flatten(1), nn.Linear(5 * 4, 6))
    model.append(nn.ReLU()).append(nn.Linear(6, 2)).eval()
    e = smug.explain(model, "good plot", tokenizer=vocab, top_k=4, **FAST)
    assert e.ids.tolist() == vocab.encode("good plot") + [0, 0, 0]
    assert e.positions.tolist() == [0, 1] and e.verified
    with pytest.raises(ValidationError, match="exceeds what the model takes"):
        smug.explain(model, "good plot", tokenizer=vocab, max_len=9, **FAST)


# ------------------------------------------------------------------------------ bad input
def test_bad_text_inputs_are_named() -> None:
    vocab = _vocab()
    model = _model_for(vocab)
    for text in ("", "   "):
        with pytest.raises(ValidationError, match="empty text"):
            smug.explain(model, text, tokenizer=vocab, **FAST)
    with pytest.raises(ValidationError, match="unknown.*'zyzzyva'"):
        smug.explain(model, "zyzzyva quux", tokenizer=vocab, **FAST)
    with pytest.raises(ValidationError, match="unknown"):
        smug.explain(model, torch.tensor([1, 1, 0]), tokenizer=vocab, **FAST)
    with pytest.raises(ValidationError, match="needs a tokenizer"):
        smug.explain(model, "good film", **FAST)
    with pytest.raises(ValidationError, match=r"token id 99 .* out of range"):
        smug.explain(model, torch.tensor([2, 99, 3]), **FAST)
    with pytest.raises(ValidationError, match="empty text"):
        smug.explain(model, torch.tensor([], dtype=torch.int64), **FAST)
    with pytest.raises(ValidationError, match="only <pad>"):
        smug.explain(model, torch.tensor([0, 0]), **FAST)
    with pytest.raises(ValidationError, match="starts with nn.Embedding, so it takes token ids"):
        smug.explain(model, torch.rand(1, 5), **FAST)
    with pytest.raises(ShapeError, match="one text"):
        smug.explain(model, torch.tensor([[2, 3], [3, 4]]), **FAST)
    with pytest.raises(ValidationError, match="'mean' is for images"):
        smug.explain(model, "good film", tokenizer=vocab, baseline="mean", **FAST)
    with pytest.raises(ValidationError, match="feature_mask"):
        smug.explain(model, "good film", tokenizer=vocab, feature_mask=np.zeros(2), **FAST)
    with pytest.raises(ConfigError, match="truncate"):
        smug.explain(model, "good film", tokenizer=vocab, truncate="sometimes", **FAST)


def test_too_long_text_is_cut_with_a_warning_or_refused() -> None:
    vocab = _vocab()
    model = _model_for(vocab)  # max_len 6
    long = "a good film and a good plot and good acting"
    with pytest.warns(UserWarning, match=r"10 tokens, more than the model's maximum length max_len=6") as rec:
        e = smug.explain(model, long, tokenizer=vocab, top_k=3, **FAST)
    assert rec[0].filename == __file__  # the warning points at the caller's line
    assert e.truncated and len(e.ids) == 6 and e.tokens == long.split()[:6]
    with pytest.raises(ValidationError, match="set truncate='warn'"):
        smug.explain(model, long, tokenizer=vocab, truncate="error", **FAST)
    ids = torch.tensor(vocab.encode(long))
    with pytest.raises(ValidationError, match="10 token ids"):
        smug.explain(model, ids, truncate="error", **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = smug.explain(model, long, tokenizer=vocab, top_k=3, max_len=20, **FAST)  # the config's limit wins
    assert len(e.ids) == 10 and not e.truncated


def test_unsupported_layer_after_the_embedding_names_it_and_the_supported_ones() -> None:
    with pytest.raises(ValidationError, match=r"'1' \(torch.nn.modules.rnn.LSTM\).*Supported: nn.Conv1d"):
        smug.explain(nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 8)).eval(), torch.tensor([1, 2, 3]), **FAST)


# ------------------------------------------------------------------------------ batch API
def test_minimal_mask_attribute_on_ids_and_strings() -> None:
    vocab = _vocab()
    model = _model_for(vocab)
    ids = torch.tensor([vocab.encode("a good film"), vocab.encode("a bad film")])
    mm = smug.MinimalMask(model, tokenizer=vocab, top_k=4, **FAST)
    attr = mm.attribute(ids, target=1)
    assert attr.shape == ids.shape and attr.dtype == torch.float32
    assert [e.target for e in mm.explanations] == [1, 1]
    for row, e in zip(attr, mm.explanations):
        np.testing.assert_allclose(row.numpy(), e.saliency.astype(np.float32))
    out = mm.attribute(["good plot", "a bad film , truly bad"])
    assert [len(t) for t in out] == [2, 6]
    with pytest.raises(ShapeError, match="2 entries for a batch of 3"):
        mm.attribute(["a", "b", "c"], target=[0, 1])


def test_html_page_with_several_explanations(tmp_path: Path) -> None:
    vocab = _vocab()
    model = _model_for(vocab)
    es = [smug.explain(model, t, tokenizer=vocab, top_k=3, **FAST) for t in ("good film", "bad <film> & plot")]
    page = render_html_page(
        [
            {"tokens": e.tokens, "saliency": e.saliency, "kept": e.kept, "heading": f"review {i}"}
            for i, e in enumerate(es)
        ]
    )
    assert page.count("<h2>") == 2 and "&lt;" in page and "<film>" not in page
    with pytest.raises(ShapeError, match="explanation 1"):
        render_html_page([{"tokens": ["a"], "kept": [1]}, {"tokens": ["a", "b"], "kept": [1]}])


def test_config_accepts_text_settings() -> None:
    cfg = Config.from_dict({"max_len": 40, "truncate": "error", "baseline": "pad"})
    assert cfg.max_len == 40
    with pytest.raises(ConfigError, match="max_len"):
        Config(max_len=0)
    assert Tokenizer().tokenize("Don't") == ["do", "n't"]


def test_text_drops_padding_only() -> None:
    vocab = _vocab()
    model = _model_for(vocab)
    ids = torch.tensor(vocab.encode("a good film") + [0, 0])
    e = smug.explain(model, ids, tokenizer=vocab, maskable=[1, 2], top_k=3, **FAST)
    assert e.text == "a good film" and e.positions.tolist() == [1, 2] and not e.kept[0]
