"""Text baselines (IG / gradient / occlusion on embeddings), the text metrics, and the text study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from smug.errors import ShapeError, ValidationError
from smug.methods.text import TextIntegratedGradients, TextOcclusion, TextSaliency
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
