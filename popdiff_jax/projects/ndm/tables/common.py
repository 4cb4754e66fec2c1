"""What every results table of the NDM project shares: jobs, parts, seeds and the result file.

A :class:`Table` is a list of jobs (``jobs(opts)``: names), a job function (``run_job(opts,
name, ctx)``: measures and calls ``ctx.save(rows)`` after every stage it finishes) and
``collect(opts, rows)`` (the result rows from the rows of every part: averaged over seeds,
derived columns). :func:`run` runs the jobs one after the other in this process, or as
processes (``opts.parallel``, ``utils.jobs.run_jobs``) under the common deadline
(``opts.budget``), and rewrites the result file after every saved stage, so a call cut short
keeps what it measured. A rerun with the same options keeps the parts that finished.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import re
import shlex
import sys
import time
from typing import Annotated, Any, Callable, Literal, Mapping, Sequence

import numpy as np
import tyro

from popdiff_jax import _validate as v
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm.configs import (CONFIGS, DataConfig, NextUserConfig, TableRun,
                                              TrainConfig, get_config)
from popdiff_jax.results import merge_runs, read_results, run_metadata, to_json, write_results
from popdiff_jax.utils import jobs as jobrunner

__all__ = ["Table", "Context", "AnalysisConfig", "RESULTS", "RANKING", "PROTOCOLS",
           "results_dir", "parse", "main", "run", "average_seeds", "job_config", "load_data",
           "protocol_dataset", "run_dir", "train_or_resume", "train_and_score", "changed"]

#: The two ranking conventions of the next-user metrics (``metrics.ranking``), for the meta.
RANKING = ("hits@k / map@k: users only (Terminate neither a target nor a candidate); "
           "*_with_terminate: Terminate a target after each uncut cascade and a candidate at "
           "every step")
#: The Monte Carlo tables' protocols (``protocol_dataset``).
PROTOCOLS = ("project", "paper")
_ROOT = pathlib.Path(__file__).resolve().parents[4]


def results_dir() -> pathlib.Path:
  """``benchmarks/results`` of the checkout this package runs from, else of the working
  directory."""
  checkout = _ROOT / "benchmarks" / "results"
  return checkout if checkout.is_dir() else pathlib.Path("benchmarks") / "results"


RESULTS = results_dir()


@dataclasses.dataclass(frozen=True)
class Table:
  """One results table (one ``popdiff reproduce`` command).

  Attributes:
    command: the command's name (``popdiff reproduce <command>``).
    file: the result file's name under ``benchmarks/results/``.
    options: the default options (a frozen dataclass, parsed with tyro).
    tiny: the options of the tiny CPU mode.
    jobs: ``opts -> job names`` (unique), in the order they start.
    run_job: ``(opts, name, ctx)``: measures one job, ``ctx.save(rows)`` after every stage.
    collect: ``(opts, rows) -> result rows`` (the rows of all parts, in job order).
    key: the fields that identify a row (a rerun replaces the rows of ``out`` with the same key).
    key_defaults: the value of a key field that older rows lack.
    columns: the printed table's columns.
    title: the printed table's heading.
    order: the sort key of the rows in the file (None: job order, older rows first).
    meta: ``opts -> fields`` added to the file's meta.
    out_name: ``opts -> file name`` where it depends on the options (default: ``file``).
    writer: the writer class (default :class:`ResultWriter`).
    finish: ``(opts, out, rows)`` after the last write (e.g. a plot).
    show: ``(opts, out, rows) -> rows`` to print (default: this run's rows).
  """

  command: str
  file: str
  options: Any
  tiny: Callable[[], Any]
  jobs: Callable[[Any], list[str]]
  run_job: Callable[[Any, str, "Context"], None]
  collect: Callable[[Any, list[dict]], list[dict]]
  key: tuple[str, ...]
  columns: tuple[str, ...]
  title: str
  key_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  order: Callable[[dict], Any] | None = None
  meta: Callable[[Any], dict] = lambda opts: {}
  out_name: Callable[[Any], str] | None = None
  writer: Any = None
  finish: Callable[[Any, pathlib.Path, list[dict]], None] | None = None
  show: Callable[[Any, pathlib.Path, list[dict]], list[dict]] | None = None

  def row_key(self, row: Mapping) -> tuple:
    """The values of ``key`` in ``row`` (``key_defaults`` where absent): a row's identity."""
    return tuple(_hashable(row.get(k, self.key_defaults.get(k))) for k in self.key)


def _hashable(v: Any) -> Any:
  return tuple(v) if isinstance(v, list) else v


# ----------------------------------------------------------------------------- one job's context


class Context:
  """What a job function gets: ``save`` (rewrite its part), the deadline, progress bars."""

  def __init__(self, part: pathlib.Path, key: str, job: str, deadline: float | None,
               progress: bool, on_save: Callable[[dict], None] | None = None):
    self.part, self.key, self.job = part, key, job
    self.deadline, self.progress = deadline, progress
    self.on_save = on_save
    self.started = time.time()
    self.rows: list[dict] = []
    self.done = False

  def save(self, rows: Sequence[dict], done: bool = False) -> None:
    """Rewrites the job's part with ``rows`` (what it has measured so far)."""
    self.rows, self.done = [dict(r) for r in rows], done
    part = {"job": self.job, "key": self.key, "done": done, "rows": to_json(self.rows),
            "seconds": round(time.time() - self.started, 1)}
    jobrunner.write_part(self.part, part)
    if self.on_save is not None:
      self.on_save(part)

  def seconds_left(self) -> float | None:
    """Seconds to the deadline (None without one)."""
    return None if self.deadline is None else self.deadline - time.time()

  def train_budget(self, seconds: float | None, reserve: float = 0.0) -> float | None:
    """The training time limit: ``seconds`` (a config's ``max_train_seconds``), cut to what is
    left before the deadline less ``reserve`` (for the evaluation after training); at least 1."""
    left = self.seconds_left()
    if left is None:
      return seconds
    room = max(left - reserve, 1.0)
    return room if seconds is None else min(seconds, room)


# ----------------------------------------------------------------------------- options


def parse(table: Table, args: Sequence[str]) -> Any:
  """The table's options from command-line ``args`` (tyro; ``--tiny`` starts from the tiny
  options, so every other option still applies on top)."""
  args = list(args)
  default = table.tiny() if "--tiny" in args else table.options
  doc = (type(table.options).__doc__ or "").strip().split("\n\n")[0]
  return tyro.cli(type(default), default=default, args=args,
                  prog=f"popdiff reproduce {table.command}", description=" ".join(doc.split()),
                  config=(tyro.conf.AvoidSubcommands,))


# Options that change how a table is run, not what it measures (kept out of the parts' key).
_RUN_FIELDS = ("out", "merge", "parallel", "budget", "tiny", "workdir", "seeds", "datasets",
               "configs", "models", "protocols")


def _options_key(opts: Any) -> str:
  fields = {k: v for k, v in to_json(opts).items() if k not in _RUN_FIELDS}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def out_path(table: Table, opts: Any) -> pathlib.Path:
  if opts.out:
    return pathlib.Path(opts.out)
  name = table.out_name(opts) if table.out_name else table.file
  return (pathlib.Path("runs") / "tiny" if opts.tiny else RESULTS) / name


def workdir_of(table: Table, opts: Any) -> pathlib.Path:
  if opts.workdir:
    return pathlib.Path(opts.workdir)
  name = table.command.replace("-", "_")
  return pathlib.Path("runs") / "tiny" / name if opts.tiny else pathlib.Path("runs") / name


def changed(value: Any, base: Any) -> dict:
  """The fields of a dataclass that differ from ``base`` (the options a user gave)."""
  return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
          if getattr(value, f.name) != getattr(base, f.name)}


# ----------------------------------------------------------------------------- writing


class ResultWriter:
  """Rewrites a JSON result file: this run's rows, plus (``merge``) the rows of the file it
  found whose key this run does not measure, each tagged with its run."""

  def __init__(self, table: Table, opts: Any, out: pathlib.Path, meta: dict):
    self.table, self.out, self.meta = table, out, meta
    self.old = read_results(out) if opts.merge and out.exists() else None

  def write(self, rows: list[dict], extra: Mapping) -> None:
    meta = {**self.meta, **extra}
    if self.old is not None:
      keys = {self.table.row_key(r) for r in rows}
      kept = [r for r in self.old[1] if self.table.row_key(r) not in keys]
      if kept:
        meta, rows = merge_runs([(self.old[0], kept), (meta, rows)])
        used = {r.get("run") for r in rows} | {x for r in rows for x in r.get("runs") or []
                                               if isinstance(r.get("runs"), list)}
        meta["runs"] = [r for r in meta["runs"] if r["run"] in used]
    if self.table.order is not None:
      rows = sorted(rows, key=self.table.order)
    write_results(self.out, rows, meta)


# ----------------------------------------------------------------------------- running


def _worker_env() -> dict:
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  return env


def run(table: Table, opts: Any, *, args: Sequence[str] = (), progress: bool = True,
        command: str | None = None) -> tuple[pathlib.Path, list[dict]]:
  """Runs the table's jobs and writes its result file.

  Args:
    table: the table.
    opts: its options (``parse``).
    args: the command-line arguments that gave ``opts`` (the worker processes parse them
      again).
    progress: progress bars (jobs in this process only).
    command: the command line recorded in the meta.

  Returns:
    ``(result file, this run's rows)``.
  """
  start = time.time()
  deadline = None if opts.budget is None else start + opts.budget
  out = out_path(table, opts)
  parts_dir = workdir_of(table, opts) / "parts" / table.command
  key = _options_key(opts)
  names = table.jobs(opts)
  if len(set(names)) != len(names):
    raise ValueError(f"{table.command}: job names are not unique")
  paths = {j: jobrunner.part_path(parts_dir, j) for j in names}
  parts: dict[str, dict] = {}

  def reload(j):
    part = jobrunner.read_part(paths[j])
    if part is not None and part.get("key") == key:
      parts[j] = part

  for j in names:
    reload(j)
  status = {j: "done earlier" for j, p in parts.items() if p.get("done")}
  todo = [j for j in names if j not in status]
  meta = run_metadata(table.file.split(".")[0], config=opts, command=command,
                      devices=opts.parallel == 1, **table.meta(opts))
  writer = (table.writer or ResultWriter)(table, opts, out, meta)
  collected: list[dict] = []

  def rewrite():
    rows = [r for j in names for r in parts.get(j, {}).get("rows", [])]
    collected[:] = table.collect(opts, rows)
    writer.write(collected, {"jobs": dict(status), "wall_seconds": round(time.time() - start, 1)})

  if opts.parallel == 1:
    for j in todo:
      if deadline is not None and time.time() >= deadline:
        status[j] = "not started"
        continue

      def on_save(part, j=j):
        parts[j] = part
        rewrite()

      ctx = Context(paths[j], key, j, deadline, progress, on_save)
      table.run_job(opts, j, ctx)
      status[j] = "ok"
      ctx.save(ctx.rows, done=True)
  elif todo:
    argv = [sys.executable, "-m", "popdiff_jax.projects.ndm.tables", table.command]
    jobs = [jobrunner.Job(j, (*argv, j, str(deadline or 0), "--", *args)) for j in todo]

    def on_change(now):
      status.update(now)
      for j in todo:
        reload(j)
      rewrite()

    status.update(jobrunner.run_jobs(jobs, parallel=opts.parallel, deadline=deadline,
                                     log_dir=parts_dir / "logs", watch=parts_dir,
                                     on_change=on_change, env=_worker_env(),
                                     announce=lambda line: print(line, flush=True)))
    for j in todo:
      reload(j)
      if parts.get(j, {}).get("done"):  # killed, if at all, after its last stage
        status[j] = "ok"
  rewrite()
  if table.finish is not None:
    table.finish(opts, out, collected)
  return out, collected


def run_worker(command: str, job: str, deadline: float, args: Sequence[str]) -> int:
  """One job of a parallel call (``python -m popdiff_jax.projects.ndm.tables``)."""
  from popdiff_jax.projects.ndm.tables import TABLES

  table = TABLES[command]()
  opts = parse(table, args)
  parts_dir = workdir_of(table, opts) / "parts" / table.command
  ctx = Context(jobrunner.part_path(parts_dir, job), _options_key(opts), job,
                deadline or None, progress=False)
  table.run_job(opts, job, ctx)
  ctx.save(ctx.rows, done=True)
  return 0


def main(table: Table, args: Sequence[str], progress: bool = True) -> int:
  """``popdiff reproduce <table>``: parse, run, print the table, name the file."""
  from popdiff_jax.utils.report import format_table

  args = list(args)
  opts = parse(table, args)
  out, rows = run(table, opts, args=args, progress=progress,
                  command=shlex.join(["popdiff", "reproduce", table.command, *args]))
  if table.show is not None:
    rows = table.show(opts, out, rows)
  print(f"\n{table.title}")
  print(format_table(rows, table.columns, floatfmt=".4f"))
  print(f"\nresults: {out}")
  return 0


# ----------------------------------------------------------------------------- seeds


_METRIC = re.compile(r"^(val_)?(hits@|map@|nll)|^(macro|micro)_f1|^msle$|^(init_)?W_|seconds$"
                     r"|_s$|^epochs$|^best_epoch$|^final_loss$|^mean_prob$")


def _number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def average_seeds(rows: Sequence[dict], by: Sequence[str]) -> list[dict]:
  """One row per group of ``by`` over its seeds (the rows' ``seed``), in order of appearance.

  A group of one keeps its row, with ``seeds: [seed]``. A larger group gets, for every metric
  (Hits@k, MAP@k, NLL, F1, MSLE, norms, epochs, seconds, and any number that differs between
  seeds), the mean and the sample standard deviation ``<metric>_std``; ``per_seed`` lists each
  seed's metrics; other fields are kept where all seeds agree (else as a list of their values).
  """
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(tuple(_hashable(r.get(k)) for k in by), []).append(r)
  out = []
  for group in groups.values():
    group = sorted(group, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
    seeds = [r.get("seed") for r in group]
    if len(group) == 1:
      row = {k: v for k, v in group[0].items() if k != "seed"}
      row["seeds"] = [s for s in seeds if s is not None]
      out.append(row)
      continue
    keys = list(dict.fromkeys(k for r in group for k in r if k != "seed"))
    row: dict = {}
    per_seed = [{"seed": s} for s in seeds]
    for k in keys:
      vals = [r.get(k) for r in group]
      present = [v for v in vals if v is not None]
      if present and all(_number(v) for v in present) and (
          _METRIC.search(k) or len(set(present)) > 1):
        arr = np.asarray(present, np.float64)
        row[k] = float(arr.mean())
        row[f"{k}_std"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        for p, v in zip(per_seed, vals):
          p[k] = v
      elif all(v == vals[0] for v in vals):
        row[k] = vals[0]
      elif not any(isinstance(v, (dict, list)) for v in vals):
        row[k] = vals
    row["seeds"] = seeds
    row["per_seed"] = per_seed
    out.append(row)
  return out


# ----------------------------------------------------------------------------- data and models


@functools.lru_cache(maxsize=4)
def load_data(data: DataConfig):
  """The dataset of ``data`` (cached: the jobs of one process share it)."""
  return data.load()


def protocol_dataset(dataset, protocol: str, seed: int):
  """The splits a Monte Carlo table uses.

  ``project``: the dataset's own split (train / validation / test files; where a file is
  missing, a seeded part of another). ``paper`` (Sec. 5.3): every cascade pooled and split at
  random, 90% training and 10% test (seed ``seed``), 10% of the training part held out as
  validation for early stopping (the paper tunes on such a 10% and then retrains on all 90%;
  we keep the model chosen on it).
  """
  if protocol == "project":
    return dataset
  if protocol != "paper":
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  from popdiff_jax.data.cascades import split_cascades

  pool = list(dataset.train) + list(dataset.valid) + list(dataset.test)
  train, valid, test = split_cascades(pool, (0.81, 0.09, 0.10), "random", seed)
  return dataclasses.replace(dataset, train=train, valid=valid, test=test,
                             split=f"paper: random 90% / 10% of all cascades (seed {seed}), "
                                   "validation 10% of the 90%")


def job_config(name: str, data: DataConfig, train: TrainConfig, seed: int,
               model: Mapping | None = None) -> NextUserConfig:
  """The named config ``name`` on ``data``, with the fields of ``train`` that differ from the
  defaults (the options a user gave), ``train.seed = seed`` and the ``model`` fields replaced."""
  cfg = get_config(name)
  cfg = dataclasses.replace(cfg, data=data, train=dataclasses.replace(
      cfg.train, **changed(train, TrainConfig()), seed=seed))
  return cfg.replace(model=dict(model)) if model else cfg


def run_dir(workdir: str | os.PathLike, dataset: str, label: str, seed: int,
            protocol: str | None = None) -> pathlib.Path:
  """``<workdir>/<dataset>/<label>_s<seed>[_<protocol>]``: the training folder of a job (the
  project's own split needs no suffix, so tables share their models)."""
  tag = re.sub(r"[^A-Za-z0-9=+.,@-]", "_", dataset.strip("/"))
  suffix = "" if protocol in (None, "files", "project") else f"_{protocol}"
  return pathlib.Path(workdir) / tag / f"{label}_s{seed}{suffix}"


# Fields that may change between calls on one training folder: its run continues.
_RUNTIME = ("train.max_train_seconds", "train.num_devices", "train.steps_per_call",
            "train.eval_batch_size")


def train_or_resume(dataset, config: NextUserConfig, workdir: pathlib.Path, *,
                    progress: bool = False, frozen_embedding=None, reuse: bool = False):
  """``experiment.train`` in a table's training folder.

  A run of the same config there (also under another time budget or device count) is continued,
  or with ``reuse`` taken as it is (``experiment.load_trained``: the model another table trained
  is scored as that table scored it); a run of another config is refused
  (``training.workdir.claim``).
  """
  from popdiff_jax.projects.ndm import experiment
  from popdiff_jax.training.workdir import config_differences

  resume = False
  old = workdir / "config.json"
  if old.exists():
    resolved = experiment.choose_loss(experiment.resolve(config, dataset), len(dataset.vocab))
    diff = config_differences(json.loads(old.read_text()),
                              experiment.config_to_json(resolved, dataset.name))
    same = all(d.split(":")[0].replace("config.", "", 1) in _RUNTIME for d in diff)
    if same and reuse and (workdir / "checkpoints").is_dir():
      return experiment.load_trained(workdir, dataset)[1]
    resume = bool(diff) and same
  return experiment.train(dataset, config, workdir, progress=progress,
                          frozen_embedding=frozen_embedding, resume=resume)


# ----------------------------------------------------------------------------- the analyses


@dataclasses.dataclass(frozen=True)
class AnalysisConfig(TableRun):
  """Options shared by the NDM+SN, sensitivity and norm tables.

  Attributes:
    config: the named config every job starts from (``ndm-patience3``: the paper's NDM,
      patience 3).
    seeds: training and simulation seeds (rows: the mean and ``_std`` over them).
    protocol: ``project`` (the dataset's own split) or ``paper`` (all cascades re-split at
      random 90% / 10%, :func:`protocol_dataset`).
    eval_reserve: with ``budget``: seconds kept after training for the Monte Carlo F1.
    max_rows: Monte Carlo runs advanced together (bounds the decoding cache).
    workdir: trainings, shared by the three tables (a model of the same settings, e.g. the
      sensitivity's F_init = 1 point and the norms' Lastfm model, trains once).
    data: data options (the source is taken from the datasets).
    train: training options (the fields given override the named config's).
  """

  config: str = "ndm-patience3"
  seeds: tuple[int, ...] = (0,)
  protocol: Literal["project", "paper"] = "project"
  eval_reserve: float = 110.0
  max_rows: int = 1024
  workdir: str | None = "runs/ndm_analyses"
  data: Annotated[DataConfig, tyro.conf.OmitArgPrefixes] = DataConfig()
  train: TrainConfig = TrainConfig()

  def __post_init__(self):
    super().__post_init__()
    v.require(self, "config", self.config in CONFIGS and
              isinstance(get_config(self.config).model, NDMConfig),
              f"a named NDM config ({', '.join(c for c in CONFIGS if c.startswith('ndm'))})")
    v.one_of(self, "protocol", PROTOCOLS)
    v.non_negative(self, "eval_reserve")
    v.positive(self, "max_rows")


def settings_label(config: str, model: NDMConfig) -> str:
  """A training folder's name from the NDM settings that the analyses vary."""
  return (f"{config}-h{model.num_heads}-win{model.window}-d{model.dim}-F{model.f_init}"
          + (f"-sn{model.frozen_dim}" if model.frozen_dim else ""))


def train_and_score(table: Table, opts: AnalysisConfig, ctx: Context, dataset_name: str,
                    seed: int, row: dict, *, model: Mapping | None = None,
                    runs: int | None = None, frozen_embedding=None) -> None:
  """The analyses' job: trains ``opts.config`` (with the ``model`` fields replaced) on a
  dataset, saves the next-user metrics and the W^C norms (learned and at initialisation), then
  (``runs``) the early-stage and the full Monte Carlo F1, saving after each."""
  from popdiff_jax.projects.ndm import analysis, experiment
  from popdiff_jax.projects.ndm.protocol import evaluate_f1

  start = time.time()
  data = dataclasses.replace(opts.data, source=dataset_name)
  dataset = protocol_dataset(load_data(data), opts.protocol, seed)
  cfg = job_config(opts.config, data, opts.train, seed, model)
  budget = ctx.train_budget(cfg.train.max_train_seconds, opts.eval_reserve if runs else 0.0)
  cfg = cfg.replace(train={"max_train_seconds": budget})
  folder = run_dir(workdir_of(table, opts), dataset_name,
                   settings_label(opts.config, experiment.resolve(cfg, dataset).model), seed,
                   opts.protocol)
  trained = train_or_resume(dataset, cfg, folder, progress=ctx.progress,
                            frozen_embedding=frozen_embedding, reuse=True)
  row = {**row, "dataset": dataset_name, "seed": seed, "protocol": opts.protocol,
         "device": _device(), "f_init": trained.f_init,
         **{k: trained.info.get(k) for k in ("epochs", "best_epoch", "stopped_by",
                                             "train_seconds")},
         "train_budget_seconds": None if budget is None else round(budget, 1)}
  row.update(experiment.test_metrics(dataset, trained))
  row.update(analysis.wc_norms(trained.variables.params))
  row.update({f"init_{k}": x for k, x in analysis.initial_wc_norms(cfg, dataset).items()})

  def save(done=False):
    row["wall_seconds"] = round(time.time() - start, 1)
    ctx.save([row], done=done)

  save()
  if runs:
    row["runs_per_cascade"] = runs
    for first_k in (5, None):  # the cheap early-stage protocol first
      row.update(evaluate_f1(dataset, trained, runs=runs, first_k=first_k, seed=seed,
                             max_rows=opts.max_rows))
      save()
  save(done=True)


def _device() -> str:
  import jax
  return jax.devices()[0].device_kind
