"""Caption tokenizer (hashtags, mentions, emoji, URLs, words) and a vocabulary fitted on training posts."""

from __future__ import annotations

import collections
import re
from typing import Iterable, NamedTuple, Sequence

import numpy as np

# Emoji: the pictographic blocks (U+1F000..1FAFF holds faces, symbols, flags' regional indicators
# and skin tones), misc symbols and dingbats (U+2600..27BF), arrows/technical symbols used as emoji,
# joined by ZWJ (U+200D) sequences and optionally followed by the emoji presentation selector U+FE0F.
_EMOJI_CHAR = "\U0001F000-\U0001FAFF\u2600-\u27BF\u2300-\u23FF\u2B00-\u2BFF\u2190-\u21FF\u3030\u303D\u3297\u3299"
_EMOJI = f"[{_EMOJI_CHAR}][\uFE0F\U0001F3FB-\U0001F3FF]*(?:\u200D[{_EMOJI_CHAR}][\uFE0F\U0001F3FB-\U0001F3FF]*)*"
_TOKEN_RE = re.compile(
    rf"(?P<url>https?://\S+|www\.\S+)"
    rf"|(?P<hashtag>#[^\W_](?:[\w]*[^\W_])?|#\w+)"
    rf"|(?P<mention>@[\w](?:[\w.]*\w)?)"
    rf"|(?P<emoji>{_EMOJI})"
    rf"|(?P<word>[^\W_]+(?:['’][^\W_]+)*)")

PAD, UNK = 0, 1


class Token(NamedTuple):
  """A caption token and its kind (word, hashtag, mention, emoji, ...)."""
  text: str
  kind: str  # "url" | "hashtag" | "mention" | "emoji" | "word"


def tokenize_with_kinds(text: str) -> list[Token]:
  """Tokens of a caption with their kinds.

  Hashtags keep their ``#`` and mentions their ``@`` (both lowercased); each emoji (with its skin
  tone, presentation selector and ZWJ sequence) is one token; URLs become ``<url>``; words are
  lowercased Unicode letter/digit runs (apostrophes inside kept); punctuation is dropped.
  """
  out = []
  for m in _TOKEN_RE.finditer(text):
    kind = m.lastgroup
    tok = m.group(kind)
    if kind == "url":
      tok = "<url>"
    elif kind == "emoji":
      tok = tok.replace("\uFE0F", "")
    else:
      tok = tok.lower()
    out.append(Token(tok, kind))
  return out


def tokenize(text: str) -> list[str]:
  """Token strings of a caption (see :func:`tokenize_with_kinds`)."""
  return [t.text for t in tokenize_with_kinds(text)]


def token_counts(text: str) -> dict[str, int]:
  """Counts of each token kind in a caption: hashtag, mention, emoji, url, word."""
  c = collections.Counter(t.kind for t in tokenize_with_kinds(text))
  return {k: c.get(k, 0) for k in ("hashtag", "mention", "emoji", "url", "word")}


class Vocab(NamedTuple):
  """Token -> id map: 0 is padding, 1 unknown, then tokens by decreasing training frequency.

  Attributes:
    tokens: tuple of V str; ``tokens[i]`` has id i (tokens[0] = "<pad>", tokens[1] = "<unk>").
  """
  tokens: tuple

  @property
  def size(self) -> int:
    """The vocabulary size, padding included."""
    return len(self.tokens)

  def index(self) -> dict:
    """``{token: index}``."""
    return {t: i for i, t in enumerate(self.tokens)}


def fit_vocab(docs: Iterable[Sequence[str]], *, min_count: int = 2, max_size: int = 20000) -> Vocab:
  """Vocabulary of tokens seen at least ``min_count`` times in ``docs`` (training captions only)."""
  counts = collections.Counter()
  for d in docs:
    counts.update(d)
  kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
  return Vocab(("<pad>", "<unk>") + tuple(kept[: max_size - 2]))


def encode(docs: Sequence[Sequence[str]], vocab: Vocab, max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Ids and mask of token lists, cut to their first ``max_len`` tokens and padded.

  Returns:
    (ids int32 [N, max_len], mask bool [N, max_len]).
  """
  idx = vocab.index()
  ids = np.zeros((len(docs), max_len), np.int32)
  for i, d in enumerate(docs):
    row = [idx.get(t, UNK) for t in d[:max_len]]
    ids[i, : len(row)] = row
  return ids, ids != PAD
