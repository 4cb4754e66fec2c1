"""Result files: one schema and one record of how a run was made.

Every file under ``benchmarks/results/`` is JSON of the form::

  {"meta": {...}, "rows": [{...}, ...]}

``rows`` are flat dicts of JSON scalars, one per measurement (nested details are allowed under
keys that are not table columns). ``meta`` says how they were made: ``run_metadata`` writes
``benchmark``, ``date``, ``commit``, ``device``, ``platform``, ``n_devices``, ``host``, ``os``,
``versions``, ``config`` and ``command``, and a script adds its own descriptive fields. A file
that gathers several runs keeps one entry per run in ``meta["runs"]`` (each named by its
``run``; fields shared by every run sit in ``meta`` itself) and tags each row with the ``run``
it came from (``merge_results``). Rows of different kinds in one file carry ``kind``.

A script whose partial results must survive a cut-off run appends rows to a JSON-lines file
(``append_row``, one row a line) and keeps that file's meta in a sibling result file named
``<file>.summary.json`` whose rows summarise the lines; ``read_results`` of the ``.jsonl``
returns that meta with the lines as rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["PACKAGES", "append_row", "git_commit", "merge_results", "merge_runs",
           "package_versions", "read_results", "results_dir", "run_metadata", "summary_path",
           "to_json", "write_results"]

# The versions every run records (plus the ones a script names).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "chex")
_ROOT = pathlib.Path(__file__).resolve().parents[1]


def git_commit(root: str | os.PathLike | None = None) -> str | None:
  """The commit of the checkout: ``$POPDIFF_COMMIT`` if set, else ``git rev-parse --short HEAD``.

  The variable wins because a tree copied to another machine may carry a stale ``.git``.
  """
  if os.environ.get("POPDIFF_COMMIT"):
    return os.environ["POPDIFF_COMMIT"]
  try:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root or _ROOT,
                         capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return (out.stdout.strip() or None) if out.returncode == 0 else None


def results_dir() -> pathlib.Path:
  """``benchmarks/results`` of the checkout this package runs from, else of the working
  directory (an installed package)."""
  checkout = _ROOT / "benchmarks" / "results"
  return checkout if checkout.is_dir() else pathlib.Path("benchmarks") / "results"


def package_versions(packages: Iterable[str] = ()) -> dict[str, str]:
  """Python's, popdiff_jax's and the installed versions of ``PACKAGES`` and ``packages``."""
  import popdiff_jax
  out = {"python": platform.python_version(), "popdiff_jax": popdiff_jax.__version__}
  for name in dict.fromkeys((*PACKAGES, *packages)):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return out


def to_json(obj: Any) -> Any:
  """``obj`` as JSON values: dataclasses through ``dataclasses.asdict``, argparse namespaces
  through ``vars``, tuples and sets as lists, paths as strings, NumPy scalars and arrays as
  numbers and lists. Anything else that is not JSON raises ``TypeError``."""
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_json(dataclasses.asdict(obj))
  if isinstance(obj, Mapping):
    return {str(k): to_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_json(v) for v in obj]
  if isinstance(obj, (set, frozenset)):
    return sorted(to_json(v) for v in obj)
  if obj is None or isinstance(obj, (bool, int, float, str)):
    return obj
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  if isinstance(obj, argparse.Namespace):
    return to_json(vars(obj))
  if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # NumPy / JAX scalars and arrays
    return obj.tolist()
  raise TypeError(f"not JSON-able: {type(obj).__name__} {obj!r:.80}")


def run_metadata(benchmark: str, *, config: Any = None, command: str | None = None,
                 packages: Iterable[str] = (), devices: bool = True, **extra) -> dict:
  """The ``meta`` of a result file: what ran, where, when and from which commit.

  Args:
    benchmark: the result's name (usually the file's stem).
    config: the run's settings (a dataclass, a dict of them, an argparse namespace, ...).
    command: the command line (default: this process's ``sys.argv``).
    packages: versions to record beyond ``PACKAGES`` (e.g. ``("torch",)``).
    devices: False leaves JAX uninitialised (a driver whose worker processes own the
      accelerator); ``device``, ``platform`` and ``n_devices`` are then None.
    **extra: further descriptive fields (JSON-able), added as they are.
  """
  device = plat = count = None
  if devices:
    import jax
    dev = jax.devices()[0]
    device, plat, count = dev.device_kind, dev.platform, jax.device_count()
  meta = {"benchmark": benchmark,
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "commit": git_commit(), "device": device, "platform": plat, "n_devices": count,
          "host": platform.node(), "os": platform.platform(),
          "versions": package_versions(packages), "config": to_json(config),
          "command": shlex.join(sys.argv) if command is None else command}
  meta.update(to_json(extra))
  return meta


def _check(meta: Any, rows: Any, where: object) -> None:
  if not isinstance(meta, dict):
    raise ValueError(f"{where}: meta must be a dict, got {type(meta).__name__}")
  if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
    raise ValueError(f"{where}: rows must be a list of dicts")


def write_results(path: str | os.PathLike, rows: Sequence[dict], meta: dict) -> pathlib.Path:
  """Writes ``{"meta": meta, "rows": rows}`` (JSON, indent 1) to ``path``, atomically (a run
  that rewrites its file after every row never leaves half a file)."""
  path = pathlib.Path(path)
  if path.suffix == ".jsonl":
    raise ValueError(f"{path}: a JSON-lines file takes rows one at a time (append_row); its "
                     f"meta goes to {summary_path(path).name}")
  rows = list(rows)
  _check(meta, rows, path)
  text = json.dumps(to_json({"meta": meta, "rows": rows}), indent=1, ensure_ascii=False)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(text + "\n", encoding="utf-8")
  os.replace(tmp, path)
  return path


def summary_path(path: str | os.PathLike) -> pathlib.Path:
  """The result file holding the meta (and summary rows) of the JSON-lines file ``path``."""
  path = pathlib.Path(path)
  return path.with_name(path.name + ".summary.json")


def append_row(path: str | os.PathLike, row: dict) -> None:
  """Appends one row to the JSON-lines result file ``path`` (one JSON object a line)."""
  path = pathlib.Path(path)
  if path.suffix != ".jsonl":
    raise ValueError(f"{path}: append_row writes JSON-lines files (.jsonl)")
  _check({}, [row], path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("a", encoding="utf-8") as f:
    f.write(json.dumps(to_json(row), ensure_ascii=False) + "\n")


def read_results(path: str | os.PathLike) -> tuple[dict, list[dict]]:
  """``(meta, rows)`` of a result file.

  A ``.jsonl`` file gives its lines as rows and the meta of its ``summary_path`` file ({} when
  there is none). A JSON file without a ``"meta"`` object is read with its other top-level
  fields as the meta.
  """
  path = pathlib.Path(path)
  if path.suffix == ".jsonl":
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    summary = summary_path(path)
    meta = read_results(summary)[0] if summary.exists() else {}
    _check(meta, rows, path)
    return meta, rows
  doc = json.loads(path.read_text(encoding="utf-8"))
  if not isinstance(doc, dict) or "rows" not in doc:
    raise ValueError(f"{path}: not a result file (no 'rows')")
  meta = doc["meta"] if "meta" in doc else {k: v for k, v in doc.items() if k != "rows"}
  _check(meta, doc["rows"], path)
  return meta, doc["rows"]


def _unique(name: str, taken: set[str]) -> str:
  out, i = name, 2
  while out in taken:
    out, i = f"{name}-{i}", i + 1
  taken.add(out)
  return out


def merge_runs(parts: Iterable[tuple[dict, list[dict]]],
               names: Iterable[str | None] | None = None) -> tuple[dict, list[dict]]:
  """One ``(meta, rows)`` from several: rows concatenated, each tagged with its ``run``.

  A part whose meta has a ``runs`` list (a merge itself) keeps its runs and its rows' tags; any
  other part is one run, named by its meta's ``run``, else by ``names`` (file stems in
  ``merge_results``), else by its ``date``; clashing names get a ``-2``, ``-3`` suffix (row tags
  follow). The merged meta holds the fields that every run shares and ``runs``: per run its
  name and the fields in which it differs.
  """
  parts = list(parts)
  names = list(names) if names is not None else [None] * len(parts)
  taken: set[str] = set()
  runs: list[dict] = []
  rows: list[dict] = []
  for i, ((meta, part_rows), name) in enumerate(zip(parts, names)):
    _check(meta, part_rows, f"part {i}")
    if isinstance(meta.get("runs"), list):
      top = {k: v for k, v in meta.items() if k != "runs"}
      rename = {}
      for r in meta["runs"]:
        new = _unique(str(r.get("run") or f"run{len(runs)}"), taken)
        rename[r.get("run")] = new
        runs.append({**top, **r, "run": new})
      for row in part_rows:
        row = dict(row)
        if "run" in row:
          row["run"] = rename.get(row["run"], row["run"])
        if isinstance(row.get("runs"), list):
          row["runs"] = [rename.get(x, x) for x in row["runs"]]
        rows.append(row)
    else:
      new = _unique(str(meta.get("run") or name or meta.get("date") or f"run{len(runs)}"), taken)
      runs.append({**meta, "run": new})
      rows += [dict(row, run=new) for row in part_rows]
  shared = {}
  if runs:
    shared = {k: v for k, v in runs[0].items()
              if k != "run" and all(k in r and r[k] == v for r in runs[1:])}
  merged_runs = [{"run": r["run"], **{k: v for k, v in r.items() if k not in shared and k != "run"}}
                 for r in runs]
  return {**shared, "runs": merged_runs}, rows


def merge_results(paths: Iterable[str | os.PathLike]) -> tuple[dict, list[dict]]:
  """``merge_runs`` of result files, each run named after its file (stem) and its meta given
  a ``file`` field (the file name)."""
  parts, names = [], []
  for p in paths:
    p = pathlib.Path(p)
    meta, rows = read_results(p)
    if not isinstance(meta.get("runs"), list):
      meta = {**meta, "file": p.name}
    parts.append((meta, rows))
    names.append(p.stem)
  return merge_runs(parts, names)
