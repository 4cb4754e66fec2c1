"""Caption topics (LDA, Zhang et al. 2019 Sec. III-C) and a dense caption vector (LSA), fitted on training posts.

LDA is scikit-learn's ``LatentDirichletAllocation`` (variational Bayes, Hoffman et al.) over token
counts from :func:`popdiff_jax.features.text.tokenize`; the paper's 400 topics are the default.
Fitting 400 topics on ~13k captions takes about a minute per pass set on two CPU cores, so
:func:`fit_transform_lda` caches the doc-topic matrix as ``.npz`` (no pickles) in a work directory,
keyed by a hash of the training captions, the captions transformed and the settings.

The deep text feature of Ding et al. (2019) is a 768-D BERT vector; no weights can be downloaded
here, so the stand-in is LSA: TF-IDF over the same tokens reduced by truncated SVD (fitted on
training posts). Pass precomputed text vectors to the pipeline to use a real encoder.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Sequence

import numpy as np


def _identity(doc):
  return doc


def _key(*parts) -> str:
  h = hashlib.sha1()
  for p in parts:
    h.update(repr(p).encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
  return h.hexdigest()[:16]


def fit_transform_lda(train_docs: Sequence[Sequence[str]], all_docs: Sequence[Sequence[str]], *,
                      n_topics: int = 400, max_iter: int = 5, seed: int = 0, min_df: int = 2,
                      cache_dir: str | pathlib.Path | None = None, n_jobs: int = 1,
                      ) -> tuple[np.ndarray, dict]:
  """Fits LDA on ``train_docs`` only and returns the topic mixture of every doc of ``all_docs``.

  Args:
    train_docs: token lists of the training posts (the only text the model sees in fitting).
    all_docs: token lists to transform (typically every post; train, val and test).
    n_topics: number of topics (paper: 400).
    max_iter: passes of batch variational Bayes.
    seed: random_state of the fit.
    min_df: tokens in fewer training posts are dropped.
    cache_dir: where to cache the result (``lda_<key>.npz``); None disables caching.
    n_jobs: scikit-learn workers for the E-step (does not change the result).

  Returns:
    (theta float32 [len(all_docs), n_topics] rows summing to 1, info dict with the vocabulary size,
    the topic-word matrix's checksum and whether the cache was hit).
  """
  from sklearn.decomposition import LatentDirichletAllocation
  from sklearn.feature_extraction.text import CountVectorizer

  key = _key("lda", list(map(tuple, train_docs)), list(map(tuple, all_docs)), n_topics,
             max_iter, seed, min_df)
  path = None if cache_dir is None else pathlib.Path(cache_dir) / f"lda_{key}.npz"
  if path is not None and path.is_file():
    with np.load(path, allow_pickle=False) as z:
      return z["theta"], {"vocab_size": int(z["vocab_size"]), "components_sum": float(z["components_sum"]),
                          "cached": True}
  cv = CountVectorizer(analyzer=_identity, min_df=min_df)
  x_train = cv.fit_transform(train_docs)
  lda = LatentDirichletAllocation(n_components=n_topics, learning_method="batch", max_iter=max_iter,
                                  random_state=seed, n_jobs=n_jobs)
  lda.fit(x_train)
  theta = lda.transform(cv.transform(all_docs)).astype(np.float32)
  info = {"vocab_size": int(x_train.shape[1]), "components_sum": float(lda.components_.sum()),
          "cached": False}
  if path is not None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, theta=theta, vocab_size=info["vocab_size"], components_sum=info["components_sum"])
  return theta, info


def fit_transform_lsa(train_docs: Sequence[Sequence[str]], all_docs: Sequence[Sequence[str]], *,
                      dim: int = 128, seed: int = 0, min_df: int = 2) -> np.ndarray:
  """TF-IDF (fitted on ``train_docs``) reduced to ``dim`` by truncated SVD: float32 [N, dim]."""
  from sklearn.decomposition import TruncatedSVD
  from sklearn.feature_extraction.text import TfidfVectorizer

  tf = TfidfVectorizer(analyzer=_identity, min_df=min_df, sublinear_tf=True)
  x_train = tf.fit_transform(train_docs)
  dim = int(min(dim, x_train.shape[1] - 1, x_train.shape[0] - 1))
  svd = TruncatedSVD(n_components=max(dim, 1), n_iter=2, random_state=seed).fit(x_train)
  return svd.transform(tf.transform(all_docs)).astype(np.float32)
