"""The training and evaluation steps of every model: one factory each, given a loss or a metric.

::

  train_step(state, batch, key) -> (state, metrics)      # pure; jitted by ``fit`` (below)
  eval_step(params, state, batch) -> sums                 # jitted here
  predict_step(params, state, batch) -> outputs           # jitted here

A step is built from a :class:`~popdiff_jax.models.Model` and a pure function of the model's
output and the batch: a loss ``loss_fn(outputs, batch) -> (loss, metrics)`` for training (the
losses of ``popdiff_jax.losses`` wrapped by each project), a ``metric_fn(outputs, batch) -> sums``
for evaluation. The same factory serves all five papers' models; ``method`` selects the model's
output (e.g. ``"output_features"`` for the lean next-user loss).

**Jitting and donation, decided here once.** Training steps are jitted in one place,
:func:`compile_train_step` (called by ``training.loop.fit``), with the input state donated: the
step overwrites the state's buffers in place, so a run holds one copy of the parameters and
optimiser moments, not two. ``fit`` copies the state it is given before the first step and copies
the best epoch's parameters when it keeps them, so no array the caller holds is ever donated.
Evaluation and prediction steps donate nothing (they do not return the state).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import optax

from popdiff_jax.models.registry import Model
from popdiff_jax.training.state import TrainState, apply_gradients

__all__ = ["LossFn", "MetricFn", "make_train_step", "compile_train_step", "make_eval_step",
           "make_predict_step", "evaluate"]

#: ``loss_fn(outputs, batch) -> (loss float [], metrics dict of float [])``.
LossFn = Callable[[Any, Any], tuple[jax.Array, dict]]
#: ``metric_fn(outputs, batch) -> dict of summed float []`` (with a ``count`` entry).
MetricFn = Callable[[Any, Any], dict]


def make_train_step(model: Model, loss_fn: LossFn, tx: optax.GradientTransformation, *,
                    method: str = "__call__") -> Callable:
  """The pure ``train_step(state, batch, key) -> (state, metrics)`` of a model and a loss.

  One gradient step of ``loss_fn(model.apply_train(params, state.extra, batch, key), batch)``
  with respect to ``state.params``; the model's non-trainable state (BatchNorm statistics) is
  carried in ``state.extra``. ``metrics`` holds ``loss`` and whatever ``loss_fn`` adds.

  Args:
    model: the model (``popdiff_jax.models.init``).
    loss_fn: ``(outputs, batch) -> (loss, metrics)``.
    tx: the optimiser.
    method: the model method that gives ``outputs``.

  Returns:
    The un-jitted step (``training.loop.fit`` compiles it with :func:`compile_train_step`).
  """

  def train_step(state: TrainState, batch: Any, key: jax.Array):
    def objective(params):
      outputs, extra = model.apply_train(params, state.extra, batch, key, method=method)
      loss, metrics = loss_fn(outputs, batch)
      return loss, (metrics, extra)

    (loss, (metrics, extra)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    return apply_gradients(state, grads, tx, extra=extra), {"loss": loss, **metrics}

  return train_step


def compile_train_step(train_step: Callable, **jit_kwargs) -> Callable:
  """``jax.jit`` of a training step with its state donated (see the module docstring).

  Args:
    train_step: ``(state, batch, key) -> (state, metrics)`` or a multi-step
      ``(state, stacked_batches, base_key) -> (state, metrics)``.
    **jit_kwargs: further ``jax.jit`` arguments (``out_shardings`` for a device mesh).
  """
  return jax.jit(train_step, donate_argnums=0, **jit_kwargs)


def make_eval_step(model: Model, metric_fn: MetricFn, *, method: str = "__call__") -> Callable:
  """The jitted ``eval_step(params, state, batch) -> sums``, in evaluation mode (no dropout).

  Args:
    model: the model.
    metric_fn: ``(outputs, batch) -> dict`` of sums over the batch's real examples, with a
      ``count`` entry (``evaluate`` divides by it).
    method: the model method that gives ``outputs``.
  """

  @jax.jit
  def eval_step(params: Any, state: Any, batch: Any) -> dict:
    return metric_fn(model.apply(params, batch, state=state, method=method), batch)

  return eval_step


def make_predict_step(model: Model, *, method: str = "__call__") -> Callable:
  """The jitted ``predict_step(params, state, batch) -> outputs`` in evaluation mode."""

  @functools.partial(jax.jit)
  def predict_step(params: Any, state: Any, batch: Any) -> Any:
    return model.apply(params, batch, state=state, method=method)

  return predict_step


def evaluate(eval_step: Callable, params: Any, state: Any, batches: Iterable[Any]) -> dict:
  """Means of an eval step's sums over batches: every entry divided by its summed count, which is
  the entry ``count[<name>]`` when the sums have one, else ``count``.

  Args:
    eval_step: from :func:`make_eval_step` (or any ``(params, state, batch) -> sums``).
    params, state: the model's variables.
    batches: the evaluation batches (padded rows are masked by the metric).

  Returns:
    ``{name: float}`` without the counts; an empty evaluation gives ``{}``.
  """
  total = None
  for batch in batches:
    sums = eval_step(params, state, batch)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  if total is None:
    return {}
  total = jax.device_get(total)
  counts = {k: max(float(v), 1.0) for k, v in total.items() if k.startswith("count")}
  return {k: float(v) / counts.get(f"count[{k}]", counts["count"]) for k, v in total.items()
          if not k.startswith("count")}
