"""Multimodal social-media popularity (Meghawat et al., MIPR 2018, Sec. 3.2 and 3.4, Fig. 1 and 3).

The Conv1d regressor reads the 14 standardised CON-SOC features (``features`` of a
:class:`~popdiff_jax.types.PostBatch`; 15 with the image model's score) as a length-F sequence of
one channel: Conv1d(20) -> ReLU -> dropout 0.1 -> Conv1d(50) -> ReLU -> dropout 0.3 -> flatten ->
Dense(50) -> Dense(1), trained with MSE (``losses.masked_mse``). The paper gives neither the
kernel size nor the activation of Dense(50): we use kernel 3 with 'valid' padding (Keras'
default) and ReLU. The random forest is a scikit-learn model (``projects.multimodal_smp``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
from flax import nnx

from popdiff_jax import _validate as v
from popdiff_jax.nn.dropout import dropout
from popdiff_jax.types import PostBatch

__all__ = ["SMPConv1dConfig", "SMPConv1d"]


@dataclasses.dataclass(frozen=True)
class SMPConv1dConfig:
  """The Conv1d regressor's hyperparameters (Fig. 1).

  Attributes:
    num_features: input features F (14 CON-SOC, 15 with the image score); set from the data.
    channels: filters of the two Conv1d layers (paper: 20, 50).
    kernel_size: Conv1d kernel (not in the paper; 3).
    dense: units of the hidden Dense layer (paper: 50).
    dropout_rates: dropout after each Conv1d (paper: 0.1, 0.3).
  """

  name: ClassVar[str] = "smp_conv1d"
  num_features: int = 14
  channels: tuple[int, int] = (20, 50)
  kernel_size: int = 3
  dense: int = 50
  dropout_rates: tuple[float, float] = (0.1, 0.3)

  def __post_init__(self):
    v.positive(self, "kernel_size", "dense")
    v.require(self, "channels", len(self.channels) == 2 and all(
        isinstance(c, int) and c > 0 for c in self.channels), "must be two positive widths")
    v.require(self, "dropout_rates", len(self.dropout_rates) == 2 and all(
        0.0 <= r < 1.0 for r in self.dropout_rates), "must be two rates in [0, 1)")
    v.require(self, "num_features", self.num_features >= 2 * (self.kernel_size - 1) + 1,
              f"must be >= {2 * (self.kernel_size - 1) + 1} for two kernels of "
              f"{self.kernel_size}")


class SMPConv1d(nnx.Module):
  """The 6-layer Conv1d model of Fig. 1.

  Args:
    config: :class:`SMPConv1dConfig`.
    rngs: parameter initialisation keys.
  """

  def __init__(self, config: SMPConv1dConfig, *, rngs: nnx.Rngs):
    self.config = config
    c1, c2 = config.channels
    k = config.kernel_size
    self.conv1 = nnx.Conv(1, c1, (k,), padding="VALID", rngs=rngs)
    self.conv2 = nnx.Conv(c1, c2, (k,), padding="VALID", rngs=rngs)
    length = config.num_features - 2 * (k - 1)
    self.fc1 = nnx.Linear(length * c2, config.dense, rngs=rngs)
    self.fc2 = nnx.Linear(config.dense, 1, rngs=rngs)
    self.dropout_rates = tuple(config.dropout_rates)

  def __call__(self, batch: PostBatch, *, key: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Predicted (standardised) popularity.

    Args:
      batch: a ``PostBatch`` with ``features`` float [B, F] (standardised).
      key: dropout key (None: no dropout, for evaluation); split in two, one per dropout.
      train: unused (no batch statistics).

    Returns:
      float [B].
    """
    del train
    x = batch.features
    k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
    h = jax.nn.relu(self.conv1(x[:, :, None]))
    h = dropout(h, self.dropout_rates[0], k1)
    h = jax.nn.relu(self.conv2(h))
    h = dropout(h, self.dropout_rates[1], k2)
    h = jax.nn.relu(self.fc1(h.reshape(h.shape[0], -1)))
    return self.fc2(h)[:, 0]
