"""Writing explanations to disk: one function for image, text and whole-network explanations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["save_explanation"]


def save_explanation(
    path: str | Path,
    to_dict: Any,
    arrays: Any,
    *,
    figure: Any = None,
    html: Any = None,
) -> Path:
    """Write an explanation by the path's suffix: ``.json`` (``to_dict()``), ``.npz`` (``arrays()``, compressed),
    ``.png`` (``figure()``, a matplotlib figure) or ``.html`` / ``.htm`` (``html()``, a page), each only when given.

    Parent folders are created.  Raises :class:`~smug.errors.ValidationError` naming the suffixes
    this explanation can be saved as.
    """
    p = Path(path)
    writers = {".json": "json", ".npz": "npz"}
    if figure is not None:
        writers[".png"] = "png"
    if html is not None:
        writers.update({".html": "html", ".htm": "html"})
    kind = writers.get(p.suffix)
    if kind is None:
        shown = [k for k in (".png", ".html", ".json", ".npz") if k in writers]
        raise ValidationError(f"cannot save to {str(p)!r}: use a {', '.join(shown[:-1])} or {shown[-1]} path")
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        import matplotlib.pyplot as plt

        fig = figure()
        fig.savefig(p, dpi=110)
        plt.close(fig)
    elif kind == "html":
        p.write_text(html(), encoding="utf-8")
    elif kind == "json":
        p.write_text(json.dumps(to_dict(), indent=2))
    else:
        np.savez_compressed(p, **arrays())
    return p
