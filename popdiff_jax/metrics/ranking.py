"""Next-user ranking metrics (the protocol of FOREST / MS-HGAT): Hits@k and MAP@k over all users.

At every step the model ranks all users not yet infected (already-infected users and padding are
masked to ``-inf``); the metrics score the rank of the user actually infected next. MAP@k with one
relevant item is the mean of ``1/rank`` when ``rank <= k``, else 0.

Two conventions, both reported by :func:`next_user_sums`: **users only** (``hits@k``,
``map@k``: the field's, FOREST / MS-HGAT / DyHGCN: the steps whose target is a real user, ranked
among the users, Terminate not a candidate) and **with Terminate** (``hits@k_with_terminate``,
``map@k_with_terminate``: Terminate is a target after a cascade's last user and a candidate at
every step, as NDM's model has it). The users-only counts follow from the full ones by removing
the Terminate column's comparison, so both cost one pass.

Ties are broken uniformly at random *in expectation*: with ``g`` users scored above the target and
``e`` others scored equal, the target's rank is uniform on ``g+1 .. g+e+1`` and the metrics are their
exact expectations. Models with continuous scores have no ties, so this equals the usual strict rank;
for the popularity baseline (many users share a count) it avoids crediting ties optimistically.

Failure is never rewarded: a step whose scores hold a NaN or a ``+inf`` (a diverged model) gets
NaN Hits@k and MAP@k, so the batch sums and the epoch's means are NaN, instead of a NaN target
comparing "not below" every user and counting as a hit.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from popdiff_jax.losses import masked_nll
from popdiff_jax.nn.masking import mask_infected, shift_targets
from popdiff_jax.nn.streaming_softmax import DEFAULT_CHUNK, rank_counts
from popdiff_jax.types import TERMINATE

__all__ = ["target_rank_counts", "hits_and_map", "ranking_sums", "next_user_sums",
           "lean_ranking_sums"]

_EULER_GAMMA = 0.5772156649015329


def _harmonic(n: jax.Array) -> jax.Array:
  """H(n) = sum_{r=1}^n 1/r for real n >= 0 (via the digamma function)."""
  return jax.scipy.special.digamma(n + 1.0) + _EULER_GAMMA


def target_rank_counts(masked_logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """How many users score above, and equal to, each target (the target itself excluded).

  Args:
    masked_logits: float [..., U] scores with impossible users at ``-inf``.
    targets: int32 [...] the true next user.

  Returns:
    ``(greater, equal)``: float [...] counts; NaN where a score is NaN or ``+inf``.
  """
  t = jnp.take_along_axis(masked_logits, targets[..., None], axis=-1)
  greater = (masked_logits > t).sum(-1).astype(jnp.float32)
  equal = ((masked_logits == t).sum(-1) - 1).astype(jnp.float32)
  bad = (jnp.isnan(masked_logits) | (masked_logits == jnp.inf)).any(-1)
  nan = jnp.full_like(greater, jnp.nan)
  return jnp.where(bad, nan, greater), jnp.where(bad, nan, equal)


def hits_and_map(greater: jax.Array, equal: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Expected Hits@k and AP@k of a target with ``greater`` users above and ``equal`` tied with it
  (NaN counts give NaN)."""
  n_tied = equal + 1.0
  hits = jnp.clip((k - greater) / n_tied, 0.0, 1.0)
  top = jnp.minimum(jnp.float32(k), greater + n_tied)
  ap = jnp.where(top > greater, (_harmonic(top) - _harmonic(greater)) / n_tied, 0.0)
  ap = jnp.where(jnp.isnan(greater) | jnp.isnan(equal), jnp.full_like(ap, jnp.nan), ap)
  return hits, ap


def ranking_sums(masked_logits: jax.Array, targets: jax.Array, target_mask: jax.Array,
                 ks: Sequence[int] = (10, 50, 100)) -> dict[str, jax.Array]:
  """Sums of Hits@k and MAP@k over the real targets of a batch, plus their count.

  Args:
    masked_logits: float [B, L, U].
    targets: int32 [B, L].
    target_mask: bool [B, L] steps that have a target.
    ks: cut-offs.

  Returns:
    dict with ``hits@k``, ``map@k`` sums (float []) and ``count`` (float []).
  """
  greater, equal = target_rank_counts(masked_logits, targets)
  out = {"count": target_mask.astype(jnp.float32).sum()}
  for k in ks:
    hits, ap = hits_and_map(greater, equal, k)
    # where, not a product with the mask: a padded step never contributes, not even a NaN.
    out[f"hits@{k}"] = jnp.where(target_mask, hits, 0.0).sum()
    out[f"map@{k}"] = jnp.where(target_mask, ap, 0.0).sum()
  return out


def _both_conventions(greater, equal, t_score, term_score, targets, target_mask, ks, miss=None):
  """Sums of both conventions from the counts with Terminate (``t_score``: the target's score,
  ``term_score``: Terminate's score at each step, ``-inf`` where it is blocked; ``miss``: bool
  [B, L] targets that count as misses, or None)."""
  out = {"count": target_mask.astype(jnp.float32).sum()}
  users_only = target_mask & (targets != TERMINATE)
  # Users only: Terminate is no candidate; undo its comparison with the target.
  greater_u = greater - (term_score > t_score).astype(greater.dtype)
  equal_u = equal - (term_score == t_score).astype(equal.dtype)
  for k in ks:
    for suffix, g, e, m in (("", greater_u, equal_u, users_only),
                            ("_with_terminate", greater, equal, target_mask)):
      hits, ap = hits_and_map(g, e, k)
      if miss is not None:
        hits, ap = jnp.where(miss, 0.0, hits), jnp.where(miss, 0.0, ap)
      # where, not a product with the mask: a padded step never contributes, not even a NaN.
      out[f"hits@{k}{suffix}"] = jnp.where(m, hits, 0.0).sum()
      out[f"map@{k}{suffix}"] = jnp.where(m, ap, 0.0).sum()
      if not suffix:
        n = users_only.astype(jnp.float32).sum()
        out[f"count[hits@{k}]"] = out[f"count[map@{k}]"] = n
  return out


def _unknown_nll(sums, nll_mask, unknown):
  """Adds ``count[nll]``: with an ``unknown`` id, the NLL is the mean over the known targets."""
  if unknown is not None:
    sums["count[nll]"] = nll_mask.astype(jnp.float32).sum()
  return sums


def next_user_sums(logits: jax.Array, users: jax.Array, mask: jax.Array,
                   ks: Sequence[int] = (10, 50, 100),
                   unknown: int | None = None) -> dict[str, jax.Array]:
  """Hits@k and MAP@k (users only, and with Terminate) and NLL sums of a batch of raw scores.

  Infected users and padding are masked (``nn.masking``). ``nll`` is the training objective's
  (Eq. 8, Terminate a target), averaged over ``count``; the users-only sums are averaged over
  their own ``count[hits@k]`` (``training.evaluate`` divides each sum by its count).

  With ``unknown`` (the id that stands for every user unseen in training,
  ``data.cascades.UNKNOWN``) that id is never a candidate (its score is ``-inf``), a step whose
  target it is counts as a miss (Hits@k = AP@k = 0, still in ``count``), and the NLL is averaged
  over the other targets (``count[nll]``).

  Args:
    logits: float [B, L, U] raw scores (a next-user model's output).
    users: int32 [B, L]; mask: bool [B, L] (a ``CascadeBatch``).
    ks: cut-offs.
    unknown: the unknown user's id, or None.

  Returns:
    dict of float []: ``hits@k``, ``map@k``, ``hits@k_with_terminate``,
    ``map@k_with_terminate``, ``nll`` sums, ``count`` and the users-only ``count[...]``.
  """
  if unknown is not None:
    logits = logits.at[..., unknown].set(jnp.asarray(-jnp.inf, logits.dtype))
  targets, target_mask = shift_targets(users, mask)
  masked = mask_infected(logits, users, mask)
  greater, equal = target_rank_counts(masked, targets)
  t_score = jnp.take_along_axis(masked, targets[..., None], axis=-1)[..., 0]
  miss = None if unknown is None else targets == unknown
  sums = _both_conventions(greater, equal, t_score, masked[..., TERMINATE], targets,
                           target_mask, ks, miss)
  nll_mask = target_mask if miss is None else target_mask & ~miss
  sums["nll"], _ = masked_nll(masked, targets, nll_mask)
  return _unknown_nll(sums, nll_mask, unknown)


def lean_ranking_sums(features: jax.Array, w: jax.Array, bias: jax.Array | None,
                      users: jax.Array, mask: jax.Array, ks: Sequence[int] = (10, 50, 100),
                      chunk: int = DEFAULT_CHUNK,
                      unknown: int | None = None) -> dict[str, jax.Array]:
  """:func:`next_user_sums` of ``features @ w + bias``, streamed over blocks of users.

  Args:
    features: float [B, L, F]; w: float [F, U]; bias: float [U] or None.
    users: int32 [B, L]; mask: bool [B, L].
    ks: cut-offs.
    chunk: users per block (static).
    unknown: the unknown user's id, or None (as :func:`next_user_sums`).

  Returns:
    dict of float []: ``hits@k``, ``map@k`` sums, ``count`` and ``nll`` (summed over targets).
  """
  if unknown is not None:  # never a candidate: its score is -inf
    bias = jnp.zeros((w.shape[1],), w.dtype) if bias is None else bias
    bias = bias.at[unknown].set(jnp.asarray(-jnp.inf, bias.dtype))
  r = rank_counts(features, w, bias, users, mask, chunk)
  tm = r["target_mask"]
  # Terminate's own score at each step, -inf once it has occurred (as the dense mask has it).
  term = features @ w[:, TERMINATE] + (0.0 if bias is None else bias[TERMINATE])
  seen = jnp.cumsum(((users == TERMINATE) & mask).astype(jnp.int32), axis=1) > 0
  term = jnp.where(seen, jnp.asarray(-jnp.inf, term.dtype), term)
  miss = None if unknown is None else r["targets"] == unknown
  out = _both_conventions(r["greater"], r["equal"], r["target_score"], term, r["targets"], tm,
                          ks, miss)
  nll_mask = tm if miss is None else tm & ~miss
  nll = jnp.where(nll_mask, r["lse"] - r["target_score"], jnp.zeros_like(r["lse"]))
  out["nll"] = nll.sum()
  return _unknown_nll(out, nll_mask, unknown)
