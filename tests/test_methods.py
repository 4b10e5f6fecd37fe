"""The seed methods on tiny hand-checkable networks: PathwayGrad, the black-box optimised mask, the Captum baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smug.errors import ConfigError, ShapeError, ValidationError
from smug.methods import (
    METHODS,
    FeatureAblation,
    IntegratedGradients,
    Occlusion,
    OptimisedMask,
    PathwayGrad,
    Saliency,
    get_method,
    method_info,
    relu_sites,
)


def _grad(f, x: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xg).sum(), [xg])
    return g


def _hand_mlp() -> nn.Sequential:
    """2 -> 3 -> 2 with round weights: a = relu(W1 x + b1), logits = W2 a."""
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
        m[0].bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
        m[2].weight.copy_(torch.tensor([[1.0, 1.0, -4.0], [0.0, 1.0, 1.0]]))
    return m.eval()


# ----------------------------------------------------------------------------- PathwayGrad
def test_pathwaygrad_taylor_scores_and_gradient_by_hand():
    m = _hand_mlp()
    x = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    # a = relu([2, 2, 1.5]) = [2, 2, 1.5]; logits = [2 + 2 - 6, 2 + 1.5] = [-2, 3.5]: class 1
    # contributions |a * W2[1]| = [0, 2, 1.5]; sparsity 60 keeps the top one (neuron 1)
    pg = PathwayGrad(m, sparsity=60)
    attr = pg.attribute(x)
    p = pg.pathway
    assert p.targets.tolist() == [1]
    assert len(p.sites) == 1 and p.sites[0].shape == (3,) and p.sites[0].module == "1"
    torch.testing.assert_close(p.scores[0], torch.tensor([[0.0, 2.0, 1.5]], dtype=torch.float64))
    assert p.keep[0].tolist() == [[0.0, 1.0, 0.0]]
    # only neuron 1 passes: d logit_1 / dx = W2[1, 1] * W1[1] = [0, 2]
    torch.testing.assert_close(attr, torch.tensor([[0.0, 2.0]], dtype=torch.float64))
    # target 0: contributions |a * W2[0]| = [2, 2, 6]: neuron 2 kept; gradient -4 * W1[2] = [-4, 4]
    attr0 = pg.attribute(x, target=0)
    torch.testing.assert_close(attr0, torch.tensor([[-4.0, 4.0]], dtype=torch.float64))
    # zero-scoring neurons are dropped even at sparsity 0: neuron 0 has zero weight to class 1
    pg0 = PathwayGrad(m, sparsity=0)
    pg0.attribute(x)
    assert pg0.pathway.keep[0].tolist() == [[0.0, 1.0, 1.0]]


def _explicitly_pruned_mlp(m: nn.Sequential, keeps: list[torch.Tensor]) -> nn.Sequential:
    """A copy of an MLP with the dropped neurons removed from the weights (their rows and biases zeroed)."""
    import copy

    pruned = copy.deepcopy(m)
    linears = [mod for mod in pruned if isinstance(mod, nn.Linear)]
    with torch.no_grad():
        for lin, keep in zip(linears, keeps):
            lin.weight.mul_(keep.view(-1, 1))
            lin.bias.mul_(keep)
    return pruned


@pytest.mark.parametrize("sparsity", [0.0, 50.0, 80.0, 95.0])
def test_pathwaygrad_equals_gradient_of_explicitly_pruned_mlp(sparsity):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    xs = torch.randn(4, 6, dtype=torch.float64)
    pg = PathwayGrad(m, sparsity=sparsity)
    attr = pg.attribute(xs)
    assert attr.shape == xs.shape
    for i in range(len(xs)):
        keeps = [k[i] for k in pg.pathway.keep]
        pruned = _explicitly_pruned_mlp(m, keeps)
        t = int(pg.pathway.targets[i])
        expected = _grad(lambda z, p=pruned, t=t: p(z)[:, t], xs[i : i + 1])
        torch.testing.assert_close(attr[i : i + 1], expected)
    # the kept share follows the percentile (at most 100 - sparsity percent, plus ties)
    assert np.all(pg.pathway.kept_fraction <= (100 - sparsity) / 100 + 1 / 18 + 1e-9)


class _Sites(nn.Module):
    """One ReLU module called twice, an in-place module, and three functional spellings."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.inplace = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(3 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x, masks=None):
        def gate(i, h):
            return h if masks is None else h * masks[i]

        h = gate(0, self.act(self.conv(x)))  # site 0: self.act
        h = gate(1, F.relu(h - 0.1))  # site 1: functional, on a conv map
        h = h.flatten(1)
        h = gate(2, self.act(self.fc1(h)))  # site 2: self.act again
        h = gate(3, torch.relu(self.fc2(h)))  # site 3
        h = gate(4, self.inplace(self.fc3(h)))  # site 4: in place
        return self.out(h)


def test_reused_relu_module_is_indexed_per_call_site():
    torch.manual_seed(1)
    m = _Sites().double().eval()
    xs = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    sites = relu_sites(m, xs)
    assert [s.index for s in sites] == [0, 1, 2, 3, 4]
    assert [s.module for s in sites] == ["act", "", "act", "", "inplace"]
    assert [s.shape for s in sites] == [(3, 4, 4), (3, 4, 4), (8,), (8,), (6,)]
    assert sites[4].function == "relu_"
    pg = PathwayGrad(m, sparsity=60)
    attr = pg.attribute(xs)
    # the pathway recomputed by hand: Taylor scores |a dS/da| = |dS/d(gate)| at unit gates, one percentile
    t_all = m(xs).argmax(1)
    ones = [torch.ones(3, *s.shape, dtype=torch.float64, requires_grad=True) for s in sites]
    grads = torch.autograd.grad(m(xs, masks=ones).gather(1, t_all.view(-1, 1)).sum(), ones)
    flat = torch.cat([g.abs().flatten(1) for g in grads], 1).numpy()
    thr = np.percentile(flat, 60, axis=1)
    for site, g, k in zip(sites, grads, pg.pathway.keep):
        expected_keep = (g.abs().flatten(1).numpy() >= thr[:, None]) & (g.abs().flatten(1).numpy() > 0)
        np.testing.assert_array_equal(k.flatten(1).numpy(), expected_keep.astype(float), err_msg=str(site))
    assert np.all(pg.pathway.kept_fraction < 0.45) and np.all(pg.pathway.kept_fraction > 0.1)
    for i in range(len(xs)):
        masks = [k[i : i + 1] for k in pg.pathway.keep]
        t = int(pg.pathway.targets[i])
        # the explicit copy: the same forward with each call site's mask multiplied in by hand, no hooks
        expected = _grad(lambda z, mk=masks, t=t: m(z, masks=mk)[:, t], xs[i : i + 1])
        torch.testing.assert_close(attr[i : i + 1], expected)
    # the two calls of self.act got different gates (the module is not one site)
    assert pg.pathway.keep[0].shape[1:] == (3, 4, 4) and pg.pathway.keep[2].shape[1:] == (8,)
    # hooks are gone and the model's output is unchanged
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())
    torch.testing.assert_close(m(xs), m(xs, masks=None))


@pytest.mark.parametrize("contribution", ["taylor", "ig"])
def test_pathwaygrad_sparsity_zero_is_the_plain_gradient(contribution):
    torch.manual_seed(2)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 12), nn.ReLU(), nn.Linear(12, 4)
    )
    m = m.double().eval()
    xs = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    t = m(xs).argmax(1)
    attr = PathwayGrad(m, sparsity=0, contribution=contribution).attribute(xs)
    expected = _grad(lambda z: m(z).gather(1, t.view(-1, 1)), xs)
    torch.testing.assert_close(attr, expected)
    # and a sparse pathway differs from it
    assert not torch.allclose(PathwayGrad(m, sparsity=95).attribute(xs), expected)


def test_pathwaygrad_ig_contributions_by_hand():
    # one hidden layer then a linear read-out: neuron-level IG equals the Taylor contribution
    m = _hand_mlp()
    x = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    a = PathwayGrad(m, contribution="taylor").critical_pathway(x)
    b = PathwayGrad(m, contribution="ig", ig_steps=7).critical_pathway(x)
    torch.testing.assert_close(a.scores[0], b.scores[0])
    # two layers: site 0's IG is a * mean over alpha of dS/da at alpha * a (midpoint rule), computed by hand
    torch.manual_seed(3)
    m2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    x2 = torch.randn(1, 3, dtype=torch.float64)
    steps = 5
    pw = PathwayGrad(m2, contribution="ig", ig_steps=steps, batch=3).critical_pathway(x2, target=1)
    a0 = torch.relu(m2[0](x2))
    total = torch.zeros_like(a0)
    for k in range(steps):
        alpha = (k + 0.5) / steps
        h = (alpha * a0).clone().requires_grad_(True)
        out = m2[4](torch.relu(m2[2](h)))[:, 1]
        (g,) = torch.autograd.grad(out.sum(), [h])
        total += g
    torch.testing.assert_close(pw.scores[0], (a0 * total / steps).abs())


def test_pathwaygrad_bad_input():
    lin = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValidationError, match="no ReLU"):
        PathwayGrad(lin).attribute(torch.randn(2, 3))
    tanh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(ValidationError, match="no ReLU"):
        PathwayGrad(tanh).attribute(torch.randn(2, 3))
    m = _hand_mlp()
    for bad in (-1, 100, 150.0, "90", True, float("nan")):
        with pytest.raises(ConfigError, match="sparsity"):
            PathwayGrad(m, sparsity=bad)
    with pytest.raises(ConfigError, match="contribution"):
        PathwayGrad(m, contribution="lrp")
    with pytest.raises(ConfigError, match="ig_steps"):
        PathwayGrad(m, ig_steps=0)
    with pytest.raises(TypeError):
        PathwayGrad("model")
    with pytest.raises(ValidationError, match="target"):
        PathwayGrad(m).attribute(torch.ones(1, 2, dtype=torch.float64), target=5)
    with pytest.raises(ShapeError):
        PathwayGrad(m).attribute(torch.ones(2, 2, dtype=torch.float64), target=[0, 1, 1])


# --------------------------------------------------------------------- optimised mask
class _Corner(nn.Module):
    """Class 0's logit grows with the mean of the top-left 4x4 block only; the rest of the input is ignored."""

    def forward(self, x):
        s = x[:, :, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([8 * (s - 0.5), torch.zeros_like(s)], dim=1)


def test_optimised_mask_finds_the_only_informative_region():
    x = torch.ones(1, 1, 16, 16)
    om = OptimisedMask(_Corner(), grid=4, steps=1200, batch=60, seed=0)
    sal = om.attribute(x, target=0)[0, 0]
    assert sal.shape == (16, 16) and float(sal.max()) == pytest.approx(1.0) and float(sal.min()) >= 0
    # the block plus one cell's reach of the bilinear upsampling holds the mass; the far quadrant none
    assert float(sal[:8, :8].sum()) / float(sal.sum()) > 0.85
    assert float(sal[8:, 8:].sum()) == 0.0
    r, c = np.unravel_index(int(sal.argmax()), (16, 16))
    assert r < 4 and c < 4


def test_optimised_mask_is_reproducible_under_a_seed():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 10 * 10, 3)).eval()
    xs = torch.rand(2, 1, 12, 12)
    a = OptimisedMask(m, grid=4, steps=200, batch=40, seed=7).attribute(xs)
    b = OptimisedMask(m, grid=4, steps=200, batch=40, seed=7).attribute(xs)
    c = OptimisedMask(m, grid=4, steps=200, batch=40, seed=8).attribute(xs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # a sample's map does not depend on its place in the batch
    assert torch.equal(OptimisedMask(m, grid=4, steps=200, batch=40, seed=7).attribute(xs[1:]), a[1:])
    assert a.shape == xs.shape


def test_optimised_mask_bad_input():
    m = _Corner()
    with pytest.raises(ValidationError, match="grid 20 is larger"):
        OptimisedMask(m, grid=20).attribute(torch.ones(1, 1, 16, 16))
    with pytest.raises(ShapeError):
        OptimisedMask(m, grid=4).attribute(torch.ones(1, 16, 16))
    with pytest.raises(ShapeError, match="baseline"):
        OptimisedMask(m, grid=4, baseline=torch.zeros(3, 3)).attribute(torch.ones(1, 1, 16, 16))
    for kw in ({"grid": 0}, {"p_on": 1.0}, {"p_on": 0}, {"steps": 0}, {"eta": -1}, {"kappa": math.inf}, {"seed": 1.5}):
        with pytest.raises(ConfigError):
            OptimisedMask(m, **kw)


# -------------------------------------------------------------------------- baselines
def _linear_model() -> nn.Module:
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False)).double()
    with torch.no_grad():
        m[1].weight.copy_(torch.arange(32, dtype=torch.float64).view(2, 16) / 10 - 1.0)
    return m.eval()


def test_captum_baselines_on_a_linear_model():
    m = _linear_model()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    w = m[1].weight.view(2, 1, 4, 4)
    torch.testing.assert_close(Saliency(m).attribute(x, target=1), w[1].abs().expand_as(x))
    torch.testing.assert_close(Saliency(m, abs=False).attribute(x, target=0), w[0].expand_as(x))
    # IG from a zero baseline on a linear model: x * w exactly
    torch.testing.assert_close(IntegratedGradients(m, n_steps=8).attribute(x, target=1), x * w[1])
    # occlusion with 1x1 windows: the logit drop is x * w
    torch.testing.assert_close(Occlusion(m, window=1, stride=1).attribute(x, target=1), x * w[1])
    # patch ablation: each pixel gets its 2x2 patch's total x * w
    fa = FeatureAblation(m, patch=2).attribute(x, target=1)
    xw = (x * w[1])[:, 0]
    patch_sum = F.avg_pool2d(xw.unsqueeze(1), 2) * 4
    torch.testing.assert_close(fa, patch_sum.repeat_interleave(2, 2).repeat_interleave(2, 3))
    # the default target is the predicted class, per sample
    t = m(x).argmax(1)
    torch.testing.assert_close(Saliency(m, abs=False).attribute(x), w[t])


def test_baselines_bad_input():
    m = _linear_model()
    with pytest.raises(ValidationError, match="window 5"):
        Occlusion(m, window=5).attribute(torch.rand(1, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValidationError, match="patch 8"):
        FeatureAblation(m, patch=8).attribute(torch.rand(1, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ConfigError):
        IntegratedGradients(m, n_steps=0)
    with pytest.raises(ShapeError):
        Occlusion(m).attribute(torch.rand(1, 16, dtype=torch.float64))


# --------------------------------------------------------------------------- registry
def test_registry_builds_every_method_with_one_signature():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()
    xs = torch.rand(2, 1, 8, 8)
    fast = {"optimised-mask": {"grid": 4, "steps": 50, "batch": 25}}
    for name in METHODS:
        if name == "smug":
            continue
        meth = get_method(name, m, **fast.get(name, {}))
        out = meth.attribute(xs, target=[0, 2])
        assert out.shape == xs.shape, name
        assert torch.isfinite(out).all(), name
        assert method_info(name).map_mode in ("abs", "positive", "identity")
    smug_cbc = get_method("smug:ortools:cbc", m)
    assert smug_cbc.config.backend == "ortools:cbc" and smug_cbc.config.top_k == 200
    assert get_method("smug", m, top_k=5).config.top_k == 5
    assert isinstance(get_method("ig", m), IntegratedGradients)
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("lime", m)
