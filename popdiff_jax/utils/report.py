"""Results tables for the terminal and run metadata for result files."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from typing import Iterable, Sequence


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


def versions(packages: Iterable[str] = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                                        "numpy", "chex")) -> dict[str, str]:
  out = {"python": platform.python_version()}
  for p in packages:
    try:
      out[p] = metadata.version(p)
    except metadata.PackageNotFoundError:
      pass
  return out


def git_commit() -> str | None:
  """The checkout's commit ($POPDIFF_COMMIT wins: a copied tree on a GPU machine has no .git)."""
  if os.environ.get("POPDIFF_COMMIT"):
    return os.environ["POPDIFF_COMMIT"]
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def run_metadata(extra_packages: Iterable[str] = ()) -> dict:
  """Device, versions, date and commit for a result file."""
  import jax

  dev = jax.devices()[0]
  return {"device": dev.device_kind, "platform": dev.platform, "n_devices": jax.device_count(),
          "versions": versions(("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                                "chex", *extra_packages)),
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "commit": git_commit(), "host": platform.node()}


def markdown_table(rows: Sequence[dict], columns: Sequence[str], floatfmt: str = ".3f") -> str:
  """The same table as ``format_table`` in Markdown (for READMEs built from result files)."""

  def cell(v):
    if v is None:
      return "–"
    return format(v, floatfmt) if isinstance(v, float) else str(v)

  out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(out)
