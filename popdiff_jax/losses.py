"""The losses of the five papers: pure functions of predictions and targets, optax style.

Every function takes arrays (model outputs and the fields of a batch from ``popdiff_jax.types``)
and returns a scalar, or a ``(sum, count)`` pair where the caller chooses the normalisation.
Padding is masked with ``jnp.where`` before any log or division, and masked means divide by
``max(sum(mask), 1)``, so an all-padding batch gives a finite loss and finite gradients.

=============================  ===============================================================
loss                           paper
=============================  ===============================================================
:func:`next_user_nll`          NDM Eq. 8 (negated), the softmax over users not yet infected
:func:`lean_next_user_nll`     the same, streamed over blocks of users (no ``[B, L, U]``)
:func:`weighted_bce`           Diffusion-LSTM Eq. 2, class-balanced binary cross-entropy
:func:`dual_attention_loss`    dual attention Eq. 7 (binary cross-entropy; CCR's KL terms)
:func:`masked_mse`             fusion DNN and SMP: mean squared error of the regressors
=============================  ===============================================================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from popdiff_jax.nn.masking import mask_infected, shift_targets
from popdiff_jax.nn.streaming_softmax import DEFAULT_CHUNK, masked_logsumexp, target_scores
from popdiff_jax.types import TERMINATE

__all__ = ["masked_nll", "next_user_nll", "lean_next_user_nll", "weighted_bce", "class_weights",
           "sigmoid_binary_cross_entropy", "bernoulli_kl", "dual_attention_loss", "masked_mse"]


# ----------------------------------------------------------------------------- next user (NDM)


def _target_weights(targets: jax.Array, target_mask: jax.Array, terminate_weight: float,
                    dtype) -> jax.Array:
  """1 at the real targets, ``terminate_weight`` where the target is Terminate, 0 at padding."""
  w = jnp.where(targets == TERMINATE, jnp.asarray(terminate_weight, dtype), jnp.ones((), dtype))
  return jnp.where(target_mask, w, jnp.zeros((), dtype))


def masked_nll(masked_logits: jax.Array, targets: jax.Array, target_mask: jax.Array,
               terminate_weight: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """``Σ w_j · -log softmax(masked_logits)[target_j]`` over the real targets, and ``Σ w_j``.

  Args:
    masked_logits: float [B, L, U] scores with impossible users at ``-inf``.
    targets: int32 [B, L] the true next user of each step.
    target_mask: bool [B, L] steps that have a target.
    terminate_weight: ``w_j`` of a step whose target is Terminate (1: the paper's Eq. 8; 0:
      the authors' code, whose loss gives the end token zero weight); other targets weigh 1.

  Returns:
    ``(nll_sum, weight_sum)``, float [] each (``weight_sum`` is the number of targets when
    ``terminate_weight`` is 1).
  """
  log_probs = jax.nn.log_softmax(masked_logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  w = _target_weights(targets, target_mask, terminate_weight, masked_logits.dtype)
  # Padded steps pick the -inf padding column: zero them before summing (NaN-safe).
  nll = jnp.where(w > 0, -picked * w, 0.0)
  return nll.sum(), w.sum()


def next_user_nll(logits: jax.Array, users: jax.Array, mask: jax.Array,
                  terminate_weight: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Negative log-likelihood of the observed next users (NDM Eq. 8, negated), summed.

  ``-Σ_j log pre_j[u_{j+1}]`` with ``pre_j = softmax`` of the raw scores over the users not yet
  infected at step ``j`` (Eq. 7 and Sec. 4.5; Terminate included). Divide the sum by the count
  for the mean per prediction, or by the number of cascades for the authors' per-cascade sum.

  Args:
    logits: float [B, L, U] raw scores of a model (row ``j`` scores the user after step ``j``).
    users: int32 [B, L] the cascades (``CascadeBatch.users``).
    mask: bool [B, L] real positions (``CascadeBatch.mask``).
    terminate_weight: the weight of the predictions of Terminate (see :func:`masked_nll`).

  Returns:
    ``(nll_sum, count)``, float [] each (``count``: the summed weights).
  """
  targets, target_mask = shift_targets(users, mask)
  return masked_nll(mask_infected(logits, users, mask), targets, target_mask, terminate_weight)


def lean_next_user_nll(features: jax.Array, w: jax.Array, bias: jax.Array | None,
                       users: jax.Array, mask: jax.Array, chunk: int = DEFAULT_CHUNK,
                       terminate_weight: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """:func:`next_user_nll` of ``features @ w + bias`` without forming the ``[B, L, U]`` scores.

  The normaliser of Eq. 7 is streamed over blocks of ``chunk`` users in the forward and in the
  backward pass (``nn.streaming_softmax``); memory ``O(B·L·C + B·L²)``. Equal to the dense loss
  up to float rounding.

  Args:
    features: float [B, L, F] pre-output features (a model's ``output_features``).
    w: float [F, U] output weights; bias: float [U] or None.
    users: int32 [B, L]; mask: bool [B, L].
    chunk: users per block (static; clipped to U).
    terminate_weight: the weight of the predictions of Terminate (see :func:`masked_nll`).

  Returns:
    ``(nll_sum, count)``, float [] each (``count``: the summed weights).
  """
  t_score, targets, target_mask = target_scores(features, w, bias, users, mask)
  lse = masked_logsumexp(features, w, bias, users, mask, chunk)
  wgt = _target_weights(targets, target_mask, terminate_weight, features.dtype)
  nll = jnp.where(wgt > 0, (lse - t_score) * wgt, jnp.zeros_like(lse))
  return nll.sum(), wgt.sum()


# ----------------------------------------------------------------------------- trees (Diffusion-LSTM)


def weighted_bce(logits: jax.Array, targets: jax.Array, mask: jax.Array, w_pos: jax.Array,
                 w_neg: jax.Array) -> jax.Array:
  """Diffusion-LSTM Eq. 2: ``Σ_u -(1/N) Σ_n [w⁺_u t log o + w⁻_u (1 - t) log(1 - o)]``.

  ``o = σ(logits)``; ``N`` is the number of real nodes (at least 1).

  Args:
    logits: float [N, K1] pre-sigmoid scores (k prototypes and the terminal class).
    targets: float [N, K1] in {0, 1} (``TreeBatch.targets``).
    mask: bool [N] real nodes (``TreeBatch.node_mask``).
    w_pos, w_neg: float [K1] class weights from :func:`class_weights`.

  Returns:
    float [] loss.
  """
  logp = jax.nn.log_sigmoid(logits)
  log1mp = jax.nn.log_sigmoid(-logits)
  per = -(w_pos[None, :] * targets * logp + w_neg[None, :] * (1.0 - targets) * log1mp)
  per_node = jnp.where(mask, per.sum(-1), jnp.zeros((), per.dtype))
  denom = jnp.maximum(mask.sum(), 1).astype(per.dtype)
  return per_node.sum() / denom


def class_weights(pos_counts, neg_counts) -> tuple[jax.Array, jax.Array]:
  """The balancing weights of Eq. 2: ``w⁺ = N⁻ / (N⁻ + N⁺)``, ``w⁻ = N⁺ / (N⁻ + N⁺)`` per class.

  Args:
    pos_counts, neg_counts: [K1] training counts of positive and negative node targets.

  Returns:
    ``(w_pos, w_neg)``, float32 [K1] each.
  """
  pos = jnp.asarray(pos_counts, jnp.float32)
  neg = jnp.asarray(neg_counts, jnp.float32)
  tot = jnp.maximum(pos + neg, 1.0)
  return neg / tot, pos / tot


# ----------------------------------------------------------------------------- popularity


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Element-wise ``-[y log σ(x) + (1 - y) log(1 - σ(x))]``, stable for any logit.

  Args:
    logits: float [...]; labels: float [...] in [0, 1].
  """
  return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def bernoulli_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
  """Element-wise ``KL(Bern(σ(p)) || Bern(σ(q)))`` from logits, without ``log(0)``."""
  p = jax.nn.sigmoid(p_logits)
  return (p * (jax.nn.log_sigmoid(p_logits) - jax.nn.log_sigmoid(q_logits))
          + (1 - p) * (jax.nn.log_sigmoid(-p_logits) - jax.nn.log_sigmoid(-q_logits)))


def dual_attention_loss(outputs: dict, labels: jax.Array, mask: jax.Array, variant: str,
                        ccr_weight: float = 0.5) -> jax.Array:
  """Masked mean binary cross-entropy of the dual-attention classifier (Zhang et al. Eq. 7).

  ``late_fusion`` scores the mean of its two towers' probabilities; ``ccr`` (You et al. 2016)
  adds the BCE of the visual and textual heads and ``ccr_weight`` times the KL divergence from
  the fused prediction to each of them.

  Args:
    outputs: the model's output dict (``logit`` [B], ``prob`` [B], ``aux_logits`` [B, 3]).
    labels: float [B] in {0, 1} (``PostBatch.label``).
    mask: bool [B] real posts (``PostBatch.mask``).
    variant: the model variant (``models.dual_attention.VARIANTS``).
    ccr_weight: weight of CCR's consistency terms.

  Returns:
    float [] loss.
  """
  y = labels.astype(outputs["logit"].dtype)
  if variant == "late_fusion":
    p = jnp.clip(outputs["prob"], 1e-7, 1 - 1e-7)
    per = -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))
  elif variant == "ccr":
    aux = outputs["aux_logits"]
    lv, lt, lc = aux[:, 0], aux[:, 1], aux[:, 2]
    per = (sigmoid_binary_cross_entropy(lc, y) + sigmoid_binary_cross_entropy(lv, y)
           + sigmoid_binary_cross_entropy(lt, y)
           + ccr_weight * (bernoulli_kl(lc, lv) + bernoulli_kl(lc, lt)))
  else:
    per = sigmoid_binary_cross_entropy(outputs["logit"], y)
  per = jnp.where(mask, per, jnp.zeros_like(per))
  return jnp.sum(per) / jnp.maximum(jnp.sum(mask), 1).astype(per.dtype)


def masked_mse(predictions: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``(prediction - target)²`` over the real rows (fusion DNN, SMP).

  Args:
    predictions: float [B]; targets: float [B] (``PostBatch.target``); mask: bool [B].

  Returns:
    float [] loss.
  """
  err = jnp.where(mask, predictions - targets, jnp.zeros_like(predictions))
  return jnp.sum(err * err) / jnp.maximum(jnp.sum(mask), 1).astype(err.dtype)
