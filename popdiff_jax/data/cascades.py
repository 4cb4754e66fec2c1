"""Cascade datasets: every layout as a format, the registered datasets as presets over them.

A cascade is the time-ordered list of users infected by one information item. Data comes in two
ways, through one function, :func:`load_dataset`:

* **a path and a format**: ``load_dataset("my_cascades.csv", format="csv")`` or a folder in one of
  the published layouts (``format="ndm"``, ``"forest"``, ``"mshgat"``, ``"infvae"``,
  ``"topolstm"``; :data:`FORMATS`); with ``format=None`` the layout is detected from the files
  where that is unambiguous, else the error lists the formats. The plain ``csv`` format (header
  ``cascade,user,time``, one row per infection; optionally a ``source,target`` edge list as
  ``graph=``) is what a person writes from a spreadsheet (``docs/data.md`` has an example);
* **a preset**: a registered name such as ``"ndm/lastfm"`` (:data:`DATASETS`: a folder under the
  data directory, its format, and NDM's F_init for it).

Every reader returns plain NumPy (``Cascade``); batching into static shapes lives in
``popdiff_jax.data.batching``. Conventions (as in NDM's code): vocabulary index 0 is padding and 1
is the virtual *Terminate* user; real users start at 2. The vocabulary is rebuilt
deterministically from the text files (order of first appearance over the train, valid, test
files, in that order; with the ``"leak_free"`` split, over the training part only, every other
user mapping to :data:`UNKNOWN`); the ``.pickle`` vocabularies shipped with the original repositories are
never read, because loading a pickle runs code. A user repeated within one cascade keeps its
*first* infection (NDM models first infections only); later repeats are dropped and counted in
``report['repeats_dropped']``. Bad input raises ``DataError`` naming the file and the line
(``popdiff_jax.data.cascade_readers``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import warnings
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.cascade_readers import (RawCascade, read_csv_cascades, read_csv_graph,
                                              read_graph, read_seed_then_pairs,
                                              read_user_comma_time, read_user_space_time)
from popdiff_jax.types import NUM_SPECIAL, PAD, TERMINATE

__all__ = ["PAD", "TERMINATE", "NUM_SPECIAL", "SPLITS", "UNKNOWN", "Cascade", "RawCascade", "UserVocab",
           "CascadeDataset", "CascadeFormat", "FORMATS", "DATASETS", "detect_format",
           "load_cascades", "load_dataset", "split_cascades", "warn_if_truncated",
           "dataset_folder", "embedded_root", "resolve_data_dir", "default_f_init", "read_graph"]


#: The ways of splitting a dataset (:func:`load_cascades`).
SPLITS = ("files", "random", "time", "leak_free")
#: The raw id of the one vocabulary entry that, with split ``"leak_free"``, stands for every user
#: absent from the training part: validation and test cascades keep their length, such a user
#: enters a model's input as this id (one embedding, never trained: no training cascade holds
#: it), it is never a candidate, and as a target it cannot be hit (a miss in Hits@k and MAP@k;
#: left out of the NLL).
UNKNOWN = "<unknown>"


class Cascade(NamedTuple):
  """One cascade in infection order.

  Attributes:
    users: int32 [n] vocabulary indices (>= 2), distinct.
    times: float64 [n] timestamps in the file's unit, non-decreasing as read.
  """

  users: np.ndarray
  times: np.ndarray


class UserVocab:
  """Bidirectional map between raw user ids and indices; 0 = padding, 1 = Terminate."""

  def __init__(self, users: Iterable[str] = ()):
    self._index: dict[str, int] = {}
    self._users: list[str] = ["<pad>", "<terminate>"]
    for u in users:
      self.add(u)

  def add(self, user: str) -> int:
    """The index of ``user``, added at the end if new."""
    idx = self._index.get(user)
    if idx is None:
      idx = len(self._users)
      self._index[user] = idx
      self._users.append(user)
    return idx

  def __len__(self) -> int:
    return len(self._users)

  def __contains__(self, user: str) -> bool:
    return user in self._index

  def index(self, user: str) -> int:
    """The index of a known user (KeyError if unknown)."""
    return self._index[user]

  def user(self, index: int) -> str:
    """The raw id of vocabulary index ``index``."""
    return self._users[index]

  @property
  def num_users(self) -> int:
    """Real users, without padding and Terminate."""
    return len(self._users) - NUM_SPECIAL


@dataclasses.dataclass
class CascadeDataset:
  """A dataset ready for training: vocabulary, splits and (where one exists) a social graph.

  Attributes:
    name: the preset's name (e.g. ``"ndm/lastfm"``) or the path it was read from.
    vocab: the user vocabulary; ``len(vocab)`` is the size of every user softmax.
    train, valid, test: lists of ``Cascade``.
    graph: int32 [E, 2] directed edges ``(u, v)`` in vocabulary indices, or None.
    split: how the splits were made (``"files"``, ``"random"``, ``"time"`` or
      ``"leak_free"``, plus notes).
    report: counts of everything the readers changed or dropped.
    f_init: NDM's F_init for this data (Sec. 5.2: 1 on the Twitter sets, else 0), the value a
      next-user config with ``f_init=None`` takes; None when the data does not say (a file read
      by path), and then the config's value (or 0) is used.
    format: the format it was read in (``FORMATS``).
    unknown: the vocabulary index that every user absent from the training part maps to
      (split ``"leak_free"``: the last index, :data:`UNKNOWN`), or None when the vocabulary
      covers every split.
  """

  name: str
  vocab: UserVocab
  train: list[Cascade]
  valid: list[Cascade]
  test: list[Cascade]
  graph: np.ndarray | None = None
  split: str = "files"
  report: dict = dataclasses.field(default_factory=dict)
  f_init: int | None = None
  format: str | None = None
  unknown: int | None = None

  @property
  def num_items(self) -> int:
    """``|U|``, the size of every user softmax (padding and Terminate included)."""
    return len(self.vocab)

  def summary(self) -> dict:
    """One row for ``popdiff data summary``: users, split sizes, lengths, graph edges."""
    lengths = [len(c.users) for c in self.train + self.valid + self.test]
    return {"dataset": self.name, "users": self.vocab.num_users, "train": len(self.train),
            "valid": len(self.valid), "test": len(self.test),
            "avg_len": round(float(np.mean(lengths)), 2) if lengths else 0.0,
            "max_len": int(max(lengths, default=0)), "split": self.split,
            "format": self.format,
            "graph_edges": 0 if self.graph is None else int(len(self.graph))}


# ----------------------------------------------------------------------------------------- formats


@dataclasses.dataclass(frozen=True)
class CascadeFormat:
  """A file layout of cascades.

  Attributes:
    name: the format's name (``--format``).
    description: one line for listings and errors.
    reader: the line format of its files (``cascade_readers``).
    files: ``(train, valid, test)`` file names in the folder, ``""`` where absent; for a
      single-file format (``csv``) the path is the file itself.
    graph: the graph file's name in the folder, ``""`` if none.
    graph_header: the graph's first line is a ``n_users n_edges`` header.
  """

  name: str
  description: str
  reader: str
  files: tuple[str, str, str] = ("", "", "")
  graph: str = ""
  graph_header: bool = False

  @property
  def single_file(self) -> bool:
    """Whether the format is one file (the path) rather than a folder of files."""
    return not any(self.files)


FORMATS: dict[str, CascadeFormat] = {f.name: f for f in (
    CascadeFormat("ndm", "NDM's release: cascade.txt, cascadetest.txt of 'user,time' tokens",
                  "user_comma_time", ("cascade.txt", "", "cascadetest.txt")),
    CascadeFormat("forest", "FOREST's release: cascade.txt, cascadevalid.txt, cascadetest.txt",
                  "user_comma_time", ("cascade.txt", "cascadevalid.txt", "cascadetest.txt")),
    CascadeFormat("mshgat", "MS-HGAT's release: one cascades.txt of 'user time,' pairs",
                  "user_space_time", ("cascades.txt", "", "")),
    CascadeFormat("infvae", "Inf-VAE's release: train/val/test.txt (seed, then 'user time' "
                  "pairs, times from the seed) and graph.txt with a header line",
                  "seed_then_pairs_relative", ("train.txt", "val.txt", "test.txt"),
                  graph="graph.txt", graph_header=True),
    CascadeFormat("topolstm", "Topo-LSTM's release: train/test.txt (seed, then 'user time' pairs, "
                  "absolute times) and graph.txt", "seed_then_pairs_absolute",
                  ("train.txt", "", "test.txt"), graph="graph.txt"),
    CascadeFormat("csv", "one CSV file: header 'cascade,user,time', one row per infection "
                  "(optional graph: a CSV with header 'source,target')", "csv"),
)}


def _format_list() -> str:
  return "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())


def detect_format(path: str | os.PathLike) -> str:
  """The format of ``path`` when its files say it unambiguously.

  Raises:
    DataError: the path is missing or fits no format (the message lists them).
  """
  path = pathlib.Path(path)
  if path.is_file():
    if path.suffix.lower() == ".csv":
      return "csv"
  elif path.is_dir():
    has = {p.name for p in path.iterdir()}
    if "cascades.txt" in has:
      return "mshgat"
    if {"cascade.txt", "cascadetest.txt"} <= has:
      return "forest" if "cascadevalid.txt" in has else "ndm"
    if {"train.txt", "test.txt", "graph.txt"} <= has:
      return "infvae" if "val.txt" in has else "topolstm"
  else:
    raise DataError("no such file or folder", path)
  raise DataError(f"cannot tell the format from the files; pass format= (--format) as one of: "
                  f"{_format_list()}", path)


def _read(reader: str, path: pathlib.Path, report: dict) -> list[RawCascade]:
  if reader == "user_comma_time":
    return read_user_comma_time(path)
  if reader == "user_space_time":
    return read_user_space_time(path, report)
  if reader == "seed_then_pairs_relative":
    return read_seed_then_pairs(path, relative_times=True)
  if reader == "seed_then_pairs_absolute":
    return read_seed_then_pairs(path, relative_times=False)
  if reader == "csv":
    return read_csv_cascades(path)
  raise ValueError(f"unknown reader {reader!r}")


def _index(raw: Sequence[RawCascade], vocab: UserVocab, report: dict,
           unknown: int | None = None) -> list[Cascade]:
  """Cascades of vocabulary indices; new users are added to ``vocab``, or, with ``unknown``,
  mapped to that index (counted in ``report['unknown_infections']``)."""
  out = []
  for rc in raw:
    seen: set[str] = set()
    users, times = [], []
    for u, t in zip(rc.users, rc.times):
      if u in seen:  # by raw id: two different unseen users both map to ``unknown``
        report["repeats_dropped"] = report.get("repeats_dropped", 0) + 1
        continue
      seen.add(u)
      if unknown is None:
        idx = vocab.add(u)
      elif u in vocab:
        idx = vocab.index(u)
      else:
        idx = unknown
        report["unknown_infections"] = report.get("unknown_infections", 0) + 1
      users.append(idx)
      times.append(t)
    out.append(Cascade(np.asarray(users, np.int32), np.asarray(times, np.float64)))
  return out


def split_cascades(cascades: Sequence[Cascade], fractions: Sequence[float], how: str = "random",
                   seed: int = 0) -> list[list[Cascade]]:
  """Splits cascades into consecutive parts of the given fractions.

  Args:
    cascades: the cascades to split (``Cascade`` or ``RawCascade``).
    fractions: e.g. ``(0.8, 0.1, 0.1)``; must sum to 1.
    how: ``"random"`` (seeded permutation) or ``"time"`` (sorted by first timestamp, so the last
      part is the latest: random splits of cascades are known to leak future behaviour).
    seed: the permutation's seed for ``"random"``.
  """
  if abs(sum(fractions) - 1.0) > 1e-6:
    raise ValueError(f"fractions must sum to 1, got {fractions}")
  if how == "random":
    order = np.random.default_rng(seed).permutation(len(cascades))
  elif how == "time":
    order = np.argsort([c.times[0] for c in cascades], kind="stable")
  else:
    raise ValueError(f"split must be 'random' or 'time', got {how!r}")
  bounds = np.round(np.cumsum([0.0, *fractions]) * len(cascades)).astype(int)
  return [[cascades[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def load_cascades(path: str | os.PathLike, format: str | None = None, *,
                  graph: str | os.PathLike | None = None, split: str = "files", seed: int = 0,
                  valid_fraction: float = 0.1,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  name: str | None = None, f_init: int | None = None) -> CascadeDataset:
  """Reads cascades from a file or folder in one of :data:`FORMATS`.

  Args:
    path: the folder of a published layout, or the file of a single-file format (``csv``).
    format: a name of :data:`FORMATS`; None detects it (:func:`detect_format`).
    graph: a social graph file (``u v`` lines, or a ``source,target`` CSV for the ``csv``
      format); by default the format's own graph file, if it has one.
    split: ``"files"`` uses the format's train/valid/test files; where a split file is missing,
      the missing part is drawn (seeded) from the training file (valid: ``valid_fraction`` of
      it) or, for a single-file format, the cascades are split by ``fractions``. ``"random"``
      and ``"time"`` pool all files and re-split by ``fractions`` (``"time"``: by first
      timestamp, latest to test). ``"leak_free"`` is the ``"time"`` split with the vocabulary
      built from the training part only (:data:`UNKNOWN`).
    seed: seed of every random split.
    valid_fraction: share of the training file held out for validation when there is no valid
      file.
    fractions: train/valid/test shares for ``"random"``/``"time"`` and single-file formats.
    name: the dataset's name in results (default: the path).
    f_init: NDM's F_init for this data, if known (presets set it).

  Returns:
    The dataset, with ``report`` counting what the readers dropped.

  Raises:
    DataError: a missing path, an undetectable or unknown format, malformed files (naming the
      file and line), or a graph user that appears in no cascade (``csv`` graphs only).
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError("no such file or folder", path)
  format = detect_format(path) if format is None else format
  if format not in FORMATS:
    raise DataError(f"unknown format {format!r}; the formats: {_format_list()}", path)
  spec = FORMATS[format]
  if spec.single_file != path.is_file():
    want = "a file" if spec.single_file else "a folder"
    raise DataError(f"format {format!r} reads {want}: {spec.description}", path)
  report: dict = {}
  if spec.single_file:
    raw_parts = [_read(spec.reader, path, report), None, None]
  else:
    if not (path / spec.files[0]).is_file():
      raise DataError(f"format {format!r} needs {spec.files[0]} in the folder "
                      f"({spec.description})", path)
    raw_parts = [_read(spec.reader, path / f, report) if f and (path / f).is_file() else None
                 for f in spec.files]
  vocab = UserVocab()
  unknown = None
  if split == "leak_free":
    pooled_raw = [c for r in raw_parts if r for c in r]
    raw_train, raw_valid, raw_test = split_cascades(pooled_raw, fractions, "time")
    train = _index(raw_train, vocab, report)
    unknown = vocab.add(UNKNOWN)
    valid, test = (_index(r, vocab, report, unknown) for r in (raw_valid, raw_test))
    parts = [train, valid, test]
  else:
    parts = [None if r is None else _index(r, vocab, report) for r in raw_parts]
    train, valid, test = parts
  how = "files"
  if split == "leak_free":
    how = f"leak_free: time {fractions}, vocabulary of the training part"
  elif split in ("random", "time"):
    pooled = [c for p in parts if p for c in p]
    train, valid, test = split_cascades(pooled, fractions, split, seed)
    how = f"{split} {fractions} (seed {seed})" if split == "random" else f"time {fractions}"
  elif split != "files":
    raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}", path)
  elif test is None:
    train, valid, test = split_cascades(train, fractions, "random", seed)
    how = f"random {fractions} (seed {seed}; the dataset has one file)"
  elif valid is None:
    train, valid = split_cascades(train, (1 - valid_fraction, valid_fraction), "random", seed)
    how = f"files; valid = {valid_fraction:.0%} of the training file (seed {seed})"

  edges = None
  graph_path = pathlib.Path(graph) if graph is not None else (
      path / spec.graph if spec.graph else None)
  if graph_path is not None:
    if not graph_path.is_file():
      raise DataError("no such graph file", graph_path)
    if graph is not None and graph_path.suffix.lower() == ".csv":
      triples = read_csv_graph(graph_path)
      for u, v, n in triples:
        for user in (u, v):
          if user not in vocab and unknown is None:  # leak_free: users outside training
            raise DataError(f"graph user {user!r} appears in no cascade", graph_path, n)
      pairs = [(u, v) for u, v, _ in triples]
    else:
      pairs = read_graph(graph_path, spec.graph_header and graph is None)
    # Edges between vocabulary users (leak_free: between training users) are kept.
    kept = [(vocab.index(u), vocab.index(v)) for u, v in pairs
            if u in vocab and v in vocab and UNKNOWN not in (u, v)]
    report["graph_edges_outside_cascades"] = len(pairs) - len(kept)
    edges = np.asarray(kept, np.int32).reshape(-1, 2)
  return CascadeDataset(name or str(path), vocab, train, valid, test, edges, how, report,
                        f_init=f_init, format=format, unknown=unknown)


# ----------------------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class _Preset:
  folder: str                   # relative to the data dir
  format: str                   # a name of FORMATS
  embedded: bool = False        # shipped inside the package
  f_init: int = 0               # NDM's F_init for this dataset (1 for Twitter, Sec. 5.2)


#: The registered datasets: presets over :func:`load_cascades` (``popdiff data summary``).
DATASETS: dict[str, _Preset] = {
    "ndm/irvine": _Preset("ndm/irvine", "ndm", embedded=True),
    "ndm/lastfm": _Preset("ndm/lastfm", "ndm", embedded=True),
    "ndm/memetracker": _Preset("ndm/memetracker", "ndm", embedded=True),
    "forest/twitter": _Preset("forest/twitter", "forest", f_init=1),
    "forest/memetracker": _Preset("forest/memetracker", "forest"),
    "mshgat/twitter": _Preset("mshgat/twitter", "mshgat", f_init=1),
    "infvae/android": _Preset("infvae/android", "infvae"),
    "infvae/christianity": _Preset("infvae/christianity", "infvae"),
    "topolstm_twitter": _Preset("topolstm_twitter", "topolstm", f_init=1),
}


def default_f_init(name: str) -> int:
  """NDM's F_init for a registered dataset: 1 for the Twitter sets (paper Sec. 5.2), else 0."""
  return _preset(name).f_init


def _preset(name: str) -> _Preset:
  if name not in DATASETS:
    raise DataError(f"unknown dataset {name!r}: not a registered name ({', '.join(DATASETS)}) "
                    "nor an existing path")
  return DATASETS[name]


def embedded_root() -> pathlib.Path:
  """Folder of the datasets shipped inside the package."""
  return pathlib.Path(str(importlib.resources.files("popdiff_jax.data") / "embedded"))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path | None:
  """``data_dir``, else ``$POPDIFF_DATA_DIR``, else ``../shared/data`` beside a source checkout."""
  if data_dir is not None:
    return pathlib.Path(data_dir)
  if os.environ.get("POPDIFF_DATA_DIR"):
    return pathlib.Path(os.environ["POPDIFF_DATA_DIR"])
  guess = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
  return guess if guess.is_dir() else None


def dataset_folder(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Where the files of dataset ``name`` are: the data dir if it has them, else the package for
  the embedded sets."""
  spec = _preset(name)
  root = resolve_data_dir(data_dir)
  if root is not None and (root / spec.folder).is_dir():
    return root / spec.folder
  if spec.embedded:
    return embedded_root() / spec.folder
  raise DataError(f"dataset {name!r} is not shipped with the package; pass data_dir= "
                  f"(--data-dir, or set POPDIFF_DATA_DIR) to a folder containing {spec.folder}/")


def load_dataset(source: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                 format: str | None = None, graph: str | os.PathLike | None = None,
                 split: str = "files", seed: int = 0, valid_fraction: float = 0.1,
                 fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> CascadeDataset:
  """A registered dataset by name, or any cascades by path (:func:`load_cascades`).

  Args:
    source: a name of :data:`DATASETS` (``"ndm/lastfm"``, ``"forest/twitter"``...), or the path
      of a file or folder in one of :data:`FORMATS`.
    data_dir: folder holding the registered datasets' folders (``shared/data``); the embedded
      sets need none.
    format: the format of a path (None: detected); a preset has its own.
    graph: a social graph file for a path.
    split, seed, valid_fraction, fractions: as :func:`load_cascades`.

  Returns:
    The dataset.
  """
  key = str(source)
  kw = dict(split=split, seed=seed, valid_fraction=valid_fraction, fractions=fractions)
  if key in DATASETS and not pathlib.Path(key).exists():
    spec = DATASETS[key]
    if format is not None and format != spec.format:
      raise DataError(f"dataset {key!r} is in format {spec.format!r}, not {format!r}")
    return load_cascades(dataset_folder(key, data_dir), spec.format, graph=graph, name=key,
                         f_init=spec.f_init, **kw)
  if not pathlib.Path(key).exists():
    _preset(key)  # raises: neither a name nor a path
  return load_cascades(key, format, graph=graph, **kw)


def warn_if_truncated(cascades: Sequence[Cascade], max_len: int, what: str = "cascades") -> int:
  """Warns once, with the count, that cascades longer than ``max_len`` will be cut.

  The cut itself happens in ``batching.pack``, which must see the uncut length to know that a cut
  cascade did not end (and so gets no Terminate).

  Returns:
    The number of cascades longer than ``max_len``.
  """
  n_long = sum(len(c.users) > max_len for c in cascades)
  if n_long:
    warnings.warn(f"{n_long} {what} longer than max_len={max_len} are truncated to their first "
                  f"{max_len} users (no Terminate is appended to a cut cascade)", stacklevel=2)
  return n_long
