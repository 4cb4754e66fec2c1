"""Training: the step factories (the only jit sites of training), ``fit``, checkpoints, the mesh.

* ``steps``: ``make_train_step(model, loss_fn, tx)``, ``make_eval_step``, ``make_predict_step``,
  ``evaluate``, and ``compile_train_step`` (jit with donation, decided once there).
* ``loop``: ``fit``, the epoch loop with validation, early stopping, checkpoints and resume.
* ``state``: ``TrainState`` (step, params, opt_state, extra), ``apply_gradients`` and
  ``init_model`` (``models.init`` in one compiled program).
* ``checkpoint``: orbax checkpoints with automatic resume and a corrupt-file fallback.
* ``mesh``: data parallelism over a device mesh and several steps per dispatched call.
"""

from popdiff_jax.training.checkpoint import Checkpointer, CheckpointError
from popdiff_jax.training.loop import FitResult, TrainingDiverged, fit
from popdiff_jax.training.state import (TrainState, apply_gradients, create_train_state,
                                        init_model)
from popdiff_jax.training.steps import (compile_train_step, evaluate, make_eval_step,
                                        make_predict_step, make_train_step)

__all__ = ["Checkpointer", "CheckpointError", "FitResult", "TrainingDiverged", "fit", "TrainState",
           "apply_gradients", "create_train_state", "init_model", "compile_train_step", "evaluate",
           "make_eval_step", "make_predict_step", "make_train_step"]
