"""The datasets of the Diffusion-LSTM project, prepared as in the paper's Sec. 3.1 and 4.

``prepare(config.data)`` returns a :class:`PreparedTrees`: the trees split 6:1:1 at random
(seeded), every node mapped to one of k prototype users by k-means++ on the *training* users'
features (an unseen user goes to the nearest centroid, Euclidean), each node's model input its
prototype's feature (the centroid, i.e. the members' mean), and the training counts of the
node targets for the class weights of Eq. 2.

* ``twitter15``: the public Twitter15 trees (``data.trees.load_tree_dataset``, cleaning rule
  counted in ``info["cleaning"]``), with behavioural user features and root content features
  built from training trees only (``data.trees.user_features``: Twitter15 has no profiles). The
  histogram of the HI metric is over prototypes (no categories exist).
* a path (``DataConfig.source``, any of ``data.trees.TREE_FORMATS``, e.g. the plain ``csv``):
  prepared exactly as Twitter15 (:func:`prepare_trees`), except the content feature of trees
  that are not in the ``twitter15`` format: their names are not tweet ids, so the root's time
  columns are left out, and the label one-hot runs over the labels of the training trees (none
  without a label file), leaving the early statistics (``user_features.content_features`` with
  ``tweet_time=False``). Times are read as minutes (the early window is 10 minutes).
* ``synthetic``: the Pinterest-like generator (``data.trees.synthetic``); users' social
  features as the paper's (4 log-count features and the category distribution / 4); the HI
  histogram is over categories (the paper's): a prototype's feature is its training members'
  mean category distribution.

A node's input is its prototype's feature, as in generation, where the children are
prototypes: the model works on prototype users only. (With each user's own feature instead, the
FC baseline memorised users on the synthetic set and fell to chance-level test mAP.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.baselines.kmeans import kmeans, nearest_centroid
from popdiff_jax.data.trees import TreeExample, TreeSet, load_tree_dataset, node_targets, tree_stats
from popdiff_jax.data.trees import synthetic as syn
from popdiff_jax.data.trees import user_features as uf
from popdiff_jax.projects.diffusion_lstm.configs import DataConfig

__all__ = ["PreparedTrees", "split_indices", "prepare_trees", "prepare_synthetic", "prepare"]


@dataclasses.dataclass
class PreparedTrees:
  """A dataset ready for the model (host NumPy).

  Attributes:
    name: dataset name (``twitter15``, ``synthetic``, or the path the trees were read from).
    train, val, test: lists of ``data.trees.TreeExample`` (node inputs are prototype features).
    proto_x: float32 [k, D] prototype features (centroids: the members' mean feature).
    hist_feats: float32 [k, F_h] histogram feature of each prototype (rows sum to 1).
    pos_counts, neg_counts: [k + 1] training target counts for the Eq. 2 weights.
    info: provenance and counts (cleaning report, split sizes, tree statistics).
  """

  name: str
  train: list
  val: list
  test: list
  proto_x: np.ndarray
  hist_feats: np.ndarray
  pos_counts: np.ndarray
  neg_counts: np.ndarray
  info: dict

  @property
  def input_dim(self) -> int:
    """D, the size of a node's input."""
    return int(self.proto_x.shape[1])

  @property
  def content_dim(self) -> int:
    """F, the size of a tree's content feature."""
    return int(self.train[0].content.shape[0])

  @property
  def num_protos(self) -> int:
    """k, the number of prototypes."""
    return int(self.proto_x.shape[0])


def split_indices(n: int, seed: int, ratios=(6, 1, 1)) -> tuple[np.ndarray, ...]:
  """A seeded random split of ``n`` items in the paper's 6:1:1 ratio: sorted index arrays."""
  perm = np.random.default_rng(seed).permutation(n)
  tot = sum(ratios)
  a = int(round(n * ratios[0] / tot))
  b = a + int(round(n * ratios[1] / tot))
  return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def _target_counts(examples, k):
  pos = np.zeros(k + 1)
  n = 0
  for e in examples:
    pos += node_targets(e.parent, e.proto, k).sum(0)
    n += e.parent.shape[0]
  return pos, n - pos


def _tree_summary(trees) -> dict:
  st = [tree_stats(t) for t in trees]
  return {k: round(float(np.mean([s[k] for s in st])), 3) for k in ("size", "width", "depth")}


def prepare_trees(tree_set: TreeSet, config: DataConfig) -> PreparedTrees:
  """Trees read from files (Twitter15, or any of ``data.trees.TREE_FORMATS``), prepared as
  Twitter15 (module docstring): behaviour features from the training trees only, k-means
  prototypes, content features z-scored with training statistics.

  Raises:
    DataError: too few trees for a 6:1:1 split with one tree in each part, or fewer training
      nodes than prototypes.
  """
  trees = tree_set.trees
  i_tr, i_va, i_te = split_indices(len(trees), config.seed)
  if not (len(i_tr) and len(i_va) and len(i_te)):
    raise DataError(f"{len(trees)} trees are too few to split 6:1:1 with one tree in each part "
                    "(at least 8 are needed)", tree_set.name)
  train = [trees[i] for i in i_tr]
  table = uf.fit_behaviour(train)
  feats = [uf.behaviour_features(t, table) for t in trees]
  x_train = np.concatenate([feats[i] for i in i_tr])
  if x_train.shape[0] < config.num_protos:
    raise DataError(f"the {len(i_tr)} training trees have {x_train.shape[0]} nodes, fewer than "
                    f"the num_protos={config.num_protos} prototypes (--data.num-protos)",
                    tree_set.name)
  rng = np.random.default_rng(config.seed)
  pts = x_train if x_train.shape[0] <= config.kmeans_max_points else \
      x_train[rng.choice(x_train.shape[0], config.kmeans_max_points, replace=False)]
  km = kmeans(jax.random.key(config.seed), pts, config.num_protos, iters=config.kmeans_iters)
  cents = np.asarray(km.centroids)
  # One nearest-centroid pass over all nodes (one compile), split back per tree.
  sizes = np.asarray([f.shape[0] for f in feats])
  protos = np.split(np.asarray(nearest_centroid(jnp.asarray(np.concatenate(feats)),
                                                km.centroids)).astype(np.int32),
                    np.cumsum(sizes)[:-1])
  if tree_set.format == "twitter15":
    label_names, tweet_time = uf.TWITTER_LABELS, True
  else:
    label_names = sorted({t.label for t in train if t.label is not None})
    tweet_time = False
  content = uf.content_features(trees, label_names, tweet_time=tweet_time)
  mu, sd = content[i_tr].mean(0), content[i_tr].std(0)
  content = (content - mu) / np.where(sd > 0, sd, 1.0)
  examples = [TreeExample(t.name, t.parent, t.depth, cents[proto].astype(np.float32), proto,
                          c.astype(np.float32))
              for t, proto, c in zip(trees, protos, content)]
  tr_ex = [examples[i] for i in i_tr]
  pos, neg = _target_counts(tr_ex, config.num_protos)
  info = {"cleaning": tree_set.report.as_dict(), "trees": len(trees),
          "split": [len(i_tr), len(i_va), len(i_te)], "tree_stats": _tree_summary(trees),
          "feature_columns": list(uf.BEHAVIOUR_COLUMNS), "kmeans_points": int(pts.shape[0]),
          "kmeans_inertia": float(km.inertia),
          "test_nodes_with_user_history": float(np.mean(np.concatenate(
              [feats[i][:, 0] > 0 for i in i_te]))),
          "histogram": "prototype histogram of non-root nodes",
          "format": tree_set.format, "labels": list(label_names), "tweet_time": tweet_time}
  return PreparedTrees(tree_set.name, tr_ex, [examples[i] for i in i_va],
                       [examples[i] for i in i_te], cents.astype(np.float32),
                       np.eye(config.num_protos, dtype=np.float32), pos, neg, info)


def prepare_synthetic(config: DataConfig, data: syn.SyntheticTrees | None = None) -> PreparedTrees:
  """The synthetic Pinterest-like set of ``config.synthetic`` (or ``data``, already generated
  from it); prototypes from k-means over the users seen in training."""
  data = syn.make_synthetic_trees(config.synthetic) if data is None else data
  trees = data.trees
  i_tr, i_va, i_te = split_indices(len(trees), config.seed)
  seen = np.unique(np.concatenate([trees[i].user.astype(np.int64) for i in i_tr]))
  km = kmeans(jax.random.key(config.seed), data.social[seen], config.num_protos,
              iters=config.kmeans_iters)
  cents = np.asarray(km.centroids).astype(np.float32)
  user_proto = np.asarray(nearest_centroid(jnp.asarray(data.social), km.centroids))
  # A prototype's histogram feature: its training members' mean category distribution.
  hist = np.zeros((config.num_protos, data.category_dist.shape[1]))
  np.add.at(hist, user_proto[seen], data.category_dist[seen])
  hist = hist / np.maximum(hist.sum(1, keepdims=True), 1e-12)
  examples = []
  for t, c in zip(trees, data.content):
    u = t.user.astype(np.int64)
    examples.append(TreeExample(t.name, t.parent, t.depth, cents[user_proto[u]],
                                user_proto[u].astype(np.int32), c))
  tr_ex = [examples[i] for i in i_tr]
  pos, neg = _target_counts(tr_ex, config.num_protos)
  info = {"trees": len(trees), "split": [len(i_tr), len(i_va), len(i_te)],
          "tree_stats": _tree_summary(trees), "generator": dataclasses.asdict(config.synthetic),
          "histogram": "mean category distribution of non-root nodes"}
  return PreparedTrees("synthetic", tr_ex, [examples[i] for i in i_va],
                       [examples[i] for i in i_te], cents, hist.astype(np.float32), pos, neg,
                       info)


def prepare(config: DataConfig) -> PreparedTrees:
  """The dataset of ``config.source``: ``synthetic`` (generated), else the trees of the preset
  ``twitter15`` or of a path (``data.trees.load_tree_dataset``), prepared by
  :func:`prepare_trees`."""
  if config.source == "synthetic":
    return prepare_synthetic(config)
  tree_set = load_tree_dataset(config.source, config.data_dir, format=config.format,
                               labels=config.labels, max_trees=config.max_trees)
  return prepare_trees(tree_set, config)
