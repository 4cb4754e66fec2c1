"""Data parallelism over a device mesh, and several training steps per dispatched call.

Every training loop in the package has the same pure step ``train_step(state, batch, key) ->
(state, metrics)``. This module turns such a step into

* a **data-parallel** step (``data_parallel``): one ``jax.jit`` with ``in_shardings`` /
  ``out_shardings`` over a ``jax.sharding.Mesh`` with a ``"data"`` axis. The batch's leading axis is
  split over the ``"data"`` devices, the state is replicated (or, with ``shard_tables``, the large
  per-user tables are split over a ``"model"`` axis), and the compiler inserts the all-reduce of the
  gradients. This is the successor of ``jax.pmap`` (in maintenance since JAX 0.8): the step's code is
  unchanged, the result equals the one-device step up to the order of floating-point sums, and the
  same code runs on 1..N devices and on several hosts (after ``jax.distributed.initialize()``,
  ``init_distributed`` below);
* a **multi-step** call (``multi_step``): ``lax.scan`` over a stack of batches of one shape, so a
  small model does many optimiser updates per dispatch (a jitted call costs tens of microseconds to
  launch on a GPU, as much as a whole step of a small model). Step ``i`` of the stack uses the key
  ``fold_in(base_key, state.step)``, the same key ``training.loop.fit`` gives a single step, so a
  multi-step call equals the single steps it replaces.

``training.loop.fit`` builds both for a step and a device count through ``fit_arguments`` (its
``num_devices``, ``model_parallel`` and ``steps_per_call`` arguments).

Batches whose rows do not divide by the data-parallel width: with ``pad=True`` (``data_parallel``,
``shard_batch``, ``fit_arguments``) they are padded up to the next multiple with all-zero rows
(``pad_rows``), which every row-batched step of the package treats as masked padding (``users`` 0
and ``mask`` False in a ``CascadeBatch``, ``mask`` False in a ``PostBatch``), so no example is
dropped and the masked-mean losses are unchanged. Without padding such a leaf is replicated
instead of split (still correct, just not parallel). Padding changes batch statistics, so a model
with BatchNorm in training mode must be given batches that divide evenly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from popdiff_jax.training.state import TrainState
from popdiff_jax.training.steps import compile_train_step

DATA = "data"
MODEL = "model"


def init_distributed(**kwargs) -> None:
  """``jax.distributed.initialize(**kwargs)`` for multi-host runs (call before anything touches a
  device; on one host it is not needed). Arguments as in JAX (coordinator address, process count
  and id, or nothing on managed clusters such as SLURM / TPU pods)."""
  jax.distributed.initialize(**kwargs)


def make_mesh(num_devices: int | None = None, model_parallel: int = 1) -> Mesh:
  """A ``("data", "model")`` mesh over the first ``num_devices`` devices (default: all).

  Args:
    num_devices: devices to use, across all hosts; None takes ``jax.device_count()``.
    model_parallel: size of the ``"model"`` axis (used only by ``shard_tables``); the ``"data"``
      axis gets ``num_devices // model_parallel`` devices.
  """
  n = jax.device_count() if num_devices is None else num_devices
  if n < 1 or n > jax.device_count():
    raise ValueError(f"num_devices must be in 1..{jax.device_count()}, got {n}")
  if model_parallel < 1 or n % model_parallel:
    raise ValueError(f"model_parallel={model_parallel} must divide the {n} devices")
  devices = np.asarray(jax.devices()[:n]).reshape(n // model_parallel, model_parallel)
  return Mesh(devices, (DATA, MODEL))


def batch_sharding(mesh: Mesh, batch: Any, stacked: bool = False) -> Any:
  """Per-leaf shardings of a batch: the batch axis (the leading one, or the second for a stack of
  batches from ``stack_batches``) over ``"data"`` where it divides evenly, replicated otherwise (e.g.
  a per-batch vector shorter than the device count). Any sharding is correct under jit; this one
  splits the work."""
  n = mesh.shape[DATA]
  axis = 1 if stacked else 0

  def one(x):
    shape = np.shape(x)
    if len(shape) > axis and shape[axis] % n == 0:
      return NamedSharding(mesh, P(*([None] * axis), DATA))
    return NamedSharding(mesh, P())
  return jax.tree.map(one, batch)


def pad_rows(batch: Any, multiple: int, stacked: bool = False) -> Any:
  """Pads the batch axis of every leaf with zero rows up to a multiple of ``multiple``.

  Zero rows are masked padding rows for the package's row batches (``CascadeBatch``: user 0 and
  mask False; ``PostBatch``: mask False), so masked losses and metrics are unchanged. Every leaf
  must carry the batch axis (the leading one, or the second one of a stack).

  Args:
    batch: a pytree of host arrays, each of shape ``[B, ...]`` (``[S, B, ...]`` if ``stacked``).
    multiple: the data-parallel width.
    stacked: whether the batch is a stack from ``stack_batches``.

  Returns:
    The batch with ``ceil(B / multiple) * multiple`` rows (the same object when nothing to pad).
  """
  axis = 1 if stacked else 0
  leaves = jax.tree.leaves(batch)
  if not leaves or multiple <= 1:
    return batch
  rows = {np.shape(x)[axis] if np.ndim(x) > axis else None for x in leaves}
  if len(rows) != 1 or None in rows:
    raise ValueError(f"pad_rows needs every leaf to have the batch axis {axis}; found sizes {rows}")
  n = rows.pop()
  extra = -n % multiple
  if not extra:
    return batch

  def pad(x):
    x = np.asarray(x)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return np.pad(x, widths)
  return jax.tree.map(pad, batch)


def shard_batch(mesh: Mesh, batch: Any, stacked: bool = False, pad: bool = False) -> Any:
  """Places a host batch (or a stack of them) on the mesh (see ``batch_sharding``).

  Every process passes the same global batch (the package's batchers are deterministic in their
  seed), and each device receives only its slice; this also holds on several hosts. With ``pad``
  the rows are first padded to a multiple of the ``"data"`` width (``pad_rows``), so the batch is
  split even when its row count does not divide.
  """
  if pad:
    batch = pad_rows(batch, mesh.shape[DATA], stacked)
  shardings = batch_sharding(mesh, batch, stacked)

  def put(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, batch, shardings)


def table_sharding(mesh: Mesh, tree: Any, table_rows: int) -> Any:
  """Shardings that split every array with an axis of length ``table_rows`` (the user tables: NDM's
  embedding [U, d] and output W^C [win, d, U], the bias [U], their Adam moments) over ``"model"``,
  and replicate the rest. With a 1-wide ``"model"`` axis everything is replicated."""
  m = mesh.shape[MODEL]

  def one(x):
    shape = np.shape(x)
    if m > 1:
      for axis, size in enumerate(shape):
        if size == table_rows and size % m == 0:
          spec = [None] * len(shape)
          spec[axis] = MODEL
          return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())
  return jax.tree.map(one, tree)


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Copies a pytree to every device of ``mesh``."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """A step jitted over a mesh, with the functions that place its inputs.

  Attributes:
    step: ``(state, batch, key) -> (state, metrics)`` with the batch split over ``"data"``.
    multi: ``(state, stacked_batches, base_key) -> (state, summed metrics)`` (``multi_step``).
    place_state: puts a state on the mesh with the shardings the step expects.
    place_batch: ``(batch, stacked=False) -> batch`` on the mesh (``shard_batch``).
    mesh: the mesh.
  """

  step: Callable
  multi: Callable
  place_state: Callable[[TrainState], TrainState]
  place_batch: Callable[[Any], Any]
  mesh: Mesh


def keyed_step(train_step: Callable) -> Callable:
  """``(state, batch, base_key) -> (state, metrics)``: ``train_step`` with the key
  ``fold_in(base_key, state.step)``, folded inside the compiled call (no host op per step), the
  key ``multi_step`` gives each step of a stack."""

  def step(state: TrainState, batch: Any, base_key: jax.Array):
    return train_step(state, batch, jax.random.fold_in(base_key, state.step))
  return step


def data_parallel(train_step: Callable, mesh: Mesh, state: TrainState, *,
                  table_rows: int | None = None, pad: bool = False,
                  keyed: bool = False) -> DataParallel:
  """Jits an un-jitted ``train_step`` over ``mesh``.

  Args:
    train_step: the pure step (not yet jitted).
    mesh: from ``make_mesh``.
    state: a state of the right structure (for the shardings; its values are not used).
    table_rows: with a ``"model"`` axis wider than 1, split arrays with an axis of this length
      (``num_items``: the user tables) over it; None replicates the whole state.
    pad: ``place_batch`` pads the rows to a multiple of the ``"data"`` width with masked zero
      rows (``pad_rows``; for row batches such as ``CascadeBatch`` and ``PostBatch``).
    keyed: ``step`` takes the run's base key and folds in ``state.step`` (``keyed_step``).
  """
  if table_rows is None:
    state_sharding = jax.tree.map(lambda _: NamedSharding(mesh, P()), state)
  else:
    state_sharding = table_sharding(mesh, state, table_rows)
  replicated = NamedSharding(mesh, P())

  def place_batch(batch, stacked=False):
    return shard_batch(mesh, batch, stacked, pad)

  single = keyed_step(train_step) if keyed else train_step
  step = compile_train_step(single, out_shardings=(state_sharding, replicated))
  multi = compile_train_step(multi_step(train_step), out_shardings=(state_sharding, replicated))
  return DataParallel(step=step, multi=multi, place_state=lambda s: jax.device_put(s, state_sharding),
                      place_batch=place_batch, mesh=mesh)


def fit_arguments(train_step: Callable, state: TrainState, num_devices: int | None = 1,
                  model_parallel: int = 1, *, table_rows: int | None = None,
                  pad: bool = False, keyed: bool = False) -> tuple[TrainState, dict]:
  """The compiled steps of ``training.loop.fit`` for 1..N devices, and the state placed for them.

  One device (``num_devices`` 1, or 0 on a one-device machine, and ``model_parallel == 1``): the
  step and its multi-step version jitted as they are, no placement. Otherwise ``data_parallel``
  over ``make_mesh``.

  Args:
    train_step: the pure, not yet jitted ``(state, batch, key) -> (state, metrics)``.
    state: the initial state.
    num_devices: devices to use; 0 or None = all (across hosts).
    model_parallel: width of the ``"model"`` axis (splits arrays with an axis of ``table_rows``).
    table_rows: the user-table length to split over ``"model"`` (None: replicate everything).
    pad: pad batch rows to a multiple of the data width (``pad_rows``).
    keyed: the single step takes the run's base key (``keyed_step``), as ``fit`` calls it.

  Returns:
    ``(state, kwargs)`` with ``kwargs`` = ``train_step``, ``multi_step``, ``place_batch``,
    ``place_state`` for ``fit``.
  """
  n = num_devices or jax.device_count()
  if n == 1 and model_parallel == 1:
    single = keyed_step(train_step) if keyed else train_step
    return state, {"train_step": compile_train_step(single),
                   "multi_step": compile_train_step(multi_step(train_step)),
                   "place_batch": None, "place_state": None}
  mesh = make_mesh(n, model_parallel)
  dp = data_parallel(train_step, mesh, state, pad=pad, keyed=keyed,
                     table_rows=table_rows if model_parallel > 1 else None)
  return dp.place_state(state), {"train_step": dp.step, "multi_step": dp.multi,
                                 "place_batch": dp.place_batch, "place_state": dp.place_state}


def multi_step(train_step: Callable) -> Callable:
  """``(state, stacked_batches, base_key) -> (state, metrics)``: ``lax.scan`` of ``train_step``
  over the leading axis of ``stacked_batches`` (from ``stack_batches``).

  Step ``i`` uses ``fold_in(base_key, state.step)`` as ``fit`` does, so the result equals the
  single steps. ``metrics`` are the per-step metrics summed over the stack (``fit`` divides by the
  number of steps). The returned function is pure; ``compile_train_step`` jits it.
  """

  def run(state: TrainState, batches: Any, base_key: jax.Array):
    def body(state, batch):
      key = jax.random.fold_in(base_key, state.step)
      state, metrics = train_step(state, batch, key)
      return state, metrics
    state, metrics = jax.lax.scan(body, state, batches)
    return state, jax.tree.map(lambda m: m.sum(axis=0), metrics)

  return run


def stack_batches(batches: Sequence[Any]) -> Any:
  """Stacks same-shaped batches along a new leading axis (for ``multi_step``)."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *batches)


def same_shapes(a: Any, b: Any) -> bool:
  """Whether two batches have the same tree structure and leaf shapes (can share one stack)."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  return ta == tb and all(np.shape(x) == np.shape(y) for x, y in zip(la, lb))


def group_steps(batches: Sequence[Any], steps_per_call: int) -> list[list[Any]]:
  """Splits an epoch's batches, in order, into groups for ``multi_step``: runs of exactly
  ``steps_per_call`` consecutive same-shaped batches, and single batches for what is left (so each
  bucket compiles at most two programs: the stack and the single step). The order of batches, and
  so the trajectory, is unchanged."""
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
  groups: list[list[Any]] = []
  run: list[Any] = []
  for batch in batches:
    if run and not same_shapes(run[-1], batch):
      groups += [[b] for b in run]
      run = []
    run.append(batch)
    if len(run) == steps_per_call:
      groups.append(run)
      run = []
  groups += [[b] for b in run]
  return groups
