"""Every feature the three popularity papers use, built from a PostTable with statistics fitted on
training posts only.

``build_features(table, train_idx, ...)`` returns a :class:`FeatureSet` (arrays for *all* posts) and
a :class:`FittedStats` (every statistic that was fitted: vocabularies, dictionaries, normalisers,
user means, LDA and LSA checksums). Only rows ``train_idx`` of the table enter any fit: changing the
caption, alt-text, likes or comments of a non-training post changes neither the fitted statistics
nor any training row's features (tests/test_popularity_features.py checks this).

Feature groups (names in ``NUMERIC_NAMES`` / ``SMP_NAMES``):

* tokens: caption token ids (vocabulary of training tokens seen >= 2 times), cut to ``max_len``.
* image: the alt-text concept vector (:mod:`popdiff_jax.features.image`), or the caller's
  precomputed dense image features (ResNet, CLIP, ...) when given; z-scored.
* text: LSA of the caption (stand-in for BERT), or precomputed dense text features; z-scored.
* lda: LDA topic mixture of the caption (400 topics by default).
* env_image, env_topic: user environment of Zhang et al. (Sec. III-C): the mean image input and the
  mean LDA vector of the user's *training* posts; users with no training post (user split) get the
  training mean over all posts.
* numeric: Ding et al.'s 10 numerical features mapped to this data (z-scored): log followers,
  log followings, log posts (user information); log post age in days before the 2019-04-20 scrape,
  hour and weekday (UTC), has-location (time and location: the data has place names, no
  coordinates); is-sidecar (post type); tag count; log caption length. NIMA aesthetics and IIPA
  intrinsic popularity need pixels and are absent.
* smp: Meghawat et al.'s 14 CON-SOC features mapped from SMP-T1 fields (z-scored; see
  ``SMP_NAMES`` and the README table); ``user_mean_score`` ("avgview") is the mean log-likes of
  the user's training posts, leave-one-out for a training post itself (else the target would leak
  into its own feature), the training mean for unseen users.
* image_score: the "image model" score (Meghawat et al.'s 15th feature): a ridge regression of the
  popularity score on the image input, fitted on training posts; training rows get 5-fold
  out-of-fold predictions so that the score is not an in-sample fit.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import pathlib
from typing import NamedTuple

import numpy as np

from popdiff_jax.data.instagram import PostTable, quartile_labels
from popdiff_jax.features import dictionaries, image, sentiment, text, topics

SCRAPE_TIME = int(datetime.datetime(2019, 4, 20, tzinfo=datetime.timezone.utc).timestamp())

NUMERIC_NAMES = ("log_followers", "log_following", "log_posts", "log_post_age_days", "hour",
                 "weekday", "has_location", "is_sidecar", "tag_count", "log_caption_length")
NUMERIC_GROUPS = {
    "user": (0, 1, 2),
    "time_location": (3, 4, 5, 6),
    "post_type": (7,),
    "tags_count": (8,),
    "caption_length": (9,),
}
SMP_NAMES = ("log_post_age_days",    # postdate
             "log_comments",         # commentcount
             "has_people",           # haspeople (alt-text mentions a person)
             "title_length",         # titlelen: characters of the caption's first line
             "description_length",   # deslen: characters of the caption
             "tag_count",            # tagcount: hashtags
             "user_mean_score",      # avgview: mean log(1+likes) of the user's training posts
             "log_following",        # groupcount: no groups on Instagram; accounts followed
             "log_followers",        # avgmembercount: audience size; followers
             "tag_score",            # tag dictionary (hashtags)
             "title_score",          # title dictionary (caption words and emoji)
             "sentiment",            # VADER compound of the caption (paper: CoreNLP)
             "hour",                 # time of day of postdate
             "log_posts")            # the user's number of posts


class FeatureSet(NamedTuple):
  """Features of all N posts of a table (fits used training rows only).

  Attributes:
    tokens: int32 [N, T] caption token ids (0 = padding, 1 = unknown).
    token_mask: bool [N, T].
    image: float32 [N, Di] image input (alt-text concepts or precomputed), z-scored.
    text: float32 [N, Dt] dense caption vector (LSA or precomputed), z-scored.
    lda: float32 [N, K] caption topic mixture.
    env_image: float32 [N, Di] mean ``image`` of the author's training posts.
    env_topic: float32 [N, K] mean ``lda`` of the author's training posts.
    numeric: float32 [N, 10] Ding et al.'s numerical features (``NUMERIC_NAMES``), z-scored.
    smp: float32 [N, 14] Meghawat et al.'s CON-SOC features (``SMP_NAMES``), z-scored.
    image_score: float32 [N] image-model prediction of ``score`` (out-of-fold on training rows).
    score: float32 [N] popularity log(1 + likes).
    label: int32 [N] per-user top/bottom-quarter label in {-1, 0, 1}.
    user: int32 [N].
  """
  tokens: np.ndarray
  token_mask: np.ndarray
  image: np.ndarray
  text: np.ndarray
  lda: np.ndarray
  env_image: np.ndarray
  env_topic: np.ndarray
  numeric: np.ndarray
  smp: np.ndarray
  image_score: np.ndarray
  score: np.ndarray
  label: np.ndarray
  user: np.ndarray


@dataclasses.dataclass
class FittedStats:
  """Every statistic fitted on the training posts (compared by the leakage test)."""
  vocab: tuple
  concepts: tuple
  tag_dictionary: dictionaries.ScoreDictionary
  title_dictionary: dictionaries.ScoreDictionary
  image_mean: np.ndarray
  image_std: np.ndarray
  text_mean: np.ndarray
  text_std: np.ndarray
  numeric_mean: np.ndarray
  numeric_std: np.ndarray
  smp_mean: np.ndarray
  smp_std: np.ndarray
  user_mean_score: np.ndarray  # float64 [U], nan for users without training posts
  global_mean_score: float
  lda_info: dict
  image_model: np.ndarray  # ridge coefficients and intercept fitted on all training rows

  def fingerprint(self) -> str:
    """SHA-1 over every field (the leakage test compares these)."""
    h = hashlib.sha1()
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if f.name == "lda_info":
        v = {k: x for k, x in v.items() if k != "cached"}
      if isinstance(v, np.ndarray):
        h.update(np.ascontiguousarray(v).tobytes())
      else:
        h.update(repr(v).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _zscore_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  mean = x.mean(axis=0)
  std = x.std(axis=0)
  return mean, np.where(std > 1e-8, std, 1.0)


def _first_line(caption: str) -> str:
  return caption.strip().split("\n", 1)[0]


def _user_means(user: np.ndarray, values: np.ndarray, train_idx: np.ndarray, num_users: int,
                ) -> np.ndarray:
  """Mean of ``values`` [N, D] over each user's training rows: float64 [U, D] (nan when none)."""
  sums = np.zeros((num_users, values.shape[1]))
  np.add.at(sums, user[train_idx], values[train_idx])
  counts = np.bincount(user[train_idx], minlength=num_users).astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    return sums / counts[:, None]


def build_features(table: PostTable, train_idx: np.ndarray, *, max_len: int = 48,
                   n_topics: int = 400, lda_iter: int = 5, lsa_dim: int = 128, seed: int = 0,
                   cache_dir: str | pathlib.Path | None = None,
                   image_features: np.ndarray | None = None,
                   text_features: np.ndarray | None = None,
                   scrape_time: int = SCRAPE_TIME, n_jobs: int = 1) -> tuple[FeatureSet, FittedStats]:
  """All features of every post of ``table``, with every statistic fitted on ``train_idx`` rows.

  Args:
    table: the posts.
    train_idx: int [n_train] training rows: the only rows any statistic is fitted on.
    max_len: caption tokens kept (static sequence length T).
    n_topics: LDA topics (paper: 400); 0 skips LDA (``lda`` and ``env_topic`` get width 0).
    lda_iter: LDA passes.
    lsa_dim: LSA text vector size.
    seed: seed of the LDA and SVD fits.
    cache_dir: LDA cache folder (None: no cache).
    image_features: optional float [N, Di] precomputed image vectors replacing the alt-text input.
    text_features: optional float [N, Dt] precomputed caption vectors replacing LSA.
    scrape_time: Unix time the ages are measured from (the data was scraped in April 2019).
    n_jobs: scikit-learn workers for LDA.

  Returns:
    (features, fitted statistics).

  Raises:
    MissingExtraError: scikit-learn or VADER is not installed (``pip install
      "popdiff_jax[popularity]"``).
  """
  from popdiff_jax._errors import require_extra

  require_extra("popularity", "the popularity features (LDA, LSA, ridge, sentiment)")
  from sklearn.linear_model import Ridge
  from sklearn.model_selection import KFold

  train_idx = np.asarray(train_idx, np.int64)
  n = table.num_posts
  toks = [text.tokenize_with_kinds(c) for c in table.caption]
  docs = [[t.text for t in d] for d in toks]
  train_docs = [docs[i] for i in train_idx]

  vocab = text.fit_vocab(train_docs)
  tokens, token_mask = text.encode(docs, vocab, max_len)

  # Image input: alt-text concepts (or the caller's dense vectors).
  concepts = image.fit_concepts([table.alt_text[i] for i in train_idx])
  img_raw = (image.alt_text_vectors(table.alt_text, concepts) if image_features is None
             else np.asarray(image_features, np.float32))
  if img_raw.shape[0] != n:
    raise ValueError(f"image_features has {img_raw.shape[0]} rows for {n} posts")
  image_mean, image_std = _zscore_fit(img_raw[train_idx])
  img = ((img_raw - image_mean) / image_std).astype(np.float32)

  if text_features is None:
    txt_raw = topics.fit_transform_lsa(train_docs, docs, dim=lsa_dim, seed=seed)
  else:
    txt_raw = np.asarray(text_features, np.float32)
    if txt_raw.shape[0] != n:
      raise ValueError(f"text_features has {txt_raw.shape[0]} rows for {n} posts")
  text_mean, text_std = _zscore_fit(txt_raw[train_idx])
  txt = ((txt_raw - text_mean) / text_std).astype(np.float32)

  if n_topics > 0:
    lda, lda_info = topics.fit_transform_lda(train_docs, docs, n_topics=n_topics,
                                             max_iter=lda_iter, seed=seed, cache_dir=cache_dir,
                                             n_jobs=n_jobs)
  else:  # topics not needed (the regressors): skip the costly fit
    lda, lda_info = np.zeros((n, 0), np.float32), {"vocab_size": 0, "components_sum": 0.0}

  # User environment: means over the author's training posts; training mean for unseen users.
  env_i = _user_means(table.user, img, train_idx, table.num_users)
  env_t = _user_means(table.user, lda.astype(np.float64), train_idx, table.num_users)
  env_i = np.where(np.isnan(env_i), img[train_idx].mean(0), env_i)
  env_t = np.where(np.isnan(env_t), lda[train_idx].astype(np.float64).mean(0), env_t)
  env_image = env_i[table.user].astype(np.float32)
  env_topic = env_t[table.user].astype(np.float32)

  # Counts and times.
  kinds = [[t.kind for t in d] for d in toks]
  tag_count = np.asarray([k.count("hashtag") for k in kinds], np.float64)
  cap_len = np.asarray([len(c) for c in table.caption], np.float64)
  title_len = np.asarray([len(_first_line(c)) for c in table.caption], np.float64)
  ts = table.timestamp.astype(np.int64)
  age_days = np.maximum(scrape_time - ts, 0) / 86400.0
  hour = (ts % 86400) / 3600.0
  weekday = ((ts // 86400) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
  numeric_raw = np.stack([
      np.log1p(table.followers), np.log1p(table.following), np.log1p(table.media_count),
      np.log1p(age_days), hour, weekday.astype(np.float64), table.has_location.astype(np.float64),
      (table.post_type == 2).astype(np.float64), tag_count, np.log1p(cap_len)], axis=1)
  numeric_mean, numeric_std = _zscore_fit(numeric_raw[train_idx])
  numeric = ((numeric_raw - numeric_mean) / numeric_std).astype(np.float32)

  # User mean popularity from training posts (leave-one-out on training rows).
  score = table.score.astype(np.float64)
  global_mean = float(score[train_idx].mean())
  sums = np.zeros(table.num_users)
  np.add.at(sums, table.user[train_idx], score[train_idx])
  counts = np.bincount(table.user[train_idx], minlength=table.num_users).astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    user_mean = np.where(counts > 0, sums / counts, np.nan)
  umean = np.where(np.isnan(user_mean[table.user]), global_mean, user_mean[table.user])
  is_train = np.zeros(n, bool)
  is_train[train_idx] = True
  loo_n = counts[table.user] - 1
  loo = np.where(loo_n > 0, (sums[table.user] - score) / np.maximum(loo_n, 1), global_mean)
  umean = np.where(is_train, loo, umean)

  # Dictionaries (training posts only) and sentiment.
  tags = [[t.text for t in d if t.kind == "hashtag"] for d in toks]
  words = [[t.text for t in d if t.kind in ("word", "emoji")] for d in toks]
  tag_dict = dictionaries.fit_dictionary([tags[i] for i in train_idx], score[train_idx])
  title_dict = dictionaries.fit_dictionary([words[i] for i in train_idx], score[train_idx])
  tag_score = dictionaries.dictionary_scores(tags, tag_dict).astype(np.float64)
  title_score = dictionaries.dictionary_scores(words, title_dict).astype(np.float64)
  senti = sentiment.sentiment_scores(table.caption).astype(np.float64)
  has_people = np.asarray([image.parse_alt_text(a)[1] > 0 for a in table.alt_text], np.float64)

  smp_raw = np.stack([
      np.log1p(age_days), np.log1p(table.comments), has_people, title_len, cap_len, tag_count,
      umean, np.log1p(table.following), np.log1p(table.followers), tag_score, title_score, senti,
      hour, np.log1p(table.media_count)], axis=1)
  smp_mean, smp_std = _zscore_fit(smp_raw[train_idx])
  smp = ((smp_raw - smp_mean) / smp_std).astype(np.float32)

  # Image-model score: ridge on the image input; out-of-fold for training rows.
  y = score[train_idx]
  ridge = Ridge(alpha=10.0).fit(img[train_idx], y)
  image_score = ridge.predict(img)
  if train_idx.size >= 10:
    oof = np.zeros(train_idx.size)
    for tr, va in KFold(5, shuffle=True, random_state=seed).split(train_idx):
      m = Ridge(alpha=10.0).fit(img[train_idx[tr]], y[tr])
      oof[va] = m.predict(img[train_idx[va]])
    image_score[train_idx] = oof
  image_score = image_score.astype(np.float32)

  feats = FeatureSet(
      tokens=tokens, token_mask=token_mask, image=img, text=txt, lda=lda.astype(np.float32),
      env_image=env_image, env_topic=env_topic, numeric=numeric, smp=smp, image_score=image_score,
      score=table.score.astype(np.float32), label=quartile_labels(table.user, table.likes),
      user=table.user.astype(np.int32))
  stats = FittedStats(
      vocab=vocab.tokens, concepts=concepts.concepts, tag_dictionary=tag_dict,
      title_dictionary=title_dict, image_mean=image_mean, image_std=image_std, text_mean=text_mean,
      text_std=text_std, numeric_mean=numeric_mean, numeric_std=numeric_std, smp_mean=smp_mean,
      smp_std=smp_std, user_mean_score=user_mean, global_mean_score=global_mean, lda_info=lda_info,
      image_model=np.append(ridge.coef_, ridge.intercept_))
  return feats, stats
