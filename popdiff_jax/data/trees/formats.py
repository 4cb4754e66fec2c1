"""Propagation trees by path and format, and the registered tree datasets as presets over them.

Trees come in two ways:

* **a path and a format**: ``load_trees("my_trees.csv", format="csv", labels="labels.csv")``,
  or a file or folder in one of the other layouts of :data:`TREE_FORMATS` (``twitter15``,
  ``weibo``, ``parent_arrays``); with ``format=None`` the layout is detected where it is
  unambiguous (:func:`detect_tree_format`), else the error lists the formats. The plain ``csv``
  format (header ``tree,parent,child,time``, one row per node; labels as a ``tree,label`` CSV;
  ``tree_csv``) is what a person writes from a spreadsheet;
* **a preset**: a registered name, ``"twitter15"`` (:data:`TREE_DATASETS`: a file under the data
  directory, its format and its labels), through :func:`load_tree_dataset`.

Labels (one string per tree, e.g. Twitter15's veracity) come from a ``.csv`` file with the header
``tree,label``, or from any other file in Twitter15's ``label:tree_name`` lines. A label for a tree
that is not in the data, or two different labels for one tree, is an error naming the line (a
misspelt name would otherwise leave a tree silently unlabelled); trees without a label get None.
The readers with a cleaning rule (``twitter15``, ``weibo``: their published files have quirks)
apply it unless ``strict=True`` and count what it removed in ``TreeSet.report``, with a warning;
``csv`` and ``parent_arrays`` are always strict. Bad input raises ``DataError`` naming the file
and the line.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
from typing import Callable

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.trees.parent_arrays import read_parent_arrays
from popdiff_jax.data.trees.tree import CleaningReport, Tree
from popdiff_jax.data.trees.tree_csv import read_label_csv, read_tree_csv
from popdiff_jax.data.trees.twitter15 import default_label_path, label_rows, read_twitter15
from popdiff_jax.data.trees.weibo import read_weibo

__all__ = ["TreeFormat", "TREE_FORMATS", "TREE_DATASETS", "TreeSet", "detect_tree_format",
           "read_labels", "load_trees", "tree_dataset_path", "load_tree_dataset"]


@dataclasses.dataclass(frozen=True)
class TreeFormat:
  """A file layout of propagation trees.

  Attributes:
    name: the format's name (``--format``).
    description: one line for listings and errors.
    folder: whether a folder (besides a file) can hold it.
    cleaning: whether its reader applies the cleaning rule (``strict=False``) rather than
      raising on every quirk.
  """

  name: str
  description: str
  folder: bool = False
  cleaning: bool = False


TREE_FORMATS: dict[str, TreeFormat] = {f.name: f for f in (
    TreeFormat("twitter15", "the rumdetect2017 release: twitter15_tree.tar.gz or its extracted "
               "tree/ folder of '[uid, tweet_id, delay]->[...]' edge files (labels: label.txt)",
               folder=True, cleaning=True),
    TreeFormat("weibo", "CasFlow / DeepHawkes: one cascade per line, 'id<TAB>origin<TAB>time"
               "<TAB>n<TAB>a/b/c:dt ...'", cleaning=True),
    TreeFormat("parent_arrays", "one tree per line: 'name<TAB>p_0 p_1 ...[<TAB>users"
               "[<TAB>delays]]', -1 for the root"),
    TreeFormat("csv", "one CSV file: header 'tree,parent,child,time', one row per node, the "
               "root's parent empty (labels: a CSV with header 'tree,label')"),
)}


def _format_list() -> str:
  return "; ".join(f"{f.name}: {f.description}" for f in TREE_FORMATS.values())


def detect_tree_format(path: str | os.PathLike) -> str:
  """The format of ``path`` where it is unambiguous: a ``.csv`` file is ``csv``; a ``.tar.gz``
  (``.tgz``) file or a folder is ``twitter15`` (no other format reads those).

  Raises:
    DataError: the path is missing or fits no format by itself (the message lists them).
  """
  path = pathlib.Path(path)
  if path.is_dir():
    return "twitter15"
  if path.is_file():
    name = path.name.lower()
    if name.endswith(".csv"):
      return "csv"
    if name.endswith((".tar.gz", ".tgz")):
      return "twitter15"
    raise DataError(f"cannot tell the tree format from the file name; pass format= (--format) "
                    f"as one of: {_format_list()}", path)
  raise DataError("no such file or folder", path)


def read_labels(path: str | os.PathLike) -> list[tuple[str, str, int]]:
  """``(tree, label, line)`` rows of a label file: a ``.csv`` with header ``tree,label``, else
  Twitter15's ``label:tree_name`` lines.

  Raises:
    DataError: a missing file or a malformed line; a tree labelled twice with different labels.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError("no such label file", path)
  rows = read_label_csv(path) if path.name.lower().endswith(".csv") else label_rows(path)
  first: dict[str, tuple[str, int]] = {}
  for tree, label, ln in rows:
    if tree in first and first[tree][0] != label:
      raise DataError(f"tree {tree!r} has two labels, {first[tree][0]!r} (line {first[tree][1]}) "
                      f"and {label!r}", path, ln)
    first.setdefault(tree, (label, ln))
  return rows


@dataclasses.dataclass
class TreeSet:
  """Trees as read by :func:`load_trees`.

  Attributes:
    name: the preset's name or the path the trees were read from.
    trees: the trees, in the reader's order (``Tree.label`` set from the labels, or None).
    format: the format they were read in (:data:`TREE_FORMATS`).
    report: what the cleaning rule removed (all zeros for the strict formats).
    labels: the label file used, or None.
  """

  name: str
  trees: list[Tree]
  format: str
  report: CleaningReport = dataclasses.field(default_factory=CleaningReport)
  labels: str | None = None

  def summary(self) -> dict:
    """One row for ``popdiff data summary --kind trees``: trees, nodes, users, sizes, depths,
    labels, and what the cleaning rule dropped."""
    sizes = np.asarray([t.size for t in self.trees])
    depths = np.asarray([int(t.depth.max()) for t in self.trees])
    labels = [t.label for t in self.trees if t.label is not None]
    r = self.report
    return {"dataset": self.name, "format": self.format, "trees": len(self.trees),
            "nodes": int(sizes.sum()),
            "users": int(np.unique(np.concatenate([t.user for t in self.trees])).size),
            "mean_size": round(float(sizes.mean()), 2), "max_size": int(sizes.max()),
            "mean_depth": round(float(depths.mean()), 2), "max_depth": int(depths.max()),
            "labelled": len(labels), "labels": len(set(labels)),
            "dropped_edges": r.self_loops + r.duplicate_edges + r.edges_into_root
            + r.dropped_parent_edges, "dropped_nodes": r.unreachable_nodes}


_READERS: dict[str, Callable] = {
    "twitter15": lambda path, strict, max_trees: read_twitter15(
        path, label_path=None, strict=strict, max_trees=max_trees),
    "weibo": lambda path, strict, max_trees: read_weibo(path, strict=strict),
    "parent_arrays": lambda path, strict, max_trees: (read_parent_arrays(path), CleaningReport()),
    "csv": lambda path, strict, max_trees: (read_tree_csv(path), CleaningReport()),
}


def _warn_cleaned(report: CleaningReport, path) -> None:
  counts = {"self-loop lines": report.self_loops, "duplicate edges": report.duplicate_edges,
            "edges into the root": report.edges_into_root,
            "extra parent edges (earliest parent kept)": report.dropped_parent_edges,
            "nodes not reachable from the root": report.unreachable_nodes}
  dropped = [f"{n:,} {what}" for what, n in counts.items() if n]
  if dropped:
    warnings.warn(f"{path}: the cleaning rule dropped {', '.join(dropped)} (strict=True raises "
                  "instead)", stacklevel=3)


def load_trees(path: str | os.PathLike, format: str | None = None, *,
               labels: str | os.PathLike | None = None, strict: bool = False,
               max_trees: int | None = None, name: str | None = None) -> TreeSet:
  """Reads propagation trees from a file or folder in one of :data:`TREE_FORMATS`.

  Args:
    path: the file (or, for ``twitter15``, the folder) of trees.
    format: a name of :data:`TREE_FORMATS`; None detects it (:func:`detect_tree_format`).
    labels: a label file (:func:`read_labels`); default: none, except Twitter15's ``label.txt``
      beside the release (``twitter15.default_label_path``).
    strict: raise on every quirk instead of applying the cleaning rule (``twitter15``,
      ``weibo``; the other formats are always strict).
    max_trees: keep only the first trees (Twitter15: by name).
    name: the dataset's name in results (default: the path).

  Returns:
    The :class:`TreeSet`.

  Raises:
    DataError: a missing path, an undetectable or unknown format, malformed files (naming the
      file and line), a label for a tree that is not in the data (when every tree was read),
      or two trees of one name.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError("no such file or folder", path)
  format = detect_tree_format(path) if format is None else format
  if format not in TREE_FORMATS:
    raise DataError(f"unknown tree format {format!r}; the tree formats: {_format_list()}", path)
  spec = TREE_FORMATS[format]
  if path.is_dir() and not spec.folder:
    raise DataError(f"tree format {format!r} reads a file, not a folder: {spec.description}",
                    path)
  trees, report = _READERS[format](path, strict, max_trees)
  if max_trees is not None:
    trees = trees[:max_trees]
  seen: set[str] = set()
  for t in trees:
    if t.name in seen:
      raise DataError(f"two trees are named {t.name!r}", path)
    seen.add(t.name)
  if labels is None and format == "twitter15":
    labels = default_label_path(path)
  if labels is not None:
    rows = read_labels(labels)
    if max_trees is None or len(trees) < max_trees:
      for tree, _, ln in rows:
        if tree not in seen:
          raise DataError(f"label for tree {tree!r}, which is not in {path}", labels, ln)
    by_name = {tree: label for tree, label, _ in rows}
    trees = [t._replace(label=by_name.get(t.name)) for t in trees]
  if not strict:
    _warn_cleaned(report, path)
  return TreeSet(name or str(path), trees, format, report,
                 None if labels is None else str(labels))


# ----------------------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class _TreePreset:
  folder: str    # relative to the data dir
  file: str      # the trees, in the folder
  format: str    # a name of TREE_FORMATS
  labels: str    # the label file in the folder, "" if none


#: The registered tree datasets: presets over :func:`load_trees` (``popdiff data summary --kind
#: trees``). Data that is generated rather than read (Diffusion-LSTM's ``synthetic``) is the
#: project's own.
TREE_DATASETS: dict[str, _TreePreset] = {
    "twitter15": _TreePreset("twitter15_16_trees", "twitter15_tree.tar.gz", "twitter15",
                             "twitter15/label.txt"),
}


def tree_dataset_path(name: str, data_dir: str | os.PathLike | None = None
                      ) -> tuple[pathlib.Path, pathlib.Path | None]:
  """``(trees, labels)`` files of the registered tree dataset ``name``: under ``data_dir`` (or
  ``$POPDIFF_DATA_DIR``, else ``../shared/data`` beside a checkout), which may also be the
  dataset's folder itself; labels None when the folder lacks them.

  Raises:
    DataError: an unknown name, or a data directory without the dataset.
  """
  from popdiff_jax.data.cascades import resolve_data_dir

  if name not in TREE_DATASETS:
    raise DataError(f"unknown tree dataset {name!r}: not a registered name "
                    f"({', '.join(TREE_DATASETS)}) nor an existing path")
  spec = TREE_DATASETS[name]
  root = resolve_data_dir(data_dir)
  for folder in ([] if root is None else [root, root / spec.folder]):
    if (folder / spec.file).exists():
      labels = folder / spec.labels if spec.labels else None
      return folder / spec.file, labels if labels is not None and labels.is_file() else None
  raise DataError(f"tree dataset {name!r} is not shipped with the package; pass data_dir= "
                  f"(--data-dir, or set POPDIFF_DATA_DIR) to a folder containing "
                  f"{spec.folder}/{spec.file}", data_dir)


def load_tree_dataset(source: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                      format: str | None = None, labels: str | os.PathLike | None = None,
                      strict: bool = False, max_trees: int | None = None) -> TreeSet:
  """A registered tree dataset by name, or any trees by path (:func:`load_trees`).

  Args:
    source: a name of :data:`TREE_DATASETS` (``"twitter15"``), or the path of a file or folder
      in one of :data:`TREE_FORMATS`.
    data_dir: folder holding the registered datasets' folders (``shared/data``).
    format: the format of a path (None: detected); a preset has its own.
    labels: a label file for a path (a preset has its own).
    strict, max_trees: as :func:`load_trees`.

  Returns:
    The :class:`TreeSet`, named by the preset or the path.
  """
  key = str(source)
  if key in TREE_DATASETS and not pathlib.Path(key).exists():
    spec = TREE_DATASETS[key]
    if format is not None and format != spec.format:
      raise DataError(f"tree dataset {key!r} is in format {spec.format!r}, not {format!r}")
    if labels is not None:
      raise DataError(f"tree dataset {key!r} brings its own labels; labels= is for a path")
    trees, label_file = tree_dataset_path(key, data_dir)
    return load_trees(trees, spec.format, labels=label_file, strict=strict,
                      max_trees=max_trees, name=key)
  if not pathlib.Path(key).exists():
    tree_dataset_path(key)  # raises: neither a name nor a path
  return load_trees(key, format, labels=labels, strict=strict, max_trees=max_trees)
