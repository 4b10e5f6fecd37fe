"""Full-network explanations: bad input gets named errors; an unmeetable delta ends infeasible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smug.encoders.network import SUPPORTED_NETWORK_LAYERS, lower_network
from smug.errors import BoundsError, ConfigError, UnsupportedProblemError, ValidationError
from smug.explain.network import explain_network
from smug.solving.contract import Status


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


X = np.random.default_rng(0).uniform(0, 1, size=(1, 2, 3))


@pytest.mark.parametrize("layer", [nn.Sigmoid(), nn.Tanh(), nn.LeakyReLU(), nn.Softmax(dim=1)])
def test_unsupported_layer_names_itself_and_the_supported_list(layer: nn.Module) -> None:
    """An unsupported layer raises a ValidationError naming it and listing what is supported."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), layer, nn.Linear(4, 3))
    with pytest.raises(ValidationError) as info:
        explain_network(model, X)
    msg = str(info.value)
    assert type(layer).__name__ in msg and "'2'" in msg
    assert "nn.Linear" in msg and "nn.MaxPool2d" in msg


def test_custom_forward_module_is_rejected() -> None:
    """A module with its own forward (not nn.Sequential) is refused with the reason."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1)) * 2

    with pytest.raises(ValidationError, match="nn.Sequential"):
        lower_network(Net(), (1, 2, 3))


def test_batchnorm_without_running_stats_is_rejected() -> None:
    """BatchNorm that uses batch statistics is not affine: named error."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU())
    with pytest.raises(ValidationError, match="running statistics"):
        lower_network(model, (1, 2, 3))


def test_supported_list_is_exported() -> None:
    """The supported-layer list is public."""
    assert any("Conv2d" in s for s in SUPPORTED_NETWORK_LAYERS)


@pytest.mark.parametrize("masking", ["baseline", "robust"])
@pytest.mark.parametrize("minimality", ["cardinality", "subset"])
def test_unmeetable_delta_is_infeasible(masking: str, minimality: str) -> None:
    """A delta no mask can meet ends with status infeasible, not an exception or a timeout."""
    e = explain_network(_net(), X, masking=masking, minimality=minimality, delta=1e6, time_limit=20)
    assert e.status == Status.INFEASIBLE
    assert e.minimality == "none" and e.objective is None
    assert not e.verified


def test_input_outside_range_rejected_before_solving() -> None:
    """Robust masking with an input outside input_range: BoundsError naming the feature."""
    x = X.copy()
    x[0, 0, 1] = 1.5
    with pytest.raises(BoundsError, match="outside input_range"):
        explain_network(_net(), x, masking="robust", input_range=(0.0, 1.0))


def test_empty_range_rejected() -> None:
    """A range with low >= high is a config error."""
    with pytest.raises(ConfigError):
        explain_network(_net(), X, masking="robust", input_range=(1.0, 0.0))


def test_negative_delta_rejected() -> None:
    """delta must be >= 0."""
    with pytest.raises(ConfigError):
        explain_network(_net(), X, delta=-1.0)


def test_cpsat_refuses_with_clear_error() -> None:
    """CP-SAT declares no ReLU support: a clear error, before any solve."""
    with pytest.raises(UnsupportedProblemError, match="ReLU"):
        explain_network(_net(), X, backend="ortools:cpsat")


def test_bad_target_and_input() -> None:
    """Out-of-range target, non-finite or integer inputs: named errors."""
    with pytest.raises(ValidationError, match="target"):
        explain_network(_net(), X, target=7)
    with pytest.raises(ValidationError, match="NaN"):
        explain_network(_net(), np.full((1, 2, 3), np.nan))
    with pytest.raises(ValidationError, match="floating"):
        explain_network(_net(), torch.zeros((1, 2, 3), dtype=torch.int64))


def test_baseline_with_robust_masking_rejected() -> None:
    """A baseline makes no sense when masked features range freely."""
    with pytest.raises(ValidationError, match="robust"):
        explain_network(_net(), X, masking="robust", baseline=0.5)


def test_explicit_target_is_explained() -> None:
    """A non-predicted target is explained (or proven infeasible) consistently with the replay."""
    e = explain_network(_net(), X, target=1, time_limit=20)
    assert e.target == 1
    if e.status.has_solution:
        assert e.verified and e.replay["masked_prediction"] == 1
    else:
        assert e.status == Status.INFEASIBLE


def test_per_feature_ranges_and_their_errors() -> None:
    """Array input_range (an epsilon ball) works; a range excluding the input or inverted is refused."""
    lo, hi = np.clip(X - 0.05, 0, 1), np.clip(X + 0.05, 0, 1)
    e = explain_network(_net(), X, masking="robust", minimality="subset", input_range=(lo, hi), time_limit=20)
    assert e.verified and e.status == Status.FEASIBLE
    with pytest.raises(BoundsError, match="outside input_range"):
        explain_network(_net(), X, masking="robust", input_range=(lo + 0.2, hi + 0.2))
    with pytest.raises(BoundsError, match="empty"):
        explain_network(_net(), X, masking="robust", input_range=(hi, lo))
    with pytest.raises(ValidationError, match="broadcast"):
        explain_network(_net(), X, masking="robust", input_range=(np.zeros(5), np.ones(5)))
