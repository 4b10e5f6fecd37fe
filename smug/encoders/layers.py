"""What the layer walks of every encoder share."""

from __future__ import annotations

from torch import nn

__all__ = ["SKIPPED_LAYERS"]

#: No-op layers every encoder walks past (Identity, Dropout of any kind).
SKIPPED_LAYERS = (nn.Identity, nn.modules.dropout._DropoutNd)
