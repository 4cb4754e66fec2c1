"""``popdiff reproduce ndm``: the next-user table (Hits@k, MAP@k), ``ndm_next_user.json``.

One job per (dataset, named config, seed): ``experiment`` trains the config on the dataset
(early stopping on validation) and tests it. The options are ``configs.ReproduceConfig``.
Rows: ``experiment.result_row`` (``dataset``, ``model`` = the config's name, ``split``,
``hits@k`` / ``map@k`` users only and ``*_with_terminate``, ``nll``, ``epochs``,
``stopped_by``, ``val_*``, ``train_seconds``, ``device``) plus ``protocol`` (the split:
``files``, ``random``, ``time``, ``leak_free``) and ``seeds``; over several seeds the means, ``<key>_std`` and
``per_seed``. A rerun replaces the rows of the (dataset, model, protocol) it measures and keeps
the others.

::

  popdiff reproduce ndm                                    # the three embedded sets, CPU: ~1 h
  popdiff reproduce ndm --datasets forest/twitter --configs ndm-casc lstm-casc --data-dir D
  popdiff reproduce ndm --protocols files leak_free --seeds 0 1 2  # leak-free rows beside
  popdiff reproduce ndm --tiny                             # seconds once compiled

``--protocols leak_free`` (``configs.DataConfig.split``) is the leak-free protocol: a split
ordered by cascade start time, everything fitted on the training part, the epoch chosen on
validation and its checkpoint reloaded for the test.
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


def _job(dataset: str, config: str, seed: int, protocol: str | None = None) -> str:
  return f"{dataset}|{config}|s{seed}" + (f"|{protocol}" if protocol else "")


def _parse(job: str) -> tuple[str, str, int, str | None]:
  protocol = None
  if not job.rsplit("|", 1)[1].startswith("s"):  # ``|<protocol>`` after the seed
    job, protocol = job.rsplit("|", 1)
  dataset, config, seed = job.rsplit("|", 2)
  return dataset, config, int(seed[1:]), protocol


def jobs(opts: C.ReproduceConfig) -> list[str]:
  return [_job(d, c, s, p) for d in opts.datasets for p in (opts.protocols or (None,))
          for c in opts.configs for s in opts.seeds]


def run_job(opts: C.ReproduceConfig, job: str, ctx: common.Context) -> None:
  name, config_name, seed, protocol = _parse(job)
  data = dataclasses.replace(opts.data, source=name, split=protocol or opts.data.split)
  dataset = common.load_data(data)
  cfg = common.job_config(config_name, data, opts.train, seed)
  cfg = cfg.replace(train={"max_train_seconds": ctx.train_budget(cfg.train.max_train_seconds)})
  folder = common.run_dir(common.workdir_of(TABLE, opts), name, config_name, seed, data.split)
  trained = common.train_or_resume(dataset, cfg, folder, progress=ctx.progress)
  if data.split == "leak_free":  # the test scores the chosen epoch's checkpoint, read back
    trained = experiment.reload_best(folder, dataset, trained)
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
