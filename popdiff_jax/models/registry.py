"""The one way to build a model: ``init(config, key)``, then pure ``model.apply(params, batch)``.

Every model of the library is a flax NNX module described by a frozen config dataclass (in its
own file of ``popdiff_jax.models``, with the paper's defaults). :func:`init` builds the module
from the config and a PRNG key and splits it once (``nnx.split``) into

* a :class:`Model`: the config and the flax graph definition, static and hashable (it can be a
  static argument of ``jax.jit``), whose methods are pure functions of arrays;
* :class:`Variables`: ``params`` (the ``nnx.Param`` leaves, what the optimiser trains) and
  ``state`` (every other variable: BatchNorm statistics, fixed embedding blocks; often empty).

::

  model, variables = popdiff_jax.models.init(NDMConfig(num_items=100, dim=16, num_heads=2),
                                             jax.random.key(0))
  logits = jax.jit(model.apply)(variables.params, batch)              # float32 [B, L, 100]
  grads = jax.grad(lambda p: loss(model.apply(p, batch, key=k)))(variables.params)

Modules take a batch of ``popdiff_jax.types`` and two keywords, ``key`` (a dropout key: None is
evaluation) and ``train`` (batch statistics of BatchNorm); ``nnx.merge`` happens only in
:meth:`Model.bind`, here and in ``popdiff_jax.training``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, NamedTuple

import jax
from flax import nnx

__all__ = ["Model", "Variables", "init", "MODEL_NAMES", "model_class", "config_class"]

# name -> (module, config class, model class). Imported lazily: building one model loads only it.
_REGISTRY = {
    "ndm": ("popdiff_jax.models.ndm", "NDMConfig", "NDM"),
    "lstm": ("popdiff_jax.models.lstm", "LSTMConfig", "LSTMNextUser"),
    "diffusion_lstm": ("popdiff_jax.models.diffusion_lstm", "DiffusionLSTMConfig",
                       "DiffusionLSTM"),
    "dual_attention": ("popdiff_jax.models.dual_attention", "DualAttentionConfig",
                       "DualAttention"),
    "fusion_dnn": ("popdiff_jax.models.fusion_dnn", "FusionDNNConfig", "FusionDNN"),
    "smp_conv1d": ("popdiff_jax.models.smp", "SMPConv1dConfig", "SMPConv1d"),
}
MODEL_NAMES = tuple(_REGISTRY)


def _lookup(name: str, which: int):
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
  return getattr(importlib.import_module(_REGISTRY[name][0]), _REGISTRY[name][which])


def config_class(name: str) -> type:
  """The config dataclass of a registered model (e.g. ``config_class("ndm")(dim=32)``)."""
  return _lookup(name, 1)


def model_class(name: str) -> type:
  """The flax module class of a registered model."""
  return _lookup(name, 2)


class Variables(NamedTuple):
  """A model's arrays after :func:`init`.

  Attributes:
    params: ``nnx.State`` of the trainable ``nnx.Param`` leaves.
    state: ``nnx.State`` of the other variables (BatchNorm statistics, fixed tables); empty for
      most models.
  """

  params: Any
  state: Any


@dataclasses.dataclass(frozen=True)
class Model:
  """A built model: its config and graph, with pure functions of its variables.

  Attributes:
    config: the model's config dataclass.
    graphdef: the ``nnx.GraphDef`` of the module (static).
  """

  config: Any
  graphdef: nnx.GraphDef

  @property
  def name(self) -> str:
    """The registry name of the model (``config.name``)."""
    return self.config.name

  def bind(self, params: Any, state: Any = None) -> nnx.Module:
    """The flax module with these variables (for methods other than the batch calls, e.g. the
    sampler's ``decode_step``). Call it inside the jitted function that uses the module."""
    if state is None:
      state = nnx.State({})
    return nnx.merge(self.graphdef, params, state, copy=True)

  def apply(self, params: Any, batch: Any, *, key: jax.Array | None = None, state: Any = None,
            method: str = "__call__", **kwargs) -> Any:
    """The model's output on a batch, in evaluation mode unless ``key`` is given.

    Args:
      params: ``Variables.params``.
      batch: a batch of ``popdiff_jax.types`` (see the model's docstring).
      key: dropout key (training mode for dropout), or None.
      state: ``Variables.state`` (needed by models that have one, e.g. BatchNorm statistics).
      method: the module method to call (e.g. ``"output_features"`` for the lean loss).
      **kwargs: further keywords of that method.

    Returns:
      The method's output (the model's docstring gives its shape).
    """
    module = self.bind(params, state)
    return getattr(module, method)(batch, key=key, train=False, **kwargs)

  def apply_train(self, params: Any, state: Any, batch: Any, key: jax.Array | None, *,
                  method: str = "__call__", **kwargs) -> tuple[Any, Any]:
    """The training-mode output and the updated state (e.g. BatchNorm running averages).

    Returns:
      ``(outputs, new_state)``; ``new_state`` is ``state`` for models without one.
    """
    module = self.bind(params, state)
    out = getattr(module, method)(batch, key=key, train=True, **kwargs)
    _, _, new_state = nnx.split(module, nnx.Param, ...)
    return out, new_state

  def update(self, variables: Variables, method: str, *args, **kwargs) -> Variables:
    """New variables after a module method that sets some of them (data-dependent
    initialisation, e.g. ``init_output`` or ``set_frozen_embedding``); outside ``jax.jit``."""
    module = self.bind(variables.params, variables.state)
    getattr(module, method)(*args, **kwargs)
    _, params, state = nnx.split(module, nnx.Param, ...)
    return Variables(params, state)


def init(config: Any, key: jax.Array | int) -> tuple[Model, Variables]:
  """Builds the model of ``config`` with parameters drawn from ``key``.

  Args:
    config: a model config (``NDMConfig``, ``LSTMConfig``, ``DiffusionLSTMConfig``,
      ``DualAttentionConfig``, ``FusionDNNConfig``, ``SMPConv1dConfig``); its ``name`` selects
      the model.
    key: a ``jax.random.key`` or an integer seed.

  Returns:
    ``(model, variables)``.
  """
  cls = model_class(config.name)
  module = cls(config, rngs=nnx.Rngs(params=key))
  graphdef, params, state = nnx.split(module, nnx.Param, ...)
  return Model(config, graphdef), Variables(params, state)
