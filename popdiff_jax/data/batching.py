"""Static-shape batches of cascades: bucketed by length, padded, masked, nothing dropped."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from popdiff_jax.data.cascades import Cascade
from popdiff_jax.types import PAD, TERMINATE, CascadeBatch


def bucket_lengths(max_len: int = 200, min_bucket: int = 8) -> tuple[int, ...]:
  """Token lengths of the buckets: powers of two from ``min_bucket``, the last one ``max_len + 1``.

  A cascade of ``n <= max_len`` users takes ``n + 1`` tokens (users and Terminate).
  """
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}")
  top = max_len + 1
  sizes = []
  b = min_bucket
  while b < top:
    sizes.append(b)
    b *= 2
  sizes.append(top)
  return tuple(sizes)


def sequence_length(cascade: Cascade, max_len: int) -> int:
  """Tokens a cascade takes: its users plus Terminate (none when cut at ``max_len``)."""
  n = len(cascade.users)
  return n + 1 if n <= max_len else max_len


def pack(cascades: Sequence[Cascade], length: int, rows: int, max_len: int) -> CascadeBatch:
  """Pads ``cascades`` (at most ``rows``, each fitting ``length`` tokens) into one batch."""
  if len(cascades) > rows:
    raise ValueError(f"{len(cascades)} cascades do not fit a batch of {rows} rows")
  users = np.full((rows, length), PAD, np.int32)
  times = np.zeros((rows, length), np.float32)
  mask = np.zeros((rows, length), bool)
  for r, c in enumerate(cascades):
    n = min(len(c.users), max_len)
    t = np.asarray(c.times[:n], np.float64)
    t = (t - t[0]).astype(np.float32) if n else t.astype(np.float32)
    tokens = sequence_length(c, max_len)
    if tokens > length:
      raise ValueError(f"a cascade of {tokens} tokens does not fit length {length}")
    users[r, :n] = c.users[:n]
    times[r, :n] = t
    if tokens > n:  # the cascade ended: append Terminate
      users[r, n] = TERMINATE
      times[r, n] = t[-1] if n else 0.0
    mask[r, :tokens] = True
  return CascadeBatch(users, times, mask)


def make_batches(cascades: Sequence[Cascade], batch_size: int, *, max_len: int = 200,
                 buckets: Sequence[int] | None = None, shuffle: bool = False, seed: int = 0,
                 epoch: int = 0) -> list[CascadeBatch]:
  """Groups cascades by bucket and packs each group into batches of ``batch_size`` rows.

  Every cascade lands in exactly one batch (the last batch of a bucket is padded with empty rows), so
  evaluation sees all data. With ``shuffle`` the order inside each bucket and the order of batches are
  permuted by ``(seed, epoch)``, deterministically, so a resumed run sees the same batches.

  Args:
    cascades: the cascades, uncut: one longer than ``max_len`` is cut here, without Terminate.
    batch_size: rows per batch (B).
    max_len: the longest cascade in users.
    buckets: token lengths; default ``bucket_lengths(max_len)``.
    shuffle: shuffle for training.
    seed, epoch: the shuffle's seed.

  Returns:
    A list of ``CascadeBatch`` with one of ``len(buckets)`` shapes.
  """
  buckets = tuple(buckets or bucket_lengths(max_len))
  lengths = np.asarray([sequence_length(c, max_len) for c in cascades], np.int64)
  if len(lengths) and lengths.max() > buckets[-1]:
    raise ValueError(f"a cascade needs {lengths.max()} tokens, more than the largest bucket "
                     f"{buckets[-1]}")
  which = np.searchsorted(np.asarray(buckets), lengths, side="left")
  rng = np.random.default_rng([seed, epoch]) if shuffle else None
  out = []
  for b, size in enumerate(buckets):
    idx = np.flatnonzero(which == b)
    if rng is not None:
      idx = rng.permutation(idx)
    for start in range(0, len(idx), batch_size):
      chunk = [cascades[i] for i in idx[start:start + batch_size]]
      out.append(pack(chunk, size, batch_size, max_len))
  if rng is not None:
    out = [out[i] for i in rng.permutation(len(out))]
  return out
