"""How much next-user signal is there beyond popularity? A counting baseline, no training.

``score(v | u_0..u_j) = log pop(v) + lam * log(1 + sum_{n < win} C[u_{j-n}, v])`` where
``pop`` is the popularity baseline's add-one training frequency and ``C[u, v]`` counts the training
cascades in which ``v`` comes within ``win`` steps after ``u`` (Terminate included as a target).
``lam = 0`` is the popularity baseline exactly. ``lam`` and ``win`` are picked on validation MAP@10
(the test split is only reported). If no ``lam > 0`` beats ``lam = 0`` on validation, the training
cascades hold (to a counting model) no sequential signal that carries over to held-out cascades.

  python benchmarks/ndm_cooccurrence.py --data-dir /work/shared/data
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax.data.batching import make_batches
from popdiff_jax.data.cascades import TERMINATE, load_dataset
from popdiff_jax.metrics.ranking import finalize, ranking_sums
from popdiff_jax.models.next_user import mask_infected, shift_targets
from popdiff_jax.models.popularity_baseline import popularity_scores
from popdiff_jax.results import run_metadata, write_results
from popdiff_jax.utils.report import format_table


def cooccurrence(cascades, num_items: int, win: int) -> np.ndarray:
  """float32 [U, U]: C[u, v] = training cascades where v is within ``win`` steps after u."""
  c = np.zeros((num_items, num_items), np.float32)
  for cas in cascades:
    seq = list(np.asarray(cas.users)) + [TERMINATE]
    for j, u in enumerate(seq[:-1]):
      for v in seq[j + 1:j + 1 + win]:
        c[u, v] += 1.0
  return c


@jax.jit
def _sums(log_pop, log_c, lam, users, mask):
  """Ranking sums of the counting score for one batch (window sums done by the caller)."""
  logits = log_pop[None, None, :] + lam * log_c
  targets, target_mask = shift_targets(users, mask)
  return ranking_sums(mask_infected(logits, users, mask), targets, target_mask)


def evaluate(cascades, log_pop, counts, lam, win):
  total = None
  for b in make_batches(cascades, 64, max_len=200):
    users = np.asarray(b.users)
    mask = np.asarray(b.mask)
    acc = np.zeros((*users.shape, counts.shape[0]), np.float32)
    for n in range(win):  # sum of C rows of the last win users
      prev = np.pad(users, ((0, 0), (n, 0)))[:, :users.shape[1]]
      pmask = np.pad(mask, ((0, 0), (n, 0)))[:, :users.shape[1]]
      acc += counts[prev] * pmask[..., None]
    s = _sums(log_pop, jnp.asarray(np.log1p(acc)), jnp.float32(lam), b.users, b.mask)
    total = s if total is None else jax.tree.map(jnp.add, total, s)
  return finalize(jax.device_get(total))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--datasets", nargs="+",
                 default=["ndm/irvine", "infvae/android", "infvae/christianity"])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--lams", nargs="+", type=float, default=[0.0, 0.25, 0.5, 1.0, 2.0])
  p.add_argument("--wins", nargs="+", type=int, default=[1, 3])
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" /
                                      "ndm_cooccurrence.json"))
  a = p.parse_args(argv)
  rows = []
  for name in a.datasets:
    data = load_dataset(name, a.data_dir)
    u = len(data.vocab)
    log_pop = jnp.asarray(np.nan_to_num(popularity_scores(data.train, u), neginf=-1e9),
                          jnp.float32)
    grid = []
    for win in a.wins:
      counts = cooccurrence(data.train, u, win)
      for lam in a.lams:
        if lam == 0.0 and win != a.wins[0]:
          continue
        v = evaluate(data.valid, log_pop, counts, lam, win)
        grid.append({"dataset": name, "lam": lam, "win": win,
                     **{f"val_{k}": v[k] for k in ("hits@10", "map@10")}, "_counts": counts})
    best = max(grid, key=lambda g: g["val_map@10"])
    pop = next(g for g in grid if g["lam"] == 0.0)
    for g, label in ((pop, "popularity (lam=0)"), (best, "counting, best on valid")):
      t = evaluate(data.test, log_pop, g["_counts"], g["lam"], g["win"])
      rows.append({"dataset": name, "model": label, "lam": g["lam"], "win": g["win"],
                   "val_hits@10": g["val_hits@10"], "val_map@10": g["val_map@10"],
                   "hits@10": t["hits@10"], "map@10": t["map@10"], "hits@50": t["hits@50"]})
    rows[-1]["grid"] = [{k: v for k, v in g.items() if k != "_counts"} for g in grid]
    print(format_table(rows[-2:], ["dataset", "model", "lam", "win", "val_hits@10", "val_map@10",
                                   "hits@10", "map@10"]), flush=True)
  write_results(a.out, rows, run_metadata("ndm_cooccurrence", config=vars(a)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
