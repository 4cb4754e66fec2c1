"""The window convolution of NDM's output layer (Eq. 7).

``pre_j = Σ_{n < win} act(u_{j-n}) W^C_n + b`` is a 1-D convolution of width ``win`` over the
positions, causal, with zeros before the cascade start (the authors' Conv1d with causal zero
padding). :func:`window_stack` lays the window out as features, so the convolution is one
matrix product ``window_stack(act) @ W^C`` with ``W^C`` reshaped to ``[win * d, U]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["window_stack", "window_conv"]


def window_stack(x: jax.Array, window: int) -> jax.Array:
  """``[x_j, x_{j-1}, .., x_{j-win+1}]`` at every position, zeros before the start.

  Args:
    x: float [B, L, d].
    window: win >= 1.

  Returns:
    float [B, L, win * d].
  """
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  shifted = [x] + [jnp.pad(x, ((0, 0), (n, 0), (0, 0)))[:, :-n] for n in range(1, window)]
  return jnp.concatenate(shifted, axis=-1)


def window_conv(x: jax.Array, w: jax.Array, bias: jax.Array | None = None) -> jax.Array:
  """``Σ_{n < win} x_{j-n} W_n (+ b)`` (Eq. 7 before the softmax).

  Args:
    x: float [B, L, d].
    w: float [win, d, U] the position-specific projections ``W^C_0 .. W^C_{win-1}``.
    bias: optional float [U].

  Returns:
    float [B, L, U].
  """
  window, d, u = w.shape
  out = window_stack(x, window) @ w.reshape(window * d, u)
  return out if bias is None else out + bias[None, None, :]
