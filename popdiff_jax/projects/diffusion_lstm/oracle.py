"""What tree generation can reach on the synthetic set, whose generating process is known.

The paper (Sec. 4.5) compares one generated tree per test root with the one tree observed there:
depth MAE computed per ground-truth depth and then averaged over depths, and the histogram
intersection (HI) of the mean category distribution of the non-root nodes. On the synthetic set
(``data.trees.synthetic``) the truth is a random process, so two quantities bound what any
generator can score:

* ``resampled``: each test tree drawn again by the true process from the same root and image
  (``synthetic.grow_tree`` with another seed), scored against the observed tree. A generator that
  is exactly the truth scores this (the mean over ``draws``); it is the floor of depth MAE and the
  ceiling of HI for one-sample-against-one-sample comparison.
* ``everyone``: a generated tree whose non-root nodes are every user once (the population's
  histogram): where a generator names many prototypes per node, its HI falls towards this.
* ``depth_one``: every generated tree of depth 1, which is what the paper's terminal rule
  (``p(terminal) > 0.5``) gives with an exactly calibrated model whenever the true leaf
  probability of a depth-1 node, ``exp(-rate)`` (``synthetic.child_rate``), exceeds 0.5;
  ``leaf_prob_above_half`` is the share of the test trees' non-root nodes for which it does.

``python -m popdiff_jax.projects.diffusion_lstm.oracle`` writes
``benchmarks/results/diffusion_lstm_generation_floor.json`` (seconds on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import jax.numpy as jnp
import numpy as np

from popdiff_jax import results
from popdiff_jax.baselines.kmeans import nearest_centroid
from popdiff_jax.data.trees import synthetic as syn
from popdiff_jax.metrics import trees as tm
from popdiff_jax.projects.diffusion_lstm.configs import DataConfig
from popdiff_jax.projects.diffusion_lstm.data import prepare_synthetic, split_indices

__all__ = ["generation_floor", "main"]


def _counts(trees_users: list, index: np.ndarray, size: int) -> np.ndarray:
  """(T, size) non-root nodes of each tree per ``index[user]`` (a user's own id or prototype)."""
  counts = np.zeros((len(trees_users), size))
  for i, users in enumerate(trees_users):
    np.add.at(counts[i], index[np.asarray(users, np.int64)[1:]], 1.0)
  return counts


def _hi(gen_users: list, true_users: list, spaces) -> dict:
  return {name: tm.mean_histogram_intersection(_counts(gen_users, index, len(feature)),
                                               _counts(true_users, index, len(feature)), feature)
          for name, (index, feature) in spaces.items()}


def generation_floor(config: DataConfig = DataConfig(), draws: int = 10, seed: int = 1) -> dict:
  """Depth MAE and HI of the true process against its own test trees (module docstring).

  Args:
    config: the synthetic set's data config (its generator settings and split seed).
    draws: redraws of every test tree by the true process.
    seed: seed of the redraws (the set itself keeps ``config.synthetic.seed``).

  Returns:
    A dict: ``test_trees``, ``true_depth_counts`` (trees per depth), ``leaf_prob_above_half``,
    ``resampled_depth_mae`` (mean over draws, ``_std`` over draws), ``depth_one_depth_mae``, and
    ``resampled_hist_intersection_<space>`` (with ``_std``) and
    ``depth_one_hist_intersection_<space>`` for ``users`` (each user's category distribution,
    the paper's definition) and ``prototypes`` (the experiment's: prototype histograms);
    ``everyone_hist_intersection_<space>``: a generated tree holding every user once, the
    histogram of the population.
  """
  cfg = config.synthetic
  data = syn.make_synthetic_trees(cfg)
  _, _, test = split_indices(len(data.trees), config.seed)
  trees = [data.trees[i] for i in test]
  users = [t.user.astype(np.int64) for t in trees]
  true_depth = np.array([int(t.depth.max()) for t in trees])
  # HI in two spaces: each user's own category distribution (the paper's definition) and the
  # users' prototypes with the prototypes' histogram, as the experiment scores models.
  prepared = prepare_synthetic(config, data)
  user_proto = np.asarray(nearest_centroid(jnp.asarray(data.social), jnp.asarray(prepared.proto_x)))
  spaces = {"users": (np.arange(len(data.social)), data.category_dist.astype(np.float64)),
            "prototypes": (user_proto, prepared.hist_feats.astype(np.float64))}
  # The true leaf probability of every non-root node of the test trees.
  leaf = []
  for t, u, img in zip(trees, users, data.image_category[test]):
    community = data.user_category[u[0]]
    rate = syn.child_rate(data.user_category[u[1:]], community, img, data.influence[u[1:]], cfg)
    leaf.append(np.exp(-rate))
  leaf = np.concatenate(leaf)

  rng = np.random.default_rng(seed)
  by_cat = [np.flatnonzero(data.user_category == c) for c in range(cfg.num_categories)]

  def redraw(c):
    return [syn.grow_tree(rng, int(u[0]), int(img), data.user_category, data.influence, c, by_cat)
            for u, img in zip(users, data.image_category[test])]

  maes, his = [], []
  for _ in range(draws):
    drawn = redraw(cfg)
    maes.append(tm.depth_mae_per_depth(np.array([max(d) for _, _, d in drawn]), true_depth))
    his.append(_hi([w for w, _, _ in drawn], users, spaces))
  # Depth one: a calibrated model's children of the root are the true process's first level.
  first = [w for w, _, _ in redraw(dataclasses.replace(cfg, max_depth=1))]
  depth_one = _hi(first, users, spaces)
  # Every user once: the histogram of a tree that names many prototypes at once.
  everyone_tree = np.concatenate([[0], np.arange(len(data.social))])  # a root, then every user
  everyone = _hi([everyone_tree] * len(users), users, spaces)
  depths, n = np.unique(true_depth, return_counts=True)
  out = {"test_trees": len(trees), "draws": draws,
         "true_depth_counts": {int(d): int(c) for d, c in zip(depths, n)},
         "true_mean_depth": float(true_depth.mean()),
         "leaf_prob_above_half": float(np.mean(leaf > 0.5)), "leaf_prob_mean": float(leaf.mean()),
         "resampled_depth_mae": float(np.mean(maes)),
         "resampled_depth_mae_std": float(np.std(maes)),
         "depth_one_depth_mae": tm.depth_mae_per_depth(np.ones_like(true_depth), true_depth)}
  for space in spaces:
    values = [h[space] for h in his]
    out[f"resampled_hist_intersection_{space}"] = float(np.mean(values))
    out[f"resampled_hist_intersection_{space}_std"] = float(np.std(values))
    out[f"depth_one_hist_intersection_{space}"] = depth_one[space]
    out[f"everyone_hist_intersection_{space}"] = everyone[space]
  return out


def main(argv: list[str] | None = None) -> int:
  """``python -m popdiff_jax.projects.diffusion_lstm.oracle [--draws N] [--out FILE]``: writes
  :func:`generation_floor` as one row of a result file and prints it; returns the exit status."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--draws", type=int, default=10, help="redraws of every test tree")
  parser.add_argument("--out", default=None, help="result file (default: "
                      "benchmarks/results/diffusion_lstm_generation_floor.json)")
  args = parser.parse_args(argv)
  if args.draws < 1:
    parser.error("--draws must be at least 1")
  row = {"dataset": "synthetic", **generation_floor(draws=args.draws)}
  out = args.out or results.results_dir() / "diffusion_lstm_generation_floor.json"
  meta = results.run_metadata("diffusion_lstm_generation_floor", config=vars(args),
                              command="python -m popdiff_jax.projects.diffusion_lstm.oracle")
  results.write_results(out, [row], meta)
  for k, v in row.items():
    print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
  print(f"results: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
