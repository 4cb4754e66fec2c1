"""NDM: the Neural Diffusion Model of Yang et al. (TKDE), Eqs. 1-8.

Given the users infected so far, ``u_0 .. u_j``, NDM scores every user as the next one:

* Eq. 3-5, multi-head attention over earlier users (causal; ``nn.CausalSelfAttention``): for
  head ``i``, ``w^i_jk = softmax_k(emb(u_j) W^Q_i . (emb(u_k) W^K_i)^T * scale)``, ``k <= j``;
  ``head_i = sum_k w^i_jk emb(u_k) W^V_i``; ``act(u_j) = [head_1 .. head_h] W^O``.
* Sec. 4.5: ``act <- LayerNorm(emb + act)`` (residual and layer norm); dropout 0.1 on attention.
* Eq. 7: ``pre_j = softmax(sum_{n<win} act(u_{j-n}) W^C_n + F_init act(u_0) W^C_init)`` over users
  not yet infected, Terminate included (the window convolution is ``nn.window``; the masks are
  ``nn.masking``; the loss, Eq. 8, is ``losses.next_user_nll``).

Choices where the paper is silent or its released code differs, all fields of :class:`NDMConfig`:

* ``attention_scale``: Eq. 4 has no scaling; the authors' code divides the scores by ``sqrt(d)``
  (the Transformer recipe it builds on). Default ``d ** -0.5`` as in that code; ``1.0`` gives Eq. 4.
* ``use_bias``: the authors' code implements the window-``win`` projection as a Conv1d *with* a bias
  over users; Eq. 6 has none. Default True, as in the code.
* Dropout (rate 0.1) on the attention weights and on the projected heads before the residual, as in
  the authors' code ("dropout to the attention mechanism").
* ``F_init`` uses ``act(u_0)`` as in Eq. 7 (the code uses ``emb(u_0)``; the paper wins).
* Positions ``j - n < 0`` contribute nothing to Eq. 7 (the code's causal zero padding).

Beyond the paper: ``embedding_dropout`` (0 = off) and, for NDM+SN (Sec. 5.4), ``frozen_dim``: the
first ``frozen_dim`` embedding dimensions are a fixed table (``FrozenEmbedding``, in
``Variables.state``, filled by the caller with DeepWalk vectors), the other ``d - frozen_dim``
are trained.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax import _validate as v
from popdiff_jax._errors import ConfigError
from popdiff_jax.nn.attention import CausalSelfAttention
from popdiff_jax.nn.dropout import dropout
from popdiff_jax.nn.window import window_stack
from popdiff_jax.types import CascadeBatch

__all__ = ["NDMConfig", "NDM", "FrozenEmbedding"]


@dataclasses.dataclass(frozen=True)
class NDMConfig:
  """NDM's hyperparameters (Yang et al. Sec. 5.2 and the authors' code).

  Attributes:
    num_items: vocabulary size |U| including padding (0) and Terminate (1); set from the data.
    dim: embedding dimension d (paper: 64).
    num_heads: attention heads h (paper: 8); each head has its own d x d W^Q, W^K, W^V.
    window: convolution window win (paper: 3).
    f_init: F_init in {0, 1}: the initial user's term of Eq. 7 (paper: 1 on Twitter only);
      None takes the dataset's value (``CascadeDataset.f_init``) when a project builds the model.
    dropout_rate: dropout on the attention (paper: 0.1).
    embedding_dropout: dropout on the input user embeddings (not in the paper; 0 = off).
    attention_scale: multiplier of the attention scores; None means ``dim ** -0.5`` (the
      authors' code); 1.0 gives Eq. 4 as printed.
    use_bias: a per-user bias in Eq. 7 (the authors' Conv1d has one; Eq. 6 has none).
    frozen_dim: NDM+SN: the number of fixed embedding dimensions (0 = plain NDM).
  """

  name: ClassVar[str] = "ndm"
  num_items: int = 0
  dim: int = 64
  num_heads: int = 8
  window: int = 3
  f_init: int | None = None
  dropout_rate: float = 0.1
  embedding_dropout: float = 0.0
  attention_scale: float | None = None
  use_bias: bool = True
  frozen_dim: int = 0

  def __post_init__(self):
    v.non_negative(self, "num_items", "frozen_dim")
    v.positive(self, "dim", "num_heads", "window")
    v.one_of(self, "f_init", (None, 0, 1))
    v.probability(self, "dropout_rate", "embedding_dropout")
    v.positive(self, "attention_scale", allow_none=True)
    v.require(self, "frozen_dim", self.frozen_dim < self.dim,
              f"must be smaller than dim = {self.dim}")


class FrozenEmbedding(nnx.Variable):
  """A fixed block of the embedding table (NDM+SN, Sec. 5.4): state, not an ``nnx.Param``."""


class NDM(nnx.Module):
  """Neural Diffusion Model (Yang et al., Eqs. 1-8) on a :class:`~popdiff_jax.types.CascadeBatch`.

  ``__call__(batch)`` gives the raw scores float [B, L, U] (row ``j`` scores the user infected
  after step ``j``; masking and softmax are the loss's); ``output_features(batch)`` the same as
  ``features @ w + bias`` for the lean loss; ``decode_*`` sample continuations one user at a
  time (``popdiff_jax.simulate.sampler``).

  Args:
    config: :class:`NDMConfig` (``num_items`` set).
    rngs: parameter initialisation keys.
  """

  def __init__(self, config: NDMConfig, *, rngs: nnx.Rngs):
    if config.num_items < 3:
      raise ConfigError("NDMConfig", "num_items", config.num_items,
                        "must be set to the vocabulary size (>= 3) before init")
    if config.f_init is None:
      raise ConfigError("NDMConfig", "f_init", None, "must be 0 or 1 at init (None is resolved "
                        "from the dataset by the project)")
    self.config = config
    self.num_items = config.num_items
    self.dim = dim = config.dim
    self.window = config.window
    self.f_init = config.f_init
    self.embedding_dropout = config.embedding_dropout
    normal = nnx.initializers.normal(1.0)
    glorot = nnx.initializers.glorot_uniform(in_axis=-2, out_axis=-1)
    fixed = config.frozen_dim
    self.frozen_embedding = (FrozenEmbedding(jnp.zeros((config.num_items, fixed), jnp.float32))
                             if fixed else None)
    self.embedding = nnx.Param(normal(rngs.params(), (config.num_items, dim - fixed)))
    self.attention = CausalSelfAttention(dim, config.num_heads, dropout_rate=config.dropout_rate,
                                         scale=config.attention_scale, rngs=rngs)
    self.layer_norm = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
    # W^C_n for n = 0..win-1, stacked so Eq. 7's sum is one matrix product.
    self.w_c = nnx.Param(glorot(rngs.params(), (config.window, dim, config.num_items)))
    self.w_c_init = (nnx.Param(glorot(rngs.params(), (dim, config.num_items)))
                     if config.f_init else None)
    self.bias = nnx.Param(jnp.zeros((config.num_items,))) if config.use_bias else None

  def init_output(self, bias: jax.Array | None = None, scale: float = 1.0) -> None:
    """Data-dependent initialisation of Eq. 7's read-out (``Model.update``): sets the per-user
    bias to ``bias`` (float [U], e.g. the log training frequency) and multiplies W^C and
    W^C_init by ``scale``."""
    if bias is not None and self.bias is not None:
      self.bias[...] = jnp.asarray(bias, jnp.float32)
    if scale != 1.0:
      for table in (self.w_c, self.w_c_init):
        if table is not None:
          table[...] = table[...] * scale

  def set_frozen_embedding(self, table: jax.Array) -> None:
    """NDM+SN: fills the fixed embedding block (float [U, frozen_dim]; ``Model.update``)."""
    if self.frozen_embedding is None:
      raise ValueError("this NDM has no frozen block (NDMConfig.frozen_dim = 0)")
    table = jnp.asarray(table, jnp.float32)
    if table.shape != self.frozen_embedding[...].shape:
      raise ValueError(f"frozen table must be {self.frozen_embedding[...].shape}, got "
                       f"{table.shape}")
    self.frozen_embedding[...] = table

  def embed(self, users: jax.Array) -> jax.Array:
    """``emb(u)`` float [..., d] of int32 ``users`` [...]: the frozen block (if any) first."""
    emb = self.embedding[...][users]
    if self.frozen_embedding is not None:
      fixed = jax.lax.stop_gradient(self.frozen_embedding[...])[users]
      emb = jnp.concatenate([fixed, emb], axis=-1)
    return emb

  def active_embeddings(self, users: jax.Array, mask: jax.Array,
                        key: jax.Array | None = None) -> jax.Array:
    """``act(u_j)`` for every position (Eqs. 3-5 with residual and LayerNorm, Sec. 4.5).

    Args:
      users: int32 [B, L] vocabulary indices.
      mask: bool [B, L] real positions.
      key: dropout key, or None for evaluation.

    Returns:
      float [B, L, d].
    """
    emb = self.embed(users)
    if key is not None and self.embedding_dropout:
      key, key_e = jax.random.split(key)
      emb = dropout(emb, self.embedding_dropout, key_e)
    return self.layer_norm(emb + self.attention(emb, mask, key))

  def __call__(self, batch: CascadeBatch, *, key: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Raw next-user scores (Eq. 7 before the softmax and the infected-user mask).

    Args:
      batch: a ``CascadeBatch`` (``users`` int32 [B, L], ``mask`` bool [B, L]).
      key: dropout key, or None for evaluation.
      train: unused (no batch statistics).

    Returns:
      float [B, L, U]; row ``j`` scores the user infected after step ``j``.
    """
    del train
    act, stacked = self._window_stack(batch.users, batch.mask, key)
    w_c = self.w_c[...].reshape(self.window * self.dim, self.num_items)
    logits = stacked @ w_c
    if self.w_c_init is not None:
      logits = logits + (act[:, :1] @ self.w_c_init[...]) * self.f_init
    if self.bias is not None:
      logits = logits + self.bias[...][None, None, :]
    return logits

  def _window_stack(self, users: jax.Array, mask: jax.Array,
                    key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """``(act [B, L, d], stacked [B, L, win * d])``: masked act and Eq. 7's window of acts."""
    act = self.active_embeddings(users, mask, key)
    act = jnp.where(mask[..., None], act, 0.0)
    return act, window_stack(act, self.window)

  def output_features(self, batch: CascadeBatch, *, key: jax.Array | None = None,
                      train: bool = False) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Eq. 7 as ``features @ w + bias`` without forming the ``[B, L, U]`` scores.

    ``__call__`` equals ``features @ w + bias`` (up to float rounding: the F_init term is folded
    into the same product by appending ``act(u_0)`` to every position's features and ``W^C_init``
    to the rows of ``w``). For ``losses.lean_next_user_nll``.

    Args:
      batch: a ``CascadeBatch``.
      key: dropout key, or None for evaluation.
      train: unused.

    Returns:
      ``(features [B, L, F], w [F, U], bias [U] or None)`` with ``F = win * d`` (``+ d`` when
      F_init = 1).
    """
    del train
    act, stacked = self._window_stack(batch.users, batch.mask, key)
    w = self.w_c[...].reshape(self.window * self.dim, self.num_items)
    if self.w_c_init is not None:
      first = jnp.broadcast_to(act[:, :1], act.shape) * self.f_init
      stacked = jnp.concatenate([stacked, first], axis=-1)
      w = jnp.concatenate([w, self.w_c_init[...]], axis=0)
    return stacked, w, None if self.bias is None else self.bias[...]

  # ------------------------------------------------------------------ incremental decoding (sampling)

  def decode_init(self, users: jax.Array, mask: jax.Array, max_len: int) -> dict:
    """A decoding cache after reading a prefix, for sampling continuations one user at a time.

    The attention of a new user needs only the keys and values of earlier users, and Eq. 7 only
    the last ``win`` active embeddings (and ``act(u_0)``), so each sampled step costs one
    attention row and one projection instead of a full forward pass.

    Args:
      users: int32 [N, P] prefixes (left-aligned, at least one real user each).
      mask: bool [N, P] real prefix positions.
      max_len: capacity of the cache in users (prefix plus sampled).

    Returns:
      A pytree: keys/values [N, h, max_len, d], ``recent`` acts [N, win, d] (newest first),
      ``act0`` [N, d], ``length`` int32 [N].
    """
    p = users.shape[1]
    act = self.active_embeddings(users, mask, None)
    k, v_ = self.attention.keys_values(self.embed(users))
    pad = ((0, 0), (0, 0), (0, max_len - p), (0, 0))
    length = mask.sum(-1).astype(jnp.int32)
    # recent[:, n] = act at position length - 1 - n (zeros before the start, as in the forward).
    pos = length[:, None] - 1 - jnp.arange(self.window)[None, :]
    recent = jnp.take_along_axis(act, jnp.clip(pos, 0, p - 1)[..., None], axis=1)
    recent = jnp.where((pos >= 0)[..., None], recent, 0.0)
    return {"k": jnp.pad(k, pad), "v": jnp.pad(v_, pad), "recent": recent, "act0": act[:, 0],
            "length": length}

  def decode_logits(self, cache: dict) -> jax.Array:
    """Raw scores float [N, U] of the next user given the cache (Eq. 7 at the last position)."""
    stacked = cache["recent"].reshape(cache["recent"].shape[0], self.window * self.dim)
    logits = stacked @ self.w_c[...].reshape(self.window * self.dim, self.num_items)
    if self.w_c_init is not None:
      logits = logits + (cache["act0"] @ self.w_c_init[...]) * self.f_init
    if self.bias is not None:
      logits = logits + self.bias[...][None, :]
    return logits

  def decode_step(self, cache: dict, user: jax.Array) -> dict:
    """Appends one infected user per row (int32 [N]) to the cache (Eqs. 3-5 for that position)."""
    emb = self.embed(user)
    out, k, v_ = self.attention.decode_step(emb, cache["k"], cache["v"], cache["length"])
    act = self.layer_norm(emb + out)
    recent = jnp.concatenate([act[:, None, :], cache["recent"][:, :-1]], axis=1)
    return {"k": k, "v": v_, "recent": recent, "act0": cache["act0"],
            "length": cache["length"] + 1}
