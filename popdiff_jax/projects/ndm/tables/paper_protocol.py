"""``popdiff reproduce ndm-protocol``: NDM's Monte Carlo protocol (Tables 2-3, Sec. 5.5).

For every dataset: NDM and the LSTM (named configs, trained with early stopping on validation;
a model already trained in the workdir, e.g. by ``popdiff reproduce ndm`` with the same
``--workdir``, is reused) and the IC baselines (``ic_baselines.ic_measure``), each scored by the
identification F1 from ``u_0`` (``runs`` simulations per test cascade, budget ``|G^c|``), the
early-stage F1 (the first five users) and the size MSLE given the first five users
(``size_runs`` simulations). One row per (dataset, model) in ``ndm_paper_protocol.json``:
``macro_f1``, ``micro_f1``, ``macro_f1_first5``, ``micro_f1_first5``, ``msle``,
``runs_per_cascade``, ``epochs``, ``model_source``, the paper's NDM numbers (``paper_*``, on the
rows of every NDM recipe: ``ndm``, ``paper-recipe``, ...), ``protocol`` and ``seeds``.

::

  popdiff reproduce ndm-protocol --data-dir D --parallel 16 --budget 480 \\
      --train.max-train-seconds 200                     # the four datasets on one GPU, ~8 min
  popdiff reproduce ndm-protocol --tiny
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import jax
import tyro

from popdiff_jax import _validate as v
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm.protocol import PAPER_TABLES, evaluate_protocol, protocol_settings
from popdiff_jax.projects.ndm.tables import common
from popdiff_jax.projects.ndm.tables.ic_baselines import IC_MODELS, ic_measure

__all__ = ["ProtocolConfig", "TABLE", "reproduce_main"]

COLUMNS = ("dataset", "model", "macro_f1", "paper_macro_f1", "micro_f1", "paper_micro_f1",
           "macro_f1_first5", "paper_macro_f1_first5", "micro_f1_first5",
           "paper_micro_f1_first5", "msle", "runs_per_cascade", "seeds")


@dataclasses.dataclass(frozen=True)
class ProtocolConfig(C.TableRun):
  """``popdiff reproduce ndm-protocol``: Monte Carlo F1 and size MSLE of NDM, the LSTM and the
  IC baselines (``ndm_paper_protocol.json``).

  Attributes:
    datasets: the datasets (default: the four of the paper's Tables 2-3).
    models: named configs (trained) and IC baselines (``embedded-ic``, ``netrate``).
    runs: Monte Carlo runs per test cascade for the F1, also the IC runs (default: the
      protocol's: ``paper`` 100 as the authors' evaluate.py, ``project`` 1000 as the paper's
      text).
    terminate: ``masked`` (never sampled, the authors' code) or ``allowed`` while sampling the
      F1 runs (default: the protocol's: ``paper`` masked, ``project`` allowed).
    size_runs: runs per cascade for the size MSLE (at most ``runs``).
    ic_steps: optimiser steps of each IC fit.
    seeds: training, fit and simulation seeds.
    protocol: ``paper``: the authors' procedure (all cascades re-split at random 90% / 10% per
      seed, Sec. 5.3, ``common.protocol_dataset``; 100 continuations from ``u_0``, the first
      ``|truth|`` predictions counted, Terminate masked; ``protocol.PROTOCOLS``) or
      ``project``: the dataset's own split, 1000 runs with Terminate allowed. NDM / LSTM choose
      their epoch on validation (or keep the last, ``select_by="last"`` as ``paper-recipe``);
      the IC baselines fit on train + validation.
    eval_reserve: with ``budget``: seconds kept after training for the simulations.
    data: data options (the source is taken from ``datasets``).
    train: training options (the fields given override the named configs').
  """

  datasets: tuple[str, ...] = tuple(PAPER_TABLES)
  models: tuple[str, ...] = ("ndm", "lstm", "embedded-ic", "netrate")
  runs: int | None = None
  terminate: Literal["masked", "allowed"] | None = None
  size_runs: int = 100
  ic_steps: int = 300
  seeds: tuple[int, ...] = (0,)
  protocol: Literal["project", "paper"] = "project"
  eval_reserve: float = 120.0
  workdir: str | None = "runs/reproduce_ndm"
  data: Annotated[C.DataConfig, tyro.conf.OmitArgPrefixes] = C.DataConfig()
  train: C.TrainConfig = C.TrainConfig()

  def __post_init__(self):
    super().__post_init__()
    v.positive(self, "runs", allow_none=True)
    v.positive(self, "size_runs", "ic_steps")
    v.non_negative(self, "eval_reserve")
    v.one_of(self, "protocol", common.PROTOCOLS)
    unknown = [m for m in self.models if m not in C.CONFIGS and m not in IC_MODELS]
    v.require(self, "models", not unknown, f"named configs or {', '.join(IC_MODELS)}; "
              f"unknown: {unknown}")
    v.require(self, "models", "popularity" not in self.models,
              "models with a sampler (the popularity floor has none)")


def _label(model: str) -> str:
  return IC_MODELS[model][1] if model in IC_MODELS else model.upper()


def _job(dataset, model, seed):
  return f"{dataset}|{model}|s{seed}"


def jobs(opts: ProtocolConfig) -> list[str]:
  return [_job(d, m, s) for d in opts.datasets for m in opts.models for s in opts.seeds]


def run_job(opts: ProtocolConfig, job: str, ctx: common.Context) -> None:
  name, model, seed = job.rsplit("|", 2)
  seed = int(seed[1:])
  runs, terminate = protocol_settings(opts.protocol, opts.runs, opts.terminate)
  data = dataclasses.replace(opts.data, source=name)
  dataset = common.protocol_dataset(common.load_data(data), opts.protocol, seed)
  tags = {"dataset": name, "model": _label(model), "seed": seed, "protocol": opts.protocol,
          "recipe": model}
  if model in IC_MODELS:
    row = ic_measure(dataset, model, sims=runs, steps=opts.ic_steps, seed=seed)
    ctx.save([{**row, **tags, "runs_per_cascade": runs,
               "model_source": f"fitted here ({opts.ic_steps} steps)"}], done=True)
    return
  cfg = common.job_config(model, data, opts.train, seed)
  cfg = cfg.replace(train={"max_train_seconds": ctx.train_budget(cfg.train.max_train_seconds,
                                                                 opts.eval_reserve)})
  folder = common.run_dir(common.workdir_of(TABLE, opts), name, model, seed, opts.protocol)
  source = f"reused from {folder}" if (folder / "config.json").exists() else "trained here"
  trained = common.train_or_resume(dataset, cfg, folder, progress=ctx.progress, reuse=True)
  row = {**tags, "device": jax.devices()[0].device_kind, "f_init": trained.f_init,
         "model_source": source, "epochs": trained.info.get("epochs"),
         "stopped_by": trained.info.get("stopped_by")}
  row.update(evaluate_protocol(dataset, trained, runs=runs, size_runs=min(opts.size_runs, runs),
                               seed=seed, progress=ctx.progress, protocol=opts.protocol,
                               terminate=terminate))
  if isinstance(cfg.model, C.NDMConfig):  # every NDM recipe stands beside the paper's NDM
    row.update({f"paper_{k}": x for k, x in PAPER_TABLES.get(name, {}).items()})
  ctx.save([row], done=True)


def _order(row: dict):
  names = list(PAPER_TABLES)
  rank = {"NDM": 0, "LSTM": 1, "EmbeddedIC": 3, "NetRate": 4}  # other named configs: 2
  d, m = row.get("dataset"), row.get("model")
  return names.index(d) if d in names else len(names), str(d), rank.get(m, 2), str(m)


def tiny() -> ProtocolConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return ProtocolConfig(datasets=(cfg.data.source,),
                        models=("ndm-tiny-examples", "embedded-ic", "netrate"), runs=8,
                        size_runs=4, ic_steps=3, workdir=None, tiny=True,
                        data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm-protocol", file="ndm_paper_protocol.json", options=ProtocolConfig(), tiny=tiny,
    jobs=jobs, run_job=run_job,
    collect=lambda opts, rows: common.average_seeds(rows, ("dataset", "model", "protocol")),
    key=("dataset", "model", "protocol"), key_defaults={"protocol": "project"}, order=_order,
    columns=COLUMNS,
    title="NDM's Monte Carlo protocol (test split; u_0 given; paper_*: the paper's NDM)")


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm-protocol [options]`` (:class:`ProtocolConfig`)."""
  return common.main(TABLE, args, progress)
