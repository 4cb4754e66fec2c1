"""``popdiff reproduce ic-baselines``: Embedded IC and NetRate through NDM's protocol.

Both IC baselines (``baselines.ic``) are fitted on the training and validation cascades (NDM's
90% training part; they have no epochs to choose), simulated ``sims`` times per test cascade
from its first user, and scored with NDM's identification F1 (Table 2, and the first five users,
Table 3) and the cascade-size MSLE given the first five users (Sec. 5.5). One row per (dataset,
model) with the keys of ``ndm_paper_protocol.json`` (``macro_f1``, ``micro_f1``,
``macro_f1_first5``, ``micro_f1_first5``, ``msle``) and the fit's facts (``candidate_edges``,
``mean_prob``, ``final_loss``, ``fit_s``, ``eval_s``), ``seeds``, ``protocol``.
``popdiff reproduce ndm-protocol`` runs the same measurement for its IC rows.

::

  popdiff reproduce ic-baselines                          # ndm/irvine, ~3 minutes on a CPU
  popdiff reproduce ic-baselines --datasets ndm/lastfm --data-dir D --out ic_lastfm.json
  popdiff reproduce ic-baselines --tiny
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Literal

import jax
import numpy as np
import tyro

from popdiff_jax import _validate as v
from popdiff_jax.baselines import ic
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm.tables import common

__all__ = ["IC_MODELS", "ICBaselinesConfig", "TABLE", "ic_measure", "reproduce_main"]

#: option name -> (row name in ic_baselines files, row name in ndm_paper_protocol.json, fit)
IC_MODELS = {"embedded-ic": ("embedded_ic", "EmbeddedIC", ic.fit_embedded_ic),
             "netrate": ("netrate", "NetRate", ic.fit_netrate)}


@dataclasses.dataclass(frozen=True)
class ICBaselinesConfig(C.TableRun):
  """``popdiff reproduce ic-baselines``: Embedded IC and NetRate, NDM's Monte Carlo protocol
  (``ic_baselines_<dataset>.json``; ``ic_baselines.json`` for several datasets).

  Attributes:
    datasets: the datasets.
    models: ``embedded-ic`` and / or ``netrate``.
    sims: IC runs per test cascade (paper: 1000).
    steps: optimiser steps of each fit.
    seeds: the fit's and the simulations' seeds.
    protocol: ``project`` (the dataset's own split; fitted on train + validation) or
      ``paper`` (all cascades re-split at random 90% / 10%, ``common.protocol_dataset``).
    data: data options (the source is taken from ``datasets``).
  """

  datasets: tuple[str, ...] = ("ndm/irvine",)
  models: tuple[str, ...] = ("embedded-ic", "netrate")
  sims: int = 1000
  steps: int = 300
  seeds: tuple[int, ...] = (0,)
  protocol: Literal["project", "paper"] = "project"
  data: Annotated[C.DataConfig, tyro.conf.OmitArgPrefixes] = C.DataConfig()

  def __post_init__(self):
    super().__post_init__()
    v.positive(self, "sims", "steps")
    v.one_of(self, "protocol", common.PROTOCOLS)
    unknown = [m for m in self.models if m not in IC_MODELS]
    v.require(self, "models", not unknown, f"models among {', '.join(IC_MODELS)}")


def ic_measure(dataset, model: str, *, sims: int, steps: int, seed: int,
               save=None) -> dict:
  """Fits one IC baseline on ``dataset.train + dataset.valid`` and scores it on
  ``dataset.test``: F1 (full and first five), size MSLE; ``save(row)`` after every stage."""
  u = len(dataset.vocab)
  train = list(dataset.train) + list(dataset.valid)
  key = jax.random.key(seed)
  name, _, fit = IC_MODELS[model]
  t0 = time.perf_counter()
  fitted = fit(train, u, jax.random.fold_in(key, 1), steps=steps)
  row = {"dataset": dataset.name, "model": name, "candidate_edges": int(fitted.edges.shape[0]),
         "mean_prob": float(fitted.probs.mean()), "final_loss": float(fitted.losses[-10:].mean()),
         "fit_s": time.perf_counter() - t0, "device": jax.devices()[0].device_kind}
  for suffix, k in (("", None), ("_first5", 5)):  # the full protocol, then the first five users
    t0 = time.perf_counter()
    f1, _ = ic.evaluate_ic_baseline(fitted, dataset.test, u, jax.random.fold_in(key, 2),
                                    num_sims=sims, first_k=k)
    row.update({f"macro_f1{suffix}": float(f1.macro_f1), f"micro_f1{suffix}": float(f1.micro_f1),
                f"scored_cascades{suffix}": int(np.asarray(f1.scored).sum()),
                f"eval_s{suffix}": time.perf_counter() - t0})
    if save is not None:
      save(row)
  t0 = time.perf_counter()
  err, _, _ = ic.ic_size_msle(fitted, dataset.test, u, jax.random.fold_in(key, 3), num_sims=sims)
  row.update({"msle": float(err), "msle_given": 5, "msle_eval_s": time.perf_counter() - t0})
  return row


def _job(dataset, model, seed):
  return f"{dataset}|{model}|s{seed}"


def jobs(opts: ICBaselinesConfig) -> list[str]:
  return [_job(d, m, s) for d in opts.datasets for m in opts.models for s in opts.seeds]


def run_job(opts: ICBaselinesConfig, job: str, ctx: common.Context) -> None:
  name, model, seed = job.rsplit("|", 2)
  seed = int(seed[1:])
  dataset = common.protocol_dataset(
      common.load_data(dataclasses.replace(opts.data, source=name)), opts.protocol, seed)
  tags = {"seed": seed, "protocol": opts.protocol}
  row = ic_measure(dataset, model, sims=opts.sims, steps=opts.steps, seed=seed,
                   save=lambda r: ctx.save([{**r, **tags}]))
  ctx.save([{**row, **tags}], done=True)


def _out_name(opts: ICBaselinesConfig) -> str:
  if len(opts.datasets) == 1:
    return f"ic_baselines_{opts.datasets[0].rstrip('/').split('/')[-1].split('.')[0]}.json"
  return "ic_baselines.json"


def tiny() -> ICBaselinesConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return ICBaselinesConfig(datasets=(cfg.data.source,), sims=8, steps=3, tiny=True,
                           data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ic-baselines", file="ic_baselines.json", options=ICBaselinesConfig(), tiny=tiny,
    jobs=jobs, run_job=run_job,
    collect=lambda opts, rows: common.average_seeds(rows, ("dataset", "model", "protocol")),
    key=("dataset", "model", "protocol"), key_defaults={"protocol": "project"},
    out_name=_out_name,
    columns=("dataset", "model", "macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5",
             "msle", "fit_s", "seeds"),
    title="IC baselines, NDM's protocol (test split, u_0 given; MSLE: the first five given)",
    meta=lambda opts: {"sims_per_cascade": opts.sims, "steps": opts.steps})


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ic-baselines [options]`` (:class:`ICBaselinesConfig`)."""
  return common.main(TABLE, args, progress)
