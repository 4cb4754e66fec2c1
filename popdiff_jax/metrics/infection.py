"""NDM's microscopic diffusion-identification protocol (Yang et al., Sec. 5.3 and 5.5).

Protocol (paper text): for a test cascade c = (u_0, u_1, ...), only u_0 is given and the infected set
G^c = {u_1, ..., u_|G^c|} must be predicted. 1000 Monte Carlo runs per test cascade, each stopped at
|G^c| infected users (or at Terminate), give P^c_u = fraction of runs that infect u. Then

  pre_c = sum_{u in G^c} P^c_u / sum_{u in U} P^c_u,   rec_c = sum_{u in G^c} P^c_u / |G^c|,
  f_c = 2 pre_c rec_c / (pre_c + rec_c),                Macro-F1 = mean_c f_c,

and Micro-F1 uses the same sums pooled over cascades:
  pre = sum_c sum_{G^c} P / sum_c sum_U P,  rec = sum_c sum_{G^c} P / sum_c |G^c|,  F1 = 2 pre rec / (pre + rec).
Early stage (Table 3): G^c = the first five infected users after u_0, {u_1, ..., u_5}.

Which users are scored (our reading, since the paper's sum over U would otherwise always contain the
given u_0 with P = 1, a constant that no model can influence): the given seed users are excluded from
every sum (pass them in `exclude`, e.g. from `seed_mask`), as are vocabulary slots that are not users
(padding index 0 and the virtual Terminate index 1 of `popdiff_jax.data.cascades.UserVocab`). A
cascade with |G^c| = 0 (only the seed was observed) cannot be scored and is left out of both
averages; an all-zero row of P gives pre = rec = f = 0.

MSLE (Sec. 5.5): mean over cascades of (log |c| - log pred)^2, natural log. Sizes are clipped below
at 1 (a cascade holds at least its seed) so that the log is finite.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class InfectionF1(NamedTuple):
  """Scores of `infection_f1`.

  Attributes:
    macro_f1: float32 []; mean of f_c over scored cascades.
    micro_f1: float32 []; F1 of the pooled precision and recall.
    macro_precision: float32 []; mean pre_c (reported for diagnosis; not in the paper's tables).
    macro_recall: float32 []; mean rec_c.
    micro_precision: float32 []; pooled precision.
    micro_recall: float32 []; pooled recall.
    per_cascade_f1: float32 [C]; f_c (0 for cascades that are not scored).
    scored: bool [C]; cascades with |G^c| > 0 (and not masked out).
  """
  macro_f1: jax.Array
  micro_f1: jax.Array
  macro_precision: jax.Array
  macro_recall: jax.Array
  micro_precision: jax.Array
  micro_recall: jax.Array
  per_cascade_f1: jax.Array
  scored: jax.Array


def _safe_div(num, den):
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _f1(pre, rec):
  return _safe_div(2.0 * pre * rec, pre + rec)


@jax.jit
def infection_f1(probs, truth, exclude=None, cascade_mask=None) -> InfectionF1:
  """Macro- and Micro-F1 of per-user infection frequencies (NDM Sec. 5.3 equations).

  Args:
    probs: float [C, U]; P^c_u, the fraction of Monte Carlo runs of cascade c that infect user u.
    truth: bool [C, U]; u in G^c.
    exclude: optional bool [C, U]; users left out of every sum (the given seeds; padding and
      Terminate slots). Their P is treated as 0 and they are removed from G^c.
    cascade_mask: optional bool [C]; False for padding cascades.

  Returns:
    `InfectionF1`.
  """
  probs = jnp.asarray(probs, jnp.float32)
  truth = jnp.asarray(truth, bool)
  if exclude is not None:
    keep = ~jnp.asarray(exclude, bool)
    probs = jnp.where(keep, probs, 0.0)
    truth = truth & keep
  hit = jnp.sum(jnp.where(truth, probs, 0.0), axis=1)
  total = jnp.sum(probs, axis=1)
  size = jnp.sum(truth, axis=1).astype(jnp.float32)
  scored = size > 0
  if cascade_mask is not None:
    scored = scored & jnp.asarray(cascade_mask, bool)
  pre = _safe_div(hit, total)
  rec = _safe_div(hit, size)
  f = jnp.where(scored, _f1(pre, rec), 0.0)
  n = jnp.maximum(jnp.sum(scored), 1).astype(jnp.float32)
  w = scored.astype(jnp.float32)
  micro_pre = _safe_div(jnp.sum(w * hit), jnp.sum(w * total))
  micro_rec = _safe_div(jnp.sum(w * hit), jnp.sum(w * size))
  return InfectionF1(
      macro_f1=jnp.sum(f) / n,
      micro_f1=_f1(micro_pre, micro_rec),
      macro_precision=jnp.sum(w * pre) / n,
      macro_recall=jnp.sum(w * rec) / n,
      micro_precision=micro_pre,
      micro_recall=micro_rec,
      per_cascade_f1=f,
      scored=scored,
  )


@jax.jit
def msle(true_sizes, pred_sizes, mask=None):
  """Mean squared log error, mean_c (log |c| - log pred_c)^2 (NDM Sec. 5.5), sizes clipped at 1.

  Args:
    true_sizes: [C] observed final sizes |c|.
    pred_sizes: [C] predicted sizes (e.g. mean Monte Carlo spread).
    mask: optional bool [C]; False for padding cascades.

  Returns:
    float32 [].
  """
  t = jnp.log(jnp.maximum(jnp.asarray(true_sizes, jnp.float32), 1.0))
  p = jnp.log(jnp.maximum(jnp.asarray(pred_sizes, jnp.float32), 1.0))
  err = (t - p) ** 2
  if mask is None:
    return jnp.mean(err)
  m = jnp.asarray(mask, bool)
  return jnp.sum(jnp.where(m, err, 0.0)) / jnp.maximum(jnp.sum(m), 1).astype(jnp.float32)


def truth_masks(cascades: Sequence, num_users: int, *, num_given: int = 1,
                first_k: int | None = None, reserved: Sequence[int] = (0, 1)) -> tuple[np.ndarray, np.ndarray]:
  """Ground-truth infected sets G^c and the masks of users left out of scoring.

  Args:
    cascades: C cascades, each an int array of user indices in infection order, or an object with a
      `users` field (`popdiff_jax.data.cascades.Cascade`).
    num_users: U, the vocabulary size (`len(vocab)`).
    num_given: users given to the model at the start (1 in Sec. 5.3: only u_0).
    first_k: None for the full protocol (G^c = every later user); 5 for the early-stage protocol
      (G^c = the first five users after the given ones).
    reserved: vocabulary slots that are never users (padding 0, Terminate 1); always excluded.

  Returns:
    (truth bool [C, U], exclude bool [C, U]): exclude marks the given users and `reserved`.
  """
  c = len(cascades)
  truth = np.zeros((c, num_users), bool)
  exclude = np.zeros((c, num_users), bool)
  exclude[:, list(reserved)] = True
  for i, cas in enumerate(cascades):
    users = np.asarray(getattr(cas, "users", cas), np.int64)
    given = users[:num_given]
    rest = users[num_given:] if first_k is None else users[num_given:num_given + first_k]
    exclude[i, given] = True
    truth[i, rest] = True
  truth &= ~exclude
  return truth, exclude
