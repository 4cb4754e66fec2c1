"""Orbax checkpoints of a whole training state, with automatic resume and a corrupt-file fallback."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

_log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No checkpoint in a workdir could be restored."""


def abstract_like(tree: Any) -> Any:
  """The shape/dtype/sharding skeleton of ``tree``, as orbax wants for a typed restore."""

  def leaf(x):
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Saves ``(state, metadata)`` pairs under ``workdir/checkpoints/<step>``.

  Orbax writes each checkpoint into a temporary folder and renames it when complete, so a process
  killed mid-save leaves the previous checkpoint intact. ``restore`` tries the newest checkpoint first
  and falls back to older ones when a file is corrupt or truncated, logging which one it skipped.

  Args:
    workdir: the run's directory; checkpoints go in its ``checkpoints/`` subfolder.
    max_to_keep: how many recent checkpoints to keep on disk.
  """

  def __init__(self, workdir: str | pathlib.Path, max_to_keep: int = 3):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    """The saved steps, oldest first."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest saved step, or None."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
    """Writes ``state`` (any pytree of arrays) and a JSON-able ``metadata`` dict; blocks until done."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              metadata=ocp.args.JsonSave(metadata or {}))
    self._manager.save(int(step), args=args, force=True)
    self._manager.wait_until_finished()

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """Restores onto ``abstract_state`` (see ``abstract_like``).

    Args:
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` with the saved state's structure.
      step: a specific step; by default the newest one that reads back cleanly.

    Returns:
      ``(state, metadata, step)``.

    Raises:
      CheckpointError: when no checkpoint (or not the requested one) can be read.
    """
    candidates = [step] if step is not None else list(reversed(self.all_steps()))
    errors = []
    for s in candidates:
      try:
        restored = self._manager.restore(
            s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                       metadata=ocp.args.JsonRestore()))
        if errors:
          _log.warning("restored checkpoint %d after skipping unreadable ones: %s", s, errors)
          self._quarantine([c for c in candidates if c > s])
        return restored.state, dict(restored.metadata or {}), int(s)
      except Exception as e:  # noqa: BLE001 - any read failure means: try the previous checkpoint.
        errors.append(f"step {s}: {type(e).__name__}: {e}"[:300])
    raise CheckpointError(f"no readable checkpoint in {self.directory}: " + "; ".join(errors)
                          if errors else f"no checkpoint in {self.directory}")

  def _quarantine(self, steps: list[int]) -> None:
    """Renames unreadable checkpoints newer than the restored one to ``<step>.corrupt-<n>`` (kept
    for inspection, no longer a step), so that the resumed run can save those steps again."""
    for s in steps:
      src = self.directory / str(s)
      n = 0
      while (dst := self.directory / f"{s}.corrupt-{n}").exists():
        n += 1
      src.rename(dst)
      _log.warning("moved unreadable checkpoint %s to %s", src, dst)
    self._manager.reload()

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    self._manager.close()
