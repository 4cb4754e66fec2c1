"""Behavioural user features, content features and k-means++ prototypes for propagation trees.

Hu et al. (2018, Sec. 3.1, 3.3, 4.2) map users to k = 100 prototypes by k-means on 42-D social
features (log-normalised counts "log, then divide by the maximum", plus a category distribution / 4);
an unseen user goes to the nearest centroid (Euclidean); a prototype's feature is its members' mean.

Twitter15 has no profiles, so the feature of a node's user is built from **training trees only**
(deviation, documented): for the node n of user u,

  history (user-level tables over the training trees):
    0. log1p(appearances of u)           1. log1p(total out-degree of u, i.e. re-shares triggered)
    2. log1p(times u was a root)         3. mean depth of u's appearances
    4. mean log1p(delay) of u's appearances (minutes)
  arrival (observable at the moment n appears, so causal):
    5. depth of n                        6. log1p(delay of n)        7. log1p(delay since parent)

Each column is then divided by its maximum over training nodes (the paper's "log, then / max"; the
arrival and mean columns are also scaled to [0, 1] this way). For a node of a *training* tree the
history leaves that tree out ("leave-own-tree-out"): otherwise a training node's input would contain
its own out-degree, i.e. its target. Users never seen in training have zero history. Because 480,987
uids share 600k Twitter15 edges (most users appear once), per-user history alone would put almost
every test node in one prototype; the arrival columns keep prototypes informative.

Content feature of a Twitter15 root (the paper's image feature; the public release has no text):
the veracity label one-hot (4: non-rumor, false, true, unverified), the root tweet's time from its
snowflake id (years since 2011, hour-of-day sine and cosine), and early statistics of the first 10
minutes (log1p number of responses within 10 minutes, log1p delay of the first response), z-scored
with training means and deviations as the paper does for VGG features. The early statistics are an
early-observation window as in popularity prediction; they are partly informative of the root's
own number of children.

Trees of other sources (:func:`content_features` with ``tweet_time=False``): a tree's name is not
a tweet id, so the three time columns are left out; the label one-hot runs over the labels the
data has (none: no columns); the early statistics are computed alike (delays in minutes).

The prototypes themselves are k-means clusters of these features
(``popdiff_jax.baselines.kmeans``; ``projects.diffusion_lstm.data`` runs it).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from popdiff_jax.data.trees.tree import Tree

__all__ = ["BehaviourTable", "fit_behaviour", "behaviour_features", "BEHAVIOUR_COLUMNS",
           "content_features", "TWITTER_LABELS"]

BEHAVIOUR_COLUMNS = ("log_appearances", "log_out_degree", "log_root_count", "mean_depth",
                     "mean_log_delay", "depth", "log_delay", "log_delay_since_parent")
TWITTER_LABELS = ("non-rumor", "false", "true", "unverified")


class BehaviourTable(NamedTuple):
  """Per-user sums over the training trees (host NumPy).

  Attributes:
    users: (U,) str, sorted user ids.
    sums: (U, 5) float64 per-user sums: appearances, out-degree, root count, depth, log1p delay.
    scale: (8,) float64 column maxima used for normalisation (1 where a column is all zero).
    train_names: set of training tree names (their nodes get leave-own-tree-out history).
  """
  users: np.ndarray
  sums: np.ndarray
  scale: np.ndarray
  train_names: frozenset


def _tree_contrib(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
  """Per-node contributions (n, 5) and the node users."""
  n = tree.size
  outdeg = np.bincount(tree.parent[1:], minlength=n).astype(np.float64)
  is_root = np.zeros(n)
  is_root[0] = 1.0
  contrib = np.stack([np.ones(n), outdeg, is_root, tree.depth.astype(np.float64),
                      np.log1p(np.maximum(tree.delay, 0.0)).astype(np.float64)], axis=1)
  return contrib, tree.user


def _raw_features(tree: Tree, hist_sums: np.ndarray) -> np.ndarray:
  """(n, 8) unnormalised features from (n, 5) history sums for each node's user."""
  cnt = hist_sums[:, 0]
  safe = np.maximum(cnt, 1.0)
  mean_depth = np.where(cnt > 0, hist_sums[:, 3] / safe, 0.0)
  mean_ld = np.where(cnt > 0, hist_sums[:, 4] / safe, 0.0)
  delay = np.maximum(tree.delay.astype(np.float64), 0.0)
  par = np.maximum(tree.parent, 0)
  since = np.where(tree.parent >= 0, np.maximum(delay - delay[par], 0.0), 0.0)
  return np.stack([np.log1p(cnt), np.log1p(hist_sums[:, 1]), np.log1p(hist_sums[:, 2]),
                   mean_depth, mean_ld, tree.depth.astype(np.float64), np.log1p(delay),
                   np.log1p(since)], axis=1)


def fit_behaviour(train_trees: Sequence[Tree]) -> BehaviourTable:
  """Builds the per-user history table from training trees only."""
  contribs, users = zip(*[_tree_contrib(t) for t in train_trees])
  contrib = np.concatenate(contribs)
  users = np.concatenate(users)
  uniq, inv = np.unique(users, return_inverse=True)
  sums = np.zeros((uniq.size, 5))
  np.add.at(sums, inv, contrib)
  table = BehaviourTable(uniq, sums, np.ones(8), frozenset(t.name for t in train_trees))
  raw = np.concatenate([_raw_features(t, _history(t, table)) for t in train_trees])
  scale = raw.max(0)
  return table._replace(scale=np.where(scale > 0, scale, 1.0))


def _history(tree: Tree, table: BehaviourTable) -> np.ndarray:
  """(n, 5) history sums for each node's user, leaving the node's own tree out if it is training."""
  idx = np.searchsorted(table.users, tree.user)
  idx = np.minimum(idx, table.users.size - 1)
  seen = table.users[idx] == tree.user
  hist = np.where(seen[:, None], table.sums[idx], 0.0)
  if tree.name in table.train_names:
    contrib, _ = _tree_contrib(tree)
    uniq, inv = np.unique(tree.user, return_inverse=True)
    own = np.zeros((uniq.size, 5))
    np.add.at(own, inv, contrib)
    hist = hist - own[inv]
  return np.maximum(hist, 0.0)


def behaviour_features(tree: Tree, table: BehaviourTable) -> np.ndarray:
  """(n, 8) float32 normalised behavioural features of each node of ``tree`` (columns above)."""
  return (_raw_features(tree, _history(tree, table)) / table.scale[None, :]).astype(np.float32)


def content_features(trees: Sequence[Tree], labels: Sequence[str] = TWITTER_LABELS, *,
                     tweet_time: bool = True) -> np.ndarray:
  """(T, len(labels) + 3 * tweet_time + 2) unnormalised content features of tree roots.

  Columns (the module docstring): the label one-hot over ``labels`` (zeros for a label not in
  it, or none), with ``tweet_time`` the root tweet's time from its Twitter snowflake id (years
  since 2011, hour-of-day sine and cosine; the tree's name must be the root tweet id), then the
  early statistics (log1p responses within 10 minutes, log1p delay of the first response).
  Twitter15: the defaults, 9 columns. Trees of other sources (``tweet_time=False``, labels from
  the data) keep what a tree itself holds. z-score them with training statistics before use.
  """
  labels = tuple(labels)
  rows = []
  for t in trees:
    onehot = np.zeros(len(labels))
    if t.label in labels:
      onehot[labels.index(t.label)] = 1.0
    when = []
    if tweet_time:
      try:
        ms = (int(t.name) >> 22) + 1288834974657
      except ValueError:
        ms = 1288834974657
      years = (ms / 1000.0 - 1293840000.0) / (365.25 * 86400.0)  # since 2011-01-01
      hour = (ms / 3.6e6) % 24.0
      when = [years, np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)]
    d = t.delay[1:]
    early = float((d <= 10.0).sum())
    first = float(d.min()) if d.size else 0.0
    rows.append(np.r_[onehot, when, np.log1p(early), np.log1p(max(first, 0.0))])
  return np.asarray(rows, np.float32).reshape(len(rows), len(labels) + 3 * tweet_time + 2)
