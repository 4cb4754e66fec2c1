"""NDM's output softmax over users (Eq. 7) streamed in blocks: no ``[B, L, U]`` in memory.

Every next-user model here ends in a linear read-out, ``scores = features @ w + bias`` with
``features [B, L, F]`` and ``w [F, U]`` (the ``output_features`` of NDM and the LSTM). The dense
path (``nn.masking`` and ``losses.next_user_nll``) forms the ``[B, L, U]`` scores, masks the
already-infected users and takes a log-softmax; with 1M users and 500-long cascades one batch of
32 is 64 GB of scores. The functions here stream over chunks of ``C`` users (columns of ``w``):

* **Loss** (``masked_logsumexp``, used by ``losses.lean_next_user_nll``): an online log-sum-exp
  over the chunks (running max and sum, as in FlashAttention), so the forward pass holds one
  ``[B, L, C]`` block at a time. A ``jax.custom_vjp`` makes the backward pass stream too: it
  recomputes each block's scores and accumulates ``d features = P @ w_c^T``,
  ``d w_c = features^T P`` and ``d bias_c = sum P`` with ``P`` the softmax restricted to the
  block (the target's ``-1`` comes from plain autodiff of its own score). Without it,
  ``lax.scan``'s autodiff would keep every block, i.e. ``[B, L, U]``.
* **Metrics** (``rank_counts``, used by ``metrics.ranking.lean_ranking_sums``): the target's
  rank needs only how many allowed users score above it and how many tie with it, counted block
  by block; no top-k over ``U``. The tie rule is ``metrics.ranking``'s (expected Hits@k / AP@k
  under random tie-breaking).

Excluding the infected users: one could subtract their ``exp`` scores (gathered through
their own columns) from the full sum. That cancels catastrophically in float32 once the infected
users hold most of the probability mass, which a trained model allows (nothing pushes their scores
down: they are always masked). So each block is masked exactly instead, from a scatter of ``B * L``
infection steps into a ``[B, C]`` table (``first infection step of each user of the block``): no
``[B, L, U]`` mask, no ``[B, U]`` table, and no cancellation. Memory: ``O(B * L * C + B * L * L)``
(the second term for "is the target itself already infected", ``[B, L, L]``) plus the parameters.

The semantics are exactly ``nn.masking``'s: padding (user 0) is never allowed; a user at a
real position ``k <= j`` is blocked at step ``j`` (Terminate included, once it has occurred); a
target that is itself blocked scores ``-inf`` (infinite NLL, ranked below every allowed user).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from popdiff_jax.nn.masking import shift_targets
from popdiff_jax.types import PAD

__all__ = ["DEFAULT_CHUNK", "masked_logsumexp", "target_scores", "rank_counts", "auto_chunk"]

DEFAULT_CHUNK = 8192


def _num_chunks(num_items: int, chunk: int) -> tuple[int, int]:
  """``(chunk, n_chunks)`` with the chunk clipped to ``num_items``."""
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  chunk = min(chunk, num_items)
  return chunk, -(-num_items // chunk)


def _block(features: jax.Array, w: jax.Array, bias: jax.Array, users: jax.Array, mask: jax.Array,
           i: jax.Array, chunk: int
           ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """Scores of the ``i``-th block of users and which of them take part.

  Block ``i`` covers users ``[i * C, (i + 1) * C)``; the last block, when ``C`` does not divide
  ``U``, is read at ``U - C`` (so every slice has the static size ``C``) and its columns below
  ``i * C``, already covered by block ``i - 1``, are marked invalid.

  Returns:
    ``(start, cols int32 [C], scores float [B, L, C], valid bool [C], blocked bool [B, L, C])``;
    ``blocked`` marks padding and users infected at or before each step.
  """
  b, length = users.shape
  num_items = w.shape[1]
  lo = i * chunk
  start = jnp.minimum(lo, num_items - chunk)
  w_c = jax.lax.dynamic_slice_in_dim(w, start, chunk, axis=1)
  b_c = jax.lax.dynamic_slice_in_dim(bias, start, chunk)
  scores = jnp.einsum("blf,fc->blc", features, w_c) + b_c[None, None, :]
  cols = start + jnp.arange(chunk, dtype=jnp.int32)
  valid = cols >= lo
  # First infection step of each user of the block ([B, C]); users outside the block are dropped.
  steps = jnp.where(mask, jnp.arange(length, dtype=jnp.int32)[None, :], length)
  local = users - start
  local = jnp.where((local >= 0) & (local < chunk), local, chunk)
  first = jnp.full((b, chunk), length, jnp.int32).at[
      jnp.arange(b, dtype=jnp.int32)[:, None], local].min(steps, mode="drop")
  blocked = first[:, None, :] <= jnp.arange(length, dtype=jnp.int32)[None, :, None]
  blocked = blocked | (cols == PAD)[None, None, :]
  return start, cols, scores, valid, blocked


def _lse_fwd_loop(features, w, bias, users, mask, chunk):
  chunk, n = _num_chunks(w.shape[1], chunk)
  shape = users.shape
  neg_inf = jnp.asarray(-jnp.inf, features.dtype)

  def body(i, carry):
    m, s = carry
    _, _, scores, valid, blocked = _block(features, w, bias, users, mask, i, chunk)
    scores = jnp.where(blocked | ~valid[None, None, :], neg_inf, scores)
    new_m = jnp.maximum(m, scores.max(-1))
    # All-blocked so far: keep the sum at 0 without exp(-inf - -inf) = NaN.
    safe = jnp.where(jnp.isfinite(new_m), new_m, jnp.zeros_like(new_m))
    s = s * jnp.exp(m - safe) + jnp.exp(scores - safe[..., None]).sum(-1)
    return new_m, s

  m0 = jnp.full(shape, neg_inf)
  s0 = jnp.zeros(shape, features.dtype)
  m, s = jax.lax.fori_loop(0, n, body, (m0, s0))
  safe = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
  return jnp.where(s > 0, safe + jnp.log(jnp.where(s > 0, s, jnp.ones_like(s))), neg_inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _masked_lse(features, w, bias, users, mask, chunk):
  return _lse_fwd_loop(features, w, bias, users, mask, chunk)


def _masked_lse_fwd(features, w, bias, users, mask, chunk):
  lse = _lse_fwd_loop(features, w, bias, users, mask, chunk)
  return lse, (features, w, bias, users, mask, lse)


def _masked_lse_bwd(chunk, res, g):
  features, w, bias, users, mask, lse = res
  chunk, n = _num_chunks(w.shape[1], chunk)
  finite = jnp.isfinite(lse)
  lse_safe = jnp.where(finite, lse, jnp.zeros_like(lse))
  g = jnp.where(finite, g, jnp.zeros_like(g))

  def body(i, carry):
    d_feat, d_w, d_bias = carry
    start, _, scores, valid, blocked = _block(features, w, bias, users, mask, i, chunk)
    # P = softmax over the allowed users of the block, times the incoming cotangent.
    p = jnp.exp(scores - lse_safe[..., None]) * g[..., None]
    p = jnp.where(blocked | ~valid[None, None, :], jnp.zeros_like(p), p)
    w_c = jax.lax.dynamic_slice_in_dim(w, start, chunk, axis=1)
    d_feat = d_feat + jnp.einsum("blc,fc->blf", p, w_c)
    # Invalid columns carry P = 0, so adding over the overlap of the last block is exact.
    d_w_c = jax.lax.dynamic_slice_in_dim(d_w, start, chunk, axis=1) + jnp.einsum(
        "blf,blc->fc", features, p)
    d_w = jax.lax.dynamic_update_slice_in_dim(d_w, d_w_c, start, axis=1)
    d_b_c = jax.lax.dynamic_slice_in_dim(d_bias, start, chunk) + p.sum((0, 1))
    d_bias = jax.lax.dynamic_update_slice_in_dim(d_bias, d_b_c, start, axis=0)
    return d_feat, d_w, d_bias

  init = (jnp.zeros_like(features), jnp.zeros_like(w), jnp.zeros_like(bias))
  d_feat, d_w, d_bias = jax.lax.fori_loop(0, n, body, init)
  return d_feat, d_w, d_bias, None, None


_masked_lse.defvjp(_masked_lse_fwd, _masked_lse_bwd)


def masked_logsumexp(features: jax.Array, w: jax.Array, bias: jax.Array | None, users: jax.Array,
                     mask: jax.Array, chunk: int = DEFAULT_CHUNK) -> jax.Array:
  """``log sum_u exp(features @ w + bias)`` over users not yet infected (Eq. 7's normaliser).

  Equals ``logsumexp(mask_infected(features @ w + bias, users, mask), -1)`` with ``O(B * L * C)``
  memory in both the forward and the backward pass.

  Args:
    features: float [B, L, F] pre-output features (``output_features`` of a model).
    w: float [F, U] output weights.
    bias: float [U] or None.
    users: int32 [B, L] the cascades.
    mask: bool [B, L] real positions.
    chunk: users per block C (static; clipped to U; need not divide U).

  Returns:
    float [B, L]; ``-inf`` where every user is blocked.
  """
  _num_chunks(w.shape[1], chunk)
  if bias is None:
    bias = jnp.zeros((w.shape[1],), w.dtype)
  return _masked_lse(features, w, bias, users, mask, chunk)


def target_scores(features: jax.Array, w: jax.Array, bias: jax.Array | None, users: jax.Array,
                  mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The raw score of each step's target, ``-inf`` where the target is already infected or padding.

  Args:
    features: float [B, L, F]; w: float [F, U]; bias: float [U] or None.
    users: int32 [B, L]; mask: bool [B, L].

  Returns:
    ``(scores float [B, L], targets int32 [B, L], target_mask bool [B, L])`` as in
    ``shift_targets``.
  """
  targets, target_mask = shift_targets(users, mask)
  raw = jnp.einsum("blf,fbl->bl", features, jnp.take(w, targets, axis=1))
  if bias is not None:
    raw = raw + bias[targets]
  length = users.shape[1]
  # [B, L, L]: target of step j equals the user at real position k <= j.
  earlier = jnp.tril(jnp.ones((length, length), bool))[None]
  hit = (users[:, None, :] == targets[:, :, None]) & mask[:, None, :] & earlier
  blocked = hit.any(-1) | (targets == PAD)
  return jnp.where(blocked, jnp.asarray(-jnp.inf, raw.dtype), raw), targets, target_mask


def rank_counts(features: jax.Array, w: jax.Array, bias: jax.Array | None, users: jax.Array,
                     mask: jax.Array, chunk: int = DEFAULT_CHUNK) -> dict[str, jax.Array]:
  """Per step: users scored above / tied with the target, and the log-normaliser, in one pass.

  ``greater`` and ``equal`` are ``metrics.ranking.target_rank_counts`` of the masked scores
  (blocked users at ``-inf``; the target itself not counted), counted block by block.

  Returns:
    dict of float [B, L]: ``greater``, ``equal`` (NaN where an allowed score is NaN or
    ``+inf``), ``lse``, ``target_score``; and ``targets`` (int32 [B, L]), ``target_mask``
    (bool [B, L]).
  """
  chunk, n = _num_chunks(w.shape[1], chunk)
  if bias is None:
    bias = jnp.zeros((w.shape[1],), w.dtype)
  t_score, targets, target_mask = target_scores(features, w, bias, users, mask)
  neg_inf = jnp.asarray(-jnp.inf, features.dtype)

  def body(i, carry):
    greater, equal, m, s, bad = carry
    _, cols, scores, valid, blocked = _block(features, w, bias, users, mask, i, chunk)
    nonfinite = valid[None, None, :] & ~blocked & (jnp.isnan(scores) | (scores == jnp.inf))
    bad = bad | nonfinite.any(-1)
    scores = jnp.where(blocked, neg_inf, scores)
    counted = valid[None, None, :] & (cols[None, None, :] != targets[..., None])
    t = t_score[..., None]
    greater = greater + (counted & (scores > t)).sum(-1, dtype=jnp.int32)
    equal = equal + (counted & (scores == t)).sum(-1, dtype=jnp.int32)
    allowed = jnp.where(valid[None, None, :], scores, neg_inf)
    new_m = jnp.maximum(m, allowed.max(-1))
    safe = jnp.where(jnp.isfinite(new_m), new_m, jnp.zeros_like(new_m))
    s = s * jnp.exp(m - safe) + jnp.exp(allowed - safe[..., None]).sum(-1)
    return greater, equal, new_m, s, bad

  zeros = jnp.zeros(users.shape, jnp.int32)
  init = (zeros, zeros, jnp.full(users.shape, neg_inf), jnp.zeros(users.shape, features.dtype),
          jnp.isnan(t_score) | (t_score == jnp.inf))
  greater, equal, m, s, bad = jax.lax.fori_loop(0, n, body, init)
  safe = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
  lse = jnp.where(s > 0, safe + jnp.log(jnp.where(s > 0, s, jnp.ones_like(s))), neg_inf)
  nan = jnp.full(users.shape, jnp.nan, jnp.float32)
  return {"greater": jnp.where(bad, nan, greater.astype(jnp.float32)),
          "equal": jnp.where(bad, nan, equal.astype(jnp.float32)), "lse": lse,
          "target_score": t_score, "targets": targets, "target_mask": target_mask}


def auto_chunk(batch: int, length: int, num_items: int, max_elements: int = 2 ** 26) -> int:
  """A block size for ``[B, L, C]`` blocks of at most about ``max_elements`` (256 MB in float32).

  Short buckets get wide blocks, long ones narrow blocks; the blocks are balanced (``U`` split into
  ``n`` near-equal blocks, rounded up to a multiple of 128), so the last block re-reads few columns.
  """
  widest = max(128, max_elements // max(batch * length, 1))
  n = -(-num_items // widest)
  c = -(-num_items // n)
  return min(num_items, -(-c // 128) * 128)
