"""Jobs as processes under one deadline, each leaving its result in a part file.

A long table is many independent jobs (train a model, score it in stages). :func:`run_jobs`
starts each job's command as its own process, at most ``parallel`` at a time, none after the
common ``deadline``; a process still running at ``deadline + grace`` is killed. A job writes its
result to its part file (:func:`write_part`, atomic) after every stage it finishes, so a job cut
short leaves what it measured; the caller collects the parts (:func:`read_parts`) while the jobs
run (``on_change``: called whenever a part file changes or a job ends) and at the end.

Nothing here imports JAX: the driver leaves the accelerator to the jobs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import time
from typing import Callable, Mapping, Sequence

__all__ = ["Job", "part_path", "write_part", "read_part", "read_parts", "run_jobs"]


@dataclasses.dataclass(frozen=True)
class Job:
  """One job: its name (unique within a call) and the command that runs it."""

  name: str
  argv: tuple[str, ...]


def part_path(folder: str | os.PathLike, name: str) -> pathlib.Path:
  """The part file of job ``name`` in ``folder`` (the name made safe for a file name)."""
  safe = re.sub(r"[^A-Za-z0-9=+.,@-]", "_", name)
  return pathlib.Path(folder) / f"{safe}.json"


def write_part(path: str | os.PathLike, part: Mapping) -> None:
  """Writes a job's part (a JSON object) atomically: a reader never sees half a file."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(json.dumps(part, indent=1, default=str), encoding="utf-8")
  os.replace(tmp, path)


def read_part(path: str | os.PathLike) -> dict | None:
  """The part at ``path``, or None when there is none (or it cannot be read)."""
  try:
    out = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return None
  return out if isinstance(out, dict) else None


def read_parts(folder: str | os.PathLike) -> dict[str, dict]:
  """Every part in ``folder``, by file stem."""
  out = {}
  for p in sorted(pathlib.Path(folder).glob("*.json")):
    part = read_part(p)
    if part is not None:
      out[p.stem] = part
  return out


def _stamps(folder: pathlib.Path) -> dict[str, float]:
  try:
    return {p.name: p.stat().st_mtime for p in folder.glob("*.json")}
  except OSError:
    return {}


def run_jobs(jobs: Sequence[Job], *, parallel: int = 1, deadline: float | None = None,
             grace: float = 5.0, log_dir: str | os.PathLike, watch: str | os.PathLike | None = None,
             on_change: Callable[[dict[str, str]], None] | None = None,
             env: Mapping[str, str] | None = None, poll: float = 0.5,
             announce: Callable[[str], None] | None = None) -> dict[str, str]:
  """Runs every job's command as a process, at most ``parallel`` at a time.

  Args:
    jobs: started in this order (put the long ones first).
    parallel: processes at once (>= 1).
    deadline: a Unix time: no job starts after it; a job still running at ``deadline + grace``
      is killed. None: no deadline.
    grace: seconds past the deadline before running jobs are killed.
    log_dir: each job's stdout and stderr go to ``<log_dir>/<name>.log``.
    watch: a folder of part files; ``on_change`` is called when one of them changes.
    on_change: called with the status so far whenever a watched file changes or a job ends.
    env: the processes' environment (default: this one's).
    poll: seconds between checks.
    announce: called with a line when a job starts or ends (e.g. ``print``).

  Returns:
    ``{job name: status}``: ``ok``, ``exit N``, ``killed at the deadline`` or ``not started``.
  """
  if parallel < 1:
    raise ValueError(f"parallel must be >= 1, got {parallel}")
  names = [j.name for j in jobs]
  if len(set(names)) != len(names):
    raise ValueError("job names must be unique")
  log_dir = pathlib.Path(log_dir)
  log_dir.mkdir(parents=True, exist_ok=True)
  watch = pathlib.Path(watch) if watch is not None else None
  stamps = _stamps(watch) if watch is not None else {}
  status: dict[str, str] = {}
  pending = list(jobs)
  running: list[tuple[Job, subprocess.Popen, object, float]] = []
  say = announce or (lambda line: None)
  try:
    while pending or running:
      now = time.time()
      while pending and len(running) < parallel and (deadline is None or now < deadline):
        job = pending.pop(0)
        log = open(part_path(log_dir, job.name).with_suffix(".log"), "w")
        proc = subprocess.Popen(list(job.argv), stdout=log, stderr=subprocess.STDOUT,
                                env=None if env is None else dict(env))
        running.append((job, proc, log, now))
        say(f"started {job.name}")
      if deadline is not None and now >= deadline and pending:
        for job in pending:
          status[job.name] = "not started"
        pending = []
      changed = False
      for item in list(running):
        job, proc, log, started = item
        code = proc.poll()
        if code is None and deadline is not None and time.time() >= deadline + grace:
          proc.kill()
          proc.wait()
          code = "killed at the deadline"
        if code is not None:
          status[job.name] = "ok" if code == 0 else (code if isinstance(code, str)
                                                     else f"exit {code}")
          log.close()
          running.remove(item)
          changed = True
          say(f"{job.name}: {status[job.name]} after {time.time() - started:.0f} s")
      if watch is not None:
        new = _stamps(watch)
        if new != stamps:
          stamps, changed = new, True
      if changed and on_change is not None:
        on_change(dict(status))
      if pending or running:
        time.sleep(poll)
  finally:  # an interrupted driver leaves no orphans
    for job, proc, log, _ in running:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
        status.setdefault(job.name, "killed")
      log.close()
  return status
