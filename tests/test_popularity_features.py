"""Features: tokenizer, alt-text, dictionaries, sentiment, and the leakage test (fits see training posts only)."""

import numpy as np
import pytest

from popdiff_jax.data import instagram as ig
from popdiff_jax.data import synthetic_posts as sp
from popdiff_jax.features import build_features, dictionaries, image, sentiment, text


def test_tokenizer_hashtags_mentions_emoji():
  toks = text.tokenize_with_kinds("Sunset at #Malibu with @Jane.Doe!! 😍🔥 👍🏽 it's http://x.co #틱톡")
  assert [t.text for t in toks] == ["sunset", "at", "#malibu", "with", "@jane.doe", "😍", "🔥", "👍🏽",
                                    "it's", "<url>", "#틱톡"]
  assert [t.kind for t in toks].count("emoji") == 3
  assert text.token_counts("#a #b @c 😀 word") == {"hashtag": 2, "mention": 1, "emoji": 1, "url": 0,
                                                   "word": 1}


def test_vocab_and_encode():
  docs = [["a", "b", "a"], ["b", "c"], ["a"]]
  v = text.fit_vocab(docs, min_count=2)
  assert v.tokens == ("<pad>", "<unk>", "a", "b")
  ids, mask = text.encode([["a", "c", "b"], []], v, max_len=2)
  assert ids.tolist() == [[2, 1], [0, 0]] and mask.tolist() == [[True, True], [False, False]]


def test_alt_text_parsing():
  assert image.parse_alt_text("Image may contain: 2 people, selfie and closeup") == (
      ["people", "selfie", "closeup"], 2)
  assert image.parse_alt_text("Image may contain: one or more people, crowd")[1] == 1
  assert image.parse_alt_text("No photo description available.") == (["<no_description>"], 0)
  assert image.parse_alt_text("") == (["<missing>"], 0)
  vocab = image.ConceptVocab(("closeup", "people", "selfie"))
  v = image.alt_text_vectors(["Image may contain: 2 people, selfie and closeup"], vocab)
  np.testing.assert_allclose(v, [[1, 1, 1, np.log1p(2)]])


def test_dictionary_against_reference():
  rng = np.random.default_rng(0)
  words = [f"w{i}" for i in range(8)]
  docs = [list(rng.choice(words, size=rng.integers(0, 4))) for _ in range(40)]
  scores = rng.normal(size=40) * 2 + 5
  d = dictionaries.fit_dictionary(docs, scores, prior=3.0)
  mean = scores.mean()
  for w, val in zip(d.words, d.values):
    uses = [s for doc, s in zip(docs, scores) if w in doc]
    assert val == pytest.approx((sum(uses) + 3.0 * mean) / (len(uses) + 3.0))
  got = dictionaries.dictionary_scores([["w1", "w2", "zz"], ["zz"]], d)
  idx = {w: i for i, w in enumerate(d.words)}
  assert got[0] == pytest.approx(np.mean([d.values[idx["w1"]], d.values[idx["w2"]]]), rel=1e-6)
  assert got[1] == pytest.approx(mean, rel=1e-6)


def test_sentiment_sign():
  s = sentiment.sentiment_scores(["I love this, wonderful day 😍", "awful, I hate it"])
  assert s[0] > 0.3 and s[1] < -0.3


def _table(tmp_path, seed=0, n_users=30):
  d = sp.write_archive(tmp_path / f"d{seed}", sp.generate_users(n_users, 12, seed=seed))
  return ig.load_instagram(d)[0]


@pytest.mark.parametrize("kind", ["random", "time", "user"])
def test_leakage_test_posts_leave_fits_unchanged(tmp_path, kind):
  table = _table(tmp_path)
  split = ig.make_split(table, kind, seed=0)
  kw = dict(n_topics=4, lda_iter=2, lsa_dim=8, max_len=16, seed=0)
  f1, s1 = build_features(table, split.train, **kw)
  # Rewrite every non-training post: new captions, alt-texts, likes and comments.
  rng = np.random.default_rng(1)
  held = np.setdiff1d(np.arange(table.num_posts), split.train)
  caption, alt = list(table.caption), list(table.alt_text)
  likes, comments = table.likes.copy(), table.comments.copy()
  followers, following = table.followers.copy(), table.following.copy()
  for i in held:
    caption[i] = "#leak totally different words 🚀 " + str(rng.integers(1e6))
    alt[i] = "Image may contain: leakconcept"
    likes[i] = int(rng.integers(0, 10**7))
    comments[i] = int(rng.integers(0, 10**5))
    followers[i] = int(rng.integers(0, 10**9))  # the author's counts, as a CSV row gives them
    following[i] = int(rng.integers(0, 10**4))
  changed = table._replace(caption=tuple(caption), alt_text=tuple(alt), likes=likes,
                           comments=comments, followers=followers, following=following,
                           score=np.log1p(likes.astype(np.float64)).astype(np.float32))
  f2, s2 = build_features(changed, split.train, **kw)
  assert s1.fingerprint() == s2.fingerprint()
  assert "#leak" not in s2.vocab and "leakconcept" not in s2.concepts
  tr = split.train
  for name in ("tokens", "image", "text", "lda", "env_image", "env_topic", "numeric", "smp",
               "image_score"):
    a, b = getattr(f1, name), getattr(f2, name)
    np.testing.assert_allclose(a[tr], b[tr], rtol=1e-5, atol=1e-5, err_msg=name)
  # Sanity: the held-out rows did change, so the test would see a leak.
  assert not np.allclose(f1.smp[held], f2.smp[held])


@pytest.mark.parametrize("kind", ["time", "user"])
def test_user_statistics_of_held_out_posts_use_training_posts_only(tmp_path, kind):
  # The user's mean popularity (SMP's avgview) and environment (dual attention) of a validation
  # or test post come from its author's training posts: never from that post's own likes or
  # from the author's other held-out posts; a user with no training post gets the training mean.
  table = _table(tmp_path, seed=5)
  split = ig.make_split(table, kind, seed=1)
  f, st = build_features(table, split.train, n_topics=3, lda_iter=2, lsa_dim=8, max_len=16)
  raw = f.smp[:, 6].astype(np.float64) * st.smp_std[6] + st.smp_mean[6]
  held = np.setdiff1d(np.arange(table.num_posts), split.train)
  train_users = set(table.user[split.train].tolist())
  if kind == "user":
    assert not train_users & set(table.user[held].tolist())  # user-disjoint
  score = table.score.astype(np.float64)
  for i in held:
    mates = split.train[table.user[split.train] == table.user[i]]
    want = score[mates].mean() if len(mates) else st.global_mean_score
    assert raw[i] == pytest.approx(want, rel=1e-4, abs=1e-4)
    env = f.image[mates].mean(0) if len(mates) else f.image[split.train].mean(0)
    np.testing.assert_allclose(f.env_image[i], env, rtol=1e-4, atol=1e-4)
  assert st.global_mean_score == pytest.approx(score[split.train].mean(), rel=1e-5)


def test_user_mean_is_leave_one_out_and_unseen_users_get_global_mean(tmp_path):
  table = _table(tmp_path, seed=3)
  split = ig.make_split(table, "user", seed=0)
  f, st = build_features(table, split.train, n_topics=0, lsa_dim=8, max_len=16)
  raw = f.smp[:, 6] * st.smp_std[6] + st.smp_mean[6]
  i = split.train[0]
  mates = [j for j in split.train if table.user[j] == table.user[i] and j != i]
  assert raw[i] == pytest.approx(table.score[mates].astype(np.float64).mean(), rel=1e-4)
  assert np.allclose(raw[split.test], st.global_mean_score, rtol=1e-4)
  assert f.lda.shape[1] == 0 and f.env_topic.shape[1] == 0


def test_precomputed_dense_image_features(tmp_path):
  table = _table(tmp_path, seed=4, n_users=10)
  split = ig.make_split(table, "random", seed=0)
  dense = np.random.default_rng(0).normal(size=(table.num_posts, 7)).astype(np.float32)
  f, _ = build_features(table, split.train, n_topics=0, lsa_dim=4, max_len=8, image_features=dense,
                        text_features=dense[:, :5])
  assert f.image.shape == (table.num_posts, 7) and f.text.shape == (table.num_posts, 5)
  np.testing.assert_allclose(f.image[split.train].mean(0), 0, atol=1e-5)
  with pytest.raises(ValueError, match="rows"):
    build_features(table, split.train, n_topics=0, image_features=dense[:3])
