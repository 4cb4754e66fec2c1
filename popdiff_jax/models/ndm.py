"""NDM: the Neural Diffusion Model of Yang et al. (TKDE), Eqs. 1-8.

Given the users infected so far, ``u_0 .. u_j``, NDM scores every user as the next one:

* Eq. 3-5, multi-head attention over earlier users (causal): for head ``i``,
  ``w^i_jk = softmax_k(emb(u_j) W^Q_i . (emb(u_k) W^K_i)^T * scale)``, ``k <= j``;
  ``head_i = sum_k w^i_jk emb(u_k) W^V_i``; ``act(u_j) = [head_1 .. head_h] W^O``.
* Sec. 4.5: ``act <- LayerNorm(emb + act)`` (residual and layer norm); dropout 0.1 on attention.
* Eq. 7: ``pre_j = softmax(sum_{n<win} act(u_{j-n}) W^C_n + F_init act(u_0) W^C_init)`` over users
  not yet infected, Terminate included (masking lives in ``models.next_user``).

Choices where the paper is silent or its released code differs, all keywords:

* ``attention_scale``: Eq. 4 has no scaling; the authors' code divides the scores by ``sqrt(d)``
  (the Transformer recipe it builds on). Default ``d ** -0.5`` as in that code; ``1.0`` gives Eq. 4.
* ``use_bias``: the authors' code implements the window-``win`` projection as a Conv1d *with* a bias
  over users; Eq. 6 has none. Default True, as in the code.
* Dropout (rate 0.1) on the attention weights and on the projected heads before the residual, as in
  the authors' code ("dropout to the attention mechanism").
* ``F_init`` uses ``act(u_0)`` as in Eq. 7 (the code uses ``emb(u_0)``; the paper wins).
* Positions ``j - n < 0`` contribute nothing to Eq. 7 (the code's causal zero padding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax.models._layers import dropout


class FrozenEmbedding(nnx.Variable):
  """A fixed block of the embedding table (NDM+SN, Sec. 5.4): state, not an ``nnx.Param``."""


class NDM(nnx.Module):
  """Neural Diffusion Model (Yang et al., Eqs. 1-8).

  Args:
    num_items: vocabulary size |U| including padding (0) and Terminate (1).
    dim: embedding dimension d (paper: 64).
    num_heads: attention heads h (paper: 8); each head has its own d x d W^Q, W^K, W^V.
    window: convolution window win (paper: 3).
    f_init: F_init in {0, 1}: add the initial user's term of Eq. 7 (paper: 1 on Twitter only).
    dropout_rate: dropout on attention (paper: 0.1).
    embedding_dropout: dropout on the user embeddings fed to the attention (not in the paper;
      default 0). A regulariser for small datasets, see ``NextUserConfig``.
    attention_scale: multiplier of the attention scores; None means ``dim ** -0.5``.
    use_bias: a per-user bias in Eq. 7 (the authors' Conv1d has one).
    frozen_embedding: optional float [U, f] table, f < d, fixed as the first f embedding dimensions
      (NDM+SN, Sec. 5.4: DeepWalk embeddings of the social graph). It is held as a
      ``FrozenEmbedding`` (not an ``nnx.Param``) behind ``jax.lax.stop_gradient``; only the other
      ``d - f`` dimensions are trained.
    rngs: parameter initialisation keys.
  """

  def __init__(self, num_items: int, *, dim: int = 64, num_heads: int = 8, window: int = 3,
               f_init: int = 0, dropout_rate: float = 0.1, embedding_dropout: float = 0.0,
               attention_scale: float | None = None, use_bias: bool = True,
               frozen_embedding: jax.Array | None = None, rngs: nnx.Rngs):
    if f_init not in (0, 1):
      raise ValueError(f"f_init must be 0 or 1, got {f_init}")
    if window < 1:
      raise ValueError(f"window must be >= 1, got {window}")
    self.num_items = num_items
    self.dim = dim
    self.num_heads = num_heads
    self.window = window
    self.f_init = f_init
    self.dropout_rate = dropout_rate
    self.embedding_dropout = embedding_dropout
    self.attention_scale = dim ** -0.5 if attention_scale is None else attention_scale
    normal = nnx.initializers.normal(1.0)
    glorot = nnx.initializers.glorot_uniform(in_axis=-2, out_axis=-1)
    fixed = 0 if frozen_embedding is None else frozen_embedding.shape[1]
    if frozen_embedding is not None and (frozen_embedding.shape[0] != num_items
                                         or not 0 < fixed < dim):
      raise ValueError(f"frozen_embedding must be [{num_items}, f] with 0 < f < {dim}, "
                       f"got {tuple(frozen_embedding.shape)}")
    self.frozen_embedding = (None if frozen_embedding is None else
                             FrozenEmbedding(jnp.asarray(frozen_embedding, jnp.float32)))
    self.embedding = nnx.Param(normal(rngs.params(), (num_items, dim - fixed)))
    self.w_q = nnx.Param(glorot(rngs.params(), (num_heads, dim, dim)))
    self.w_k = nnx.Param(glorot(rngs.params(), (num_heads, dim, dim)))
    self.w_v = nnx.Param(glorot(rngs.params(), (num_heads, dim, dim)))
    self.w_o = nnx.Param(glorot(rngs.params(), (num_heads * dim, dim)))
    self.layer_norm = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
    # W^C_n for n = 0..win-1, stacked so Eq. 7's sum is one matrix product.
    self.w_c = nnx.Param(glorot(rngs.params(), (window, dim, num_items)))
    self.w_c_init = nnx.Param(glorot(rngs.params(), (dim, num_items))) if f_init else None
    self.bias = nnx.Param(jnp.zeros((num_items,))) if use_bias else None

  def embed(self, users: jax.Array) -> jax.Array:
    """``emb(u)`` float [..., d] of int32 ``users`` [...]: the frozen block (if any) first."""
    emb = self.embedding[...][users]
    if self.frozen_embedding is not None:
      fixed = jax.lax.stop_gradient(self.frozen_embedding[...])[users]
      emb = jnp.concatenate([fixed, emb], axis=-1)
    return emb

  def active_embeddings(self, users: jax.Array, mask: jax.Array,
                        dropout_key: jax.Array | None = None) -> jax.Array:
    """``act(u_j)`` for every position (Eqs. 3-5 with residual and LayerNorm).

    Args:
      users: int32 [B, L] vocabulary indices.
      mask: bool [B, L] real positions.
      dropout_key: PRNG key for attention dropout; None for evaluation.

    Returns:
      float [B, L, d].
    """
    emb = self.embed(users)  # [B, L, d]
    if dropout_key is not None and self.embedding_dropout:
      dropout_key, key_e = jax.random.split(dropout_key)
      emb = dropout(emb, self.embedding_dropout, key_e)
    q = jnp.einsum("bld,hde->bhle", emb, self.w_q[...])
    k = jnp.einsum("bld,hde->bhle", emb, self.w_k[...])
    v = jnp.einsum("bld,hde->bhle", emb, self.w_v[...])
    scores = jnp.einsum("bhje,bhke->bhjk", q, k) * self.attention_scale
    length = users.shape[1]
    allowed = jnp.tril(jnp.ones((length, length), bool))[None, None] & mask[:, None, None, :]
    scores = jnp.where(allowed, scores, -jnp.inf)
    # A padded query row sees no key at all: give it a uniform row instead of NaN (its output is
    # masked downstream anyway).
    any_key = allowed.any(axis=-1, keepdims=True)
    weights = jax.nn.softmax(jnp.where(any_key, scores, 0.0), axis=-1)
    key_w, key_o = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    weights = dropout(weights, self.dropout_rate, key_w)
    heads = jnp.einsum("bhjk,bhke->bjhe", weights, v)
    act = heads.reshape(*heads.shape[:2], self.num_heads * self.dim) @ self.w_o[...]
    act = dropout(act, self.dropout_rate, key_o)
    return self.layer_norm(emb + act)

  def __call__(self, users: jax.Array, mask: jax.Array,
               dropout_key: jax.Array | None = None) -> jax.Array:
    """Raw next-user scores (Eq. 7 before the softmax and the infected-user mask).

    Args:
      users: int32 [B, L].
      mask: bool [B, L].
      dropout_key: PRNG key, or None for evaluation.

    Returns:
      float [B, L, U]; row ``j`` scores the user infected after step ``j``.
    """
    act, stacked = self._window_stack(users, mask, dropout_key)
    w_c = self.w_c[...].reshape(self.window * self.dim, self.num_items)
    logits = stacked @ w_c
    if self.w_c_init is not None:
      logits = logits + (act[:, :1] @ self.w_c_init[...]) * self.f_init
    if self.bias is not None:
      logits = logits + self.bias[...][None, None, :]
    return logits

  def _window_stack(self, users: jax.Array, mask: jax.Array,
                    dropout_key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """``(act [B, L, d], stacked [B, L, win * d])``: masked act and Eq. 7's window of acts."""
    act = self.active_embeddings(users, mask, dropout_key)
    act = jnp.where(mask[..., None], act, 0.0)
    # [act_j, act_{j-1}, .., act_{j-win+1}] with zeros before the cascade start.
    shifted = [act] + [jnp.pad(act, ((0, 0), (n, 0), (0, 0)))[:, :-n] for n in range(1, self.window)]
    return act, jnp.concatenate(shifted, axis=-1)

  def output_features(self, users: jax.Array, mask: jax.Array, dropout_key: jax.Array | None = None
                      ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Eq. 7 as ``features @ w + bias`` without forming the ``[B, L, U]`` scores.

    ``__call__`` equals ``features @ w + bias`` (up to float rounding: the F_init term is folded
    into the same product by appending ``act(u_0)`` to every position's features and ``W^C_init``
    to the rows of ``w``). For the memory-lean loss of ``models.lean_softmax``.

    Args:
      users: int32 [B, L].
      mask: bool [B, L].
      dropout_key: PRNG key, or None for evaluation.

    Returns:
      ``(features [B, L, F], w [F, U], bias [U] or None)`` with ``F = win * d`` (``+ d`` when
      F_init = 1).
    """
    act, stacked = self._window_stack(users, mask, dropout_key)
    w = self.w_c[...].reshape(self.window * self.dim, self.num_items)
    if self.w_c_init is not None:
      first = jnp.broadcast_to(act[:, :1], act.shape) * self.f_init
      stacked = jnp.concatenate([stacked, first], axis=-1)
      w = jnp.concatenate([w, self.w_c_init[...]], axis=0)
    return stacked, w, None if self.bias is None else self.bias[...]

  # ------------------------------------------------------------------ incremental decoding (sampling)

  def decode_init(self, users: jax.Array, mask: jax.Array, max_len: int) -> dict:
    """A decoding cache after reading a prefix, for sampling continuations one user at a time.

    The attention of a new user needs only the keys and values of earlier users, and Eq. 7 only the
    last ``win`` active embeddings (and ``act(u_0)``), so each sampled step costs one attention row
    and one projection instead of a full forward pass.

    Args:
      users: int32 [N, P] prefixes (left-aligned, at least one real user each).
      mask: bool [N, P] real prefix positions.
      max_len: capacity of the cache in users (prefix plus sampled).

    Returns:
      A pytree: keys/values [N, h, max_len, d], ``recent`` acts [N, win, d] (newest first),
      ``act0`` [N, d], ``length`` int32 [N].
    """
    n, p = users.shape
    act = self.active_embeddings(users, mask, None)
    emb = self.embed(users)
    k = jnp.einsum("bld,hde->bhle", emb, self.w_k[...])
    v = jnp.einsum("bld,hde->bhle", emb, self.w_v[...])
    pad = ((0, 0), (0, 0), (0, max_len - p), (0, 0))
    length = mask.sum(-1).astype(jnp.int32)
    # recent[:, n] = act at position length - 1 - n (zeros before the start, as in the forward pass).
    pos = length[:, None] - 1 - jnp.arange(self.window)[None, :]
    recent = jnp.take_along_axis(act, jnp.clip(pos, 0, p - 1)[..., None], axis=1)
    recent = jnp.where((pos >= 0)[..., None], recent, 0.0)
    return {"k": jnp.pad(k, pad), "v": jnp.pad(v, pad), "recent": recent, "act0": act[:, 0],
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
    emb = self.embed(user)  # [N, d]
    q = jnp.einsum("nd,hde->nhe", emb, self.w_q[...])
    k_new = jnp.einsum("nd,hde->nhe", emb, self.w_k[...])
    v_new = jnp.einsum("nd,hde->nhe", emb, self.w_v[...])
    pos = cache["length"]
    rows = jnp.arange(user.shape[0])
    k = cache["k"].at[rows, :, pos].set(k_new)
    v = cache["v"].at[rows, :, pos].set(v_new)
    scores = jnp.einsum("nhe,nhle->nhl", q, k) * self.attention_scale
    visible = jnp.arange(k.shape[2])[None, :] <= pos[:, None]  # [N, max_len]
    scores = jnp.where(visible[:, None, :], scores, -jnp.inf)
    heads = jnp.einsum("nhl,nhle->nhe", jax.nn.softmax(scores, axis=-1), v)
    act = self.layer_norm(emb + heads.reshape(user.shape[0], -1) @ self.w_o[...])
    recent = jnp.concatenate([act[:, None, :], cache["recent"][:, :-1]], axis=1)
    return {"k": k, "v": v, "recent": recent, "act0": cache["act0"], "length": pos + 1}
