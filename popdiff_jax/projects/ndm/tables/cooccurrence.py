"""``popdiff reproduce ndm-cooccurrence``: how much next-user signal is there beyond popularity?

The counting baseline ``baselines.cooccurrence`` (popularity plus ``lam`` times the log of the
windowed co-occurrence counts of the training cascades; no training) with ``lam`` and the
window picked on validation (``select_by``); ``lam = 0`` is the popularity floor exactly. If no
``lam > 0`` beats it on validation, the training cascades hold (to a counting model) no
sequential signal that carries over to held-out cascades. Two rows per dataset in
``ndm_cooccurrence.json``: ``popularity (lam=0)`` and ``counting, best on valid`` (``lam``,
``win``, validation and test Hits@k / MAP@k in both conventions, ``grid``: every validation
score), ``protocol`` (the split) and ``seeds: []`` (the model has no randomness).

::

  popdiff reproduce ndm-cooccurrence --data-dir D        # seconds a dataset on a CPU
  popdiff reproduce ndm-cooccurrence --tiny
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import jax.numpy as jnp
import tyro

from popdiff_jax import _validate as v
from popdiff_jax.baselines.cooccurrence import (Cooccurrence, cooccurrence_counts,
                                                cooccurrence_eval_step)
from popdiff_jax.baselines.popularity import popularity_scores
from popdiff_jax.data.batching import make_batches
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm.tables import common
from popdiff_jax.training import evaluate

__all__ = ["CooccurrenceConfig", "TABLE", "reproduce_main"]

SELECT = ("map@10", "hits@10", "map@10_with_terminate", "hits@10_with_terminate")
KS = (10, 50, 100)


@dataclasses.dataclass(frozen=True)
class CooccurrenceConfig(C.TableRun):
  """``popdiff reproduce ndm-cooccurrence``: the counting baseline, ``lam`` and the window
  chosen on validation (``ndm_cooccurrence.json``).

  Attributes:
    datasets: the datasets.
    lams: the weights of the co-occurrence term tried (must include 0, the popularity floor).
    windows: the windows tried (users after ``u`` that count as co-occurring with it).
    select_by: the validation metric that picks ``lam`` and the window (maximised;
      ``*_with_terminate`` counts Terminate as a target, as the rows of the file were chosen).
    batch_size: cascades per evaluation batch.
    data: data options (split, cut, where the files are; the source is taken from
      ``datasets``).
  """

  datasets: tuple[str, ...] = ("ndm/irvine", "infvae/android", "infvae/christianity",
                               "ndm/memetracker", "ndm/lastfm")
  lams: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
  windows: tuple[int, ...] = (1, 3, 10)
  select_by: str = "map@10_with_terminate"
  batch_size: int = 64
  data: Annotated[C.DataConfig, tyro.conf.OmitArgPrefixes] = C.DataConfig()

  def __post_init__(self):
    super().__post_init__()
    v.one_of(self, "select_by", SELECT)
    v.positive(self, "batch_size")
    v.require(self, "lams", 0.0 in self.lams and all(x >= 0 for x in self.lams),
              "values >= 0, including 0 (the popularity floor)")
    v.require(self, "windows", len(self.windows) > 0 and all(w >= 1 for w in self.windows),
              "at least one window, each >= 1")


def run_job(opts: CooccurrenceConfig, name: str, ctx: common.Context) -> None:
  data = dataclasses.replace(opts.data, source=name)
  dataset = common.load_data(data)
  u = len(dataset.vocab)
  log_pop = jnp.asarray(popularity_scores(dataset.train, u))
  valid = make_batches(dataset.valid, opts.batch_size, max_len=data.max_len)
  test = make_batches(dataset.test, opts.batch_size, max_len=data.max_len)
  counts, steps, grid = {}, {}, []
  for win in opts.windows:
    counts[win] = jnp.asarray(cooccurrence_counts(dataset.train, u, win))
    steps[win] = cooccurrence_eval_step(win, KS)
    for lam in opts.lams:
      if lam == 0.0 and win != opts.windows[0]:  # lam = 0 is the same at every window
        continue
      m = evaluate(steps[win], Cooccurrence(log_pop, counts[win], jnp.float32(lam)), None, valid)
      grid.append({"dataset": name, "lam": lam, "win": win,
                   **{f"val_{k}": m[k] for k in SELECT}})
  best = max(grid, key=lambda g: g[f"val_{opts.select_by}"])
  pop = next(g for g in grid if g["lam"] == 0.0)
  rows = []
  for g, label in ((pop, "popularity (lam=0)"), (best, "counting, best on valid")):
    m = evaluate(steps[g["win"]], Cooccurrence(log_pop, counts[g["win"]], jnp.float32(g["lam"])),
                 None, test)
    rows.append({"dataset": name, "model": label, "lam": g["lam"], "win": g["win"],
                 **{k: x for k, x in g.items() if k.startswith("val_")},
                 **{k: x for k, x in m.items() if k.startswith(("hits@", "map@"))},
                 "protocol": data.split, "seeds": []})
  rows[-1]["grid"] = grid
  ctx.save(rows, done=True)


def tiny() -> CooccurrenceConfig:
  cfg = C.get_config("ndm-tiny-examples")
  return CooccurrenceConfig(datasets=(cfg.data.source,), lams=(0.0, 1.0), windows=(1, 2),
                            tiny=True,
                            data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm-cooccurrence", file="ndm_cooccurrence.json", options=CooccurrenceConfig(),
    tiny=tiny, jobs=lambda opts: list(opts.datasets), run_job=run_job,
    collect=lambda opts, rows: rows, key=("dataset", "model", "protocol"),
    key_defaults={"protocol": "files"},
    columns=("dataset", "model", "lam", "win", "val_map@10_with_terminate", "hits@10", "map@10",
             "hits@10_with_terminate", "map@10_with_terminate"),
    title="Popularity and the counting baseline (test split; lam and win chosen on validation)",
    meta=lambda opts: {"ranking": common.RANKING})


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm-cooccurrence [options]`` (:class:`CooccurrenceConfig`)."""
  return common.main(TABLE, args, progress)
