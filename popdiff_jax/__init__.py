"""popdiff_jax: functional JAX models of information diffusion and social-media popularity.

The curated API: batch types, the model registry and every model config, the losses module, the
training step and loop, data loading and batching, simulation and metrics. Everything else is
reached through its subpackage (``popdiff_jax.nn``, ``popdiff_jax.projects``, ...). Everything
here imports without tensorflow-datasets (the TFDS builders live in ``popdiff_jax.data``).
"""

from popdiff_jax import losses
from popdiff_jax._errors import ConfigError, DataError
from popdiff_jax.data.batching import cascade_batch, make_batches
from popdiff_jax.data.cascades import CascadeDataset, load_dataset
from popdiff_jax.models import Model, Variables, init
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects import find_config
from popdiff_jax.simulate.sampler import simulate_dataset
from popdiff_jax.training import (TrainState, create_train_state, fit, make_eval_step,
                                  make_train_step)
from popdiff_jax.types import CascadeBatch, PostBatch, TreeBatch

__version__ = "0.2.0.dev0"
__all__ = [
    "ConfigError", "DataError",
    "CascadeBatch", "TreeBatch", "PostBatch",
    "init", "Model", "Variables", "NDMConfig", "LSTMConfig",
    "losses",
    "TrainState", "create_train_state", "make_train_step", "make_eval_step", "fit",
    "load_dataset", "CascadeDataset", "make_batches", "cascade_batch",
    "simulate_dataset",
    "find_config",
]
