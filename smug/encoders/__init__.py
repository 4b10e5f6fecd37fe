"""Encoders: turn a model, an input and a grouping of its features into IR pieces.

* :mod:`smug.encoders.groups` -- feature groupings (pixel windows, segment maps),
  the IR's sparse ``groups`` matrix and group areas.
* :mod:`smug.encoders.image` -- the first affine layer of a PyTorch model
  (:func:`find_first_layer`) and the exact affine form ``C m + d`` of its neurons'
  pre-activations in the mask (:meth:`FirstLayer.affine_rows`).
* :mod:`smug.encoders.network` -- whole ``nn.Sequential`` ReLU networks
  (:func:`lower_network`) as logit-margin IR problems with sound bounds
  (:func:`encode_network`).
"""

from .groups import feature_groups, group_areas, groups_matrix, window_groups
from .image import BASELINE_OPTIONS, SUPPORTED_FIRST_LAYERS, FirstLayer, find_first_layer, make_baseline
from .network import (
    SUPPORTED_NETWORK_LAYERS,
    LoweredNetwork,
    NetworkEncoding,
    encode_network,
    interval_bounds,
    linear_margin_bounds,
    lower_network,
)

__all__ = [
    "window_groups",
    "feature_groups",
    "groups_matrix",
    "group_areas",
    "FirstLayer",
    "find_first_layer",
    "make_baseline",
    "BASELINE_OPTIONS",
    "SUPPORTED_FIRST_LAYERS",
    "SUPPORTED_NETWORK_LAYERS",
    "LoweredNetwork",
    "NetworkEncoding",
    "lower_network",
    "encode_network",
    "interval_bounds",
    "linear_margin_bounds",
]
