"""``popdiff reproduce ndm-norms``: the norms of W^C (Sec. 5.7, Table 4), ``ndm_norms.json``.

NDM (``--config``, default ``ndm-patience3``) with F_init = 1 on each dataset of Table 4; the
squared Frobenius norms of the learned ``W^C_init``, ``W^C_0 .. W^C_{win-1}`` beside their
values at initialisation (``init_W_*``) and the paper's (``paper_W_*``). The Lastfm model is the
sensitivity sweep's F_init = 1 point: with the same ``--workdir`` (the default) the two tables
share it. Rows: ``dataset``, ``W_*``, ``init_W_*``, ``paper_W_*``, ``epochs``, ``best_epoch``,
``hits@10``, ``hits@10_with_terminate``, ``source_job``, ``seeds``, ``protocol``.

::

  XLA_FLAGS=--xla_gpu_autotune_level=0 popdiff reproduce ndm-norms --data-dir D \\
      --parallel 4 --budget 330 --train.max-train-seconds 260          # ~5 min on one GPU
  popdiff reproduce ndm-norms --tiny
"""

from __future__ import annotations

import dataclasses

from popdiff_jax.projects.ndm import analysis
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm.tables import common

__all__ = ["NormsConfig", "TABLE", "reproduce_main"]


@dataclasses.dataclass(frozen=True)
class NormsConfig(common.AnalysisConfig):
  """``popdiff reproduce ndm-norms``: ||W||_F^2 of NDM's W^C, F_init = 1 (``ndm_norms.json``).

  Attributes:
    datasets: the datasets (Table 4's four).
  """

  datasets: tuple[str, ...] = analysis.NORM_DATASETS


def jobs(opts: NormsConfig) -> list[str]:
  return [f"{d}|s{s}" for d in opts.datasets for s in opts.seeds]


def run_job(opts: NormsConfig, job: str, ctx: common.Context) -> None:
  name, seed = job.rsplit("|", 1)
  common.train_and_score(TABLE, opts, ctx, name, int(seed[1:]), {"job": f"norms:{name}"},
                         model={"f_init": 1})


def collect(opts: NormsConfig, rows: list[dict]) -> list[dict]:
  out = []
  for r in common.average_seeds(rows, ("dataset", "protocol")):
    out.append({"dataset": r["dataset"],
                **{k: r[k] for k in r if k.startswith(("W_", "init_W_"))},
                **{f"paper_{k}": x for k, x in analysis.PAPER_NORMS.get(r["dataset"], {}).items()},
                **{k: r.get(k) for k in ("epochs", "best_epoch", "hits@10",
                                         "hits@10_with_terminate")},
                "source_job": r.get("job"), "seeds": r["seeds"],
                "protocol": r.get("protocol")})
  return out


def tiny() -> NormsConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return NormsConfig(datasets=(cfg.data.source,), config="ndm-tiny-examples", workdir=None,
                     tiny=True, data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm-norms", file="ndm_norms.json", options=NormsConfig(), tiny=tiny, jobs=jobs,
    run_job=run_job, collect=collect, key=("dataset", "protocol"),
    key_defaults={"protocol": "project"},
    columns=("dataset", "W_init", "paper_W_init", "W_0", "paper_W_0", "W_1", "paper_W_1", "W_2",
             "paper_W_2", "epochs", "seeds"),
    title="||W||_F^2 of W^C (F_init = 1; the paper's beside ours)",
    meta=lambda opts: {"f_init": 1})


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm-norms [options]`` (:class:`NormsConfig`)."""
  return common.main(TABLE, args, progress)
