"""Readers of the cascade file layouts: each returns ``RawCascade`` lists (user ids as strings).

Layouts (``popdiff_jax.data.cascades.FORMATS`` names the formats built from them):

* ``user_comma_time`` (NDM's and FOREST's files): ``user,timestamp`` tokens separated by spaces.
* ``user_space_time`` (MS-HGAT's): ``user timestamp`` pairs separated by commas, trailing comma.
  The original Twitter file's last line ends in a bare user id with no timestamp; that token (only
  there: the last token of the file) is dropped and counted as ``truncated_tokens``.
* ``seed_then_pairs`` (Inf-VAE's, Topo-LSTM's): the seed user, then ``user time`` pairs. The seed's
  time is the first listed pair's time, clipped to 0 from above for Inf-VAE whose times are
  relative to the seed (so the seed is always first and the time order holds).
* ``csv`` (the plain format a person can write from a spreadsheet): a header line
  ``cascade,user,time`` and one row per infection, in any order; a cascade's rows are put in time
  order (stable: equal times keep their file order).
* graphs: ``u v`` per line (Inf-VAE's first line is a ``n_users n_edges`` header; Topo-LSTM's first
  line is a real edge, contrary to its own loader, and is kept), or a CSV with a header line
  ``source,target``.

Bad input raises :class:`~popdiff_jax.DataError` naming the file, the line and what was expected:
an empty file; a line with no users; a truncated line or a wrong number of columns; a
non-numeric or non-finite time; a token that is not ``user,time``; text that is not UTF-8.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import NamedTuple

from popdiff_jax._errors import DataError

__all__ = ["RawCascade", "read_user_comma_time", "read_user_space_time", "read_seed_then_pairs",
           "read_csv_cascades", "read_graph", "read_csv_graph"]


class RawCascade(NamedTuple):
  """A cascade as read, before users are indexed.

  Attributes:
    users: user ids in infection order.
    times: their times.
    path: the file it came from.
    line: its (first) line in that file, 1-based.
  """

  users: list[str]
  times: list[float]
  path: str
  line: int


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


CASCADE_CSV_HEADER = ("cascade", "user", "time")
GRAPH_CSV_HEADER = ("source", "target")


def _csv_rows(path: pathlib.Path, header: tuple[str, ...]):
  """``(line number, fields)`` of a comma-separated file whose first line is ``header``."""
  lines = _read_lines(path)
  got = tuple(f.strip().lower() for f in lines[0].split(","))
  if got != header:
    raise DataError(f"the first line must be the header {','.join(header)!r}, got "
                    f"{lines[0][:80]!r}", path, 1)
  if len(lines) == 1:
    raise DataError("no rows after the header", path)
  for n, text in enumerate(lines[1:], start=2):
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != len(header):
      raise DataError(f"expected {len(header)} comma-separated fields ({','.join(header)}), got "
                      f"{len(fields)}: {text[:80]!r}", path, n)
    if not all(fields):
      missing = header[[i for i, f in enumerate(fields) if not f][0]]
      raise DataError(f"empty {missing!r} field (a truncated line?)", path, n)
    yield n, fields


def read_csv_cascades(path: str | os.PathLike) -> list[RawCascade]:
  """Reads the plain cascade CSV: header ``cascade,user,time``, one row per infection.

  Cascades come in the order of their first row; a cascade's users are put in time order
  (stable). Example::

    cascade,user,time
    post1,alice,0
    post1,bob,3.5
    post2,carol,10
  """
  path = pathlib.Path(path)
  groups: dict[str, list[tuple[float, int, str]]] = {}
  first_line: dict[str, int] = {}
  for n, (cascade, user, time) in _csv_rows(path, CASCADE_CSV_HEADER):
    groups.setdefault(cascade, []).append((_parse_time(time, path, n), n, user))
    first_line.setdefault(cascade, n)
  out = []
  for cascade, rows in groups.items():
    rows.sort(key=lambda r: (r[0], r[1]))
    out.append(RawCascade([u for _, _, u in rows], [t for t, _, _ in rows], str(path),
                          first_line[cascade]))
  return out


def read_csv_graph(path: str | os.PathLike) -> list[tuple[str, str, int]]:
  """Reads an edge CSV: header ``source,target``; returns ``(source, target, line)`` triples."""
  path = pathlib.Path(path)
  return [(a, b, n) for n, (a, b) in _csv_rows(path, GRAPH_CSV_HEADER)]
