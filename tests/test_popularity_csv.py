"""Bring-your-own posts: the plain posts CSV (errors naming file and line, a round trip), the
instagram layout by path, and the source rules of ``PostsConfig`` (``--data``/``--format``)."""

import json
import pathlib
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popdiff_jax import ConfigError, DataError
from popdiff_jax.data import instagram as ig
from popdiff_jax.data import synthetic_posts as sp
from popdiff_jax.data.posts import (PostsConfig, PostsSource, load_posts, load_table,
                                    read_posts_csv, source_format, write_posts_csv)

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "popdiff_jax" / "data" / "examples"
HEADER = "user,time,likes,caption,comments"


def _rows(n_users=3, posts=4):
  return [f"u{u},{1500000000 + 100 * p},{10 * u + p},\"caption {u}, post {p}\",{p}"
          for u in range(n_users) for p in range(posts)]


def _write(tmp_path, lines, name="posts.csv"):
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def _assert_tables_equal(a, b):
  for field in ig.PostTable._fields:
    x, y = getattr(a, field), getattr(b, field)
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
      assert x is not None and y is not None, field
      assert x.dtype == y.dtype and x.shape == y.shape, field
      np.testing.assert_array_equal(x, y, err_msg=field)
    else:
      assert x == y, field


def test_a_minimal_csv_reads_with_defaults_for_the_optional_columns(tmp_path):
  path = _write(tmp_path, ["user,time,likes,caption"] + [
      f"alice,{1500000000 + i},{i * 7},hello #tag {i}" for i in range(5)] + [
      "bob,1500000100,3,\"a caption, with a comma\nand a line break\"",
      "bob,1500000200,4,\"said \"\"hi\"\"\"", "bob,1500000300.7,5,x", "bob,1500000400,6,y",
      "carol,1500000500,1,   ", "carol,1500000600,2,z"])  # a blank caption; too few posts
  table, report = read_posts_csv(path)
  assert table.usernames == ("alice", "bob") and table.num_posts == 9
  assert table.caption[5] == "a caption, with a comma\nand a line break"
  assert table.caption[6] == 'said "hi"' and table.timestamp[7] == 1500000300
  assert (table.comments == 0).all() and (table.followers == 0).all()
  assert table.alt_text == ("",) * 9 and table.post_id[0] == "posts.csv:2"
  assert table.image_features is None and table.text_features is None
  assert report.skipped == {"no_caption": 1, "user_few_posts": 1, "user_few_posts_posts": 1}
  np.testing.assert_allclose(table.score, np.log1p(table.likes), rtol=1e-6)


@pytest.mark.parametrize("lines,line,words", [
    ([], 1, "empty file"),
    (["user,time,caption", "a,1,x"], 1, "lacks the required column(s) 'likes'"),
    ([HEADER, "u0,1500000000,10,hello,1", "u0,1500000100,11"], 3, "truncated line"),
    ([HEADER, "u0,1500000000,10,\"an open quote,1"], 2, "truncated line"),
    ([HEADER, "u0,1500000000,10,one, two,1"], 2, "expected 5 comma-separated fields"),
    ([HEADER, "u0,yesterday,10,hello,1"], 2, "'time' must be a Unix time"),
    ([HEADER, "u0,1500000000,many,hello,1"], 2, "'likes' must be a non-negative integer"),
    ([HEADER, "u0,1500000000,-3,hello,1"], 2, "'likes' must be a non-negative integer"),
    ([HEADER, "u0,1500000000,3,hello,lots"], 2, "'comments' must be a non-negative integer"),
    ([HEADER, ",1500000000,3,hello,1"], 2, "empty 'user' field"),
    ([HEADER], None, "no rows after the header"),
    ([HEADER + ",likes", "a,1,2,x,3,4"], 1, "twice"),
])
def test_malformed_csv_is_one_data_error_naming_file_and_line(tmp_path, lines, line, words):
  path = _write(tmp_path, lines) if lines else tmp_path / "posts.csv"
  if not lines:
    path.write_bytes(b"")
  with pytest.raises(DataError) as e:
    read_posts_csv(path)
  msg = str(e.value)
  assert "\n" not in msg and words in msg and e.value.path == str(path), msg
  assert e.value.line == line
  if line is not None:
    assert msg.startswith(f"{path}:{line}: ")


def test_the_line_of_a_record_after_a_multi_line_caption(tmp_path):
  path = _write(tmp_path, [HEADER, "u0,1500000000,10,\"two\nlines\",1", "u0,1500000100,x,y,1"])
  with pytest.raises(DataError) as e:
    read_posts_csv(path)
  assert e.value.line == 4


def test_not_utf8_names_the_line(tmp_path):
  path = tmp_path / "posts.csv"
  path.write_bytes(b"user,time,likes,caption\nu0,1,2,ok\nu0,1,2,caf\xe9\n")
  with pytest.raises(DataError, match="not UTF-8") as e:
    read_posts_csv(path)
  assert e.value.line == 3


def test_feature_columns_become_the_dense_image_and_text_inputs(tmp_path):
  lines = ["user,time,likes,caption,img_a,img_b,txt"]
  rng = np.random.default_rng(0)
  for u in range(6):
    for p in range(5):
      a, b, t = map(float, rng.normal(size=3))
      lines.append(f"u{u},{1500000000 + 3600 * (5 * u + p)},{int(rng.integers(0, 999))},"
                   f"word{p} #t{u},{a!r},{b!r},{t!r}")
  path = _write(tmp_path, lines)
  table, _ = read_posts_csv(path, image_columns=("img_a", "img_b"), text_columns=("txt",))
  assert table.image_features.shape == (30, 2) and table.text_features.shape == (30, 1)
  assert table.image_features.dtype == np.float32
  config = PostsConfig(source=str(path), image_columns=("img_a", "img_b"), text_columns=("txt",),
                       n_topics=0, lsa_dim=4, max_len=8)
  posts = load_posts(config, seed=0, workdir=tmp_path / "w")
  assert posts.feats.image.shape == (30, 2) and posts.feats.text.shape == (30, 1)
  with pytest.raises(DataError, match="lacks the image_columns column"):
    read_posts_csv(path, image_columns=("img_c",))
  bad = _write(tmp_path, lines[:2] + [lines[2].rsplit(",", 1)[0] + ",nan"], "bad.csv")
  with pytest.raises(DataError, match="'txt' must be a finite number"):
    read_posts_csv(bad, text_columns=("txt",))


def test_load_posts_takes_a_path_and_its_format(tmp_path):
  path = _write(tmp_path, [HEADER] + _rows(6, 6), name="posts.txt")
  posts = load_posts(path, format="csv", workdir=tmp_path / "w")
  want, _ = read_posts_csv(path)
  _assert_tables_equal(posts.table, want)
  assert posts.feats.score.shape == (36,) and len(posts.split.train) > 0
  with pytest.raises(DataError, match="--format csv"):
    load_posts(path, workdir=tmp_path / "w")  # .txt: the format cannot be told
  with pytest.raises(ConfigError, match="format"):
    load_posts(path, format="xlsx")
  with pytest.raises(ConfigError, match="inside the PostsConfig"):
    load_posts(PostsConfig(source=str(path)), format="csv")


def test_a_csv_without_image_input_gets_a_zero_image_feature(tmp_path):
  path = _write(tmp_path, [HEADER] + _rows(6, 6))
  posts = load_posts(PostsConfig(source=str(path), n_topics=0, lsa_dim=4, max_len=8),
                     seed=0, workdir=tmp_path / "w")
  assert posts.feats.image.shape[1] >= 1 and not posts.feats.image.any()
  assert not posts.feats.numeric[:, :3].any()  # no followers / following / posts: zero


_names = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=8)
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=40).filter(str.strip)
_count = st.integers(0, 2**40)
_post = st.fixed_dictionaries({
    "caption": _text, "alt_text": st.one_of(st.just(""), _text), "likes": _count,
    "comments": _count, "timestamp": st.integers(0, 2**40), "post_type": st.sampled_from([0, 1, 2]),
    "has_location": st.booleans(), "followers": _count, "following": _count,
    "media_count": _count,
    "image_features": st.lists(st.floats(-1e6, 1e6, width=32), min_size=2, max_size=2)})
_users = st.dictionaries(_names, st.lists(_post, min_size=4, max_size=6), min_size=1, max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=_users)
def test_random_valid_posts_round_trip_through_the_csv(tmp_path, users):
  parsed = [{"username": name, "followers": 0, "following": 0, "media_count": 0,
             "posts": [dict(p, id=f"{name}-{i}") for i, p in enumerate(posts)]}
            for name, posts in users.items()]
  want = ig.build_table(parsed, ig.LoaderReport())
  path = write_posts_csv(want, tmp_path / "round.csv", image_columns=("i0", "i1"))
  got, report = read_posts_csv(path, image_columns=("i0", "i1"))
  _assert_tables_equal(got, want)
  assert report.posts_kept == want.num_posts and not report.skipped


def test_the_example_csv_is_what_its_script_writes_and_is_small(tmp_path):
  import importlib.util

  spec = importlib.util.spec_from_file_location("make_posts", EXAMPLE / "make_posts.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  out = module.main(tmp_path / "posts.csv")
  assert out.read_bytes() == (EXAMPLE / "posts.csv").read_bytes()
  assert (EXAMPLE / "posts.csv").stat().st_size < 200_000
  table, _ = read_posts_csv(EXAMPLE / "posts.csv")
  assert table.num_users == 60 and table.num_posts == 720


def test_instagram_layout_by_path_folder_archive_and_user_files(tmp_path):
  users = sp.generate_users(6, 5, seed=1)
  archive_dir = sp.write_archive(tmp_path / "a", users)
  want, _ = ig.load_instagram(archive_dir)
  folder = tmp_path / "json" / "UserData"
  folder.mkdir(parents=True)
  for u in users:
    (folder / f"{u['username']}.json").write_text(json.dumps(u), encoding="utf-8")
  for source in (archive_dir, archive_dir / "UserData.tar.gz", folder, folder.parent):
    config = PostsConfig(source=str(source), format="instagram" if source == folder else None)
    got, _ = load_table(config)
    _assert_tables_equal(got, want)
  with pytest.raises(DataError, match="no UserData.tar.gz"):
    ig.load_instagram(tmp_path / "a" / "..")
  (folder / "broken.json").write_text("{", encoding="utf-8")
  with pytest.raises(DataError, match="broken.json"):
    load_table(PostsConfig(source=str(folder)))


def test_source_presets_detection_and_missing_paths(tmp_path):
  assert source_format(PostsSource()) == "instagram"
  assert source_format(PostsSource(source="synthetic")) == "synthetic"
  assert source_format(PostsSource(source="x/posts.CSV")) == "csv"
  assert source_format(PostsSource(source=str(tmp_path))) == "instagram-path"
  assert source_format(PostsSource(source="a.txt", format="csv")) == "csv"
  with pytest.raises(DataError, match="no such file or folder"):
    source_format(PostsSource(source=str(tmp_path / "absent")))
  (tmp_path / "a.txt").write_text("x")
  with pytest.raises(DataError, match="--format csv"):
    source_format(PostsSource(source=str(tmp_path / "a.txt")))


def test_source_rules():
  with pytest.raises(ConfigError, match="names the format of a path"):
    PostsSource(source="synthetic", format="csv")
  with pytest.raises(ConfigError, match="read from a csv"):
    PostsSource(source="posts_dir", image_columns=("a",))
  with pytest.raises(ConfigError, match="names a column twice"):
    PostsSource(source="p.csv", image_columns=("a", "a"))
  with pytest.raises(ConfigError, match="also used as another column"):
    PostsSource(source="p.csv", image_columns=("likes",))
