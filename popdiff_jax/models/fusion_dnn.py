"""Multi-feature fusion DNN (Ding, Wang & Wang, ACM MM 2019, Sec. 4.2 and Fig. 2).

Deep image feature, deep text feature and numerical features are concatenated and regressed by four
dense layers, each followed by batch normalisation and ReLU; the loss is MSE plus an L2 penalty
(Adam's coupled weight decay 1e-3 in the paper's PyTorch code path; see
``popdiff_jax.experiments.popularity``).

Deviations (the paper is silent or its figure illegible): the four hidden widths are
(512, 256, 128, 64) and a final linear unit gives the score (a ReLU on the output would clip it);
BatchNorm uses PyTorch's defaults (momentum 0.1, i.e. flax momentum 0.9, eps 1e-5).

BatchNorm running statistics are explicit state: ``split_model`` returns them as the ``extra``
pytree (``nnx.BatchStat``), which the train step threads through ``TrainState.extra``; the train
call (``train=True``) normalises with batch statistics and returns updated running averages, the
eval call (``train=False``) uses the running averages and leaves them unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class FusionDNN(nnx.Module):
  """Four Dense-BatchNorm-ReLU blocks over [image, text, numeric], then a linear output."""

  def __init__(self, image_dim: int, text_dim: int, numeric_dim: int, *,
               hidden: tuple[int, ...] = (512, 256, 128, 64), momentum: float = 0.9,
               rngs: nnx.Rngs):
    dims = (image_dim + text_dim + numeric_dim,) + tuple(hidden)
    self.dense = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.norm = nnx.List([nnx.BatchNorm(b, momentum=momentum, epsilon=1e-5, rngs=rngs)
                          for b in dims[1:]])
    self.out = nnx.Linear(dims[-1], 1, rngs=rngs)

  def __call__(self, image: jax.Array, text: jax.Array, numeric: jax.Array, *,
               train: bool = False) -> jax.Array:
    """Predicted (standardised) popularity.

    Args:
      image: float [B, Di] deep image feature (zeroed columns for an ablated group).
      text: float [B, Dt] deep text feature.
      numeric: float [B, Dn] numerical features.
      train: batch statistics and running-average updates (True) or running averages (False).

    Returns:
      float [B].
    """
    x = jnp.concatenate([image, text, numeric], axis=-1)
    for dense, norm in zip(self.dense, self.norm):
      x = jax.nn.relu(norm(dense(x), use_running_average=not train))
    return self.out(x)[:, 0]
