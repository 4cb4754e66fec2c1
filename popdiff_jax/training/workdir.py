"""A run's folder, claimed safely: one process at a time, and only for the config it was made for.

``claim(workdir, config)`` is a context manager around a training run:

* **a lock** (``filelock`` on ``workdir/.lock``): a second run on the same folder refuses at once
  and names the process that holds it (pid, host and start time from ``workdir/.lock.owner``);
* **the config**: a folder already holding a ``config.json`` of another config refuses and names
  the fields that differ, unless ``overwrite`` (delete the old run's files and start over) or
  ``resume`` (continue from its checkpoints under the new config) is given;
* a refused run changes nothing in the folder (a lock file it created is removed again).

The caller writes ``config.json`` (:func:`write_config`) once the claim succeeds.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import socket
from typing import Any, Iterator

import filelock

__all__ = ["WorkdirError", "claim", "config_differences", "write_config", "RUN_FILES"]

#: What a run writes into its folder (``overwrite`` deletes exactly these).
RUN_FILES = ("checkpoints", "metrics.jsonl", "results.json", "config.json")


class WorkdirError(RuntimeError):
  """A workdir that is in use, or that holds a run of another config."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def config_differences(old: dict, new: dict) -> list[str]:
  """``field: old -> new`` for every field (dotted path) whose value differs."""
  a, b = _flatten(old), _flatten(new)
  return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}"
          for k in sorted(set(a) | set(b)) if a.get(k, "(absent)") != b.get(k, "(absent)")]


def write_config(workdir: str | pathlib.Path, config: dict) -> None:
  """Writes ``config.json`` atomically (a rename), so a kill never leaves half a file."""
  path = pathlib.Path(workdir) / "config.json"
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(config, indent=1))
  os.replace(tmp, path)


def _owner(workdir: pathlib.Path) -> str:
  try:
    info = json.loads((workdir / ".lock.owner").read_text())
    return f"process {info['pid']} on {info['host']} (started {info['started']})"
  except (OSError, ValueError, KeyError):
    return "another process"


@contextlib.contextmanager
def claim(workdir: str | pathlib.Path, config: dict, *, overwrite: bool = False,
          resume: bool = False) -> Iterator[pathlib.Path]:
  """Claims ``workdir`` for a run of ``config`` (a JSON-able dict) for the ``with`` block.

  Args:
    workdir: the run folder (created if needed).
    config: the run's config as written to ``config.json``.
    overwrite: a different config's run is deleted and the run starts over.
    resume: a different config's run is continued (its checkpoints must fit the new model).

  Yields:
    The folder.

  Raises:
    WorkdirError: the folder is locked by another process, or holds another config's run and
      neither ``overwrite`` nor ``resume`` is given.
  """
  if overwrite and resume:
    raise ValueError("give overwrite or resume, not both")
  config = json.loads(json.dumps(config))  # as config.json will hold it (tuples become lists)
  workdir = pathlib.Path(workdir)
  existed = workdir.exists()
  had_lock = (workdir / ".lock").exists()
  workdir.mkdir(parents=True, exist_ok=True)
  lock = filelock.FileLock(str(workdir / ".lock"), timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise WorkdirError(f"{workdir} is in use by {_owner(workdir)}; wait for it to finish or "
                       "use another --workdir") from None

  def undo():
    lock.release()
    if not had_lock:
      (workdir / ".lock").unlink(missing_ok=True)
    if not existed:
      shutil.rmtree(workdir, ignore_errors=True)

  try:
    old_path = workdir / "config.json"
    if old_path.exists() and not overwrite and not resume:
      try:
        old = json.loads(old_path.read_text())
      except ValueError:
        old = {}
      diff = config_differences(old, config)
      if diff:
        raise WorkdirError(f"{workdir} holds a run of another config ({'; '.join(diff)}); "
                           "rerun with --overwrite to start over or --resume to continue it")
    if overwrite:
      for name in RUN_FILES:
        path = workdir / name
        if path.is_dir():
          shutil.rmtree(path)
        elif path.exists():
          path.unlink()
  except BaseException:
    undo()
    raise
  (workdir / ".lock.owner").write_text(json.dumps({
      "pid": os.getpid(), "host": socket.gethostname(),
      "started": datetime.datetime.now().isoformat(timespec="seconds")}))
  try:
    yield workdir
  finally:
    (workdir / ".lock.owner").unlink(missing_ok=True)
    lock.release()
