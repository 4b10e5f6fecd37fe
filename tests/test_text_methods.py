"""Text baselines (IG / gradient / occlusion on embeddings), PathwayGrad and the optimised mask on text, the text
metrics, and the text study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from smug.errors import ConfigError, ShapeError, ValidationError
from smug.methods.text import (
    TextIntegratedGradients,
    TextOcclusion,
    TextOptimisedMask,
    TextPathwayGrad,
    TextSaliency,
)
from smug.study.metrics import best_text_saliency_metric, text_insertion_deletion, text_saliency_metric
from smug.zoo.text import TextCNN


class _Bag(nn.Module):
    """Logits (s, -s) with s = the sum of one-dimensional token embeddings: only token 1 carries evidence."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(4, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor([[0.0], [5.0], [0.0], [0.0]]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = self.embedding(ids).sum(dim=(1, 2))
        return torch.stack([s, -s], dim=1)


def _cnn(seed: int = 0) -> TextCNN:
    torch.manual_seed(seed)
    return TextCNN(20, embed_dim=6, n_filters=8).eval()


def test_integrated_gradients_is_complete_and_per_token() -> None:
    model = _cnn()
    ids = torch.tensor([[3, 7, 11, 2, 5]])
    attr = TextIntegratedGradients(model, n_steps=300).attribute(ids)
    assert attr.shape == (1, 5)
    with torch.no_grad():
        logits = model(ids)[0]
        zero = model.forward_embedded(torch.zeros(1, 5, 6))[0]
    t = int(logits.argmax())
    assert float(attr.sum()) == pytest.approx(float(logits[t] - zero[t]), rel=5e-3, abs=1e-3)  # max-pool kinks


def test_gradient_norm_and_occlusion_match_a_direct_computation() -> None:
    model = _cnn(1)
    ids = torch.tensor([[4, 9, 1, 13]])
    emb = model.embedding(ids).detach().requires_grad_(True)
    logits = model.forward_embedded(emb)
    t = int(logits.argmax())
    (g,) = torch.autograd.grad(logits[0, t], emb)
    np.testing.assert_allclose(TextSaliency(model).attribute(ids)[0].numpy(), g[0].norm(dim=1).numpy(), rtol=1e-5)
    occ = TextOcclusion(model).attribute(ids, target=t)[0]
    with torch.no_grad():
        p = torch.softmax(model(ids), 1)[0, t]
        e2 = model.embedding(ids).clone()
        e2[0, 2] = 0
        p2 = torch.softmax(model.forward_embedded(e2), 1)[0, t]
    assert float(occ[2]) == pytest.approx(float(p - p2), abs=1e-6)
    with pytest.raises(ShapeError, match="2 entries for a batch of 1"):
        TextOcclusion(model).attribute(ids, target=[0, 1])
    with pytest.raises(ValidationError, match="no nn.Embedding"):
        TextSaliency(nn.Linear(3, 2))


def test_text_metrics_on_a_hand_checked_model() -> None:
    model = _Bag().eval()
    ids = [2, 1, 3, 2]
    p1 = 1 / (1 + math.exp(-10))  # softmax([5, -5])[0]
    # token 1 first: keeping it alone already gives p1, so the best threshold keeps 1 of 4 tokens
    sal = [0.1, 0.9, 0.0, 0.2]
    best = best_text_saliency_metric(model, ids, sal)
    assert best.kept_fraction == 0.25 and best.probability == pytest.approx(p1)
    assert best.score == pytest.approx(math.log(0.25) - math.log(p1))
    same = text_saliency_metric(model, ids, [0, 1, 0, 0])
    assert same.score == pytest.approx(best.score)
    # a map that misses token 1: every threshold keeps p = 0.5
    worse = best_text_saliency_metric(model, ids, [0.5, 0.0, 0.0, 0.0])
    assert worse.probability == pytest.approx(0.5) and worse.score > best.score
    idl = text_insertion_deletion(model, ids, sal)
    np.testing.assert_allclose(idl.deletion, [p1, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(idl.insertion, [0.5, p1, p1, p1, p1])
    assert idl.deletion_auc == pytest.approx(np.trapezoid([p1, 0.5, 0.5, 0.5, 0.5], [0, 0.25, 0.5, 0.75, 1]))
    bad = text_insertion_deletion(model, ids, [0.0, 0.0, 0.0, 1.0])  # token 1 deleted last
    assert bad.deletion_auc > idl.deletion_auc and bad.insertion_auc < idl.insertion_auc
    with pytest.raises(ShapeError, match="3 entries for 4 tokens"):
        best_text_saliency_metric(model, ids, [1, 2, 3])


@pytest.mark.timeout_heavy
def test_text_study_writes_rows_tables_and_figures(tmp_path) -> None:
    from smug.study.evaluate import run_text_study

    res = run_text_study(n=2, methods=["smug:ortools:cbc", "occlusion"], out_dir=tmp_path, progress=False)
    rows = [json.loads(line) for line in res.paths["rows"].read_text().splitlines()]
    assert len(rows) == 4 and not any(r.get("error") for r in rows)
    smug_rows = [r for r in rows if r["method"].startswith("smug")]
    assert all(r["status"] == "optimal" and r["verified"] for r in smug_rows)
    assert all(r["sparsity"] == pytest.approx(r["mask_size"] / r["tokens"]) for r in smug_rows)
    assert "saliency metric" in res.paths["summary_md"].read_text()
    assert res.paths["figure"].stat().st_size > 5000 and "<h2>" in res.paths["figure_html"].read_text()
    again = run_text_study(n=2, methods=["smug:ortools:cbc", "occlusion"], out_dir=tmp_path, progress=False)
    assert len(again.rows) == 4  # resumed: nothing recomputed, nothing duplicated


# ------------------------------------------------------------- PathwayGrad and the optimised mask on text
@pytest.fixture(scope="module")
def text_cnn():
    """The shipped reference text CNN (float32, loads without training), its vocabulary and three reviews' ids."""
    from smug.zoo.text import pretrained_text_cnn

    model, vocab = pretrained_text_cnn(source="shipped")
    reviews = [
        "an exhaustive investigation into the roots and after-effects of the french counter-revolution",
        "the director seems to take an unseemly pleasure in the characters ' misery and at the same time",
        "a gripping , funny and moving film",
    ]
    return model, vocab, [vocab.encode(r) for r in reviews]


def _plain_gradient(model: nn.Module, ids: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dS/de, e) by plain autograd on ``forward_embedded``: the reference TextPathwayGrad must reproduce."""
    emb = model.embedding(ids).detach().requires_grad_(True)
    out = model.forward_embedded(emb)
    (g,) = torch.autograd.grad(out.gather(1, target.view(-1, 1)).sum(), emb)
    return g, emb.detach()


@pytest.mark.parametrize("contribution", ["taylor", "ig"])
def test_text_pathwaygrad_with_sparsity_zero_is_exactly_the_embedding_gradient(text_cnn, contribution) -> None:
    import copy

    model, _, seqs = text_cnn
    m64 = copy.deepcopy(model).double()
    L = min(len(seqs[0]), len(seqs[1]))
    ids = torch.tensor([seqs[0][:L], seqs[1][:L]])  # two reviews in one batch
    with torch.no_grad():
        target = m64(ids).argmax(1)
    g, emb = _plain_gradient(m64, ids, target)
    pg = TextPathwayGrad(m64, sparsity=0, contribution=contribution, ig_steps=4)
    norm = pg.attribute(ids)
    assert norm.shape == (2, L) and norm.dtype == torch.float64
    assert torch.equal(norm, g.norm(dim=-1))  # bit for bit, not merely close
    summed = TextPathwayGrad(m64, sparsity=0, contribution=contribution, ig_steps=4, reduce="sum").attribute(ids)
    assert torch.equal(summed, (g * emb).sum(dim=-1))
    # the float32 model agrees with TextSaliency (Captum's layer gradient), the same reduction
    torch.testing.assert_close(
        TextPathwayGrad(model, sparsity=0).attribute(ids), TextSaliency(model).attribute(ids), rtol=1e-5, atol=1e-6
    )


def test_text_pathwaygrad_keeps_the_requested_fraction_and_gates_the_gradient(text_cnn) -> None:
    import copy

    model, _, seqs = text_cnn
    m = copy.deepcopy(model).double()
    ids = torch.tensor([seqs[1]])
    L = ids.shape[1]
    pg = TextPathwayGrad(m, sparsity=99)
    attr = pg.attribute(ids)
    pw = pg.pathway
    assert len(pw.sites) == 1 and pw.sites[0].module == "act" and pw.sites[0].shape == (m.conv.out_channels, L)
    # the Taylor scores |a * dS/da| by hand
    emb = m.embedding(ids).detach()
    a = torch.relu(m.conv(emb.transpose(1, 2))).detach().requires_grad_(True)
    t = int(pw.targets[0])
    (ga,) = torch.autograd.grad(m.fc(m.pool(a).flatten(1))[0, t], a)
    torch.testing.assert_close(pw.scores[0], (a * ga).abs().detach())
    # np.percentile (linear) at 99 over N distinct scores keeps N - ceil(0.99 (N - 1)) neurons
    n = m.conv.out_channels * L
    kept = int(pw.keep[0].sum())
    assert kept == n - math.ceil(0.99 * (n - 1)) and float(pw.kept_fraction[0]) == pytest.approx(kept / n)
    assert set(pw.keep[0].unique().tolist()) == {0.0, 1.0}
    # the attribution is the embedding gradient through the gated network (a * keep), and not the plain one
    e = emb.clone().requires_grad_(True)
    h = torch.relu(m.conv(e.transpose(1, 2))) * pw.keep[0]
    (gh,) = torch.autograd.grad(m.fc(m.pool(h).flatten(1))[0, t], e)
    torch.testing.assert_close(attr, gh.norm(dim=-1), rtol=1e-12, atol=1e-12)
    g, _ = _plain_gradient(m, ids, pw.targets)
    assert not torch.allclose(attr, g.norm(dim=-1), atol=1e-3)
    # one review's map does not depend on the rest of the batch (thresholds are per sample)
    both = torch.tensor([seqs[1], seqs[1][::-1]])
    torch.testing.assert_close(pg.attribute(both)[0], attr[0])


def test_text_pathwaygrad_on_padded_ids_gives_finite_maps(text_cnn) -> None:
    model, vocab, seqs = text_cnn
    L = max(len(s) for s in seqs)
    ids = torch.tensor([s + [vocab.pad_id] * (L - len(s)) for s in seqs])
    attr = TextPathwayGrad(model).attribute(ids)
    assert attr.shape == (3, L) and torch.isfinite(attr).all() and (attr >= 0).all()
    # pad positions are scored like any token: their gradient, as TextSaliency gives it
    torch.testing.assert_close(
        TextPathwayGrad(model, sparsity=0).attribute(ids), TextSaliency(model).attribute(ids), rtol=1e-5, atol=1e-6
    )


def test_text_optimised_mask_is_seeded_and_reproducible(text_cnn) -> None:
    model, vocab, seqs = text_cnn
    L = max(len(s) for s in seqs)
    ids = torch.tensor([s + [vocab.pad_id] * (L - len(s)) for s in seqs])
    kw = dict(steps=300, batch=50)
    a = TextOptimisedMask(model, seed=3, **kw).attribute(ids)
    b = TextOptimisedMask(model, seed=3, **kw).attribute(ids)
    c = TextOptimisedMask(model, seed=4, **kw).attribute(ids)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, L) and torch.isfinite(a).all() and float(a.min()) >= 0
    assert torch.equal(a.amax(dim=1), torch.ones(3))  # each map scaled to a maximum of 1
    assert (a[ids == vocab.pad_id] == 0).all() and (ids == vocab.pad_id).any()  # pads: 0
    # a text's map does not depend on the rest of the batch (a fresh generator per text)
    assert torch.equal(TextOptimisedMask(model, seed=3, **kw).attribute(ids[2:]), a[2:])


def test_text_optimised_mask_finds_the_only_informative_token() -> None:
    ids = torch.tensor([[2, 3, 2, 1, 3, 2]])  # only token 1 (position 3) moves the logits
    sal = TextOptimisedMask(_Bag(), steps=2000, batch=100, seed=0).attribute(ids)[0]
    assert int(sal.argmax()) == 3 and float(sal[3]) == 1.0
    assert float(sal[[0, 1, 2, 4, 5]].max()) < 0.5


def test_text_pathwaygrad_and_optimised_mask_refuse_bad_settings_and_inputs(text_cnn) -> None:
    model, _, seqs = text_cnn
    ids = torch.tensor([seqs[2]])
    with pytest.raises(ValidationError, match="no ReLU call.*TextSaliency"):
        TextPathwayGrad(_Bag()).attribute(torch.tensor([[1, 2]]))
    with pytest.raises(ValidationError, match="no nn.Embedding"):
        TextPathwayGrad(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    for kw in ({"sparsity": 100}, {"sparsity": -1}, {"sparsity": "90"}, {"contribution": "lrp"}, {"ig_steps": 0},
               {"batch": 0}, {"reduce": "mean"}):  # fmt: skip
        with pytest.raises(ConfigError):
            TextPathwayGrad(model, **kw)
    for kw in ({"steps": 0}, {"steps": -5}, {"steps": 2.5}, {"batch": 0}, {"p_on": 0}, {"p_on": 1.0},
               {"eta": -0.1}, {"kappa": float("nan")}, {"seed": 1.5}, {"seed": True}):  # fmt: skip
        with pytest.raises(ConfigError):
            TextOptimisedMask(model, **kw)
    for method in (TextPathwayGrad(model), TextOptimisedMask(model, steps=10)):
        with pytest.raises(ShapeError, match="integer tensor"):
            method.attribute(ids.float())
        with pytest.raises(ShapeError, match="integer tensor"):
            method.attribute(ids.unsqueeze(0))
        with pytest.raises(ShapeError, match="no tokens"):
            method.attribute(torch.zeros(1, 0, dtype=torch.long))
        with pytest.raises(ValidationError, match="vocabulary"):
            method.attribute(torch.tensor([[2, model.embedding.num_embeddings]]))
        with pytest.raises(ValidationError, match="out of range"):
            method.attribute(ids, target=7)


def test_text_study_registers_pathwaygrad_and_the_optimised_mask(tmp_path) -> None:
    from smug.study.evaluate import TEXT_METHODS, _check_text_method, run_text_study

    assert {"pathwaygrad", "optimised-mask"} <= set(TEXT_METHODS)
    for name in ("pathwaygrad", "optimised-mask"):
        _check_text_method(name)
    res = run_text_study(n=2, methods=["pathwaygrad", "optimised-mask"], out_dir=tmp_path, progress=False,
                         figure_inputs=1)  # fmt: skip
    assert len(res.rows) == 4 and not any(r.get("error") for r in res.rows)
    for r in res.rows:
        assert math.isfinite(r["saliency_metric"]) and 0 < r["mass90_fraction"] <= 1
    om = np.load(tmp_path / "text_cnn" / "maps" / "optimised-mask" / "00000.npy")
    assert om.ndim == 1 and float(om.max()) == 1.0
