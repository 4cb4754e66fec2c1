"""``popdiff reproduce ndm``: the next-user table (Hits@k, MAP@k), ``ndm_next_user.json``.

One job per (dataset, named config, seed): ``experiment`` trains the config on the dataset
(early stopping on validation) and tests it. The options are ``configs.ReproduceConfig``.
Rows: ``experiment.result_row`` (``dataset``, ``model`` = the config's name, ``split``,
``hits@k`` / ``map@k`` users only and ``*_with_terminate``, ``nll``, ``epochs``,
``stopped_by``, ``val_*``, ``train_seconds``, ``device``) plus ``protocol`` (the split:
``files``, ``random``, ``time``) and ``seeds``; over several seeds the means, ``<key>_std`` and
``per_seed``. A rerun replaces the rows of the (dataset, model, protocol) it measures and keeps
the others.

::

  popdiff reproduce ndm                                    # the three embedded sets, CPU: ~1 h
  popdiff reproduce ndm --datasets forest/twitter --configs ndm-casc lstm-casc --data-dir D
  popdiff reproduce ndm --tiny                             # seconds once compiled
"""

from __future__ import annotations

import dataclasses

from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm import experiment
from popdiff_jax.projects.ndm.tables import common

__all__ = ["DATASETS", "TABLE", "reproduce_main"]

#: The seven datasets of the table, in its order.
DATASETS = ("ndm/memetracker", "ndm/irvine", "ndm/lastfm", "forest/twitter",
            "forest/memetracker", "infvae/christianity", "infvae/android")


def _job(dataset: str, config: str, seed: int) -> str:
  return f"{dataset}|{config}|s{seed}"


def _parse(job: str) -> tuple[str, str, int]:
  dataset, config, seed = job.rsplit("|", 2)
  return dataset, config, int(seed[1:])


def jobs(opts: C.ReproduceConfig) -> list[str]:
  return [_job(d, c, s) for d in opts.datasets for c in opts.configs for s in opts.seeds]


def run_job(opts: C.ReproduceConfig, job: str, ctx: common.Context) -> None:
  name, config_name, seed = _parse(job)
  data = dataclasses.replace(opts.data, source=name)
  dataset = common.load_data(data)
  cfg = common.job_config(config_name, data, opts.train, seed)
  cfg = cfg.replace(train={"max_train_seconds": ctx.train_budget(cfg.train.max_train_seconds)})
  folder = common.run_dir(common.workdir_of(TABLE, opts), name, config_name, seed, data.split)
  trained = common.train_or_resume(dataset, cfg, folder, progress=ctx.progress)
  row = experiment.result_row(dataset, trained, config_name)
  ctx.save([{**row, "seed": seed, "protocol": data.split}], done=True)


def collect(opts: C.ReproduceConfig, rows: list[dict]) -> list[dict]:
  return common.average_seeds(rows, ("dataset", "model", "protocol"))


def _order(row: dict):
  d, m = row.get("dataset"), row.get("model")
  names = list(C.CONFIGS)
  return (DATASETS.index(d) if d in DATASETS else len(DATASETS), str(d),
          names.index(m) if m in names else len(names), str(m))


def tiny() -> C.ReproduceConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return C.ReproduceConfig(datasets=(cfg.data.source,), configs=("ndm-tiny-examples", "popularity"),
                           workdir=None, tiny=True,
                           data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm", file="ndm_next_user.json", options=C.ReproduceConfig(), tiny=tiny,
    jobs=jobs, run_job=run_job, collect=collect, key=("dataset", "model", "protocol"),
    key_defaults={"protocol": "files"}, order=_order,
    columns=(*experiment.TABLE_COLUMNS, "protocol", "seeds"),
    title="Next-user prediction (test split; Hits@k and MAP@k over the users, infected masked)",
    meta=lambda opts: {"ranking": common.RANKING})


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm [options]`` (``configs.ReproduceConfig``)."""
  return common.main(TABLE, args, progress)
