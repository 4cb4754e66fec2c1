"""Caption sentiment with VADER (Hutto & Gilbert 2014; the ``vaderSentiment`` package ships its lexicon).

Meghawat et al. (2018) score the description with Stanford CoreNLP's sentiment model; that needs a
Java server and model downloads, so we use VADER's compound score in [-1, 1], a lexicon model made
for social-media text (emoji and emoticons included), which needs no download at run time.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np


@functools.lru_cache(maxsize=1)
def _analyzer():
  try:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
  except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("sentiment needs the 'vaderSentiment' package: "
                      "pip install 'popdiff_jax[popularity]'") from e
  return SentimentIntensityAnalyzer()


def sentiment_scores(texts: Sequence[str]) -> np.ndarray:
  """VADER compound score of each text: float32 [N] in [-1, 1] (a pure function of the text)."""
  a = _analyzer()
  return np.asarray([a.polarity_scores(t)["compound"] for t in texts], np.float32)
