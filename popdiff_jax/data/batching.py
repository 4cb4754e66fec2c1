"""Static-shape batches of cascades: bucketed by length, padded, masked, nothing dropped."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.cascades import Cascade
from popdiff_jax.types import PAD, TERMINATE, CascadeBatch

__all__ = ["bucket_lengths", "sequence_length", "pack", "make_batches", "CascadeBatcher",
           "cascade_batch"]


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


class CascadeBatcher:
  """The batches of one set of cascades, packed once: each epoch only permutes and gathers rows.

  ``make_batches`` packs every cascade into its bucket's padded rows on every call (a Python loop
  per row); a training loop that asks for a new shuffle each epoch pays that once per epoch. The
  batcher packs each bucket into one ``[n, L]`` array at construction, and ``batches`` gathers the
  rows of each batch, so an epoch's batches cost a few array copies. The batches are the same as
  ``make_batches``'s with the same arguments, in the same order.

  Args:
    cascades: the cascades, uncut: one longer than ``max_len`` is cut here, without Terminate.
    batch_size: rows per batch (B).
    max_len: the longest cascade in users.
    buckets: token lengths; default ``bucket_lengths(max_len)``.
  """

  def __init__(self, cascades: Sequence[Cascade], batch_size: int, *, max_len: int = 200,
               buckets: Sequence[int] | None = None):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.batch_size = batch_size
    self.buckets = tuple(buckets or bucket_lengths(max_len))
    lengths = np.asarray([sequence_length(c, max_len) for c in cascades], np.int64)
    if len(lengths) and lengths.max() > self.buckets[-1]:
      raise ValueError(f"a cascade needs {lengths.max()} tokens, more than the largest bucket "
                       f"{self.buckets[-1]}")
    which = np.searchsorted(np.asarray(self.buckets), lengths, side="left")
    #: per bucket: the indices of its cascades (input order) and their packed rows.
    self._members = [np.flatnonzero(which == b) for b in range(len(self.buckets))]
    self._packed = [pack([cascades[i] for i in idx], size, len(idx), max_len)
                    for idx, size in zip(self._members, self.buckets)]

  def __len__(self) -> int:
    return sum(-(-len(idx) // self.batch_size) for idx in self._members)

  def batches(self, *, shuffle: bool = False, seed: int = 0, epoch: int = 0) -> list[CascadeBatch]:
    """One epoch's batches; with ``shuffle`` the order inside each bucket and the order of
    batches are permuted by ``(seed, epoch)`` (as ``make_batches``)."""
    rng = np.random.default_rng([seed, epoch]) if shuffle else None
    out = []
    for idx, rows in zip(self._members, self._packed):
      # positions into the bucket's packed rows, which follow ``idx``; ``permutation(n)``
      # draws the same permutation as ``permutation(idx)`` would
      order = np.arange(idx.size) if rng is None else rng.permutation(idx.size)
      for start in range(0, len(idx), self.batch_size):
        take = order[start:start + self.batch_size]
        out.append(_gather_rows(rows, take, self.batch_size))
    if rng is not None:
      out = [out[i] for i in rng.permutation(len(out))]
    return out


def _gather_rows(rows: CascadeBatch, take: np.ndarray, batch_size: int) -> CascadeBatch:
  """Rows ``take`` of a packed bucket, padded with empty rows to ``batch_size``."""
  pad = batch_size - len(take)

  def one(x, fill):
    got = x[take]
    if pad:
      got = np.concatenate([got, np.full((pad,) + x.shape[1:], fill, x.dtype)])
    return got
  return CascadeBatch(one(rows.users, PAD), one(rows.times, 0.0), one(rows.mask, False))


def make_batches(cascades: Sequence[Cascade], batch_size: int, *, max_len: int = 200,
                 buckets: Sequence[int] | None = None, shuffle: bool = False, seed: int = 0,
                 epoch: int = 0) -> list[CascadeBatch]:
  """Groups cascades by bucket and packs each group into batches of ``batch_size`` rows.

  Every cascade lands in exactly one batch (the last batch of a bucket is padded with empty rows), so
  evaluation sees all data. With ``shuffle`` the order inside each bucket and the order of batches are
  permuted by ``(seed, epoch)``, deterministically, so a resumed run sees the same batches. For
  many epochs of one set, :class:`CascadeBatcher` packs once and gives the same batches.

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
  return CascadeBatcher(cascades, batch_size, max_len=max_len, buckets=buckets).batches(
      shuffle=shuffle, seed=seed, epoch=epoch)


def cascade_batch(cascades: Sequence[Sequence[int] | tuple[Sequence[int], Sequence[float]]], *,
                  max_len: int | None = None, rows: int | None = None) -> CascadeBatch:
  """A :class:`CascadeBatch` from plain Python lists.

  Args:
    cascades: one list of user indices per cascade, in infection order (indices >= 2: 0 is
      padding and 1 is Terminate, as in every vocabulary of the library), or ``(users, times)``
      pairs. Terminate is appended to each cascade that is not cut.
    max_len: cut cascades to this many users (default: the longest; a cut one gets no Terminate).
    rows: batch rows B (default: the number of cascades; more rows are padding).

  Returns:
    ``CascadeBatch`` with ``users`` int32 [B, L], ``times`` float32 [B, L], ``mask`` bool [B, L];
    L is the smallest static bucket length (``bucket_lengths``) that holds the longest cascade.

  Raises:
    DataError: an empty cascade, a user index < 2, non-integer users, or times of another length.
  """
  parsed = []
  for i, c in enumerate(cascades):
    users, times = (c if isinstance(c, tuple) and len(c) == 2 else (c, None))
    try:
      u = np.asarray(users, np.int64)
    except (TypeError, ValueError, OverflowError):
      raise DataError(f"cascade {i}: users must be integers, got {users!r}"[:200]) from None
    if u.ndim != 1 or u.size == 0:
      raise DataError(f"cascade {i} is empty or not a flat list")
    if (u < 2).any() or (u >= 2**31).any():
      raise DataError(f"cascade {i}: user indices must be in [2, 2^31) (0 = padding, 1 = "
                      f"Terminate), got {int(u.min()) if (u < 2).any() else int(u.max())}")
    t = np.arange(u.size, dtype=np.float64) if times is None else np.asarray(times, np.float64)
    if t.shape != u.shape or not np.isfinite(t).all():
      raise DataError(f"cascade {i}: {t.size} times for {u.size} users, or a non-finite time")
    parsed.append(Cascade(users=u.astype(np.int32), times=t))
  if not parsed:
    raise DataError("no cascades")
  max_len = max(len(c.users) for c in parsed) if max_len is None else max_len
  need = max(sequence_length(c, max_len) for c in parsed)
  length = next(b for b in bucket_lengths(max_len) if b >= need)
  return pack(parsed, length, len(parsed) if rows is None else rows, max_len)
