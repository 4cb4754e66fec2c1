"""Causal multi-head self-attention over the users of a cascade (NDM Eqs. 3-5).

For head ``i`` and position ``j`` (users ``u_0 .. u_j`` infected so far)::

  w^i_jk = softmax_k(x_j W^Q_i · (x_k W^K_i)ᵀ · scale),  k <= j          (Eq. 4)
  head_i(j) = Σ_k w^i_jk x_k W^V_i                                       (Eq. 3)
  out(j) = [head_1(j) .. head_h(j)] W^O                                  (Eq. 5)

Each head has its own ``d x d`` projections (NDM's code: ``h`` full-width heads, not ``d / h``
slices). Dropout (explicit key) on the attention weights and on ``out``, as in the authors' code.
The residual connection and layer norm of NDM Sec. 4.5 are the caller's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax.nn.dropout import dropout

__all__ = ["CausalSelfAttention"]


class CausalSelfAttention(nnx.Module):
  """``h`` heads of width ``d`` over a causal, masked sequence, with incremental decoding.

  Args:
    dim: d, the width of the inputs, of every head and of the output.
    num_heads: h.
    dropout_rate: dropout on the attention weights and on the output (training only).
    scale: multiplier of the scores; None means ``dim ** -0.5`` (the authors' code; Eq. 4 as
      printed has none, ``scale=1.0``).
    rngs: initialisation keys (Glorot-uniform ``W^Q, W^K, W^V, W^O``, drawn in that order).
  """

  def __init__(self, dim: int, num_heads: int, *, dropout_rate: float = 0.1,
               scale: float | None = None, rngs: nnx.Rngs):
    if dim < 1 or num_heads < 1:
      raise ValueError(f"dim and num_heads must be >= 1, got {dim}, {num_heads}")
    self.dim = dim
    self.num_heads = num_heads
    self.dropout_rate = dropout_rate
    self.scale = dim ** -0.5 if scale is None else scale
    glorot = nnx.initializers.glorot_uniform(in_axis=-2, out_axis=-1)
    self.w_q = nnx.Param(glorot(rngs.params(), (num_heads, dim, dim)))
    self.w_k = nnx.Param(glorot(rngs.params(), (num_heads, dim, dim)))
    self.w_v = nnx.Param(glorot(rngs.params(), (num_heads, dim, dim)))
    self.w_o = nnx.Param(glorot(rngs.params(), (num_heads * dim, dim)))

  def keys_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(x W^K, x W^V)`` of every head: float [B, h, L, d] each, for x float [B, L, d]."""
    return (jnp.einsum("bld,hde->bhle", x, self.w_k[...]),
            jnp.einsum("bld,hde->bhle", x, self.w_v[...]))

  def __call__(self, x: jax.Array, mask: jax.Array,
               key: jax.Array | None = None) -> jax.Array:
    """Eqs. 3-5 at every position.

    Args:
      x: float [B, L, d] inputs (NDM: the user embeddings).
      mask: bool [B, L] real positions; a position attends to real positions ``k <= j``.
      key: dropout key (training), or None (evaluation).

    Returns:
      float [B, L, d]. A padded position (no real key at or before it) gets a finite value,
      to be masked by the caller.
    """
    q = jnp.einsum("bld,hde->bhle", x, self.w_q[...])
    k, v = self.keys_values(x)
    scores = jnp.einsum("bhje,bhke->bhjk", q, k) * self.scale
    length = x.shape[1]
    allowed = jnp.tril(jnp.ones((length, length), bool))[None, None] & mask[:, None, None, :]
    scores = jnp.where(allowed, scores, -jnp.inf)
    # A padded query row sees no key at all: a uniform row instead of NaN (masked downstream).
    any_key = allowed.any(axis=-1, keepdims=True)
    weights = jax.nn.softmax(jnp.where(any_key, scores, 0.0), axis=-1)
    key_w, key_o = (None, None) if key is None else jax.random.split(key)
    weights = dropout(weights, self.dropout_rate, key_w)
    heads = jnp.einsum("bhjk,bhke->bjhe", weights, v)
    out = heads.reshape(*heads.shape[:2], self.num_heads * self.dim) @ self.w_o[...]
    return dropout(out, self.dropout_rate, key_o)

  def decode_step(self, x: jax.Array, k_cache: jax.Array, v_cache: jax.Array,
                  position: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Attention of one new position per row over the cached earlier ones (evaluation mode).

    Args:
      x: float [N, d] the new position's input.
      k_cache, v_cache: float [N, h, M, d] keys and values of positions ``< position``.
      position: int32 [N] the new position (its key and value are written there).

    Returns:
      ``(out float [N, d], k_cache, v_cache)`` with the new position's key and value stored.
    """
    q = jnp.einsum("nd,hde->nhe", x, self.w_q[...])
    k_new = jnp.einsum("nd,hde->nhe", x, self.w_k[...])
    v_new = jnp.einsum("nd,hde->nhe", x, self.w_v[...])
    rows = jnp.arange(x.shape[0])
    k_cache = k_cache.at[rows, :, position].set(k_new)
    v_cache = v_cache.at[rows, :, position].set(v_new)
    scores = jnp.einsum("nhe,nhle->nhl", q, k_cache) * self.scale
    visible = jnp.arange(k_cache.shape[2])[None, :] <= position[:, None]
    scores = jnp.where(visible[:, None, :], scores, -jnp.inf)
    heads = jnp.einsum("nhl,nhle->nhe", jax.nn.softmax(scores, axis=-1), v_cache)
    return heads.reshape(x.shape[0], -1) @ self.w_o[...], k_cache, v_cache
