"""Saliency metrics on hand-computed cases."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from smug.errors import ConfigError, ShapeError, ValidationError
from smug.study.metrics import (
    DIRECTIONS,
    crop_resize,
    insertion_deletion,
    plot_curves,
    saliency_metric,
    sparsity,
    text_saliency_metric,
    to_map,
)

matplotlib.use("Agg")


class _Constant(nn.Module):
    """Logits (log 3, 0): class 0 with probability 0.75 whatever the input."""

    def forward(self, x):
        return torch.tensor([[math.log(3.0), 0.0]], dtype=x.dtype).expand(x.shape[0], 2)


class _MeanLogit(nn.Module):
    """Class 0's logit is ``slope * (mean(x) - 0.5)``."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        s = self.slope * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_saliency_metric_box_area_and_score_by_hand():
    x = torch.rand(1, 28, 28)
    sal = np.zeros((28, 28))
    sal[3:10, 5:12] = 1.0  # a 7x7 box: area 49 / 784 = 0.0625
    r = saliency_metric(_Constant(), x, sal)
    assert r.box == (3, 10, 5, 12)
    assert r.area == pytest.approx(0.0625)
    assert r.probability == pytest.approx(0.75)
    assert r.score == pytest.approx(math.log(0.0625) - math.log(0.75))
    assert r.target == 0 and r.threshold == 1.0
    # one pixel: the area is clipped to 0.05
    one = np.zeros((28, 28))
    one[20, 20] = 0.3
    r1 = saliency_metric(_Constant(), x, one)
    assert r1.area == pytest.approx(1 / 784) and r1.box == (20, 21, 20, 21)
    assert r1.score == pytest.approx(math.log(0.05) - math.log(0.75))
    # scattered pixels: the box is their tightest enclosing rectangle
    two = np.zeros((28, 28))
    two[2, 3] = two[9, 20] = 1.0
    assert saliency_metric(_Constant(), x, two, thresholds=[0.5]).box == (2, 10, 3, 21)


def test_saliency_metric_takes_the_best_threshold():
    # left half bright; the map's top level is a 6x6 box straddling the edge (2 of 6 columns bright),
    # its lower level the whole input
    x = torch.zeros(1, 28, 28)
    x[:, :, :14] = 1.0
    sal = np.ones((28, 28))
    sal[10:16, 12:18] = 2.0
    model = _MeanLogit(30.0)
    r = saliency_metric(model, x, sal)
    # threshold 2: area 36/784 (clipped to 0.05) but the resized crop is mostly dark: p ~ sigmoid(-5)
    # threshold 1: the whole input (area 1), mean 0.5: p = 0.5; this one is best
    assert r.threshold == 1.0 and r.box == (0, 28, 0, 28) and r.area == 1.0
    assert r.probability == pytest.approx(0.5)
    assert r.score == pytest.approx(math.log(2.0))
    assert len(r.scores) == 2 and r.scores.min() == r.score
    # every threshold's score follows the formula with the crop's probability
    for t, a, s in zip(r.thresholds, r.areas, r.scores):
        box = (10, 16, 12, 18) if t == 2.0 else (0, 28, 0, 28)
        with torch.no_grad():
            pb = torch.softmax(model(crop_resize(x, box).unsqueeze(0)), 1)[0, 0].item()
        assert s == pytest.approx(math.log(max(a, 0.05)) - math.log(pb), rel=1e-6)
    small = r.scores[list(r.thresholds).index(2.0)]
    assert small > 1.5  # p well below 0.05 on the straddling crop
    # with a gentle model the probability barely moves, and the small box wins instead
    r2 = saliency_metric(_MeanLogit(0.1), x, sal)
    assert r2.threshold == 2.0 and r2.box == (10, 16, 12, 18) and r2.area == pytest.approx(36 / 784)
    assert r2.score == pytest.approx(math.log(0.05) - math.log(r2.probability))


def test_saliency_metric_edge_cases():
    x = torch.rand(1, 8, 8)
    r = saliency_metric(_Constant(), x, np.zeros((8, 8)))  # no positive value: the whole input
    assert r.area == 1.0 and r.threshold is None and r.score == pytest.approx(-math.log(0.75))
    # an attribution shaped like the input works; the target may be given
    r2 = saliency_metric(_Constant(), x.unsqueeze(0), torch.ones(1, 1, 8, 8), target=1)
    assert r2.probability == pytest.approx(0.25) and r2.area == 1.0
    with pytest.raises(ShapeError):
        saliency_metric(_Constant(), x, np.zeros((7, 8)))
    with pytest.raises(ValidationError, match="target"):
        saliency_metric(_Constant(), x, np.ones((8, 8)), target=2)
    with pytest.raises(ConfigError):
        saliency_metric(_Constant(), x, np.ones((8, 8)), min_area=0)
    with pytest.raises(ConfigError):
        saliency_metric(_Constant(), x, np.ones((8, 8)), thresholds=0)


def test_crop_resize_of_a_uniform_box_is_uniform():
    x = torch.zeros(2, 10, 10)
    x[:, 2:6, 3:9] = 0.7
    out = crop_resize(x, (2, 6, 3, 9))
    assert out.shape == (2, 10, 10)
    torch.testing.assert_close(out, torch.full((2, 10, 10), 0.7))


class _BagOfEmbeddings(nn.Module):
    """Mean of the token embeddings, then a linear read-out (no bias)."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(5, 2, padding_idx=0)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]]))
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, ids):
        return self.fc(self.embedding(ids).mean(1))


def test_text_saliency_metric_by_hand():
    m = _BagOfEmbeddings().eval()
    ids = [1, 2, 3, 4]  # mean embedding (0.75, 1.0): class 1
    r = text_saliency_metric(m, ids, [1, 0, 1, 0])
    # only tokens 1 and 3 kept: mean (0.75, 0): logits (0.75, 0) but the target stays the original class 1
    p1 = 1 / (1 + math.exp(0.75))
    assert r.target == 1 and r.kept_fraction == 0.5
    assert r.probability == pytest.approx(p1)
    assert r.score == pytest.approx(math.log(0.5) - math.log(p1))
    # <pad> positions do not count towards the kept fraction
    r2 = text_saliency_metric(m, torch.tensor([[4, 2, 0, 0]]), torch.tensor([True, False, False, False]))
    assert r2.kept_fraction == 0.5
    # the area floor
    r3 = text_saliency_metric(m, list(range(1, 5)) * 10, [0] * 39 + [1], target=0)
    assert r3.kept_fraction == pytest.approx(1 / 40)
    assert r3.score == pytest.approx(math.log(0.05) - math.log(r3.probability))
    with pytest.raises(ShapeError):
        text_saliency_metric(m, ids, [1, 0])
    with pytest.raises(ValidationError):
        text_saliency_metric(m, ids, [0.5, 1, 1, 1])
    with pytest.raises(ValidationError, match="nn.Embedding"):
        text_saliency_metric(nn.Linear(4, 2), ids, [1, 1, 1, 1])


def test_text_saliency_metric_matches_the_text_cnn_on_zeroed_embeddings():
    from smug.zoo.text import TextCNN

    torch.manual_seed(0)
    m = TextCNN(12, embed_dim=4, n_filters=5).eval()
    ids = torch.tensor([3, 7, 1, 9, 11, 2])
    kept = torch.tensor([1, 1, 0, 0, 1, 0])
    r = text_saliency_metric(m, ids, kept, target=1)
    with torch.no_grad():
        emb = m.embedding(ids.unsqueeze(0)) * kept.view(1, -1, 1)
        p = torch.softmax(m.forward_embedded(emb), 1)[0, 1].item()
    assert r.probability == pytest.approx(p) and r.kept_fraction == 0.5


def test_sparsity_by_hand():
    assert sparsity(np.array([[1, 0], [0, 0]])) == 0.25
    m = np.array([4.0, 3.0, 2.0, 1.0])
    assert sparsity(m) == 1.0
    assert sparsity(m, mass=0.4) == 0.25  # 4 of 10
    assert sparsity(m, mass=0.5) == 0.5  # 4 + 3 = 7 >= 5
    assert sparsity(m, mass=0.7) == 0.5  # exactly 7
    assert sparsity(m, mass=1.0) == 1.0
    assert sparsity(np.array([-5.0, 1.0, 0.0, 3.0]), mass=0.75) == 0.25  # negatives count as zero
    assert sparsity(np.zeros((3, 3)), mass=0.9) == 0.0
    assert sparsity(torch.ones(1, 3, 2, 2)) == 1.0
    with pytest.raises(ConfigError):
        sparsity(m, mass=0)
    with pytest.raises(ConfigError):
        sparsity(m, mass=1.5)


class _SumProb(nn.Module):
    """Class 0's probability is the input's sum (clipped into (0, 1))."""

    def forward(self, x):
        f = x.sum(dim=(1, 2, 3)).clamp(1e-12, 1 - 1e-12)
        return torch.stack([f.log(), (1 - f).log()], 1)


def test_insertion_deletion_by_hand():
    x = torch.tensor([[[0.4, 0.3], [0.2, 0.1]]], dtype=torch.float64)
    m = _SumProb()
    r = insertion_deletion(m, x, x[0].numpy(), target=0, steps=4)
    np.testing.assert_allclose(r.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(r.deletion, [1, 0.6, 0.3, 0.1, 0], atol=1e-9)
    np.testing.assert_allclose(r.insertion, [0, 0.4, 0.7, 0.9, 1], atol=1e-9)
    assert r.deletion_auc == pytest.approx(0.375) and r.insertion_auc == pytest.approx(0.625)
    # the reversed map is worse on both
    bad = insertion_deletion(m, x, -x[0].numpy(), target=0, steps=4)
    assert bad.deletion_auc == pytest.approx(0.625) and bad.insertion_auc == pytest.approx(0.375)
    # ties are broken by pixel index (row-major): a flat map deletes 0.4, 0.3, 0.2, 0.1 in order
    flat = insertion_deletion(m, x, np.ones((2, 2)), target=0, steps=4)
    np.testing.assert_allclose(flat.deletion, [1, 0.6, 0.3, 0.1, 0], atol=1e-9)
    # a baseline tensor: deleted pixels take its values
    base = torch.full_like(x, 0.05)
    rb = insertion_deletion(m, x, x[0].numpy(), target=0, steps=4, baseline=base)
    np.testing.assert_allclose(rb.deletion[-1], 0.2, atol=1e-9)
    np.testing.assert_allclose(rb.insertion[0], 0.2, atol=1e-9)


def test_insertion_deletion_options_and_errors():
    x = torch.rand(1, 6, 6) / 36
    r = insertion_deletion(_SumProb(), x, torch.rand(6, 6), target=0, steps=9, baseline="blur", blur_sigma=1.0)
    assert r.insertion.shape == (10,) and 0 <= r.insertion_auc <= 1 and 0 <= r.deletion_auc <= 1
    # the blurred baseline keeps the total (replicate padding, normalised kernel, uniform input)
    u = torch.full((1, 6, 6), 1 / 36)
    ru = insertion_deletion(_SumProb(), u, np.ones((6, 6)), target=0, steps=3, baseline="blur")
    np.testing.assert_allclose(ru.insertion, 1.0, atol=1e-5)
    with pytest.raises(ConfigError):
        insertion_deletion(_SumProb(), x, np.ones((6, 6)), baseline="noise")
    with pytest.raises(ConfigError):
        insertion_deletion(_SumProb(), x, np.ones((6, 6)), steps=0)
    with pytest.raises(ShapeError):
        insertion_deletion(_SumProb(), x, np.ones((6, 6)), baseline=torch.zeros(2, 6, 6))


def test_plot_curves_and_directions():
    x = torch.tensor([[[0.4, 0.3], [0.2, 0.1]]])
    r = insertion_deletion(_SumProb(), x, x[0].numpy(), target=0, steps=4)
    fig = plot_curves({"good": r, "flat": r}, title="t")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    assert "0.625" in fig.axes[0].get_legend().get_texts()[0].get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert DIRECTIONS == {
        "saliency_metric": "lower",
        "text_saliency_metric": "lower",
        "sparsity": "lower",
        "insertion_auc": "higher",
        "deletion_auc": "lower",
    }


def test_to_map_modes():
    a = torch.tensor([[[1.0, -2.0]], [[3.0, -4.0]]])  # (C=2, H=1, W=2)
    np.testing.assert_allclose(to_map(a), [[2.0, -3.0]])
    np.testing.assert_allclose(to_map(a, "abs"), [[2.0, 3.0]])
    np.testing.assert_allclose(to_map(a, "positive"), [[2.0, 0.0]])
    with pytest.raises(ConfigError):
        to_map(a, "square")
    with pytest.raises(ShapeError):
        to_map(np.zeros(5))
