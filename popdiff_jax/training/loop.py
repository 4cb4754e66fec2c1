"""``fit``: the epoch loop of every model, around a pure ``train_step``.

The loop owns everything impure (compiling the step for the devices, progress bars, files, early
stopping, checkpoints); the model code owns only pure functions::

  train_step(state, batch, key) -> (state, metrics)     # training.steps.make_train_step
  evaluate(state) -> dict[str, float]                   # validation metrics, once per epoch

A run writes ``workdir/metrics.jsonl`` (one JSON object per epoch) and ``workdir/checkpoints/``. Called
again with the same workdir it resumes after the last completed epoch, with the same keys (the step key
is ``fold_in(base_key, step)``), so an interrupted run ends with the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from popdiff_jax.training.checkpoint import Checkpointer, abstract_like
from popdiff_jax.training.mesh import fit_arguments, group_steps, stack_batches
from popdiff_jax.training.state import TrainState


class _GracefulInterrupt:
  """Ctrl-C (SIGINT) during ``fit`` asks the loop to stop at the next safe point instead of
  raising inside a compiled step, a compilation or a checkpoint save; a second Ctrl-C raises at
  once. Only in the main thread (signal handlers cannot be installed elsewhere)."""

  def __init__(self):
    self.requested = False
    self._old = None

  def _handle(self, signum, frame):
    del signum, frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    print("\ninterrupt: stopping after the current step (Ctrl-C again to stop at once)",
          file=sys.stderr, flush=True)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._old = signal.signal(signal.SIGINT, self._handle)
    return self

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGINT, self._old)
    return False


class TrainingDiverged(RuntimeError):
  """The training loss or the monitored validation metric became NaN or infinite.

  Raised at the end of the epoch where it happened, before that epoch is checkpointed: the
  workdir keeps the checkpoints of the earlier (finite) epochs, with the best of them.
  """


@dataclasses.dataclass
class FitResult:
  """What ``fit`` returns.

  Attributes:
    state: the final state with ``params`` and ``extra`` (e.g. BatchNorm statistics) replaced by
      those of the best epoch on validation.
    history: one dict per epoch (train loss, validation metrics, seconds, examples/s).
    best: the history row of the best epoch.
    resumed_from: the epoch a resumed run continued after, or None for a fresh run.
  """

  state: TrainState
  history: list[dict]
  best: dict
  resumed_from: int | None = None
  stopped_by: str = "epochs"


def _sum_steps(step_metrics: list[dict]) -> dict:
  """The sum over an epoch's calls of their metrics (each a dict of scalars), on the host in
  float64 (one batched transfer)."""
  host = jax.device_get(step_metrics)
  return jax.tree.map(lambda *xs: np.sum(np.asarray(xs, np.float64)), *host)


def _snapshot(state: TrainState, best: tuple[Any, Any] | None) -> dict:
  """What a checkpoint holds: the state and the best (params, extra); ``best_extra`` only when the
  state has non-trainable leaves (so runs without them keep the plain two-key layout)."""
  best_params, best_extra = (state.params, state.extra) if best is None else best
  out = {"state": state, "best_params": best_params}
  if jax.tree.leaves(state.extra):
    out["best_extra"] = best_extra
  return out


def _stop(ckpt: Checkpointer, history: list[dict], desc: str) -> None:
  """Ends a run interrupted by Ctrl-C: closes the checkpoints and raises KeyboardInterrupt that
  says where a rerun resumes."""
  ckpt.close()
  where = (f"a rerun resumes after epoch {history[-1]['epoch'] + 1}" if history
           else "no epoch had finished, a rerun starts over")
  raise KeyboardInterrupt(f"{desc}: interrupted; {where} (checkpoints in {ckpt.directory})")


def best_rows_epoch(history: list[dict]) -> int | None:
  """The 1-based epoch of the last row marked best (None when no row is)."""
  best = [r for r in history if r.get("best")]
  return best[-1]["epoch"] + 1 if best else None


def _is_better(value: float, best: float | None, mode: str) -> bool:
  if best is None or not math.isfinite(best):
    return math.isfinite(value)
  return value < best if mode == "min" else value > best


#: A copy of every array of a pytree in one compiled program (``jax.tree.map(jnp.copy, ...)``
#: would compile one program per leaf shape on a fresh process). ``jnp.copy`` inside ``jit``
#: writes new buffers: the copy outlives a donating step.
_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def fit(
    state: TrainState,
    *,
    train_step: Callable[[TrainState, Any, jax.Array], tuple[TrainState, dict]],
    train_batches: Callable[[int], Iterable[Any]],
    evaluate: Callable[[TrainState], dict] | None,
    workdir: str | pathlib.Path,
    num_epochs: int,
    base_key: jax.Array,
    monitor: str = "val_loss",
    mode: str = "min",
    patience: int | None = 5,
    desc: str = "train",
    batch_size_of: Callable[[Any], int] | None = None,
    progress: bool = True,
    keep_checkpoints: int = 2,
    max_seconds: float | None = None,
    num_devices: int | None = 1,
    model_parallel: int = 1,
    table_rows: int | None = None,
    pad_batches: bool = False,
    steps_per_call: int = 1,
) -> FitResult:
  """Trains for up to ``num_epochs`` epochs with validation-based early stopping.

  Args:
    state: initial state (used as the restore template when resuming).
    train_step: pure jitted step ``(state, batch, key) -> (state, metrics)``; ``metrics['loss']``
      is shown on the progress bar.
    train_batches: ``epoch -> iterable of batches``; must be deterministic in ``epoch`` for an exact
      resume.
    evaluate: validation metrics of a state, or None to monitor the training loss.
    workdir: directory for ``metrics.jsonl`` and checkpoints; reused means resumed.
    num_epochs: maximum number of epochs.
    base_key: the run's PRNG key; step ``s`` uses ``fold_in(base_key, s)``, folded inside the
      compiled step from ``state.step`` (which ``train_step`` advances by one, as
      ``training.state.apply_gradients`` does).
    monitor: the metric that selects the best epoch (``train_loss`` or a key of ``evaluate``'s dict).
    mode: ``"min"`` or ``"max"`` for ``monitor``.
    patience: stop after this many epochs without improvement (None: never).
    desc: progress-bar label.
    batch_size_of: number of real examples in a batch, for the examples/s figure.
    progress: show tqdm bars.
    keep_checkpoints: checkpoints kept on disk.
    max_seconds: a time budget for this call: once it has passed, the current epoch ends early
      (its row says ``partial``), is evaluated and checkpointed, and training stops
      (``FitResult.stopped_by == "time"``).
    num_devices: data parallelism over this many devices (1: none; 0 or None: all, across
      hosts); the batches are split over a ``("data", "model")`` mesh (``training.mesh``).
    model_parallel: width of the mesh's ``"model"`` axis; arrays with an axis of length
      ``table_rows`` (the user tables) are split over it.
    table_rows: see ``model_parallel``.
    pad_batches: pad batch rows to a multiple of the data-parallel width with masked zero rows
      (row batches only; not for models with BatchNorm, whose batch statistics would count them).
    steps_per_call: optimiser steps per dispatched call (``training.mesh.multi_step``, a
      ``lax.scan`` over same-shaped batches). The batch order and the keys are those of single
      steps, so the trajectory is the same.

  Returns:
    A ``FitResult`` whose state carries the best parameters.
  """
  if mode not in ("min", "max"):
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
  # The compiled step donates its input state: work on a copy of the caller's.
  state = _copy_tree(state)
  state, compiled = fit_arguments(train_step, state, num_devices, model_parallel,
                                  table_rows=table_rows, pad=pad_batches, keyed=True)
  train_step, multi_step = compiled["train_step"], compiled["multi_step"]
  place_batch, place_state = compiled["place_batch"], compiled["place_state"]
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  ckpt = Checkpointer(workdir, max_to_keep=keep_checkpoints)
  log_path = workdir / "metrics.jsonl"

  history: list[dict] = []
  # The step may donate its input state: the best parameters must be a copy, not a reference.
  best_params = None
  best_value: float | None = None
  bad_epochs = 0
  start_epoch = 0
  resumed_from = None
  if ckpt.latest_step() is not None:
    restored, meta, _ = ckpt.restore(abstract_like(_snapshot(state, (state.params, state.extra))))
    state = restored["state"] if place_state is None else place_state(restored["state"])
    best_params = (restored["best_params"], restored.get("best_extra", state.extra))
    history = list(meta.get("history", []))
    best_value = meta.get("best_value")
    bad_epochs = int(meta.get("bad_epochs", 0))
    start_epoch = int(meta.get("epoch", -1)) + 1
    resumed_from = start_epoch - 1
    # Rewrite the log to what the checkpoint knows, dropping rows of an epoch that never finished.
    log_path.write_text("".join(json.dumps(r) + "\n" for r in history))
  elif log_path.exists():
    log_path.unlink()

  host_step = int(state.step)
  stopped = patience is not None and bad_epochs >= patience
  stopped_by = "patience" if stopped else "epochs"
  call_start = time.perf_counter()
  interrupt = _GracefulInterrupt().__enter__()
  try:
    for epoch in range(start_epoch, num_epochs):
      if stopped:
        break
      t0 = time.perf_counter()
      # Each call's metrics stay on the device until the epoch ends (one sum, no op per step).
      step_metrics: list[dict] = []
      n_steps = 0
      n_examples = 0
      batches = train_batches(epoch)
      if steps_per_call > 1:
        groups = group_steps(list(batches), steps_per_call)
        total = sum(len(g) for g in groups)
      else:
        groups = ([b] for b in batches)
        total = len(batches) if hasattr(batches, "__len__") else None
      bar = tqdm(total=total, desc=f"{desc} epoch {epoch + 1}/{num_epochs}",
                 disable=not progress, leave=False, unit="batch")
      partial = False
      for group in groups:
        if interrupt.requested:
          break
        if max_seconds is not None and n_steps and time.perf_counter() - call_start > max_seconds:
          partial = True
          break
        if len(group) > 1:
          stacked = stack_batches(group)
          if place_batch is not None:
            stacked = place_batch(stacked, True)
          state, metrics = multi_step(state, stacked, base_key)
        else:
          batch = group[0] if place_batch is None else place_batch(group[0], False)
          state, metrics = train_step(state, batch, base_key)
        host_step += len(group)
        n_steps += len(group)
        step_metrics.append(metrics)
        if batch_size_of is not None:
          n_examples += sum(batch_size_of(b) for b in group)
        bar.update(len(group))
        if progress and n_steps % 20 < len(group) and len(step_metrics) > 20:
          # the loss of a call 20 back, already computed: reading it does not drain the queue
          shown = step_metrics[-21]["loss"]
          elapsed = time.perf_counter() - t0
          bar.set_postfix(loss=f"{float(shown) / (len(group) if len(group) > 1 else 1):.4f}",
                          ex_s=f"{n_examples / max(elapsed, 1e-9):.0f}")
      bar.close()
      if interrupt.requested:  # a partial epoch is neither evaluated nor checkpointed
        _stop(ckpt, history, desc)
      jax.block_until_ready(state)
      seconds = time.perf_counter() - t0
      row = {"epoch": epoch, "step": host_step, "seconds": round(seconds, 3), "steps": n_steps}
      if partial:
        row["partial"] = True
      if n_steps:
        sums = _sum_steps(step_metrics)
        row.update({f"train_{k}": float(v) / n_steps for k, v in sums.items()})
      if n_examples:
        row["examples_per_s"] = round(n_examples / max(seconds, 1e-9), 1)
      if evaluate is not None:
        row.update({k if k.startswith("val_") else f"val_{k}": float(v)
                    for k, v in evaluate(state).items()})
      if monitor not in row:
        raise KeyError(f"monitor {monitor!r} not among the epoch metrics {sorted(row)}")
      value = float(row[monitor])
      bad = [k for k in ("train_loss", monitor) if k in row and not math.isfinite(float(row[k]))]
      if bad:  # stop before this epoch is logged or checkpointed
        ckpt.close()
        kept = (f"the best finite epoch ({best_rows_epoch(history)}) is kept in {ckpt.directory}"
                if history else "no epoch finished before it, so nothing was checkpointed")
        values = ", ".join(f"{k} = {row[k]}" for k in bad)
        raise TrainingDiverged(f"{desc}: training diverged in epoch {epoch + 1} ({values}); "
                               f"{kept}; try a smaller learning rate")
      if _is_better(value, best_value, mode):
        best_value, bad_epochs = value, 0
        best_params = _copy_tree((state.params, state.extra))
        row["best"] = True
      else:
        bad_epochs += 1
      history.append(row)
      with log_path.open("a") as f:
        f.write(json.dumps(row) + "\n")
      ckpt.save(host_step, _snapshot(state, best_params),
                metadata={"epoch": epoch, "history": history, "best_value": best_value,
                          "bad_epochs": bad_epochs})
      if progress:
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                 if k not in ("step",)}
        tqdm.write(f"{desc}: {shown}")
      if interrupt.requested:  # the epoch is complete and saved: stop here
        _stop(ckpt, history, desc)
      stopped = patience is not None and bad_epochs >= patience
      if stopped:
        stopped_by = "patience"
      elif max_seconds is not None and time.perf_counter() - call_start > max_seconds:
        stopped, stopped_by = True, "time"
  finally:
    interrupt.__exit__()
  ckpt.close()

  best_rows = [r for r in history if r.get("best")]
  best = best_rows[-1] if best_rows else (history[-1] if history else {})
  final = state if best_params is None else state._replace(params=best_params[0],
                                                           extra=best_params[1])
  return FitResult(state=final, history=history, best=best,
                   resumed_from=resumed_from, stopped_by=stopped_by)
