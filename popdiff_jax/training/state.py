"""The training state: a plain pytree that every jitted step takes and returns."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  """Everything a training run needs to continue, as one pytree (what a checkpoint holds).

  Attributes:
    step: int32 [] number of optimiser updates applied so far.
    params: the model's trainable parameters (an ``nnx.State`` of ``nnx.Param`` from ``nnx.split``,
      or any pytree of arrays).
    opt_state: the optax optimiser state for ``params``.
    extra: non-trainable state that the step updates (e.g. BatchNorm running statistics), or ``()``.
  """

  step: jax.Array
  params: Any
  opt_state: optax.OptState
  extra: Any = ()


def create_train_state(params: Any, tx: optax.GradientTransformation, extra: Any = ()) -> TrainState:
  """A fresh state at step 0 with ``tx`` initialised on ``params`` (one compiled program)."""
  step, opt_state = jax.jit(lambda p: (jnp.zeros((), jnp.int32), tx.init(p)))(params)
  return TrainState(step=step, params=params, opt_state=opt_state, extra=extra)


def apply_gradients(state: TrainState, grads: Any, tx: optax.GradientTransformation,
                    extra: Any | None = None) -> TrainState:
  """One optimiser update; ``extra`` replaces the non-trainable state when given."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                    extra=state.extra if extra is None else extra)
