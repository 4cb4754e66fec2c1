"""``popdiff reproduce ndm-small-sets``: why NDM loses on the small next-user sets.

Named configs x seeds on the small sets (selection and early stopping on validation only). Each
trained model appends one line to ``ndm_small_sets.jsonl`` (``results.append_row``: a call cut
short keeps every model it finished; a line already in the file is not run again): the test
metrics, the validation metrics of the kept epoch, the per-epoch ``curve`` (train NLL,
validation NLL / Hits@10 / MAP@10), the trainable parameters per user and in all, ``name`` (the
config), ``seed``, ``seeds``, ``protocol`` (the split) and ``run``. The file's meta is
``ndm_small_sets.jsonl.summary.json``: ``meta.runs`` records every call, its rows are the mean,
``<metric>_std`` and ``seeds`` per (dataset, config, protocol) over every line of the file.

::

  popdiff reproduce ndm-small-sets --data-dir D                     # ~1 h on a 2-core CPU
  popdiff reproduce ndm-small-sets --datasets ndm/irvine --configs ndm-w1 ndm-d32 --seeds 0 1 2
  popdiff reproduce ndm-small-sets --tiny
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Annotated

import tyro

from popdiff_jax import _validate as v
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm import experiment
from popdiff_jax.projects.ndm.tables import common
from popdiff_jax.results import append_row, read_results, summary_path, write_results

__all__ = ["SmallSetsConfig", "TABLE", "parameter_counts", "reproduce_main"]

SUMMARY_COLUMNS = ("dataset", "name", "seeds", "hits@10", "hits@10_std", "map@10", "map@10_std",
                   "hits@10_with_terminate", "val_map@10", "best_epoch", "params_per_user")
# Per-line details that the summary does not average.
_LINE_ONLY = ("curve", "overrides", "commit", "date", "run", "wall_seconds", "seeds")


@dataclasses.dataclass(frozen=True)
class SmallSetsConfig(C.TableRun):
  """``popdiff reproduce ndm-small-sets``: named configs x seeds on the small next-user sets
  (``ndm_small_sets.jsonl`` and its ``.summary.json``).

  Attributes:
    datasets: the datasets (Irvine, Android and Christianity: 7-9 training events per user).
    configs: named configs (``popdiff configs``).
    seeds: each config runs once per seed.
    data: data options for every run (the source is taken from ``datasets``).
    train: training options for every run (the fields given override the named configs').
  """

  datasets: tuple[str, ...] = ("ndm/irvine", "infvae/android", "infvae/christianity")
  configs: tuple[str, ...] = ("ndm", "lstm", "ndm-prior", "ndm-prior-w1", "lstm-prior")
  seeds: tuple[int, ...] = (0, 1, 2)
  data: Annotated[C.DataConfig, tyro.conf.OmitArgPrefixes] = C.DataConfig()
  train: C.TrainConfig = C.TrainConfig()

  def __post_init__(self):
    super().__post_init__()
    unknown = [c for c in self.configs if c not in C.CONFIGS]
    v.require(self, "configs", not unknown, f"unknown named config(s) {unknown}; choose from "
              f"{', '.join(C.CONFIGS)}")


def parameter_counts(config: C.NextUserConfig, dataset) -> dict:
  """Trainable parameters in all and per user (the entries of one row of every [U, ...]
  table) of a next-user config on ``dataset``."""
  import jax
  import numpy as np

  from popdiff_jax import models

  cfg = experiment.resolve(config, dataset)
  _, variables = models.init(cfg.model, jax.random.key(0))
  u = len(dataset.vocab)
  leaves = jax.tree.leaves(variables.params)
  total = sum(int(np.prod(x.shape)) for x in leaves)
  per_user = sum(int(np.prod(x.shape)) // u for x in leaves if u in x.shape)
  return {"params_total": total, "params_per_user": per_user,
          "params_shared": total - per_user * u}


def _line_key(row: dict) -> tuple:
  return (row.get("dataset"), row.get("name"), row.get("seed"), row.get("protocol", "files"))


def _job(dataset, config, seed):
  return f"{dataset}|{config}|s{seed}"


def jobs(opts: SmallSetsConfig) -> list[str]:
  out = common.out_path(TABLE, opts)
  done = {_line_key(r) for r in read_results(out)[1]} if out.exists() else set()
  return [_job(d, c, s) for d in opts.datasets for c in opts.configs for s in opts.seeds
          if (d, c, s, opts.data.split) not in done]


def run_job(opts: SmallSetsConfig, job: str, ctx: common.Context) -> None:
  name, config_name, seed = job.rsplit("|", 2)
  seed = int(seed[1:])
  data = dataclasses.replace(opts.data, source=name)
  dataset = common.load_data(data)
  cfg = common.job_config(config_name, data, opts.train, seed)
  cfg = cfg.replace(train={"max_train_seconds": ctx.train_budget(cfg.train.max_train_seconds)})
  folder = common.run_dir(common.workdir_of(TABLE, opts), name, config_name, seed, data.split)
  t0 = time.perf_counter()
  trained = common.train_or_resume(dataset, cfg, folder, progress=ctx.progress)
  row = experiment.result_row(dataset, trained)
  row.update(name=config_name, seed=seed, seeds=[seed], protocol=data.split,
             wall_seconds=round(time.perf_counter() - t0, 1))
  if trained.model is not None:
    row.update(parameter_counts(cfg, dataset))
    history = [json.loads(line) for line in
               (folder / "metrics.jsonl").read_text().splitlines() if line]
    keys = ("epoch", "train_loss", "val_nll", "val_hits@10", "val_map@10",
            "val_hits@10_with_terminate", "val_map@10_with_terminate")
    row["curve"] = [{k: h.get(k) for k in keys} for h in history]
  ctx.save([row], done=True)


def summarize(lines: list[dict]) -> list[dict]:
  """The summary rows: mean, ``_std`` and ``seeds`` per (dataset, config, protocol)."""
  rows = [{**{k: x for k, x in r.items() if k not in _LINE_ONLY},
           "protocol": r.get("protocol", "files")} for r in lines]
  out = common.average_seeds(rows, ("dataset", "name", "protocol"))
  for r in out:
    r.pop("per_seed", None)
  return out


class JsonlWriter:
  """Appends each new line to the JSON-lines file and rewrites its summary file."""

  def __init__(self, table, opts, out: pathlib.Path, meta: dict):
    self.out, self.meta = out, meta
    summary = summary_path(out)
    old = read_results(summary)[0] if summary.exists() else {}
    self.runs = list(old.get("runs", []))
    self.base = {k: x for k, x in old.items() if k != "runs"}
    self.run = {"run": meta["date"], **{k: x for k, x in meta.items() if k != "benchmark"}}
    self.runs.append(self.run)
    self.seen = {_line_key(r) for r in read_results(out)[1]} if out.exists() else set()
    self.write([], {})  # the call's meta is on file before its first line

  def write(self, rows: list[dict], extra: dict) -> None:
    for r in rows:
      if _line_key(r) not in self.seen:
        append_row(self.out, {**r, "device": r.get("device", self.meta.get("device")),
                              "commit": self.meta.get("commit"), "date": self.meta["date"],
                              "run": self.meta["date"]})
        self.seen.add(_line_key(r))
    self.run.update(extra)
    lines = read_results(self.out)[1] if self.out.exists() else []
    write_results(summary_path(self.out), summarize(lines),
                  {**self.base, "benchmark": "ndm_small_sets", "rows_file": self.out.name,
                   "ranking": common.RANKING, "runs": self.runs})


def show(opts, out: pathlib.Path, rows: list[dict]) -> list[dict]:
  """The summary rows of the datasets and configs of this call."""
  summary = read_results(summary_path(out))[1]
  return [r for r in summary if r["dataset"] in opts.datasets and r["name"] in opts.configs]


def tiny() -> SmallSetsConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return SmallSetsConfig(datasets=(cfg.data.source,), configs=("ndm-tiny-examples", "popularity"),
                         seeds=(0, 1), tiny=True,
                         data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm-small-sets", file="ndm_small_sets.jsonl", options=SmallSetsConfig(), tiny=tiny,
    jobs=jobs, run_job=run_job, collect=lambda opts, rows: rows,
    key=("dataset", "name", "seed", "protocol"), key_defaults={"protocol": "files"},
    columns=SUMMARY_COLUMNS, writer=JsonlWriter, show=show,
    title="Small next-user sets: mean (and std) over seeds, test split; validation chose the epoch")


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm-small-sets [options]`` (:class:`SmallSetsConfig`)."""
  return common.main(TABLE, args, progress)
