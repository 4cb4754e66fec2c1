"""Shared pieces of the popularity models: explicit-key dropout, a masked LSTM, and the functional
split/merge wrappers that let code outside ``models/`` see only pytrees of arrays."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout with an explicit key; identity when ``key`` is None (evaluation) or rate is 0."""
  if key is None or rate <= 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class MaskedLSTM(nnx.Module):
  """One-layer LSTM over padded sequences; padded steps carry the state through and output zeros.

  Gates (Hochreiter & Schmidhuber; the standard form with i, f, g, o):
  z = W x_t + U h_{t-1} + b; c_t = σ(f) c_{t-1} + σ(i) tanh(g); h_t = σ(o) tanh(c_t).
  """

  def __init__(self, in_dim: int, hidden_dim: int, *, rngs: nnx.Rngs):
    self.hidden_dim = hidden_dim
    self.wx = nnx.Linear(in_dim, 4 * hidden_dim, rngs=rngs)
    self.wh = nnx.Linear(hidden_dim, 4 * hidden_dim, use_bias=False, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Runs the LSTM.

    Args:
      x: float [B, T, E] inputs.
      mask: bool [B, T] valid steps (a prefix of each row).

    Returns:
      (outputs float [B, T, H] with zeros at padded steps, last valid hidden state float [B, H]).
    """
    b = x.shape[0]
    gx = self.wx(x)
    wh = self.wh.kernel[...]
    h0 = jnp.zeros((b, self.hidden_dim), gx.dtype)

    def step(carry, inp):
      h, c = carry
      g, m = inp
      z = g + h @ wh
      i, f, gg, o = jnp.split(z, 4, axis=-1)
      c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
      h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
      m = m[:, None]
      # Padded steps keep the previous state so the final carry is the last valid one.
      return ((jnp.where(m, h_new, h), jnp.where(m, c_new, c)),
              jnp.where(m, h_new, jnp.zeros_like(h_new)))

    (h, _), hs = jax.lax.scan(step, (h0, h0), (jnp.swapaxes(gx, 0, 1), jnp.swapaxes(mask, 0, 1)))
    return jnp.swapaxes(hs, 0, 1), h


def make_rngs(seed: int) -> nnx.Rngs:
  """The ``nnx.Rngs`` that initialises a model's parameters from an integer seed."""
  return nnx.Rngs(seed)


def split_model(model: nnx.Module) -> tuple[Any, Any, Any]:
  """(graphdef, params, extra): trainable ``nnx.Param`` state and the rest (BatchNorm statistics)."""
  graphdef, params, extra = nnx.split(model, nnx.Param, ...)
  return graphdef, params, extra


def apply_model(graphdef: Any, params: Any, extra: Any, *args, **kwargs) -> tuple[Any, Any]:
  """Calls the merged model functionally; returns (outputs, updated extra state)."""
  # copy=True: fresh Variables at the current trace level (BatchNorm mutates its statistics, which
  # nnx forbids on Variables created outside a jax.grad trace).
  model = nnx.merge(graphdef, params, extra, copy=True)
  out = model(*args, **kwargs)
  _, _, new_extra = nnx.split(model, nnx.Param, ...)
  return out, new_extra


def make_apply(graphdef: Any) -> Callable:
  """``apply(params, extra, *args, **kw) -> (outputs, new_extra)`` bound to ``graphdef``."""
  def apply(params, extra, *args, **kwargs):
    return apply_model(graphdef, params, extra, *args, **kwargs)
  return apply
