"""Tag-score and title-score dictionaries (Meghawat et al. 2018, Sec. 3.4 and Fig. 4).

A dictionary maps each word of the training posts to the popularity of the posts that use it; a
post's score is the mean dictionary value of its words. The paper's Fig. 4 is not legible, so the
weighting is ours: a word's value is the mean popularity score of the training posts containing it,
shrunk towards the global training mean with ``prior`` pseudo-posts (so a word seen once does not
copy its one post's likes); words absent from the dictionary are ignored and a post with no known
word gets the global mean. On Instagram there is no title: tags are the caption's hashtags and the
"title" words are its other word tokens (emoji included, mentions and URLs excluded).
"""

from __future__ import annotations

import collections
from typing import NamedTuple, Sequence

import numpy as np


class ScoreDictionary(NamedTuple):
  """Word -> popularity value, fitted on training posts.

  Attributes:
    words: tuple of W str.
    values: float64 [W] value of each word.
    default: the global training mean (for posts with no known word).
  """
  words: tuple
  values: np.ndarray
  default: float


def fit_dictionary(docs: Sequence[Sequence[str]], scores: np.ndarray, *, prior: float = 5.0,
                   min_count: int = 1) -> ScoreDictionary:
  """Dictionary from training posts' word lists and popularity scores (each word counted once per post)."""
  scores = np.asarray(scores, np.float64)
  mean = float(scores.mean()) if scores.size else 0.0
  total = collections.defaultdict(float)
  count = collections.Counter()
  for d, s in zip(docs, scores):
    for w in set(d):
      total[w] += s
      count[w] += 1
  words = tuple(sorted(w for w in count if count[w] >= min_count))
  values = np.asarray([(total[w] + prior * mean) / (count[w] + prior) for w in words], np.float64)
  return ScoreDictionary(words, values, mean)


def dictionary_scores(docs: Sequence[Sequence[str]], d: ScoreDictionary) -> np.ndarray:
  """Mean dictionary value of each post's known words (``d.default`` when none): float32 [N]."""
  idx = {w: i for i, w in enumerate(d.words)}
  out = np.full(len(docs), d.default, np.float64)
  for i, doc in enumerate(docs):
    vals = [d.values[idx[w]] for w in set(doc) if w in idx]
    if vals:
      out[i] = np.mean(vals)
  return out.astype(np.float32)
