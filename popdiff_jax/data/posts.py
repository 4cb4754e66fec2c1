"""Posts for the three popularity papers: loading, features, :class:`PostBatch` arrays and batches.

::

  posts = load_posts(PostsConfig(synthetic=True), seed=0, workdir="runs/x")  # table, split, feats
  arrays = make_arrays(posts.feats, use=("features",), features=x, target=y)
  for batch in iterate_batches(arrays, posts.split.train, 128, shuffle_seed=0, drop_last=True):
    ...                                                        # PostBatch, every field [128, ...]

* :class:`PostsConfig` / :func:`load_posts`: the ``instagram_likes`` posts read in place from a
  data directory (never copied: the data has no licence) or synthetic Instagram-like users with a
  planted signal (``data.synthetic_posts``), split (``data.instagram.make_split``) and turned into
  a ``FeatureSet`` with every statistic fitted on the training posts
  (``features.build_features``).
* :func:`make_arrays`: full-length ``PostBatch`` arrays (all N posts) holding the fields a model
  reads; the others get width 0.
* :func:`iterate_batches`: shuffled training batches (the remainder dropped) or, for evaluation,
  batches in order padded with masked rows to one static shape.
* :func:`predict_rows`: a jitted predict step over the evaluation batches of some rows.
* :func:`standardize`: the regressors' target z-scored with the training mean and deviation.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Iterator, Literal, NamedTuple, Sequence

import jax
import numpy as np

from popdiff_jax import _validate as v
from popdiff_jax.types import PostBatch

__all__ = ["PostsConfig", "Posts", "load_table", "load_posts", "make_arrays", "iterate_batches",
           "predict_rows", "standardize"]


@dataclasses.dataclass(frozen=True)
class PostsConfig:
  """Which posts, how they are split, and how their features are built.

  Attributes:
    synthetic: generate Instagram-like users (``data.synthetic_posts``) instead of reading
      ``instagram_likes``.
    data_dir: folder holding ``UserData.tar.gz``, or a ``shared/data``-like root with an
      ``instagram_likes`` folder (default: ``$POPDIFF_DATA_DIR/instagram_likes``, else
      ``../shared/data/instagram_likes`` beside a checkout).
    synthetic_users: users generated with ``synthetic``.
    posts_per_user: posts of each generated user.
    split: ``random`` (20% test), ``time`` (latest 20% of posts to test) or ``user`` (users
      unseen in training); validation is 10% of the rest (``data.instagram.make_split``).
    n_topics: LDA topics (the dual attention's topic environment; paper: 400); 0 skips LDA.
    lda_iter: LDA passes of batch variational Bayes.
    lsa_dim: width of the LSA caption vector (the stand-in for BERT).
    max_len: caption tokens kept (the dual attention's sequence length).
    n_jobs: scikit-learn workers of the LDA fit.
  """

  synthetic: bool = False
  data_dir: str | None = None
  synthetic_users: int = 600
  posts_per_user: int = 12
  split: Literal["random", "time", "user"] = "random"
  n_topics: int = 400
  lda_iter: int = 5
  lsa_dim: int = 128
  max_len: int = 48
  n_jobs: int = 1

  def __post_init__(self):
    v.positive(self, "synthetic_users", "posts_per_user", "lda_iter", "lsa_dim", "max_len",
               "n_jobs")
    v.non_negative(self, "n_topics")
    v.one_of(self, "split", ("random", "time", "user"))


class Posts(NamedTuple):
  """Posts ready for the popularity models.

  Attributes:
    table: the ``data.instagram.PostTable``.
    split: the ``data.instagram.Split`` (train / val / test row indices).
    feats: the ``features.FeatureSet`` of every post (fitted on ``split.train``).
    stats: the ``features.FittedStats`` (vocabulary, dictionaries, ...).
  """

  table: Any
  split: Any
  feats: Any
  stats: Any


def load_table(config: PostsConfig, *, seed: int = 0,
               workdir: str | pathlib.Path = "runs/popularity"):
  """The post table and the loader report: ``instagram_likes`` from ``config.data_dir``, or
  ``config.synthetic_users`` synthetic users drawn from ``seed`` (written under
  ``workdir/synthetic_posts``)."""
  from popdiff_jax.data import instagram as ig
  from popdiff_jax.data import synthetic_posts as sp

  data_dir = config.data_dir
  if config.synthetic:
    users = sp.generate_users(config.synthetic_users, config.posts_per_user, seed=seed)
    data_dir = sp.write_archive(pathlib.Path(workdir) / "synthetic_posts", users)
  elif data_dir is not None and (pathlib.Path(data_dir) / "instagram_likes").is_dir():
    data_dir = pathlib.Path(data_dir) / "instagram_likes"  # the shared/data root was given
  elif data_dir is None:
    data_dir = ig.default_data_dir(None)
  return ig.load_instagram(data_dir)


def load_posts(config: PostsConfig, *, seed: int = 0,
               workdir: str | pathlib.Path = "runs/popularity", table=None) -> Posts:
  """Loads (or takes) the post table, splits it by ``seed`` and builds the features.

  Args:
    config: the posts and their features.
    seed: the seed of the synthetic users, of the split and of the LDA / SVD fits.
    workdir: the synthetic archive and the LDA cache (``workdir/lda_cache``) go here.
    table: an already loaded ``PostTable`` (then ``config``'s source fields are not used).

  Returns:
    :class:`Posts`.
  """
  from popdiff_jax.data import instagram as ig
  from popdiff_jax.features import build_features

  if table is None:
    table, _ = load_table(config, seed=seed, workdir=workdir)
  split = ig.make_split(table, config.split, seed)
  feats, stats = build_features(table, split.train, n_topics=config.n_topics,
                                lda_iter=config.lda_iter, lsa_dim=config.lsa_dim,
                                max_len=config.max_len, seed=seed,
                                cache_dir=pathlib.Path(workdir) / "lda_cache",
                                n_jobs=config.n_jobs)
  return Posts(table, split, feats, stats)


def make_arrays(feats, *, use: Sequence[str], features: np.ndarray | None = None,
                target: np.ndarray | None = None, column_keep: dict | None = None) -> PostBatch:
  """Full-length arrays (all N posts) for a model; the fields it does not read get width 0.

  Args:
    feats: the ``features.FeatureSet``.
    use: names of the ``PostBatch`` fields the model reads.
    features: float [N, F] tabular features (the ``features`` field).
    target: float [N] standardised regression target (the ``target`` field; zeros if None).
    column_keep: per field, a float [D] 0/1 vector multiplied into its columns (ablations).

  Returns:
    A ``PostBatch`` of N rows: ``label`` is ``max(feats.label, 0)`` (unlabelled posts read 0;
    the classifier uses labelled rows only) and ``mask`` is all True.
  """
  n = feats.score.shape[0]
  full = {
      "tokens": feats.tokens, "token_mask": feats.token_mask, "image": feats.image,
      "text": feats.text, "numeric": feats.numeric,
      "features": np.zeros((n, 0), np.float32) if features is None else features.astype(np.float32),
      "env_image": feats.env_image, "env_topic": feats.env_topic,
  }
  out = {}
  for k, x in full.items():
    if k in use:
      if column_keep and k in column_keep:
        x = (x * column_keep[k][None, :]).astype(x.dtype)
      out[k] = x
    else:
      out[k] = np.zeros((n, 0), x.dtype)
  out["label"] = np.maximum(feats.label, 0).astype(np.float32)
  out["target"] = np.zeros(n, np.float32) if target is None else target.astype(np.float32)
  out["mask"] = np.ones(n, bool)
  return PostBatch(**out)


def iterate_batches(arrays: PostBatch, idx: np.ndarray, batch_size: int, *,
                    shuffle_seed: int | None = None,
                    drop_last: bool = False) -> Iterator[PostBatch]:
  """Batches of the rows ``idx`` of ``arrays``.

  Args:
    arrays: full-length arrays from :func:`make_arrays`.
    idx: int [n] the rows to batch.
    batch_size: rows per batch B.
    shuffle_seed: shuffle the rows with ``np.random.default_rng(shuffle_seed)`` (training);
      None keeps their order (evaluation).
    drop_last: drop the last incomplete batch (training); otherwise it is padded up to B rows
      with copies of its first row whose ``mask`` is False (one static shape, no post lost).

  Yields:
    ``PostBatch`` with every field of B rows.
  """
  idx = np.asarray(idx)
  if shuffle_seed is not None:
    idx = idx[np.random.default_rng(shuffle_seed).permutation(idx.size)]
  n_full = idx.size // batch_size
  stop = n_full * batch_size if drop_last else idx.size
  for start in range(0, stop, batch_size):
    rows = idx[start:start + batch_size]
    pad = batch_size - rows.size
    take = np.concatenate([rows, np.full(pad, rows[0] if rows.size else 0, rows.dtype)])
    batch = PostBatch(*(a[take] for a in arrays))
    if pad:
      batch = batch._replace(mask=np.arange(batch_size) < rows.size)
    yield batch


def predict_rows(predict_step: Callable, params: Any, state: Any, arrays: PostBatch,
                 idx: np.ndarray, batch_size: int) -> Any:
  """A predict step's outputs for the rows ``idx``, in order, padding rows removed.

  Args:
    predict_step: ``(params, state, batch) -> outputs`` (``training.make_predict_step``), each
      output leaf of leading size B.
    params, state: the model's variables.
    arrays: full-length arrays from :func:`make_arrays`.
    idx: int [n] rows.
    batch_size: evaluation batch size B.

  Returns:
    The outputs as NumPy arrays of leading size n (the pytree structure of one call's outputs).
  """
  parts = []
  for batch in iterate_batches(arrays, idx, batch_size):
    k = int(batch.mask.sum())
    parts.append(jax.tree.map(lambda x: np.asarray(x)[:k], predict_step(params, state, batch)))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def standardize(score: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, float, float]:
  """The regression target ``(score - mean) / std`` with the training rows' mean and standard
  deviation (1 when it is 0); predictions are mapped back with ``pred * std + mean``.

  Args:
    score: float [N] popularity ``log(1 + likes)``.
    train: int [n] training rows.

  Returns:
    ``(target float64 [N], mean, std)``.
  """
  y = score[train].astype(np.float64)
  mean, std = float(y.mean()), float(y.std() or 1.0)
  return (score.astype(np.float64) - mean) / std, mean, std
