"""instagram_likes reader, skip rules, labels and splits (synthetic archives; real data via require_shared)."""

import json

import numpy as np
import pytest

from popdiff_jax import DataError
from popdiff_jax.data import instagram as ig
from popdiff_jax.data import synthetic_posts as sp
from _shared_data import require_shared


def _user(name, n_posts, **post_overrides):
  u = sp.generate_users(1, n_posts, seed=3)[0]
  u["username"] = name
  for i, p in enumerate(u["posts"]):
    p["id"] = f"{name}_{i}"
    p.update(post_overrides)
  return u


def test_reader_roundtrip_and_report(tmp_path):
  users = sp.generate_users(6, 12, seed=1)
  d = sp.write_archive(tmp_path, users)
  table, report = ig.load_instagram(d)
  assert report.files_read == 6 and report.users_kept == 6
  assert table.num_posts == 72 == report.posts_kept == report.posts_seen
  np.testing.assert_allclose(table.score, np.log1p(table.likes.astype(np.float64)), rtol=1e-6)
  first = users[0]["posts"][0]
  i = table.post_id.index(first["id"])
  assert table.caption[i] == first["edge_media_to_caption"]
  assert table.likes[i] == first["edge_liked_by"]
  assert table.followers[i] == users[0]["edge_followed_by"]


def test_data_dir_from_env(tmp_path, monkeypatch):
  sp.write_archive(tmp_path / "instagram_likes", sp.generate_users(2, 5, seed=0))
  monkeypatch.setenv("POPDIFF_DATA_DIR", str(tmp_path))
  table, _ = ig.load_instagram()
  assert table.num_users == 2


def test_file_not_json_raises_naming_file(tmp_path):
  d = sp.write_archive(tmp_path, sp.generate_users(2, 5), extra_files={"broken.json": b"{not json"})
  with pytest.raises(DataError, match="broken.json"):
    ig.load_instagram(d)


def test_file_not_utf8_raises_naming_file(tmp_path):
  raw = json.dumps(_user("bad", 5)).encode("utf-8").replace(b"w1", b"w\xff", 1)
  d = sp.write_archive(tmp_path, [], extra_files={"bad.json": raw})
  with pytest.raises(DataError, match="bad.json.*not UTF-8"):
    ig.load_instagram(d)


def test_object_without_posts_raises(tmp_path):
  d = sp.write_archive(tmp_path, [], extra_files={"x.json": b'{"username": "x"}'})
  with pytest.raises(DataError, match="x.json"):
    ig.load_instagram(d)


def test_skip_rules_are_counted(tmp_path):
  good = _user("good", 10)
  good["posts"][0].pop("edge_liked_by")                 # no likes field
  good["posts"][1]["edge_media_to_caption"] = "   "      # blank caption
  good["posts"][2]["edge_media_to_caption"] = "hi \udc80"  # lone surrogate: not encodable as UTF-8
  good["posts"][3]["__typename"] = "GraphVideo"
  good["posts"][4]["id"] = good["posts"][5]["id"]        # duplicate id
  one = _user("one", 1)                                  # a user with one post
  raw = {f"{u['username']}.json": json.dumps(u).encode("utf-8") for u in (good, one)}
  d = sp.write_archive(tmp_path, [], extra_files=raw)
  table, report = ig.load_instagram(d)
  assert report.skipped == {"no_likes": 1, "no_caption": 1, "caption_not_utf8": 1, "video": 1,
                            "duplicate": 1, "user_few_posts": 1, "user_few_posts_posts": 1}
  assert table.num_users == 1 and table.num_posts == 5
  table_v, report_v = ig.load_instagram(d, include_videos=True, min_posts=1)
  assert "video" not in report_v.skipped and table_v.num_posts == 7


def test_quartile_labels_against_sort():
  rng = np.random.default_rng(0)
  user = np.repeat(np.arange(5), [4, 12, 7, 9, 1])
  likes = rng.integers(0, 1000, user.size)
  labels = ig.quartile_labels(user, likes)
  for u in range(5):
    rows = np.flatnonzero(user == u)
    n = rows.size
    if n < 2:
      assert (labels[rows] == -1).all()
      continue
    q = max(1, n // 4)
    order = rows[np.argsort(likes[rows], kind="stable")]
    assert (labels[order[:q]] == 0).all() and (labels[order[n - q:]] == 1).all()
    assert (labels[order[q:n - q]] == -1).all()


@pytest.mark.parametrize("kind", ig.SPLIT_KINDS)
def test_splits_partition_and_are_seeded(tmp_path, kind):
  table, _ = ig.load_instagram(sp.write_archive(tmp_path, sp.generate_users(40, 12, seed=2)))
  s = ig.make_split(table, kind, seed=5)
  allidx = np.concatenate([s.train, s.val, s.test])
  assert np.array_equal(np.sort(allidx), np.arange(table.num_posts))
  assert abs(s.test.size / table.num_posts - 0.2) < 0.06
  again = ig.make_split(table, kind, seed=5)
  assert all(np.array_equal(a, b) for a, b in zip(s[:3], again[:3]))
  if kind == "time":
    assert table.timestamp[s.test].min() >= table.timestamp[s.train].max()
  if kind == "user":
    assert not set(table.user[s.test]) & set(table.user[s.train])
    assert not set(table.user[s.val]) & set(table.user[s.train])
  if kind != "time":
    other = ig.make_split(table, kind, seed=6)
    assert not np.array_equal(s.test, other.test)


def test_real_posts_subsample():
  d = require_shared("instagram_likes")
  table, report = ig.load_instagram(d, max_users=40)
  assert report.files_read == 40
  assert report.posts_kept == table.num_posts > 100
  assert sum(report.skipped.values()) + report.posts_kept >= report.posts_seen
  labels = ig.quartile_labels(table.user, table.likes)
  assert (labels == 1).sum() == (labels == 0).sum() > 0
  assert np.isfinite(table.score).all()
