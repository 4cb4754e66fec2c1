"""Multimodal social-media popularity (Meghawat et al., MIPR 2018, Sec. 3.2 and 3.4, Fig. 1 and 3).

The Conv1d regressor reads the 14 standardised CON-SOC features (or 15 with the image model's
score) as a length-F sequence of one channel: Conv1d(20) -> ReLU -> dropout 0.1 -> Conv1d(50) ->
ReLU -> dropout 0.3 -> flatten -> Dense(50) -> Dense(1), trained with MSE. The paper gives neither
the kernel size nor the activation of Dense(50): we use kernel 3 with 'valid' padding (Keras'
default) and ReLU. The random forest and the gradient-boosting baseline are scikit-learn models and
live in ``popdiff_jax.experiments.popularity`` (they are not JAX code).
"""

from __future__ import annotations

import jax
from flax import nnx

from popdiff_jax.models._popularity_common import dropout


class SMPConv1d(nnx.Module):
  """The 6-layer Conv1d model of Fig. 1."""

  def __init__(self, num_features: int, *, channels: tuple[int, int] = (20, 50),
               kernel_size: int = 3, dense: int = 50, dropout_rates: tuple[float, float] = (0.1, 0.3),
               rngs: nnx.Rngs):
    if num_features < 2 * (kernel_size - 1) + 1:
      raise ValueError(f"{num_features} features are too few for two kernels of {kernel_size}")
    self.conv1 = nnx.Conv(1, channels[0], (kernel_size,), padding="VALID", rngs=rngs)
    self.conv2 = nnx.Conv(channels[0], channels[1], (kernel_size,), padding="VALID", rngs=rngs)
    length = num_features - 2 * (kernel_size - 1)
    self.fc1 = nnx.Linear(length * channels[1], dense, rngs=rngs)
    self.fc2 = nnx.Linear(dense, 1, rngs=rngs)
    self.dropout_rates = dropout_rates

  def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
    """Predicted popularity.

    Args:
      x: float [B, F] standardised features.
      key: dropout key (None: no dropout, for evaluation).

    Returns:
      float [B].
    """
    k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
    h = jax.nn.relu(self.conv1(x[:, :, None]))
    h = dropout(h, self.dropout_rates[0], k1)
    h = jax.nn.relu(self.conv2(h))
    h = dropout(h, self.dropout_rates[1], k2)
    h = jax.nn.relu(self.fc1(h.reshape(h.shape[0], -1)))
    return self.fc2(h)[:, 0]
