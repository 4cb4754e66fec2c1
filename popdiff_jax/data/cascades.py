"""Cascade datasets: readers for every public format in ``shared/data``, user vocabularies, splits.

A cascade is the time-ordered list of users infected by one information item. Every reader returns
plain NumPy (``Cascade``); batching into static shapes lives in ``popdiff_jax.data.batching``.

Conventions (as in NDM's code): vocabulary index 0 is padding and 1 is the virtual *Terminate* user;
real users start at 2. The vocabulary is rebuilt deterministically from the text files (order of first
appearance over the train, valid, test files, in that order); the ``.pickle`` vocabularies shipped with
the original repositories are never read, because loading a pickle runs code.

Formats (see ``shared/data/README.md``):

* ``user_comma_time`` (ndm/, forest/): ``user,timestamp`` tokens separated by spaces.
* ``user_space_time`` (mshgat/): ``user timestamp`` pairs separated by commas, trailing comma.
  The original Twitter file's last line ends in a bare user id with no timestamp; that token (only
  there: the last token of the file) is dropped and counted as ``truncated_tokens``.
* ``seed_then_pairs`` (infvae/, topolstm_twitter/): the seed user, then ``user time`` pairs. The seed's
  time is the first listed pair's time, clipped to 0 from above for Inf-VAE whose times are relative
  to the seed (so the seed is always first and the time order holds).
* graphs: ``u v`` per line; Inf-VAE's first line is a ``n_users n_edges`` header (Topo-LSTM's first
  line is a real edge, contrary to its own loader, and is kept).

Rules for bad input, all raising ``DataError`` with the file and line unless said otherwise:
an empty file; a line with no users; a non-numeric timestamp; a token that is not ``user,time``.
A user repeated within one cascade keeps its *first* infection (NDM models first infections only, and
a user is never infected twice); later repeats are dropped and counted in ``report['repeats_dropped']``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import pathlib
import warnings
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from popdiff_jax._errors import DataError

from popdiff_jax.types import NUM_SPECIAL, PAD, TERMINATE  # noqa: E402,F401  (re-exported)


class Cascade(NamedTuple):
  """One cascade in infection order.

  Attributes:
    users: int32 [n] vocabulary indices (>= 2), distinct.
    times: float64 [n] timestamps in the file's unit, non-decreasing as read.
  """

  users: np.ndarray
  times: np.ndarray


class RawCascade(NamedTuple):
  """A cascade as read from a file, before the vocabulary: raw user ids and times."""

  users: list[str]
  times: list[float]
  path: str
  line: int


class UserVocab:
  """Bidirectional map between raw user ids and indices; 0 = padding, 1 = Terminate."""

  def __init__(self, users: Iterable[str] = ()):
    self._index: dict[str, int] = {}
    self._users: list[str] = ["<pad>", "<terminate>"]
    for u in users:
      self.add(u)

  def add(self, user: str) -> int:
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
    return self._index[user]

  def user(self, index: int) -> str:
    return self._users[index]

  @property
  def num_users(self) -> int:
    """Real users, without padding and Terminate."""
    return len(self._users) - NUM_SPECIAL


@dataclasses.dataclass
class CascadeDataset:
  """A dataset ready for training: vocabulary, splits and (where one exists) a social graph.

  Attributes:
    name: registry name, e.g. ``"ndm/lastfm"``.
    vocab: the user vocabulary; ``len(vocab)`` is the size of every user softmax.
    train, valid, test: lists of ``Cascade``.
    graph: int32 [E, 2] directed edges ``(u, v)`` in vocabulary indices, or None.
    split: how the splits were made (``"files"``, ``"random"`` or ``"time"``, plus notes).
    report: counts of everything the readers changed or dropped.
    f_init: NDM's F_init for this data (Sec. 5.2: 1 on the Twitter sets, else 0), the value a
      next-user config with ``f_init=None`` takes.
  """

  name: str
  vocab: UserVocab
  train: list[Cascade]
  valid: list[Cascade]
  test: list[Cascade]
  graph: np.ndarray | None = None
  split: str = "files"
  report: dict = dataclasses.field(default_factory=dict)
  f_init: int = 0

  @property
  def num_items(self) -> int:
    return len(self.vocab)

  def summary(self) -> dict:
    lengths = [len(c.users) for c in self.train + self.valid + self.test]
    return {"dataset": self.name, "users": self.vocab.num_users, "train": len(self.train),
            "valid": len(self.valid), "test": len(self.test),
            "avg_len": round(float(np.mean(lengths)), 2) if lengths else 0.0,
            "max_len": int(max(lengths, default=0)), "split": self.split,
            "graph_edges": 0 if self.graph is None else int(len(self.graph))}


# ----------------------------------------------------------------------------------------- readers


def _read_lines(path: pathlib.Path) -> list[str]:
  try:
    raw = path.read_bytes()
  except OSError as e:
    raise DataError(f"cannot read file: {e.strerror}", path) from e
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    raise DataError("not UTF-8 text", path, line) from e
  # Only "\n" ends a line (str.splitlines would also split at form feeds, \x1c-\x1e, \u2028...,
  # silently turning one cascade into two and shifting every reported line number).
  lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
  while lines and not lines[-1].strip():
    lines.pop()  # trailing blank lines are harmless
  if not lines:
    raise DataError("empty file: no cascades", path)
  return lines


def _parse_time(token: str, path: pathlib.Path, line: int) -> float:
  try:
    t = float(token)
  except ValueError:
    raise DataError(f"non-numeric timestamp {token!r}", path, line) from None
  if not math.isfinite(t):
    raise DataError(f"non-finite timestamp {token!r}", path, line)
  return t


def _token_lines(path: pathlib.Path):
  """``(line number, white-space tokens)`` of every line; a line with no tokens is an error."""
  for n, text in enumerate(_read_lines(path), start=1):
    tokens = text.split()
    if not tokens:
      raise DataError("line has no users", path, n)
    yield n, tokens


def read_user_comma_time(path: str | os.PathLike) -> list[RawCascade]:
  """Reads ndm/forest files: ``user,timestamp`` tokens separated by white space."""
  path = pathlib.Path(path)
  out = []
  for n, tokens in _token_lines(path):
    users, times = [], []
    for tok in tokens:
      parts = tok.split(",")
      if len(parts) != 2 or not parts[0]:
        raise DataError(f"token {tok!r} is not 'user,timestamp'", path, n)
      users.append(parts[0])
      times.append(_parse_time(parts[1], path, n))
    out.append(RawCascade(users, times, str(path), n))
  return out


def read_user_space_time(path: str | os.PathLike, report: dict | None = None) -> list[RawCascade]:
  """Reads MS-HGAT files: ``user timestamp`` pairs separated by commas (trailing comma)."""
  path = pathlib.Path(path)
  lines = _read_lines(path)
  out = []
  for n, text in enumerate(lines, start=1):
    pairs = [p.split() for p in text.split(",") if p.strip()]
    if not pairs:
      raise DataError("line has no users", path, n)
    if n == len(lines) and len(pairs[-1]) == 1 and len(pairs) > 1:
      # The original Twitter file was cut mid-token: a bare user id with no time ends the file.
      pairs.pop()
      if report is not None:
        report["truncated_tokens"] = report.get("truncated_tokens", 0) + 1
    users, times = [], []
    for pair in pairs:
      if len(pair) != 2:
        raise DataError(f"entry {' '.join(pair)!r} is not 'user timestamp'", path, n)
      users.append(pair[0])
      times.append(_parse_time(pair[1], path, n))
    out.append(RawCascade(users, times, str(path), n))
  return out


def read_seed_then_pairs(path: str | os.PathLike, relative_times: bool) -> list[RawCascade]:
  """Reads Inf-VAE / Topo-LSTM files: the seed user, then ``user time`` pairs.

  Args:
    path: the file.
    relative_times: Inf-VAE (times counted from the seed, so the seed gets time 0) vs Topo-LSTM
      (absolute times; the seed gets its first follower's time).
  """
  path = pathlib.Path(path)
  out = []
  for n, tokens in _token_lines(path):
    if len(tokens) % 2 != 1:
      raise DataError("expected a seed user then 'user time' pairs (odd number of fields)", path, n)
    users = [tokens[0]] + tokens[1::2]
    bad = [u for u in users if "," in u]
    if bad:
      raise DataError(f"user id {bad[0]!r} contains a comma: not a 'seed user time ...' line", path, n)
    times = [_parse_time(t, path, n) for t in tokens[2::2]]
    seed_time = min(0.0, times[0]) if (relative_times and times) else (times[0] if times else 0.0)
    out.append(RawCascade(users, [seed_time] + times, str(path), n))
  return out


def read_graph(path: str | os.PathLike, header: bool) -> list[tuple[str, str]]:
  """Reads ``u v`` edge lines; ``header`` skips Inf-VAE's ``n_users n_edges`` first line."""
  path = pathlib.Path(path)
  lines = _read_lines(path)
  edges = []
  for n, text in enumerate(lines[1:] if header else lines, start=2 if header else 1):
    parts = text.split()
    if len(parts) != 2:
      raise DataError(f"edge line {text!r} is not 'u v'", path, n)
    edges.append((parts[0], parts[1]))
  return edges


# --------------------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class _Spec:
  folder: str                   # relative to the data dir
  fmt: str                      # reader name
  files: tuple[str, ...]        # (train, valid, test) file names; "" where absent
  graph: str = ""               # graph file name, "" if none
  graph_header: bool = False
  embedded: bool = False        # shipped inside the package
  f_init: int = 0               # NDM's F_init for this dataset (1 for Twitter, Sec. 5.2)


DATASETS: dict[str, _Spec] = {
    "ndm/irvine": _Spec("ndm/irvine", "user_comma_time", ("cascade.txt", "", "cascadetest.txt"),
                        embedded=True),
    "ndm/lastfm": _Spec("ndm/lastfm", "user_comma_time", ("cascade.txt", "", "cascadetest.txt"),
                        embedded=True),
    "ndm/memetracker": _Spec("ndm/memetracker", "user_comma_time",
                             ("cascade.txt", "", "cascadetest.txt"), embedded=True),
    "forest/twitter": _Spec("forest/twitter", "user_comma_time",
                            ("cascade.txt", "cascadevalid.txt", "cascadetest.txt"), f_init=1),
    "forest/memetracker": _Spec("forest/memetracker", "user_comma_time",
                                ("cascade.txt", "cascadevalid.txt", "cascadetest.txt")),
    "mshgat/twitter": _Spec("mshgat/twitter", "user_space_time", ("cascades.txt", "", ""),
                            f_init=1),
    "infvae/android": _Spec("infvae/android", "seed_then_pairs_relative",
                            ("train.txt", "val.txt", "test.txt"), graph="graph.txt",
                            graph_header=True),
    "infvae/christianity": _Spec("infvae/christianity", "seed_then_pairs_relative",
                                 ("train.txt", "val.txt", "test.txt"), graph="graph.txt",
                                 graph_header=True),
    "topolstm_twitter": _Spec("topolstm_twitter", "seed_then_pairs_absolute",
                              ("train.txt", "", "test.txt"), graph="graph.txt", f_init=1),
}


def default_f_init(name: str) -> int:
  """NDM's F_init for a dataset: 1 for the Twitter sets (paper Sec. 5.2), else 0."""
  return _spec(name).f_init


def _spec(name: str) -> _Spec:
  if name not in DATASETS:
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
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
  """Where the files of dataset ``name`` are: the package for embedded sets, else the data dir."""
  spec = _spec(name)
  root = resolve_data_dir(data_dir)
  if root is not None and (root / spec.folder).is_dir():
    return root / spec.folder
  if spec.embedded:
    return embedded_root() / spec.folder
  raise DataError(f"dataset {name!r} is not shipped with the package; pass data_dir= (or set "
                  f"POPDIFF_DATA_DIR) to a folder containing {spec.folder}/", None)


def _read(fmt: str, path: pathlib.Path, report: dict) -> list[RawCascade]:
  if fmt == "user_comma_time":
    return read_user_comma_time(path)
  if fmt == "user_space_time":
    return read_user_space_time(path, report)
  if fmt == "seed_then_pairs_relative":
    return read_seed_then_pairs(path, relative_times=True)
  if fmt == "seed_then_pairs_absolute":
    return read_seed_then_pairs(path, relative_times=False)
  raise ValueError(f"unknown format {fmt!r}")


def _index(raw: Sequence[RawCascade], vocab: UserVocab, report: dict) -> list[Cascade]:
  out = []
  for rc in raw:
    seen: set[int] = set()
    users, times = [], []
    for u, t in zip(rc.users, rc.times):
      idx = vocab.add(u)
      if idx in seen:
        report["repeats_dropped"] = report.get("repeats_dropped", 0) + 1
        continue
      seen.add(idx)
      users.append(idx)
      times.append(t)
    out.append(Cascade(np.asarray(users, np.int32), np.asarray(times, np.float64)))
  return out


def split_cascades(cascades: Sequence[Cascade], fractions: Sequence[float], how: str = "random",
                   seed: int = 0) -> list[list[Cascade]]:
  """Splits cascades into consecutive parts of the given fractions.

  Args:
    cascades: the cascades to split.
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


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, split: str = "files",
                 seed: int = 0, valid_fraction: float = 0.1,
                 fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> CascadeDataset:
  """Reads a registered dataset into a ``CascadeDataset``.

  Args:
    name: a key of ``DATASETS`` (``"ndm/lastfm"``, ``"forest/twitter"``, ``"infvae/android"``...).
    data_dir: folder holding the dataset folders (``shared/data``); embedded sets need none.
    split: ``"files"`` uses the dataset's own train/valid/test files; where a split file is missing,
      the missing part is drawn (seeded) from the training file (valid: ``valid_fraction`` of it) or,
      for a single-file dataset, the cascades are split by ``fractions``. ``"random"`` and ``"time"``
      pool all files and re-split by ``fractions`` (``"time"``: by first timestamp, latest to test).
    seed: seed of every random split.
    valid_fraction: share of the training file held out for validation when there is no valid file.
    fractions: train/valid/test shares for ``"random"``/``"time"`` and single-file datasets.

  Returns:
    The dataset, with ``report`` counting what the readers dropped.
  """
  spec = _spec(name)
  folder = dataset_folder(name, data_dir)
  report: dict = {}
  raw_parts = [_read(spec.fmt, folder / f, report) if f else None for f in spec.files]
  vocab = UserVocab()
  parts = [None if r is None else _index(r, vocab, report) for r in raw_parts]
  train, valid, test = parts
  how = "files"
  if split in ("random", "time"):
    pooled = [c for p in parts if p for c in p]
    train, valid, test = split_cascades(pooled, fractions, split, seed)
    how = f"{split} {fractions} (seed {seed})" if split == "random" else f"time {fractions}"
  elif split != "files":
    raise ValueError(f"split must be 'files', 'random' or 'time', got {split!r}")
  elif test is None:
    train, valid, test = split_cascades(train, fractions, "random", seed)
    how = f"random {fractions} (seed {seed}; the dataset has one file)"
  elif valid is None:
    train, valid = split_cascades(train, (1 - valid_fraction, valid_fraction), "random", seed)
    how = f"files; valid = {valid_fraction:.0%} of the training file (seed {seed})"

  graph = None
  if spec.graph:
    pairs = read_graph(folder / spec.graph, spec.graph_header)
    kept = [(vocab.index(u), vocab.index(v)) for u, v in pairs if u in vocab and v in vocab]
    report["graph_edges_outside_cascades"] = len(pairs) - len(kept)
    graph = np.asarray(kept, np.int32).reshape(-1, 2)
  return CascadeDataset(name, vocab, train, valid, test, graph, how, report, f_init=spec.f_init)


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
