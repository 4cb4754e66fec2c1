"""Multi-feature fusion DNN (Ding, Wang & Wang, ACM MM 2019, Sec. 4.2 and Fig. 2).

Deep image feature, deep text feature and numerical features (``image``, ``text`` and
``numeric`` of a :class:`~popdiff_jax.types.PostBatch`) are concatenated and regressed by four
dense layers, each followed by batch normalisation and ReLU; the loss is MSE
(``losses.masked_mse``) plus an L2 penalty (Adam's coupled weight decay 1e-3 of the paper's
PyTorch code path; ``projects.fusion_dnn.experiment``).

Deviations (the paper is silent or its figure illegible): the four hidden widths are
(512, 256, 128, 64) and a final linear unit gives the score (a ReLU on the output would clip it);
BatchNorm uses PyTorch's defaults (momentum 0.1, i.e. flax momentum 0.9, eps 1e-5). The Dense
layers before a BatchNorm have no bias (PyTorch's ``nn.Linear`` has one): BatchNorm subtracts the
batch mean, so that bias's gradient is exactly zero and, initialised at zero, it stays zero in exact
arithmetic. In float32 its gradient is rounding noise (~1e-8, different for every order of the
sums, e.g. 1 device vs 4 or another CPU's vector width), which Adam scales to steps of +-lr; they
moved the running means and with them the evaluation output by 1e-3 to 4e-3.

BatchNorm running statistics are ``nnx.BatchStat`` variables: ``models.init`` puts them in
``Variables.state``, the training step carries them in ``TrainState.extra``. ``train=True``
normalises with batch statistics and updates the running averages (``Model.apply_train``);
``train=False`` uses the running averages and leaves them unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax import _validate as v
from popdiff_jax._errors import ConfigError
from popdiff_jax.types import PostBatch

__all__ = ["FusionDNNConfig", "FusionDNN"]


@dataclasses.dataclass(frozen=True)
class FusionDNNConfig:
  """The fusion DNN's hyperparameters.

  Attributes:
    image_dim: width of the deep image feature; set from the data (0 until then).
    text_dim: width of the deep text feature; set from the data.
    numeric_dim: number of numerical features (paper: 10); set from the data.
    hidden: widths of the Dense-BatchNorm-ReLU blocks (paper: four, widths not legible).
    momentum: flax BatchNorm momentum (0.9 = PyTorch's 0.1).
    epsilon: BatchNorm epsilon (PyTorch's 1e-5).
  """

  name: ClassVar[str] = "fusion_dnn"
  image_dim: int = 0
  text_dim: int = 0
  numeric_dim: int = 0
  hidden: tuple[int, ...] = (512, 256, 128, 64)
  momentum: float = 0.9
  epsilon: float = 1e-5

  def __post_init__(self):
    v.non_negative(self, "image_dim", "text_dim", "numeric_dim")
    v.require(self, "hidden", len(self.hidden) > 0 and all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in self.hidden),
              "must be one or more positive widths")
    v.probability(self, "momentum")
    v.positive(self, "epsilon")


class FusionDNN(nnx.Module):
  """Dense-BatchNorm-ReLU blocks over [image, text, numeric], then a linear output.

  Args:
    config: :class:`FusionDNNConfig` (input widths set, not all zero).
    rngs: parameter initialisation keys.
  """

  def __init__(self, config: FusionDNNConfig, *, rngs: nnx.Rngs):
    width = config.image_dim + config.text_dim + config.numeric_dim
    if width < 1:
      raise ConfigError("FusionDNNConfig", "numeric_dim", config.numeric_dim,
                        "the input widths must be set from the data (sum >= 1) before init")
    self.config = config
    dims = (width,) + tuple(config.hidden)
    # No bias before BatchNorm (module docstring).
    self.dense = nnx.List([nnx.Linear(a, b, use_bias=False, rngs=rngs)
                           for a, b in zip(dims[:-1], dims[1:])])
    self.norm = nnx.List([nnx.BatchNorm(b, momentum=config.momentum, epsilon=config.epsilon,
                                        rngs=rngs) for b in dims[1:]])
    self.out = nnx.Linear(dims[-1], 1, rngs=rngs)

  def __call__(self, batch: PostBatch, *, key: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Predicted (standardised) popularity.

    Args:
      batch: a ``PostBatch`` with ``image`` float [B, Di], ``text`` float [B, Dt] and
        ``numeric`` float [B, Dn] (zeroed columns for an ablated group).
      key: unused (no dropout).
      train: batch statistics and running-average updates (True) or running averages (False).

    Returns:
      float [B].
    """
    del key
    x = jnp.concatenate([batch.image, batch.text, batch.numeric], axis=-1)
    for dense, norm in zip(self.dense, self.norm):
      x = jax.nn.relu(norm(dense(x), use_running_average=not train))
    return self.out(x)[:, 0]
