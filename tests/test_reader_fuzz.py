"""Property-based tests: random and malformed tree and post files fed to every reader.

Each reader either loads the file (and what it returns is well formed) or raises the library's own
``DataError`` naming the file (and the line, for line-oriented formats); never a crash from deep
inside NumPy, ``tarfile``, ``json`` or the codecs. The cascade readers have their own fuzz tests in
test_cascade_readers.py. Every file here is synthetic (instagram_likes has no licence).
"""

import io
import json
import os
import pathlib
import tarfile

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from popdiff_jax._errors import DataError
from popdiff_jax.data import instagram as ig
from popdiff_jax.data import synthetic_posts as sp
from popdiff_jax.data.trees import (read_parent_arrays, read_twitter15, read_twitter15_labels,
                                    read_weibo)

# POPDIFF_FUZZ_SCALE=20 runs 20x the examples with a fresh random seed (a deeper local search); the
# default is a fixed, derandomised sample that keeps CI fast and reproducible.
_SCALE = int(os.environ.get("POPDIFF_FUZZ_SCALE", "1"))
_SETTINGS = dict(deadline=None, derandomize=_SCALE == 1, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- building blocks ----------------------------------------------------------------------------
_WORD = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=6)
_INT = st.one_of(st.integers(-3, 12), st.integers(-2**70, 2**70))
_NUM = st.one_of(_INT.map(str), st.floats().map(repr), st.sampled_from(["nan", "inf", "-0", "1e400",
                                                                        "", "x", "0x1f"]))
_GARBAGE_LINE = st.lists(st.one_of(_WORD, _NUM), max_size=6).flatmap(
    lambda f: st.sampled_from(["\t", " ", "/", ":", "->"]).map(lambda s: s.join(f)))


def _parent_array(n_max=8):
  """A valid parent array (root first, each parent earlier) or a random one."""
  valid = st.integers(1, n_max).flatmap(lambda n: st.tuples(
      *[st.just(-1)] + [st.integers(0, i - 1) for i in range(1, n)]).map(list))
  return st.one_of(valid, valid, st.lists(_INT, max_size=n_max))


def _encode(lines, trailing_newline, bad_byte_at):
  data = ("\n".join(lines) + ("\n" if trailing_newline else "")).encode("utf-8")
  if bad_byte_at is not None:  # a byte that is never valid UTF-8
    i = bad_byte_at % (len(data) + 1)
    data = data[:i] + b"\xff" + data[i:]
  return data


def _file(line):
  return st.tuples(st.lists(st.one_of(line, line, _GARBAGE_LINE), max_size=6), st.booleans(),
                   st.one_of(st.none(), st.none(), st.none(), st.integers(0, 10**6)))


def _check_error(e: DataError, path, content: bytes | None, line_expected: bool):
  event("DataError")  # outcome counts: pytest --hypothesis-show-statistics
  assert e.path is not None and str(path) in e.path and str(path) in str(e)
  if e.line is not None:
    assert f":{e.line}: " in str(e)
    if content is not None:
      assert 1 <= e.line <= content.count(b"\n") + 1
  elif line_expected:  # only whole-file or whole-tree problems may lack a line
    assert any(w in str(e) for w in ("empty", "ROOT", "UTF-8", "archive", "not JSON", "posts")), e

def _load_or_check_error(tmp_path, name: str, spec, reader):
  """Writes the fuzzed file, reads it: the reader's result, or None after checking its DataError
  (file and line named)."""
  content = _encode(*spec)
  path = tmp_path / name
  path.write_bytes(content)
  try:
    return reader(path)
  except DataError as e:
    _check_error(e, path, content, line_expected=True)
    return None



def _check_tree(t):
  event("loaded a tree")
  n = t.size
  assert n >= 1 and t.parent.shape == t.depth.shape == t.user.shape == t.delay.shape == (n,)
  assert t.parent[0] == -1 and (t.parent[1:] < np.arange(1, n)).all() and (t.parent[1:] >= 0).all()
  assert (t.depth[1:] == t.depth[t.parent[1:]] + 1).all()


# --- parent arrays ------------------------------------------------------------------------------
_PARENT_LINE = st.tuples(_WORD.filter(lambda w: "\t" not in w), _parent_array(),
                         st.one_of(st.none(), st.lists(_WORD.filter(str.strip), max_size=9))).map(
    lambda x: x[0] + "\t" + " ".join(map(str, x[1]))
    + ("" if x[2] is None else "\t" + " ".join(w.replace(" ", "_").replace("\t", "_")
                                               for w in x[2])))


@settings(max_examples=80 * _SCALE, **_SETTINGS)
@given(spec=_file(_PARENT_LINE))
def test_fuzzed_parent_arrays_load_or_raise_data_error(tmp_path, spec):
  trees = _load_or_check_error(tmp_path, "trees.tsv", spec, read_parent_arrays)
  for t in trees or []:
    _check_tree(t)


# --- Weibo paths --------------------------------------------------------------------------------
_UID = st.sampled_from(["1", "2", "3", "77", "u9", ""])
_PATH_TOKEN = st.tuples(st.lists(_UID, min_size=1, max_size=4), st.one_of(
    st.integers(0, 10**6).map(str), _NUM)).map(lambda x: "/".join(x[0]) + ":" + x[1])
_WEIBO_GARBLED = st.tuples(_WORD.filter(lambda w: "\t" not in w), _UID, _NUM, _NUM,
                           st.lists(_PATH_TOKEN, max_size=6)).map(
    lambda x: "\t".join([x[0], x[1], x[2], x[3], " ".join(x[4])]))


def _weibo_paths(spec):
  """A well-formed cascade line from a parent array: node i is uid ``u<i>``, its path runs from
  the root; occasionally a uid retweets twice (several parents)."""
  parent, times, dup = spec
  def chain(i):
    return [] if i < 0 else chain(parent[i]) + [f"u{i}"]
  toks = [f"{'/'.join(chain(i))}:{times[i % len(times)] if i else 0}" for i in range(len(parent))]
  if dup and len(parent) > 2:
    toks.append(f"u1/u{len(parent) - 1}:{times[0]}")
  return "\t".join(["c1", "u0", "1464710400", str(len(toks)), " ".join(toks)])


_WEIBO_LINE = st.one_of(_WEIBO_GARBLED, st.tuples(
    _parent_array(), st.lists(st.integers(0, 10**5), min_size=1, max_size=4), st.booleans()).filter(
    lambda x: x[0][:1] == [-1] and all(0 <= p < i for i, p in enumerate(x[0][1:], 1))).map(
    _weibo_paths))


@settings(max_examples=80 * _SCALE, **_SETTINGS)
@given(spec=_file(_WEIBO_LINE), strict=st.booleans())
def test_fuzzed_weibo_paths_load_or_raise_data_error(tmp_path, spec, strict):
  loaded = _load_or_check_error(tmp_path, "dataset.txt", spec,
                                lambda path: read_weibo(path, strict=strict))
  if loaded is None:
    return
  trees, report = loaded
  for t in trees:
    _check_tree(t)
    assert np.isfinite(t.delay).all()
  assert report.trees == len(trees)


# --- Twitter15 tree archives and labels ---------------------------------------------------------
_TW_NODE = st.tuples(st.sampled_from(["ROOT", "10", "11", "12", "13"]),
                     st.sampled_from(["ROOT", "500", "501", "502"]), _NUM).map(
    lambda x: "[" + ", ".join(f"'{v}'" for v in x) + "]")
_TW_GARBLED = st.tuples(_TW_NODE, _TW_NODE).map("->".join)


def _tw_edges(spec):
  """The lines of a well-formed tree (ROOT line first) from a parent array and delays."""
  parent, delays = spec
  node = lambda i: f"['{10 + i}', '{500 if i == 0 else 600 + i}', '{delays[i % len(delays)] if i else 0.0}']"
  lines = [f"['ROOT', 'ROOT', '0.0']->{node(0)}"]
  return "\n".join(lines + [f"{node(p)}->{node(i)}" for i, p in enumerate(parent) if p >= 0])


_TW_LINE = st.one_of(_TW_GARBLED, st.tuples(
    _parent_array(), st.lists(st.floats(0, 1e4), min_size=1, max_size=4)).filter(
    lambda x: x[0][:1] == [-1] and all(0 <= p < i for i, p in enumerate(x[0][1:], 1))).map(
    _tw_edges))


def _tar(members: dict[str, bytes]) -> bytes:
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


@settings(max_examples=60 * _SCALE, **_SETTINGS)
@given(trees=st.lists(_file(_TW_LINE), min_size=1, max_size=3), strict=st.booleans(),
       cut=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 10**6)))
def test_fuzzed_twitter15_archives_load_or_raise_data_error(tmp_path, trees, strict, cut):
  members = {f"twitter15/tree/{500 + i}.txt": _encode(*spec) for i, spec in enumerate(trees)}
  blob = _tar(members)
  if cut is not None:  # a truncated download
    blob = blob[: cut % len(blob)]
  path = tmp_path / "twitter15_tree.tar.gz"
  path.write_bytes(blob)
  try:
    out, report = read_twitter15(path, strict=strict)
  except DataError as e:
    _check_error(e, path, None, line_expected=False)
    return
  assert report.trees == len(out) <= len(members)
  for t in out:
    _check_tree(t)
    assert np.isfinite(t.delay).all()


_LABEL_LINE = st.tuples(st.sampled_from(["true", "false", "unverified", ""]), _NUM).map(":".join)


@settings(max_examples=40 * _SCALE, **_SETTINGS)
@given(spec=_file(_LABEL_LINE))
def test_fuzzed_twitter15_labels_load_or_raise_data_error(tmp_path, spec):
  labels = _load_or_check_error(tmp_path, "label.txt", spec, read_twitter15_labels) or {}
  assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())


# --- instagram_likes posts (synthetic archives only) ---------------------------------------------
_JSON_SCALAR = st.one_of(st.none(), st.booleans(), _INT, st.floats(allow_nan=False), _WORD)
_JSON = st.recursive(_JSON_SCALAR, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(_WORD, c, max_size=3)), max_leaves=8)
_COUNT = st.one_of(_INT, _INT, st.fixed_dictionaries({"count": st.one_of(_INT, _JSON_SCALAR)}),
                   _JSON)
_EDGES = st.one_of(st.lists(st.one_of(
    st.fixed_dictionaries({"node": st.one_of(st.fixed_dictionaries({"text": st.one_of(_WORD, _JSON)}),
                                             _JSON)}), _JSON), max_size=2), _JSON)
_CAPTION = st.one_of(_WORD, _WORD, st.just("\ud83d broken"), _JSON,
                     st.fixed_dictionaries({"edges": _EDGES}))
# Posts and users are mostly well formed, so that the reader gets past the first bad object.
_POST = st.one_of(st.fixed_dictionaries({"edge_liked_by": _COUNT, "edge_media_to_caption": _CAPTION},
                                        optional={
    "id": st.one_of(_WORD, _INT, _JSON), "edge_media_to_comment": _COUNT,
    "accessibility_caption": st.one_of(_WORD, _JSON, st.just("\udc00")),
    "__typename": st.one_of(st.sampled_from(ig.POST_TYPES), _JSON), "is_video": _JSON,
    "taken_at_timestamp": _COUNT, "location": _JSON}), _JSON)
_GOOD_USER = st.fixed_dictionaries({"posts": st.lists(_POST, max_size=6)}, optional={
    "username": _JSON, "edge_followed_by": _COUNT, "edge_follow": _COUNT,
    "edge_owner_to_timeline_media": _COUNT})
_USER = st.one_of(_GOOD_USER, _GOOD_USER, _GOOD_USER, _GOOD_USER,
                  st.fixed_dictionaries({"posts": _JSON}), _JSON)


def _user_bytes(obj, how):
  text = json.dumps(obj, ensure_ascii=False, allow_nan=True)
  if how == "truncated":
    return text[: len(text) // 2].encode("utf-8", "surrogatepass")
  if how == "latin1":
    return (text + " é").encode("latin-1", "replace")
  return text.encode("utf-8", "surrogatepass")


@settings(max_examples=60 * _SCALE, **_SETTINGS)
@given(users=st.lists(st.tuples(_USER, st.sampled_from(["ok"] * 6 + ["truncated", "latin1"])),
                      max_size=3),
       good=st.integers(0, 2), min_posts=st.integers(1, 4),
       cut=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 10**6)))
def test_fuzzed_post_archives_load_or_raise_data_error(tmp_path, users, good, min_posts, cut):
  extra = {f"fuzz{i}.json": _user_bytes(u, how) for i, (u, how) in enumerate(users)}
  folder = sp.write_archive(tmp_path / "ig", sp.generate_users(good, 5, seed=0), extra)
  archive = folder / ig.ARCHIVE_NAME
  if cut is not None:
    blob = archive.read_bytes()
    archive.write_bytes(blob[: cut % len(blob)])
  try:
    table, report = ig.load_instagram(folder, min_posts=min_posts)
  except DataError as e:
    _check_error(e, archive, None, line_expected=False)
    return
  n = table.num_posts
  event("loaded, some posts kept" if n else "loaded, no post kept")
  assert report.posts_kept == n and len(table.caption) == n == table.likes.shape[0]
  for counts in (table.likes, table.comments, table.followers, table.following, table.timestamp):
    assert counts.dtype == np.int64 and (counts >= 0).all()
  assert np.isfinite(table.score).all()
  assert all(isinstance(c, str) and c.strip() for c in table.caption)
