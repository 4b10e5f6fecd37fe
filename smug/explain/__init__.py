"""Explanations: SMUG on images (:mod:`.image`) and text (:mod:`.text`), whole networks (:mod:`.network`).

``smug.explain(model, x, ...)`` calls :func:`smug.explain.api.explain`: this
package is also that function, so ``smug.explain`` works both as the entry point
and as the package that holds the pipelines (see :func:`smug.explain.api.explain`
for the arguments).  Importing it does not import torch; calling it does.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """The ``smug.explain`` package, callable as :func:`smug.explain.api.explain`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import explain

        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
