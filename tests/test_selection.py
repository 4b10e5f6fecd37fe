"""Neuron scoring and selection on small hand-checkable networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smug.encoders.selection import hook_point, score_neurons, select_neurons
from smug.errors import ValidationError


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def test_hook_point_is_the_activation_after_the_first_layer():
    m = mlp()
    x = torch.rand(1, 1, 3, 4)
    assert hook_point(m, x, ["1"]) == ("2", True)

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(torch.relu(self.fc(x.flatten(1))))

    assert hook_point(Functional(), x, ["fc"]) == ("fc", False)


def test_integrated_gradients_completeness():
    m = mlp(1)
    x = torch.rand(1, 1, 3, 4)
    target = 2
    ig = score_neurons(m, x, target, m[2], method="ig", steps=400, batch=64)
    with torch.no_grad():
        a = m[2](m[1](m[0](x)))
        p_full = torch.softmax(m[3](a), 1)[0, target]
        p_zero = torch.softmax(m[3](torch.zeros_like(a)), 1)[0, target]
    assert ig.sum() == pytest.approx(float(p_full - p_zero), abs=1e-4)
    assert ig.shape == (6,)


def test_ig_batching_does_not_change_the_result():
    m = mlp(2)
    x = torch.rand(1, 1, 3, 4)
    a = score_neurons(m, x, 0, m[2], steps=200, batch=200)
    b = score_neurons(m, x, 0, m[2], steps=200, batch=7)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_gradient_and_activation_scores():
    m = mlp(3)
    x = torch.rand(1, 1, 3, 4, requires_grad=False)
    act = score_neurons(m, x, 1, m[2], method="activation")
    with torch.no_grad():
        a = m[2](m[1](m[0](x)))[0]
    np.testing.assert_allclose(act, a.double().numpy())
    g = score_neurons(m, x, 1, m[2], method="gradient")
    z = a.clone().unsqueeze(0).requires_grad_(True)
    torch.softmax(m[3](z), 1)[0, 1].backward()
    np.testing.assert_allclose(g, z.grad[0].double().numpy(), rtol=1e-6)
    with pytest.raises(ValidationError, match="unknown scoring"):
        score_neurons(m, x, 1, m[2], method="shap")


def test_select_top_k_among_active_neurons():
    scores = np.array([5.0, 4.0, 3.0, 9.0, 3.0])
    pre = np.array([1.0, 1.0, 1.0, -1.0, 2.0])
    sel = select_neurons(scores, pre, 3)
    assert sel.neurons.tolist() == [0, 1, 2]  # neuron 3 is inactive; tie 2/4 broken by index
    assert sel.imposed == 3 and sel.eligible == 4
    sel = select_neurons(scores, pre, 5)
    assert sel.imposed == 4
    with pytest.raises(ValidationError, match="top_k=6 exceeds"):
        select_neurons(scores, pre, 6)
    with pytest.raises(ValidationError, match="top_k must be >= 1"):
        select_neurons(scores, pre, 0)
