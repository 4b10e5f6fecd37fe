"""Show a text explanation: tokens shaded by saliency, the minimal mask's kept tokens marked.

* :func:`render_terminal` -- one line of ANSI-coloured text (kept tokens bold and
  underlined, background shade by saliency), or plain text with kept tokens in
  ``[brackets]`` (``color=False``).
* :func:`render_html` / :func:`save_html` -- a standalone HTML page (no scripts,
  no external resources): a header with the prediction on the full text, on
  the kept tokens only and with the kept tokens removed; the tokens shaded by
  saliency with a legend; kept tokens outlined and underlined.  Everything from
  the caller is HTML-escaped.

All functions take ``tokens`` (strings, e.g. :meth:`smug.zoo.text.Vocabulary.decode`
of the explained ids, or the tokenizer's output), ``saliency`` (one number per
token; ``None`` for all zeros) and ``kept`` (one 0/1 or bool per token: the
tokens the minimal mask keeps).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smug.errors import NonFiniteError, ShapeError, ValidationError

__all__ = ["render_terminal", "render_html", "render_html_page", "save_html"]

# xterm-256 background ramps, weakest to strongest.
_ANSI_POS = (230, 229, 223, 222, 216, 215, 209, 208, 202)
_ANSI_NEG = (195, 159, 153, 117, 111, 75, 69, 33)
_RESET = "\x1b[0m"

_POS_RGB = (230, 97, 0)
_NEG_RGB = (33, 102, 172)
_MAX_ALPHA = 0.85


def _check(tokens: Sequence[str], saliency: Any, kept: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    if isinstance(tokens, str):
        raise ValidationError("tokens must be a sequence of strings (one per token), not a single string")
    toks = list(tokens)
    for t in toks:
        if not isinstance(t, str):
            raise ValidationError(f"tokens must be strings, got {type(t).__name__} {t!r}")
    n = len(toks)
    if saliency is None:
        sal = np.zeros(n)
    else:
        if hasattr(saliency, "detach"):
            saliency = saliency.detach().cpu().numpy()
        sal = np.asarray(saliency, dtype=np.float64).ravel()
    if sal.shape != (n,):
        raise ShapeError(f"saliency has {sal.size} values but there are {n} tokens")
    if not np.isfinite(sal).all():
        raise NonFiniteError(f"saliency contains {int((~np.isfinite(sal)).sum())} NaN or infinite value(s)")
    if hasattr(kept, "detach"):
        kept = kept.detach().cpu().numpy()
    kp = np.asarray(kept).ravel()
    if kp.shape != (n,):
        raise ShapeError(f"kept has {kp.size} entries but there are {n} tokens")
    if kp.dtype.kind not in "biuf" or not np.isin(kp, (0, 1)).all():
        raise ValidationError("kept must hold one 0/1 (or bool) per token")
    return toks, sal, kp.astype(bool)


def _scaled(sal: np.ndarray) -> np.ndarray:
    """Saliency divided by its largest magnitude, in ``[-1, 1]`` (zeros stay zeros)."""
    top = float(np.abs(sal).max(initial=0.0))
    return sal / top if top > 0 else np.zeros_like(sal)


def render_terminal(tokens: Sequence[str], saliency: Any, kept: Any, *, color: bool = True) -> str:
    """One line of text with the explanation marked, tokens separated by spaces.

    Args:
        tokens: the tokens.
        saliency: one number per token (``None``: all zero).  With ``color``,
            each token's background is shaded by ``|saliency| / max|saliency|``
            (orange for positive values, blue for negative ones; none for zero).
        kept: one 0/1 per token; kept tokens are bold and underlined.
        color: ``False`` gives plain text with kept tokens in ``[brackets]``
            (for logs and terminals without ANSI colours).

    Raises:
        ShapeError: ``saliency`` or ``kept`` does not have one entry per token.
        NonFiniteError: NaN or infinite saliency.
        ValidationError: non-string tokens, or ``kept`` not 0/1.
    """
    toks, sal, kp = _check(tokens, saliency, kept)
    if not color:
        return " ".join(f"[{t}]" if k else t for t, k in zip(toks, kp))
    scaled = _scaled(sal)
    parts = []
    for t, s, k in zip(toks, scaled, kp):
        codes = []
        if k:
            codes += ["1", "4"]
        if s != 0:
            ramp = _ANSI_POS if s > 0 else _ANSI_NEG
            level = min(len(ramp) - 1, int(abs(s) * len(ramp)))
            codes += ["38;5;16", f"48;5;{ramp[level]}"]
        parts.append(f"\x1b[{';'.join(codes)}m{t}{_RESET}" if codes else t)
    return " ".join(parts)


def _fmt_class(value: Any, names: Sequence[str] | None) -> str:
    if names is not None and isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names):
        return f"{names[int(value)]} ({int(value)})"
    return str(value)


def _fmt_prob(value: Any) -> str:
    if value is None:
        return ""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{f:.3f}" if math.isfinite(f) else str(f)


_ROWS = (
    ("Full text", "prediction", "probability"),
    ("Kept tokens only", "masked_prediction", "masked_probability"),
    ("Kept tokens removed", "complement_prediction", "complement_probability"),
)
_KNOWN = {"class_names", "target"} | {k for _, a, b in _ROWS for k in (a, b)}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 24px; color: #1a1a1a;
       background: #fff; }
h1 { font-size: 20px; margin: 0 0 12px 0; }
table.pred { border-collapse: collapse; margin-bottom: 8px; font-size: 14px; }
table.pred th, table.pred td { border: 1px solid #d0d0d0; padding: 4px 10px; text-align: left; }
table.pred th { background: #f3f3f3; }
p.note { font-size: 12px; color: #555; margin: 2px 0 14px 0; }
div.text { font-size: 19px; line-height: 2.3; max-width: 960px; margin: 10px 0 18px 0; }
span.tok { padding: 2px 3px; border-radius: 3px; white-space: pre; }
span.kept { outline: 2px solid #111; outline-offset: 0px; text-decoration: underline; text-decoration-thickness: 2px;
            text-underline-offset: 3px; font-weight: 600; }
div.legend { font-size: 13px; color: #333; display: flex; gap: 28px; align-items: center; flex-wrap: wrap; }
div.bar { width: 180px; height: 14px; border: 1px solid #bbb; display: inline-block; vertical-align: middle;
          margin: 0 6px; }
div.kepttext { font-size: 14px; color: #333; margin: 0 0 16px 0; }
div.legend span.tok { margin-right: 8px; font-size: 15px; }
h2 { font-size: 16px; margin: 26px 0 8px 0; border-top: 1px solid #ddd; padding-top: 14px; }
"""


def render_html(
    tokens: Sequence[str],
    saliency: Any,
    kept: Any,
    *,
    title: str = "SMUG explanation",
    prediction: Mapping[str, Any] | None = None,
) -> str:
    """A standalone HTML page showing the explanation (UTF-8, inline CSS, no scripts).

    Args:
        tokens: the tokens.
        saliency: one number per token (``None``: all zero); tokens are shaded
            by ``|saliency| / max|saliency|`` (orange positive, blue negative),
            with a legend, and each token's value shows as a tooltip.
        kept: one 0/1 per token; kept tokens are outlined, underlined and bold.
        title: the page title and heading.
        prediction: what to show in the header, all optional: ``prediction`` /
            ``probability`` (on the full text), ``masked_prediction`` /
            ``masked_probability`` (kept tokens only), ``complement_prediction``
            / ``complement_probability`` (kept tokens removed) -- the fields of
            :class:`smug.explain.image.Explanation` -- plus ``target`` (the
            explained class) and ``class_names`` (names for class indices,
            e.g. :data:`smug.zoo.text.LABEL_NAMES`).  Other keys are listed
            below the table as ``key: value``.

    Returns:
        The page as a string; every caller-supplied string is HTML-escaped.

    Raises:
        ShapeError, NonFiniteError, ValidationError: as :func:`render_terminal`.
    """
    return render_html_page([{"tokens": tokens, "saliency": saliency, "kept": kept, "prediction": prediction}],
                            title=title)  # fmt: skip


def _section(toks: list[str], sal: np.ndarray, kp: np.ndarray, info: dict[str, Any]) -> list[str]:
    names = info.get("class_names")
    names = [str(n) for n in names] if names is not None else None
    esc = html.escape
    scaled = _scaled(sal)
    out: list[str] = []
    rows = [(label, info.get(pk), info.get(qk)) for label, pk, qk in _ROWS if pk in info or qk in info]
    target = info.get("target")
    if rows:
        out.append('<table class="pred"><tr><th>Input</th><th>Predicted class</th><th>Probability</th></tr>')
        for label, pred, prob in rows:
            out.append(
                f"<tr><td>{esc(label)}</td><td>{esc(_fmt_class(pred, names) if pred is not None else '')}</td>"
                f"<td>{esc(_fmt_prob(prob))}</td></tr>"
            )
        out.append("</table>")
    notes = []
    if target is not None:
        notes.append(f"Explained class: {esc(_fmt_class(target, names))}.")
    if any(label != "Full text" for label, _, _ in rows):
        notes.append(
            "Masked tokens are replaced by the baseline embedding; probabilities on masked inputs are those of "
            "the explained class."
        )
    extra = [(k, v) for k, v in info.items() if k not in _KNOWN]
    for k, v in extra:
        notes.append(f"{esc(str(k))}: {esc(str(v))}")
    if notes:
        out.append('<p class="note">' + "<br>".join(notes) + "</p>")
    spans = []
    for t, s, raw, k in zip(toks, scaled, sal, kp):
        rgb = _POS_RGB if s >= 0 else _NEG_RGB
        alpha = round(_MAX_ALPHA * abs(float(s)), 3)
        style = f"background-color: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha})"
        cls = "tok kept" if k else "tok"
        tip = f"saliency {raw:.4g}" + (", kept" if k else ", masked")
        spans.append(f'<span class="{cls}" style="{style}" title="{esc(tip)}">{esc(t)}</span>')
    out.append('<div class="text">' + " ".join(spans) + "</div>")
    kept_view = " ".join(esc(t) if k else "\u00b7" for t, k in zip(toks, kp))
    out.append(
        f'<div class="kepttext"><b>Minimal mask</b> ({int(kp.sum())} of {len(toks)} tokens kept; '
        f"\u00b7 = masked): {kept_view}</div>"
    )
    return out


def _legend(top: float, has_negative: bool) -> list[str]:
    esc = html.escape
    pos = ", ".join(f"rgba({_POS_RGB[0]}, {_POS_RGB[1]}, {_POS_RGB[2]}, {a})" for a in (0, _MAX_ALPHA))
    legend = [
        '<div class="legend">',
        f'<span>saliency 0<div class="bar" style="background: linear-gradient(to right, {pos})"></div>'
        f"{esc(f'{top:.4g}')}</span>",
    ]
    if has_negative:
        neg = ", ".join(f"rgba({_NEG_RGB[0]}, {_NEG_RGB[1]}, {_NEG_RGB[2]}, {a})" for a in (0, _MAX_ALPHA))
        legend.append(
            f'<span>0<div class="bar" style="background: linear-gradient(to right, {neg})"></div>'
            f"{esc(f'{-top:.4g}')}</span>"
        )
    legend += [
        '<span><span class="tok kept">kept</span> token in the minimal mask</span>',
        '<span><span class="tok">masked</span> token</span>',
        "</div>",
    ]
    return legend


def render_html_page(items: Sequence[Mapping[str, Any]], *, title: str = "SMUG explanations") -> str:
    """A standalone HTML page with several explanations, one section each.

    Args:
        items: one mapping per explanation with ``tokens``, ``saliency``,
            ``kept`` (as for :func:`render_html`) and optionally ``heading`` (a
            section title) and ``prediction`` (the header mapping of
            :func:`render_html`).  Each section's shading is scaled to its own
            largest ``|saliency|``; the legend shows the scale of a single
            section (or says the scale is per section).
        title: the page title.

    Raises:
        ShapeError: a section's saliency or kept marks do not match its tokens (the message names the section).
        NonFiniteError: NaN or infinite saliency in a section.
        ValidationError: non-string tokens, ``kept`` not 0/1, a missing key, or an empty ``items``.
    """
    if not items:
        raise ValidationError("render_html_page needs at least one explanation")
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(str(title))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(str(title))}</h1>",
    ]
    tops, negative = [], False
    for n, item in enumerate(items):
        try:
            toks, sal, kp = _check(item["tokens"], item.get("saliency"), item["kept"])
        except KeyError as exc:
            raise ValidationError(f"explanation {n} has no {exc.args[0]!r}") from None
        except (ShapeError, NonFiniteError, ValidationError) as exc:
            raise type(exc)(f"explanation {n}: {exc}") from None
        if len(items) > 1 or item.get("heading"):
            out.append(f"<h2>{esc(str(item.get('heading') or f'Explanation {n + 1}'))}</h2>")
        out += _section(toks, sal, kp, dict(item.get("prediction") or {}))
        tops.append(float(np.abs(sal).max(initial=0.0)))
        negative = negative or bool((sal < 0).any())
    if len(items) > 1:
        out.append('<p class="note">Shading is scaled to each explanation\'s largest saliency.</p>')
    out += _legend(tops[0] if len(tops) == 1 else 1.0, negative)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def save_html(
    path: str | Path,
    tokens: Sequence[str],
    saliency: Any,
    kept: Any,
    *,
    title: str = "SMUG explanation",
    prediction: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`render_html`'s page to ``path`` (UTF-8; parent folders created); returns the path."""
    p = Path(path)
    page = render_html(tokens, saliency, kept, title=title, prediction=prediction)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(page, encoding="utf-8")
    return p
