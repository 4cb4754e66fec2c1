"""LSTM next-user baseline (NDM Sec. 5.2): an LSTM over the infected users, a softmax over users."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax.models._layers import dropout


class LSTMNextUser(nnx.Module):
  """Embedding -> one-layer LSTM -> dense scores over users (masked like NDM by the caller).

  Standard LSTM gates ``[i, f, g, o] = x W_x + h W_h + b`` (forget-gate bias initialised to 1). The
  paper tunes the embedding and hidden sizes in {16, 32, 64, 128}; the default 64 matches NDM's d.
  Dropout (0.1, explicit key) on the LSTM output, as NDM uses on its attention.

  Args:
    num_items: vocabulary size |U| including padding and Terminate.
    dim: embedding and hidden size.
    dropout_rate: dropout on the hidden states.
    rngs: initialisation keys.
  """

  def __init__(self, num_items: int, *, dim: int = 64, dropout_rate: float = 0.1, rngs: nnx.Rngs):
    self.num_items = num_items
    self.dim = dim
    self.dropout_rate = dropout_rate
    glorot = nnx.initializers.glorot_uniform()
    self.embedding = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (num_items, dim)))
    self.w_x = nnx.Param(glorot(rngs.params(), (dim, 4 * dim)))
    self.w_h = nnx.Param(nnx.initializers.orthogonal()(rngs.params(), (dim, 4 * dim)))
    self.b = nnx.Param(jnp.zeros((4 * dim,)).at[dim:2 * dim].set(1.0))
    self.out = nnx.Linear(dim, num_items, rngs=rngs)

  def hidden_states(self, users: jax.Array) -> jax.Array:
    """LSTM outputs float [B, L, d] (a position sees only itself and earlier positions)."""
    return self._states(users)[0]

  def __call__(self, users: jax.Array, mask: jax.Array,
               dropout_key: jax.Array | None = None) -> jax.Array:
    """Raw scores float [B, L, U]; row ``j`` scores the user after step ``j``."""
    del mask  # causal by construction; padded positions come after the real ones
    hs = dropout(self.hidden_states(users), self.dropout_rate, dropout_key)
    return self.out(hs)

  def output_features(self, users: jax.Array, mask: jax.Array, dropout_key: jax.Array | None = None
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(features [B, L, d], w [d, U], bias [U])`` with ``__call__ == features @ w + bias``, for
    the memory-lean loss of ``models.lean_softmax`` (no ``[B, L, U]`` scores formed)."""
    del mask
    hs = dropout(self.hidden_states(users), self.dropout_rate, dropout_key)
    return hs, self.out.kernel[...], self.out.bias[...]

  # ------------------------------------------------------------------ incremental decoding (sampling)

  def decode_init(self, users: jax.Array, mask: jax.Array, max_len: int) -> dict:
    """Cache after a left-aligned prefix (int32 [N, P], bool [N, P]): the LSTM state there."""
    del max_len
    hs, cs = self._states(users)
    last = (mask.sum(-1) - 1).astype(jnp.int32)
    take = lambda x: jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
    return {"h": take(hs), "c": take(cs)}

  def decode_logits(self, cache: dict) -> jax.Array:
    """Raw scores float [N, U] of the next user."""
    return self.out(cache["h"])

  def decode_step(self, cache: dict, user: jax.Array) -> dict:
    """Feeds one user per row (int32 [N])."""
    gx = self.embedding[...][user] @ self.w_x[...] + self.b[...][None, :]
    (h, c), _ = self._cell((cache["h"], cache["c"]), gx)
    return {"h": h, "c": c}

  def _cell(self, carry, gx):
    h, c = carry
    i, f, g, o = jnp.split(gx + h @ self.w_h[...], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), (h, c)

  def _states(self, users: jax.Array) -> tuple[jax.Array, jax.Array]:
    gates_x = self.embedding[...][users] @ self.w_x[...] + self.b[...][None, None, :]
    zeros = jnp.zeros((users.shape[0], self.dim), gates_x.dtype)
    _, (hs, cs) = jax.lax.scan(self._cell, (zeros, zeros), jnp.swapaxes(gates_x, 0, 1))
    return jnp.swapaxes(hs, 0, 1), jnp.swapaxes(cs, 0, 1)
