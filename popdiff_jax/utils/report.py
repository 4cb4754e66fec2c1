"""Results tables for the terminal and for Markdown (run metadata: ``popdiff_jax.results``)."""

from __future__ import annotations

from typing import Sequence


def format_table(rows: Sequence[dict], columns: Sequence[str], floatfmt: str = ".4f") -> str:
  """A plain-text table of ``rows`` (missing values shown as ``-``)."""

  def cell(v):
    if v is None:
      return "-"
    if isinstance(v, float):
      return format(v, floatfmt)
    return str(v)

  body = [[cell(r.get(c)) for c in columns] for r in rows]
  widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(columns)]
  # Text columns align left, numbers right.
  text = [i == 0 or any(isinstance(r.get(c), str) for r in rows) for i, c in enumerate(columns)]

  def line(vals):
    return "  ".join(v.ljust(w) if t else v.rjust(w)
                     for v, w, t in zip(vals, widths, text)).rstrip()

  out = [line(list(columns)), line(["-" * w for w in widths])]
  out += [line(b) for b in body]
  return "\n".join(out)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], floatfmt: str = ".3f") -> str:
  """The same table as ``format_table`` in Markdown (for READMEs built from result files)."""

  def cell(v):
    if v is None:
      return "–"
    return format(v, floatfmt) if isinstance(v, float) else str(v)

  out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(out)
