"""The training state: a plain pytree that every jitted step takes and returns."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from popdiff_jax import models
from popdiff_jax.models.registry import Model, Variables


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


def init_model(config: Any, key: jax.Array | int) -> tuple[Model, Variables]:
  """``models.init`` in one compiled program: the same model and the same parameters.

  Eagerly, each initialiser and each of its operations compiles a program of its own (dozens on
  a fresh process, a few seconds on a GPU); here ``models.init`` itself runs inside one
  ``jax.jit``, which returns the parameters, and the static model is the one built while tracing.

  Args:
    config: a model config (its ``name`` selects the model).
    key: a ``jax.random.key`` or an integer seed.

  Returns:
    ``(model, variables)``, as ``models.init`` returns them.
  """
  key = jax.random.key(key) if isinstance(key, int) else key  # a traced int is no seed
  built = {}

  def draw(k):
    built["model"], variables = models.init(config, k)  # the model is static: kept from tracing
    return variables

  variables = jax.jit(draw)(key)
  return built["model"], variables
