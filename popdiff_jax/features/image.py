"""The "image" input without pixels: Instagram's automatic alt-text as a concept vector.

Instagram's ``accessibility_caption`` ("Image may contain: 2 people, selfie and closeup") is computed
from the pixels, so it stands in for the image features of the papers (ResNet-50 in Zhang et al.,
ResNet-101 in Ding et al., InceptionResNetV2 in Meghawat et al.). A post's image vector is the
multi-hot of its concepts over a concept vocabulary fitted on training posts, plus log(1 + number of
people). Researchers with pixels pass precomputed dense arrays instead (see
``popdiff_jax.features.pipeline.build_features(image_features=...)``).
"""

from __future__ import annotations

import collections
import re
from typing import NamedTuple, Sequence

import numpy as np

_PREFIX = re.compile(r"^\s*image may contain:\s*", re.I)
_PEOPLE = re.compile(r"^(\d+|one or more) (?:person|people)$")
MISSING = "<missing>"
NO_DESCRIPTION = "<no_description>"


def parse_alt_text(alt: str) -> tuple[list[str], int]:
  """(concepts, number of people) of an alt-text.

  "Image may contain: 2 people, selfie and closeup" -> (["people", "selfie", "closeup"], 2);
  "one or more people" counts as 1; "No photo description available." -> (["<no_description>"], 0);
  "" -> (["<missing>"], 0).
  """
  alt = alt.strip()
  if not alt:
    return [MISSING], 0
  if not _PREFIX.match(alt):
    return [NO_DESCRIPTION], 0
  body = _PREFIX.sub("", alt).rstrip(". ")
  parts = [p.strip().lower() for chunk in body.split(",") for p in chunk.split(" and ")]
  concepts, people = [], 0
  for p in parts:
    if not p:
      continue
    m = _PEOPLE.match(p)
    if m:
      people = max(people, 1 if m.group(1) == "one or more" else int(m.group(1)))
      concepts.append("people")
    else:
      concepts.append(p)
  return concepts, people


class ConceptVocab(NamedTuple):
  """Alt-text concepts kept (seen at least ``min_count`` times in training posts), in sorted order."""
  concepts: tuple


def fit_concepts(alt_texts: Sequence[str], min_count: int = 2) -> ConceptVocab:
  """The concept vocabulary of the training alt-texts (concepts seen at least ``min_count`` times)."""
  c = collections.Counter()
  for a in alt_texts:
    c.update(set(parse_alt_text(a)[0]))
  return ConceptVocab(tuple(sorted(k for k, v in c.items() if v >= min_count)))


def alt_text_vectors(alt_texts: Sequence[str], vocab: ConceptVocab) -> np.ndarray:
  """Image input from alt-texts.

  Returns:
    float32 [N, C + 1]: multi-hot over ``vocab.concepts`` then log(1 + people).
  """
  idx = {c: i for i, c in enumerate(vocab.concepts)}
  out = np.zeros((len(alt_texts), len(idx) + 1), np.float32)
  for i, a in enumerate(alt_texts):
    concepts, people = parse_alt_text(a)
    for c in concepts:
      j = idx.get(c)
      if j is not None:
        out[i, j] = 1.0
    out[i, -1] = np.log1p(people)
  return out
