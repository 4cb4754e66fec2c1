"""The LSTM cell of every recurrent model, and a scan of it over padded sequences.

One cell (Hochreiter & Schmidhuber, with the forget gate of Gers et al.), gate blocks in the
order ``(i, f, g, o)`` of the pre-activation ``z = W x + U h_prev + b``::

  i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
  c = f ⊙ c_prev + i ⊙ g        h = o ⊙ tanh(c)

It is the LSTM baseline's cell (NDM Sec. 5.2), the dual-attention caption LSTM (Zhang et al.),
and Eq. 1 of Diffusion-LSTM (Hu et al.), where ``h_prev, c_prev`` are the *parent's* states
(``popdiff_jax.nn.tree_lstm``). Models own their weights (each with its paper's initialisation)
and call these functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["lstm_cell", "lstm_scan"]


def lstm_cell(z: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One LSTM update from its pre-activation.

  Args:
    z: float [..., 4H] ``W x + U h_prev + b``, gate blocks ``(i, f, g, o)``.
    c_prev: float [..., H] previous memory.

  Returns:
    ``(h, c)``, each float [..., H].
  """
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


def lstm_scan(gates_x: jax.Array, w_h: jax.Array, mask: jax.Array | None = None
              ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
  """Runs :func:`lstm_cell` over the time axis of a batch of sequences.

  Args:
    gates_x: float [B, T, 4H] the input term ``W x_t + b`` of every step.
    w_h: float [H, 4H] recurrent weights ``U``.
    mask: optional bool [B, T] real steps (a prefix of each row). A padded step keeps the
      previous state and outputs zeros, so the final state is the last real step's.

  Returns:
    ``(hs, cs, (h_last, c_last))``: hidden states and memories float [B, T, H] (zeros at padded
    steps when ``mask`` is given) and the final state float [B, H] each.
  """
  b = gates_x.shape[0]
  hidden = w_h.shape[0]
  zeros = jnp.zeros((b, hidden), gates_x.dtype)

  def step(carry, inputs):
    h, c = carry
    if mask is None:
      h, c = lstm_cell(inputs + h @ w_h, c)
      return (h, c), (h, c)
    g, m = inputs
    h_new, c_new = lstm_cell(g + h @ w_h, c)
    m = m[:, None]
    carry = (jnp.where(m, h_new, h), jnp.where(m, c_new, c))
    return carry, (jnp.where(m, h_new, jnp.zeros_like(h_new)),
                   jnp.where(m, c_new, jnp.zeros_like(c_new)))

  xs = jnp.swapaxes(gates_x, 0, 1)
  if mask is not None:
    xs = (xs, jnp.swapaxes(mask, 0, 1))
  last, (hs, cs) = jax.lax.scan(step, (zeros, zeros), xs)
  return jnp.swapaxes(hs, 0, 1), jnp.swapaxes(cs, 0, 1), last
