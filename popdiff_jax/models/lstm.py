"""The LSTM next-user baseline (NDM Sec. 5.2): an LSTM over the infected users, a softmax over users.

Embedding -> one-layer LSTM (``nn.lstm_scan``, gates ``(i, f, g, o)``, forget-gate bias 1) ->
dropout -> dense scores over users, masked and normalised like NDM's by the loss. The paper tunes
the embedding and hidden sizes in {16, 32, 64, 128}; the default 64 matches NDM's d. Dropout
(0.1, explicit key) on the LSTM output, as NDM uses on its attention.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from popdiff_jax import _validate as v
from popdiff_jax._errors import ConfigError
from popdiff_jax.nn.dropout import dropout
from popdiff_jax.nn.lstm import lstm_cell, lstm_scan
from popdiff_jax.types import CascadeBatch

__all__ = ["LSTMConfig", "LSTMNextUser"]


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
  """The LSTM baseline's hyperparameters.

  Attributes:
    num_items: vocabulary size |U| including padding and Terminate; set from the data.
    dim: embedding and hidden size (NDM's d).
    dropout_rate: dropout on the hidden states.
  """

  name: ClassVar[str] = "lstm"
  num_items: int = 0
  dim: int = 64
  dropout_rate: float = 0.1

  def __post_init__(self):
    v.non_negative(self, "num_items")
    v.positive(self, "dim")
    v.probability(self, "dropout_rate")


class LSTMNextUser(nnx.Module):
  """Embedding -> LSTM -> scores over users, on a :class:`~popdiff_jax.types.CascadeBatch`.

  Initialisation: embedding N(0, 1), input weights Glorot-uniform, recurrent weights
  orthogonal, gate bias 0 except the forget gate's 1, output layer flax's ``nnx.Linear``.

  Args:
    config: :class:`LSTMConfig` (``num_items`` set).
    rngs: initialisation keys.
  """

  def __init__(self, config: LSTMConfig, *, rngs: nnx.Rngs):
    if config.num_items < 3:
      raise ConfigError("LSTMConfig", "num_items", config.num_items,
                        "must be set to the vocabulary size (>= 3) before init")
    self.config = config
    dim = config.dim
    self.dim = dim
    self.dropout_rate = config.dropout_rate
    glorot = nnx.initializers.glorot_uniform()
    self.embedding = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(),
                                                            (config.num_items, dim)))
    self.w_x = nnx.Param(glorot(rngs.params(), (dim, 4 * dim)))
    self.w_h = nnx.Param(nnx.initializers.orthogonal()(rngs.params(), (dim, 4 * dim)))
    self.b = nnx.Param(jnp.zeros((4 * dim,)).at[dim:2 * dim].set(1.0))
    self.out = nnx.Linear(dim, config.num_items, rngs=rngs)

  def init_output(self, bias: jax.Array | None = None, scale: float = 1.0) -> None:
    """Data-dependent initialisation of the output layer (``Model.update``): bias to ``bias``
    (float [U]), kernel multiplied by ``scale``."""
    if bias is not None:
      self.out.bias[...] = jnp.asarray(bias, jnp.float32)
    if scale != 1.0:
      self.out.kernel[...] = self.out.kernel[...] * scale

  def _states(self, users: jax.Array) -> tuple[jax.Array, jax.Array]:
    gates_x = self.embedding[...][users] @ self.w_x[...] + self.b[...][None, None, :]
    hs, cs, _ = lstm_scan(gates_x, self.w_h[...])
    return hs, cs

  def hidden_states(self, users: jax.Array) -> jax.Array:
    """LSTM outputs float [B, L, d] (a position sees only itself and earlier positions)."""
    return self._states(users)[0]

  def __call__(self, batch: CascadeBatch, *, key: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Raw scores float [B, L, U]; row ``j`` scores the user after step ``j``."""
    del train  # causal by construction; padded positions come after the real ones
    hs = dropout(self.hidden_states(batch.users), self.dropout_rate, key)
    return self.out(hs)

  def output_features(self, batch: CascadeBatch, *, key: jax.Array | None = None,
                      train: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(features [B, L, d], w [d, U], bias [U])`` with ``__call__ == features @ w + bias``, for
    ``losses.lean_next_user_nll`` (no ``[B, L, U]`` scores formed)."""
    del train
    hs = dropout(self.hidden_states(batch.users), self.dropout_rate, key)
    return hs, self.out.kernel[...], self.out.bias[...]

  # ------------------------------------------------------------------ incremental decoding (sampling)

  def decode_init(self, users: jax.Array, mask: jax.Array, max_len: int) -> dict:
    """Cache after a left-aligned prefix (int32 [N, P], bool [N, P]): the LSTM state there."""
    del max_len
    hs, cs = self._states(users)
    last = (mask.sum(-1) - 1).astype(jnp.int32)
    take = lambda x: jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]  # noqa: E731
    return {"h": take(hs), "c": take(cs)}

  def decode_logits(self, cache: dict) -> jax.Array:
    """Raw scores float [N, U] of the next user."""
    return self.out(cache["h"])

  def decode_step(self, cache: dict, user: jax.Array) -> dict:
    """Feeds one user per row (int32 [N])."""
    gx = self.embedding[...][user] @ self.w_x[...] + self.b[...][None, :]
    h, c = lstm_cell(gx + cache["h"] @ self.w_h[...], cache["c"])
    return {"h": h, "c": c}
