"""A synthetic Pinterest-like re-share tree generator whose ground truth needs memory.

The paper's Pinterest pintrees are not public. This generator keeps their ingredients (users with
4 log-normalised activity counts and a category profile, images with a category, re-share trees of
mean size ~4.5, width ~3.2, depth ~1.7) and plants a dependence on an **ancestor further up**:

* every user has a dominant category; the root's dominant category is the tree's *community*;
* a node's children are drawn, one by one, from the users of a category chosen as: the community
  (probability ``p_root``), the parent's own category (``p_parent``), or the image's category (rest);
* the expected number of children of a non-root node is ``base_rate * influence(user)``, times
  ``community_boost`` when the node's category is the community and ``image_boost`` when it is the
  image's category.

So from depth 1 on, which prototypes re-share next depends on the root user, up to several levels
above: a model without memory (the FC baseline sees only the node and the image) cannot know it,
while the Diffusion-LSTM can carry it in c. Social feature (4 + M): log1p of followers, followings,
pins, likes, each divided by its maximum, then the user's category distribution / 4 (Sec. 4.2).
Content feature: the image category one-hot through a fixed random projection plus noise, z-scored.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from popdiff_jax.data.trees.tree import tree_from_parents

__all__ = ["SyntheticTreesConfig", "SyntheticTrees", "make_synthetic_trees", "child_rate",
           "grow_tree"]


@dataclasses.dataclass(frozen=True)
class SyntheticTreesConfig:
  """Generator settings (defaults give pintree-like statistics: size ~4.5, width ~3.2, depth ~1.7)."""
  num_users: int = 3000
  num_categories: int = 10
  num_trees: int = 4000
  content_dim: int = 16
  root_children_mean: float = 3.1
  base_rate: float = 0.15
  community_boost: float = 1.6
  image_boost: float = 1.2
  p_root: float = 0.7
  p_parent: float = 0.2
  max_depth: int = 12
  max_size: int = 400
  seed: int = 0


@dataclasses.dataclass
class SyntheticTrees:
  """Generated data (host NumPy).

  Attributes:
    trees: the trees; ``user`` holds user indices as strings.
    social: (U, 4 + M) float32 social features of the users.
    user_category: (U,) int dominant category of each user.
    category_dist: (U, M) float32 category distribution of each user.
    content: (T, content_dim) float32 z-scored image features.
    image_category: (T,) int.
    influence: (U,) float64 each user's influence (mean 1): a non-root node's expected number
      of children is ``base_rate * influence`` times the boosts (:func:`child_rate`).
  """
  trees: list
  social: np.ndarray
  user_category: np.ndarray
  category_dist: np.ndarray
  content: np.ndarray
  image_category: np.ndarray
  influence: np.ndarray


def child_rate(node_category, community, image_category, influence, cfg: SyntheticTreesConfig):
  """The expected number of children of a non-root node (Poisson): ``base_rate * influence``,
  times ``community_boost`` when its category is the community, ``image_boost`` when it is the
  image's. Broadcasts over NumPy arrays; ``exp(-rate)`` is the node's probability of being a
  leaf."""
  rate = cfg.base_rate * np.asarray(influence, np.float64)
  rate = rate * np.where(np.asarray(node_category) == community, cfg.community_boost, 1.0)
  return rate * np.where(np.asarray(node_category) == image_category, cfg.image_boost, 1.0)


def grow_tree(rng: np.random.Generator, root: int, image_category: int, user_category: np.ndarray,
              influence: np.ndarray, cfg: SyntheticTreesConfig,
              by_cat: list[np.ndarray] | None = None) -> tuple[list[int], list[int], list[int]]:
  """Grows one re-share tree from ``root`` by the generator's rule (breadth first).

  ``by_cat``: the users of each category (``np.flatnonzero(user_category == c)``), computed here
  when not given; a caller growing many trees passes it once.

  Returns ``(users, parents, depths)``, one entry per node, the root first (parent -1). The same
  root and image with another ``rng`` draw another tree of the same distribution.
  """
  community = user_category[root]
  if by_cat is None:
    by_cat = [np.flatnonzero(user_category == c) for c in range(cfg.num_categories)]
  users, parents, depth = [root], [-1], [0]
  head = 0
  while head < len(users) and len(users) < cfg.max_size:
    node, d = users[head], depth[head]
    if d >= cfg.max_depth:
      head += 1
      continue
    if d == 0:
      n_child = 1 + rng.poisson(rng.gamma(0.7, (cfg.root_children_mean - 1) / 0.7))
    else:
      n_child = rng.poisson(float(child_rate(user_category[node], community, image_category,
                                             influence[node], cfg)))
    for _ in range(int(min(n_child, cfg.max_size - len(users)))):
      r = rng.random()
      c = community if r < cfg.p_root else (user_category[node] if r < cfg.p_root + cfg.p_parent
                                            else image_category)
      users.append(int(rng.choice(by_cat[c])))
      parents.append(head)
      depth.append(d + 1)
    head += 1
  return users, parents, depth


def make_synthetic_trees(cfg: SyntheticTreesConfig = SyntheticTreesConfig()) -> SyntheticTrees:
  """Generates users, images and re-share trees (deterministic given ``cfg.seed``)."""
  rng = np.random.default_rng(cfg.seed)
  u, m = cfg.num_users, cfg.num_categories
  dom = rng.integers(0, m, u)
  alpha = np.full((u, m), 0.15)
  alpha[np.arange(u), dom] = 3.0
  cat = np.stack([rng.dirichlet(a) for a in alpha]).astype(np.float32)
  activity = rng.normal(size=u)
  counts = np.stack([np.exp(7 + 0.6 * activity + 0.2 * rng.normal(size=u)),
                     np.exp(5 + 0.3 * rng.normal(size=u)),
                     np.exp(4 + 0.4 * activity + 0.2 * rng.normal(size=u)),
                     np.exp(6 + 0.5 * activity + 0.2 * rng.normal(size=u))], axis=1)
  logc = np.log1p(counts)
  social = np.concatenate([logc / logc.max(0), cat / 4.0], axis=1).astype(np.float32)
  influence = np.exp(0.5 * activity)
  influence /= influence.mean()
  by_cat = [np.flatnonzero(dom == c) for c in range(m)]
  proj = rng.normal(size=(m, cfg.content_dim))
  img_cat = rng.integers(0, m, cfg.num_trees)
  content = proj[img_cat] + 0.5 * rng.normal(size=(cfg.num_trees, cfg.content_dim))
  content = ((content - content.mean(0)) / content.std(0)).astype(np.float32)

  trees = []
  for t in range(cfg.num_trees):
    root = int(rng.integers(0, u))
    users, parents, depth = grow_tree(rng, root, int(img_cat[t]), dom, influence, cfg, by_cat)
    trees.append(tree_from_parents(parents, name=f"syn{t}", user=[str(x) for x in users],
                                   delay=np.asarray(depth, np.float32)))
  return SyntheticTrees(trees, social, dom, cat, content, img_cat, influence)
