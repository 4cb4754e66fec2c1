"""Dual-attention popularity classifier (Zhang, Li, Chen, Zhou & Luo 2019), baselines and ablations.

Inputs per post (fields of :class:`~popdiff_jax.types.PostBatch`): image feature V (``image``,
d1; the paper's ResNet-50 pool vector, here the alt-text concept vector or any precomputed dense
vector), caption ``tokens`` and the user environment: image environment I_e (``env_image``, the
mean V of the user's posts) and topic environment T_e (``env_topic``, the mean LDA vector).

Full model (``variant="dual_attention"``):

* Caption: word embedding -> one-layer LSTM (``nn.lstm_scan``) -> Qᵉ = (q₁ᵉ … q_Tᵉ), d2 per word.
* Explicit attention, Eq. (1)-(3): A = tanh((Qᵉ)ᵀ W_a V) (T × 1);
  Hq = tanh(W_q Qᵉ + A · W_v V) (k per word, k = 128); aq = softmax_t(W_h Hq);
  V̂ = F2(F1(V)); Q̂ = Σ_t aq_t qᵉ_t.
* Implicit attention, Eq. (4)-(5): F = relu(W_i I_e) ⊙ relu(W_t T_e);
  H = W_i2 I_e + W_t2 T_e + F; e_w = FC(H).
* Output, Eq. (6)-(7): h_w = V̂ + Q̂; O1 = relu(W1 [h_w, e_w]); O2 = sigmoid(W2 O1); BCE
  (``losses.dual_attention_loss``).

Baselines (Table I) and ablations (Table II), all with the same encoders:

* ``visual``: V̂ -> O1 -> O2.   ``textual``: last LSTM state q_T -> O1 -> O2.
* ``early_fusion``: [V̂, q_T] -> O1 -> O2.
* ``late_fusion``: the mean of the visual and the textual towers' probabilities.
* ``ccr`` (You et al. 2016): visual, textual and fused heads, each with BCE, plus the KL
  divergence from the fused prediction to each single-modality prediction; the fused head
  predicts.
* ``similarity`` (after Fang et al. 2015): the element-wise product of the L2-normalised V̂ and q_T
  (whose sum is their cosine) -> O1 -> O2.
* ``e_attn``: h_w = V̂ + Q̂ -> O1 -> O2 (explicit attention alone).
* ``env``: [V̂, q_T] with the environment concatenated through one FC layer,
  e = relu(FC([I_e, T_e])).
* ``env_iattn``: [V̂, q_T] with the implicit-attention environment e_w.
* ``e_attn_env``: h_w = V̂ + Q̂ with the concatenated environment.

Deviations and choices where the paper is silent: F1 is followed by ReLU and F2 is linear (so V̂
lives in the LSTM's space like Q̂); O1 has ``out_dim`` units (default 256); FC of Eq. (5) is
ReLU(Linear) to ``env_dim``; attention over padded words is masked (logit -1e9 before the
softmax); biases are kept (the paper omits them in notation only); no dropout (none in the
paper). The paper uses 512-D word embeddings and LSTM states (the defaults here).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax import _validate as v
from popdiff_jax._errors import ConfigError
from popdiff_jax.nn.lstm import lstm_scan
from popdiff_jax.types import PostBatch

__all__ = ["VARIANTS", "DualAttentionConfig", "DualAttention", "CaptionEncoder",
           "ExplicitAttention", "ImplicitAttention"]

VARIANTS = ("visual", "textual", "early_fusion", "late_fusion", "ccr", "similarity", "e_attn",
            "env", "env_iattn", "e_attn_env", "dual_attention")
_USES_EXPLICIT = ("e_attn", "e_attn_env", "dual_attention")
_ENV = {"env": "concat", "e_attn_env": "concat", "env_iattn": "implicit",
        "dual_attention": "implicit"}


@dataclasses.dataclass(frozen=True)
class DualAttentionConfig:
  """The dual-attention classifier's hyperparameters (Zhang et al. Sec. III and IV-A).

  Attributes:
    vocab_size: caption vocabulary size (0 = padding); set from the data (0 until then).
    image_dim: width d1 of the image feature V and of I_e; set from the data.
    topic_dim: width of the topic environment T_e (LDA topics, paper 400); set from the data.
    variant: the full model or one of its baselines / ablations (``VARIANTS``).
    embed_dim: word-embedding width (paper: 512).
    hidden_dim: LSTM width d2, also the width of V̂ (paper: 512).
    attn_dim: k, the width of Hq in Eq. (2) (paper: 128).
    env_dim: width of the environment feature e_w; None = ``hidden_dim``.
    out_dim: units of O1 (the paper does not say).
  """

  name: ClassVar[str] = "dual_attention"
  vocab_size: int = 0
  image_dim: int = 0
  topic_dim: int = 0
  variant: str = "dual_attention"
  embed_dim: int = 512
  hidden_dim: int = 512
  attn_dim: int = 128
  env_dim: int | None = None
  out_dim: int = 256

  def __post_init__(self):
    v.non_negative(self, "vocab_size", "image_dim", "topic_dim")
    v.one_of(self, "variant", VARIANTS)
    v.positive(self, "embed_dim", "hidden_dim", "attn_dim", "out_dim")
    v.positive(self, "env_dim", allow_none=True)


class CaptionEncoder(nnx.Module):
  """Word embedding and the one-layer caption LSTM (gates ``(i, f, g, o)``, ``nn.lstm_scan``).

  Weights: the embedding as ``nnx.Embed`` initialises it (unit-variance normal), input weights
  ``W`` LeCun-normal with a zero bias ``b``, recurrent weights ``U`` LeCun-normal. The keys are
  drawn in the order embedding, ``W``, ``b``, ``U``: the order of an ``nnx.Linear(E, 4H)``
  (kernel, bias) followed by an ``nnx.Linear(H, 4H, use_bias=False)``, so a seed gives the same
  weights as those two layers would.
  """

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, *, rngs: nnx.Rngs):
    self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
    kernel = nnx.initializers.lecun_normal()
    self.w_x = nnx.Param(kernel(rngs.params(), (embed_dim, 4 * hidden_dim)))
    self.b = nnx.Param(nnx.initializers.zeros(rngs.params(), (4 * hidden_dim,)))
    self.w_h = nnx.Param(kernel(rngs.params(), (hidden_dim, 4 * hidden_dim)))

  def __call__(self, tokens: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Word features and the caption's last state.

    Args:
      tokens: int32 [B, T] word ids (0 = padding).
      mask: bool [B, T] real words (a prefix of each row).

    Returns:
      ``(Qᵉ float [B, T, d2] with zeros at padded words, q_T float [B, d2])``: q_T is the state
      after the last real word (zeros for an empty caption).
    """
    gates_x = self.embed(tokens) @ self.w_x[...] + self.b[...][None, None, :]
    qe, _, (q_last, _) = lstm_scan(gates_x, self.w_h[...], mask)
    return qe, q_last


class ExplicitAttention(nnx.Module):
  """Eq. (1)-(3): word attention weights conditioned on the image."""

  def __init__(self, image_dim: int, word_dim: int, attn_dim: int = 128, *, rngs: nnx.Rngs):
    self.w_a = nnx.Linear(image_dim, word_dim, use_bias=False, rngs=rngs)  # W_a V
    self.w_q = nnx.Linear(word_dim, attn_dim, rngs=rngs)
    self.w_v = nnx.Linear(image_dim, attn_dim, use_bias=False, rngs=rngs)
    self.w_h = nnx.Linear(attn_dim, 1, rngs=rngs)

  def __call__(self, v: jax.Array, q: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Attention weights and attended caption.

    Args:
      v: float [B, d1] image feature V.
      q: float [B, T, d2] word features Qᵉ.
      mask: bool [B, T] valid words.

    Returns:
      (aq float [B, T] summing to 1 over valid words, Q̂ float [B, d2]).
    """
    affinity = jnp.tanh(jnp.einsum("btd,bd->bt", q, self.w_a(v)))            # Eq. (1), A
    hq = jnp.tanh(self.w_q(q) + affinity[:, :, None] * self.w_v(v)[:, None, :])  # Eq. (2), Hq
    logits = self.w_h(hq)[:, :, 0]
    logits = jnp.where(mask, logits, jnp.full_like(logits, -1e9))
    aq = jax.nn.softmax(logits, axis=-1)
    aq = jnp.where(mask, aq, jnp.zeros_like(aq))
    return aq, jnp.einsum("bt,btd->bd", aq, q)                                 # Eq. (3), Q̂


class ImplicitAttention(nnx.Module):
  """Eq. (4)-(5): environment representation through a joint residual function."""

  def __init__(self, image_dim: int, topic_dim: int, env_dim: int, *, rngs: nnx.Rngs):
    self.w_i = nnx.Linear(image_dim, env_dim, rngs=rngs)
    self.w_t = nnx.Linear(topic_dim, env_dim, rngs=rngs)
    self.w_i2 = nnx.Linear(image_dim, env_dim, rngs=rngs)
    self.w_t2 = nnx.Linear(topic_dim, env_dim, rngs=rngs)
    self.fc = nnx.Linear(env_dim, env_dim, rngs=rngs)

  def __call__(self, env_image: jax.Array, env_topic: jax.Array) -> jax.Array:
    """Eqs. (4)-(5): e_w from the image and topic environments, float [B, env_dim]."""
    f = jax.nn.relu(self.w_i(env_image)) * jax.nn.relu(self.w_t(env_topic))   # Eq. (4)
    h = self.w_i2(env_image) + self.w_t2(env_topic) + f                        # Eq. (5)
    return jax.nn.relu(self.fc(h))                                             # e_w = F(H)


class DualAttention(nnx.Module):
  """The dual-attention classifier or one of its baselines / ablations (``config.variant``).

  Reads ``tokens``, ``token_mask``, ``image``, ``env_image`` and ``env_topic`` of a
  :class:`~popdiff_jax.types.PostBatch`.

  Args:
    config: :class:`DualAttentionConfig` (``vocab_size``, ``image_dim``, ``topic_dim`` set).
    rngs: parameter initialisation keys.
  """

  def __init__(self, config: DualAttentionConfig, *, rngs: nnx.Rngs):
    variant = config.variant
    if variant != "visual" and config.vocab_size < 2:
      raise ConfigError("DualAttentionConfig", "vocab_size", config.vocab_size,
                        "must be set to the caption vocabulary size (>= 2) before init")
    needs = (("image_dim",) if variant != "textual" else ()) + (
        ("topic_dim",) if variant in _ENV else ())
    for field in needs:
      if getattr(config, field) < 1:
        raise ConfigError("DualAttentionConfig", field, getattr(config, field),
                          "must be set from the data (>= 1) before init")
    self.config = config
    self.variant = variant
    hidden_dim, out_dim = config.hidden_dim, config.out_dim
    env_dim = hidden_dim if config.env_dim is None else config.env_dim
    image_dim, topic_dim = config.image_dim, config.topic_dim
    if variant != "visual":
      self.caption = CaptionEncoder(config.vocab_size, config.embed_dim, hidden_dim, rngs=rngs)
    if variant != "textual":
      self.f1 = nnx.Linear(image_dim, hidden_dim, rngs=rngs)
      self.f2 = nnx.Linear(hidden_dim, hidden_dim, rngs=rngs)
    if variant in _USES_EXPLICIT:
      self.attention = ExplicitAttention(image_dim, hidden_dim, config.attn_dim, rngs=rngs)
    env = _ENV.get(variant)
    if env == "implicit":
      self.environment = ImplicitAttention(image_dim, topic_dim, env_dim, rngs=rngs)
    elif env == "concat":
      self.environment = nnx.Linear(image_dim + topic_dim, env_dim, rngs=rngs)
    if variant in ("visual", "textual", "e_attn", "similarity"):
      h_dim = hidden_dim
    elif variant in _ENV:
      h_dim = (hidden_dim if variant in _USES_EXPLICIT else 2 * hidden_dim) + env_dim
    else:  # early_fusion, ccr (fused head); late_fusion uses two towers below
      h_dim = 2 * hidden_dim
    if variant in ("late_fusion", "ccr"):
      self.o1_v = nnx.Linear(hidden_dim, out_dim, rngs=rngs)
      self.o2_v = nnx.Linear(out_dim, 1, rngs=rngs)
      self.o1_t = nnx.Linear(hidden_dim, out_dim, rngs=rngs)
      self.o2_t = nnx.Linear(out_dim, 1, rngs=rngs)
    if variant != "late_fusion":
      self.o1 = nnx.Linear(h_dim, out_dim, rngs=rngs)
      self.o2 = nnx.Linear(out_dim, 1, rngs=rngs)

  def __call__(self, batch: PostBatch, *, key: jax.Array | None = None,
               train: bool = False) -> dict:
    """Popularity scores of a batch of posts.

    Args:
      batch: a ``PostBatch`` with ``tokens`` int32 [B, T], ``token_mask`` bool [B, T],
        ``image`` float [B, d1], ``env_image`` float [B, d1] and ``env_topic`` float [B, K].
      key: unused (the model has no dropout); part of every model's signature.
      train: unused (no batch statistics).

    Returns:
      dict with ``logit`` float [B] (log-odds of "popular"), ``prob`` float [B], ``attention``
      float [B, T] (explicit attention weights; zeros for variants without it) and ``aux_logits``
      float [B, 3] (visual, textual, fused logits; ``ccr`` and ``late_fusion`` only, else zeros).
    """
    del key, train
    tokens, token_mask, v = batch.tokens, batch.token_mask, batch.image
    env_image, env_topic = batch.env_image, batch.env_topic
    b, t = tokens.shape
    attention = jnp.zeros((b, t), v.dtype)
    aux = jnp.zeros((b, 3), v.dtype)
    variant = self.variant
    if variant != "visual":
      qe, q_last = self.caption(tokens, token_mask)
    if variant != "textual":
      v_hat = self.f2(jax.nn.relu(self.f1(v)))                                 # Eq. (3), V̂

    def head(o1, o2, h):
      return o2(jax.nn.relu(o1(h)))[:, 0]                                      # Eq. (6)

    if variant == "late_fusion":
      lv = head(self.o1_v, self.o2_v, v_hat)
      lt = head(self.o1_t, self.o2_t, q_last)
      prob = 0.5 * (jax.nn.sigmoid(lv) + jax.nn.sigmoid(lt))
      logit = jnp.log(prob) - jnp.log1p(-prob)
      aux = jnp.stack([lv, lt, logit], axis=-1)
      return {"logit": logit, "prob": prob, "attention": attention, "aux_logits": aux}
    if variant == "visual":
      h = v_hat
    elif variant == "textual":
      h = q_last
    elif variant == "similarity":
      def unit(x):
        return x / jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
      h = unit(v_hat) * unit(q_last)
    elif variant in _USES_EXPLICIT:
      attention, q_hat = self.attention(v, qe, token_mask)
      h = v_hat + q_hat                                                        # h_w
    else:  # early_fusion, ccr, env, env_iattn
      h = jnp.concatenate([v_hat, q_last], axis=-1)
    env = _ENV.get(variant)
    if env == "implicit":
      h = jnp.concatenate([h, self.environment(env_image, env_topic)], axis=-1)
    elif env == "concat":
      e = jax.nn.relu(self.environment(jnp.concatenate([env_image, env_topic], axis=-1)))
      h = jnp.concatenate([h, e], axis=-1)
    logit = head(self.o1, self.o2, h)
    if variant == "ccr":
      aux = jnp.stack([head(self.o1_v, self.o2_v, v_hat), head(self.o1_t, self.o2_t, q_last),
                       logit], axis=-1)
    return {"logit": logit, "prob": jax.nn.sigmoid(logit), "attention": attention,
            "aux_logits": aux}
