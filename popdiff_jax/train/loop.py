"""A generic epoch loop around a pure, jitted ``train_step``: keys, progress, logs, checkpoints, resume.

The loop owns everything impure (progress bars, files, early stopping); the model code owns only
pure functions::

  train_step(state, batch, key) -> (state, metrics)     # jitted by the caller, metrics: dict of scalars
  evaluate(state) -> dict[str, float]                   # validation metrics, called once per epoch

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
import time
from typing import Any, Callable, Iterable

import jax
import numpy as np
from tqdm.auto import tqdm

from popdiff_jax.train.checkpoint import Checkpointer, abstract_like
from popdiff_jax.train.state import TrainState


@dataclasses.dataclass
class FitResult:
  """What ``fit`` returns.

  Attributes:
    state: the final state with ``params`` replaced by the best parameters seen on validation.
    history: one dict per epoch (train loss, validation metrics, seconds, examples/s).
    best: the history row of the best epoch.
    resumed_from: the epoch a resumed run continued after, or None for a fresh run.
  """

  state: TrainState
  history: list[dict]
  best: dict
  resumed_from: int | None = None


def _to_py(tree: Any) -> Any:
  return jax.tree.map(lambda x: float(np.asarray(x)), tree)


def _is_better(value: float, best: float | None, mode: str) -> bool:
  if best is None or not math.isfinite(best):
    return math.isfinite(value)
  return value < best if mode == "min" else value > best


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
    base_key: the run's PRNG key; step ``s`` uses ``fold_in(base_key, s)``.
    monitor: the metric that selects the best epoch (``train_loss`` or a key of ``evaluate``'s dict).
    mode: ``"min"`` or ``"max"`` for ``monitor``.
    patience: stop after this many epochs without improvement (None: never).
    desc: progress-bar label.
    batch_size_of: number of real examples in a batch, for the examples/s figure.
    progress: show tqdm bars.
    keep_checkpoints: checkpoints kept on disk.

  Returns:
    A ``FitResult`` whose state carries the best parameters.
  """
  if mode not in ("min", "max"):
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  ckpt = Checkpointer(workdir, max_to_keep=keep_checkpoints)
  log_path = workdir / "metrics.jsonl"

  history: list[dict] = []
  best_params = state.params
  best_value: float | None = None
  bad_epochs = 0
  start_epoch = 0
  resumed_from = None
  if ckpt.latest_step() is not None:
    template = {"state": state, "best_params": state.params}
    restored, meta, _ = ckpt.restore(abstract_like(template))
    state, best_params = restored["state"], restored["best_params"]
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
  for epoch in range(start_epoch, num_epochs):
    if stopped:
      break
    t0 = time.perf_counter()
    sums: dict[str, Any] = {}
    n_steps = 0
    n_examples = 0
    bar = tqdm(train_batches(epoch), desc=f"{desc} epoch {epoch + 1}/{num_epochs}",
               disable=not progress, leave=False, unit="batch")
    for batch in bar:
      key = jax.random.fold_in(base_key, host_step)
      state, metrics = train_step(state, batch, key)
      host_step += 1
      n_steps += 1
      sums = metrics if not sums else jax.tree.map(lambda a, b: a + b, sums, metrics)
      if batch_size_of is not None:
        n_examples += batch_size_of(batch)
      if progress and n_steps % 20 == 0:
        elapsed = time.perf_counter() - t0
        bar.set_postfix(loss=f"{float(sums['loss']) / n_steps:.4f}",
                        ex_s=f"{n_examples / max(elapsed, 1e-9):.0f}")
    bar.close()
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    row = {"epoch": epoch, "step": host_step, "seconds": round(seconds, 3)}
    if n_steps:
      row.update({f"train_{k}": v / n_steps for k, v in _to_py(sums).items()})
    if n_examples:
      row["examples_per_s"] = round(n_examples / max(seconds, 1e-9), 1)
    if evaluate is not None:
      row.update({k if k.startswith("val_") else f"val_{k}": float(v)
                  for k, v in evaluate(state).items()})
    if monitor not in row:
      raise KeyError(f"monitor {monitor!r} not among the epoch metrics {sorted(row)}")
    value = float(row[monitor])
    if _is_better(value, best_value, mode):
      best_value, best_params, bad_epochs = value, state.params, 0
      row["best"] = True
    else:
      bad_epochs += 1
    history.append(row)
    with log_path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    ckpt.save(host_step, {"state": state, "best_params": best_params},
              metadata={"epoch": epoch, "history": history, "best_value": best_value,
                        "bad_epochs": bad_epochs})
    if progress:
      shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
               if k not in ("step",)}
      tqdm.write(f"{desc}: {shown}")
    stopped = patience is not None and bad_epochs >= patience
  ckpt.close()

  best_rows = [r for r in history if r.get("best")]
  best = best_rows[-1] if best_rows else (history[-1] if history else {})
  return FitResult(state=state._replace(params=best_params), history=history, best=best,
                   resumed_from=resumed_from)
