"""``popdiff reproduce ndm-social``: NDM+SN (Sec. 5.4) against NDM, ``ndm_sn.json``.

For every dataset with a social graph: NDM (``--config``, default ``ndm-patience3``) and NDM+SN
(the same config with the first d/2 embedding dimensions fixed to DeepWalk vectors of the
graph, ``projects.ndm.social``), each scored by next-user Hits@k / MAP@k and the Monte Carlo
F1 (early stage, then full). Rows: ``dataset``, ``model`` (``NDM``, ``NDM+SN``), the next-user
metrics, ``macro_f1``, ``micro_f1``, ``macro_f1_first5``, ``micro_f1_first5``,
``runs_per_cascade``, ``micro_f1_rel_change`` (NDM+SN against NDM; the paper reports about
+4%), the W^C norms, DeepWalk's graph coverage, ``seeds``, ``protocol``.

::

  XLA_FLAGS=--xla_gpu_autotune_level=0 popdiff reproduce ndm-social --data-dir D \\
      --parallel 6 --budget 440 --train.max-train-seconds 110 --eval-reserve 80   # ~7 min
  popdiff reproduce ndm-social --tiny
"""

from __future__ import annotations

import dataclasses

from popdiff_jax import _validate as v
from popdiff_jax.baselines.deepwalk import DeepWalkConfig
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm.social import SOCIAL_DATASETS, social_embedding
from popdiff_jax.projects.ndm.tables import common

__all__ = ["SocialConfig", "TABLE", "reproduce_main"]

MODELS = ("NDM", "NDM+SN")
F1_KEYS = ("macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5")


@dataclasses.dataclass(frozen=True)
class SocialConfig(common.AnalysisConfig):
  """``popdiff reproduce ndm-social``: NDM and NDM+SN on the datasets with a social graph
  (``ndm_sn.json``).

  Attributes:
    datasets: datasets with a social graph (``projects.ndm.social.SOCIAL_DATASETS``, or
      files read by path with ``--graph``).
    runs: Monte Carlo runs per test cascade.
    walks_per_node: DeepWalk's walks from every node.
    walk_length: DeepWalk's walk length.
  """

  datasets: tuple[str, ...] = SOCIAL_DATASETS
  runs: int = 500
  walks_per_node: int = 10
  walk_length: int = 40

  def __post_init__(self):
    super().__post_init__()
    v.positive(self, "runs", "walks_per_node", "walk_length")


def jobs(opts: SocialConfig) -> list[str]:
  return [f"{d}|{m}|s{s}" for d in opts.datasets for m in MODELS for s in opts.seeds]


def run_job(opts: SocialConfig, job: str, ctx: common.Context) -> None:
  name, model, seed = job.rsplit("|", 2)
  seed = int(seed[1:])
  row, frozen, fields = {"job": job, "model": model}, None, None
  if model == "NDM+SN":
    data = dataclasses.replace(opts.data, source=name)
    dataset = common.load_data(data)
    dim = C.get_config(opts.config).model.dim // 2
    walks = DeepWalkConfig(dim=dim, seed=seed, walks_per_node=opts.walks_per_node,
                           walk_length=opts.walk_length)
    frozen, info = social_embedding(dataset, data.data_dir, walks)
    row.update({k: x for k, x in info.items() if k != "deepwalk"})
    fields = {"frozen_dim": dim}
  common.train_and_score(TABLE, opts, ctx, name, seed, row, model=fields, runs=opts.runs,
                         frozen_embedding=frozen)


def collect(opts: SocialConfig, rows: list[dict]) -> list[dict]:
  out = common.average_seeds(rows, ("dataset", "model", "protocol"))
  for r in out:
    base = next((b for b in out if b["dataset"] == r["dataset"] and b["model"] == "NDM"
                 and b.get("protocol") == r.get("protocol")), None)
    if r["model"] == "NDM+SN" and base and base.get("micro_f1") and r.get("micro_f1") is not None:
      r["micro_f1_rel_change"] = round(r["micro_f1"] / base["micro_f1"] - 1.0, 4)
  return out


def _order(row: dict):
  d = row.get("dataset")
  return (SOCIAL_DATASETS.index(d) if d in SOCIAL_DATASETS else len(SOCIAL_DATASETS), str(d),
          str(row.get("model")))


def tiny() -> SocialConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return SocialConfig(datasets=(cfg.data.source,), config="ndm-tiny-examples", runs=8,
                      walks_per_node=2, walk_length=10, max_rows=128, workdir=None, tiny=True,
                      data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm-social", file="ndm_sn.json", options=SocialConfig(), tiny=tiny, jobs=jobs,
    run_job=run_job, collect=collect, key=("dataset", "model", "protocol"),
    key_defaults={"protocol": "project"}, order=_order,
    columns=("dataset", "model", "hits@10", "hits@10_with_terminate", *F1_KEYS,
             "micro_f1_rel_change", "runs_per_cascade", "epochs", "seeds"),
    title="NDM+SN against NDM (test split; F1 from u_0, early stage: the first five users)",
    meta=lambda opts: {"paper": "NDM+SN: relative Micro-F1 improvement about 4% (Sec. 5.4)",
                       "ranking": common.RANKING})


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm-social [options]`` (:class:`SocialConfig`)."""
  return common.main(TABLE, args, progress)
