"""Reader, labels and splits for the `instagram_likes` posts (read-only; never copied into the repo).

The data (see ../shared/data/README.md, section 8) is one tar.gz, ``UserData.tar.gz``, holding
``UserData/<username>.json``: one JSON object per user with profile counts and ``posts``, the user's
12 latest posts (caption, likes, comments, time, type, location and Instagram's automatic image
description, the *alt-text*). It has no licence, so this module reads it in place with ``tarfile``
from a data directory: the ``data_dir`` argument, else ``$POPDIFF_DATA_DIR/instagram_likes``, else
``../shared/data/instagram_likes``. Nothing is extracted to disk. The same reader takes any posts
in this layout (:func:`load_instagram`): the ``.tar.gz`` itself, a folder holding
``UserData.tar.gz``, or a folder of ``<username>.json`` files (or one holding ``UserData/``).

Skip rules (each skip is counted in :class:`LoaderReport.skipped` under the key given here):

* ``no_likes``: a post without an integer ``edge_liked_by`` field (likes are the target), or with
  a negative one or one beyond int64 (every count field is read this way; a bad follower, comment
  or time count reads as 0).
* ``no_caption``: a post whose ``edge_media_to_caption`` is missing, not a string or blank (the
  text models need a caption; 51 of the 22,561 real posts).
* ``caption_not_utf8``: a caption that cannot be encoded as UTF-8 (lone surrogates from a broken
  ``\\ud83d``-style escape). A *file* whose bytes are not UTF-8 is not skipped: it raises
  :class:`~popdiff_jax.DataError` naming the file, like a file that is not JSON.
* ``video``: ``GraphVideo`` posts when ``include_videos=False`` (the default; the three papers
  predict the popularity of images; 4,113 real posts).
* ``duplicate``: a post id already seen.
* ``user_few_posts`` / ``user_few_posts_posts``: users left with fewer than ``min_posts`` (default
  4, so that the top and bottom quarters each hold at least one post) kept posts, and the posts
  they take with them. A user with one post is skipped by this rule.
* ``user_no_posts_field``: a user object without a ``posts`` list raises DataError (bad file), not
  a skip; an empty list is a ``user_few_posts`` skip.

Popularity score (all three papers regress or rank log popularity): ``score = log(1 + likes)``.
Dual-attention label (Zhang et al. 2019, Sec. IV-A): within each user, the top 25% of posts by likes
are positive, the bottom 25% negative, the middle half unlabelled (``-1``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tarfile
import zlib
from typing import Any, Iterable, NamedTuple

import numpy as np

from popdiff_jax._errors import DataError
from popdiff_jax.data.cascades import resolve_data_dir

ARCHIVE_NAME = "UserData.tar.gz"
POST_TYPES = ("GraphImage", "GraphVideo", "GraphSidecar")


def default_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The instagram_likes directory: the argument, else ``$POPDIFF_DATA_DIR/instagram_likes``, else
  ``../shared/data/instagram_likes`` beside a source checkout (the rule of ``resolve_data_dir``)."""
  if data_dir is not None:
    return pathlib.Path(data_dir)
  root = resolve_data_dir(None)
  if root is None:
    raise DataError("instagram_likes is never shipped (it has no licence): pass data_dir= or set "
                    "POPDIFF_DATA_DIR to the folder holding instagram_likes/")
  return root / "instagram_likes"


class PostTable(NamedTuple):
  """All kept posts, column-wise; N posts of U users. Row order: users by file name, posts as stored.

  Attributes:
    user: int32 [N] user index into ``usernames``.
    usernames: tuple of U str.
    post_id: tuple of N str (Instagram media ids).
    caption: tuple of N str.
    alt_text: tuple of N str, Instagram's automatic image description ("" when absent).
    likes: int64 [N].
    comments: int64 [N] (0 when absent).
    timestamp: int64 [N] Unix seconds (``taken_at_timestamp``).
    post_type: int32 [N] index into ``POST_TYPES`` (0 image, 1 video, 2 sidecar).
    has_location: bool [N].
    followers: int64 [N] the author's followers (``edge_followed_by``), repeated per post.
    following: int64 [N] the author's followings (``edge_follow``).
    media_count: int64 [N] the author's total number of posts (``edge_owner_to_timeline_media``).
    score: float32 [N] popularity score log(1 + likes).
    image_features: float32 [N, Di] precomputed image vectors (a CSV's ``image_columns``), or
      None: the features then use the alt-text concept vector.
    text_features: float32 [N, Dt] precomputed caption vectors (a CSV's ``text_columns``), or
      None: the features then use LSA of the caption.
  """
  user: np.ndarray
  usernames: tuple
  post_id: tuple
  caption: tuple
  alt_text: tuple
  likes: np.ndarray
  comments: np.ndarray
  timestamp: np.ndarray
  post_type: np.ndarray
  has_location: np.ndarray
  followers: np.ndarray
  following: np.ndarray
  media_count: np.ndarray
  score: np.ndarray
  image_features: np.ndarray | None = None
  text_features: np.ndarray | None = None

  @property
  def num_posts(self) -> int:
    """The number of posts."""
    return int(self.user.shape[0])

  @property
  def num_users(self) -> int:
    """The number of users."""
    return len(self.usernames)

  def select(self, idx: np.ndarray) -> "PostTable":
    """The rows ``idx`` (users keep their indices; ``usernames`` is unchanged)."""
    idx = np.asarray(idx)
    out = {}
    for name, col in self._asdict().items():
      if name == "usernames" or col is None:
        out[name] = col
      elif isinstance(col, tuple):
        out[name] = tuple(col[i] for i in idx)
      else:
        out[name] = col[idx]
    return PostTable(**out)

  def replace(self, **kw) -> "PostTable":
    """A copy with the given fields replaced."""
    return self._replace(**kw)


@dataclasses.dataclass
class LoaderReport:
  """What the reader read, kept and skipped (counts per rule; see the module docstring)."""
  files_read: int = 0
  users_kept: int = 0
  posts_seen: int = 0
  posts_kept: int = 0
  skipped: dict = dataclasses.field(default_factory=dict)

  def skip(self, rule: str, n: int = 1) -> None:
    """Counts ``n`` records dropped by ``rule``."""
    self.skipped[rule] = self.skipped.get(rule, 0) + n

  def as_dict(self) -> dict:
    """The counts as a plain dict (for result files)."""
    return dataclasses.asdict(self)


def _as_count(value: Any) -> int | None:
  """An Instagram count: an int, or GraphQL's {"count": int}; None when neither, or when it is
  negative or does not fit in int64 (a count cannot be; treated like a missing field)."""
  if isinstance(value, dict):
    value = value.get("count")
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    return None
  value = int(value)
  return value if 0 <= value < 2**63 else None


def _caption_text(value: Any) -> str | None:
  """The caption string (plain str, or GraphQL's {"edges": [{"node": {"text": ...}}]}); None for
  anything else, however it is nested."""
  if isinstance(value, dict):
    edges = value.get("edges")
    first = edges[0] if isinstance(edges, list) and edges else None
    node = first.get("node") if isinstance(first, dict) else None
    value = node.get("text") if isinstance(node, dict) else None
  return value if isinstance(value, str) else None


def parse_user(obj: Any, name: str, report: LoaderReport, *, include_videos: bool = False) -> dict:
  """Kept posts of one user object (already decoded JSON); skips are counted in ``report``.

  Raises:
    DataError: the object is not a JSON object with a ``posts`` list.
  """
  if not isinstance(obj, dict) or not isinstance(obj.get("posts"), list):
    raise DataError("user file is not a JSON object with a 'posts' list", path=name)
  user = {
      "username": str(obj.get("username") or pathlib.PurePath(name).stem),
      "followers": _as_count(obj.get("edge_followed_by")) or 0,
      "following": _as_count(obj.get("edge_follow")) or 0,
      "media_count": _as_count(obj.get("edge_owner_to_timeline_media")) or 0,
      "posts": [],
  }
  for post in obj["posts"]:
    report.posts_seen += 1
    if not isinstance(post, dict):
      report.skip("not_an_object")
      continue
    likes = _as_count(post.get("edge_liked_by"))
    if likes is None:
      report.skip("no_likes")
      continue
    caption = _caption_text(post.get("edge_media_to_caption"))
    if caption is None or not caption.strip():
      report.skip("no_caption")
      continue
    try:
      caption.encode("utf-8")
    except UnicodeEncodeError:
      report.skip("caption_not_utf8")
      continue
    ptype = post.get("__typename", "GraphImage")
    if ptype not in POST_TYPES:
      ptype = "GraphVideo" if post.get("is_video") else "GraphImage"
    if ptype == "GraphVideo" and not include_videos:
      report.skip("video")
      continue
    alt = post.get("accessibility_caption")
    alt = alt if isinstance(alt, str) else ""
    try:
      alt.encode("utf-8")
    except UnicodeEncodeError:
      alt = ""
    ts = _as_count(post.get("taken_at_timestamp"))
    user["posts"].append({
        "id": str(post.get("id", f"{user['username']}:{len(user['posts'])}")),
        "caption": caption,
        "alt_text": alt,
        "likes": likes,
        "comments": _as_count(post.get("edge_media_to_comment")) or 0,
        "timestamp": 0 if ts is None else ts,
        "post_type": POST_TYPES.index(ptype),
        "has_location": bool(post.get("location")),
    })
  return user


def _iter_user_files(archive: pathlib.Path) -> Iterable[tuple[str, bytes]]:
  """(member name, raw bytes) of every ``*.json`` file in the tar.gz, sorted by name."""
  try:
    tar = tarfile.open(archive, "r:gz")
  except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
    raise DataError(f"cannot open archive: {e}", path=str(archive)) from e
  with tar:
    try:
      members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")),
                       key=lambda m: m.name)
    except (OSError, EOFError, tarfile.TarError, zlib.error) as e:  # truncated or corrupt archive
      raise DataError(f"cannot read archive: {e}", path=str(archive)) from None
    for m in members:
      try:
        f = tar.extractfile(m)
        raw = f.read() if f is not None else b""
      except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
        raise DataError(f"cannot read archive member {m.name}: {e}", path=str(archive)) from None
      yield f"{archive}!{m.name}", raw


def _decode(raw: bytes, name: str) -> Any:
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"file is not UTF-8 (byte {e.start}): {e.reason}", path=name) from e
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(f"file is not JSON: {e.msg}", path=name, line=e.lineno) from e


def _iter_folder_files(folder: pathlib.Path) -> Iterable[tuple[str, bytes]]:
  """(path, raw bytes) of every ``*.json`` file of a folder (not recursive), sorted by name."""
  for path in sorted(folder.glob("*.json")):
    try:
      yield str(path), path.read_bytes()
    except OSError as e:
      raise DataError(f"cannot read file: {e.strerror}", path=str(path)) from e


def _user_files(path: pathlib.Path) -> Iterable[tuple[str, bytes]]:
  """The user files of an instagram layout at ``path`` (see :func:`load_instagram`)."""
  if path.is_file():
    return _iter_user_files(path)
  if (path / ARCHIVE_NAME).is_file():
    return _iter_user_files(path / ARCHIVE_NAME)
  folder = path / "UserData" if (path / "UserData").is_dir() else path
  if path.is_dir() and any(folder.glob("*.json")):
    return _iter_folder_files(folder)
  if path.is_dir():
    raise DataError(f"no {ARCHIVE_NAME}, UserData/ folder or *.json user files here",
                    path=str(path))
  raise DataError(f"not found: expected a folder holding {ARCHIVE_NAME} or <username>.json "
                  "files, or a .tar.gz of them (instagram_likes: --data-dir or POPDIFF_DATA_DIR)",
                  path=str(path))


def load_instagram(data_dir: str | os.PathLike | None = None, *, min_posts: int = 4,
                   include_videos: bool = False, max_users: int | None = None,
                   ) -> tuple[PostTable, LoaderReport]:
  """Reads every user file of an instagram layout in place (no extraction).

  Args:
    data_dir: a folder holding ``UserData.tar.gz`` (default: :func:`default_data_dir`), the
      ``.tar.gz`` file itself, or a folder of ``<username>.json`` user files (or one holding
      them in ``UserData/``). User files are read in name order.
    min_posts: users with fewer kept posts are skipped (``user_few_posts``).
    include_videos: keep ``GraphVideo`` posts (default False: skipped as ``video``).
    max_users: read only the first this many user files (by name): fast subsamples for tests.

  Returns:
    (table, report): the kept posts and the loader report.

  Raises:
    DataError: the archive or folder is missing or unreadable, or a user file is not UTF-8
      JSON with a ``posts`` list (the message names the file, inside the archive if it is one).
  """
  report = LoaderReport()
  users = []
  for i, (name, raw) in enumerate(_user_files(default_data_dir(data_dir))):
    if max_users is not None and i >= max_users:
      break
    report.files_read += 1
    users.append(parse_user(_decode(raw, name), name, report, include_videos=include_videos))
  return build_table(users, report, min_posts=min_posts), report


def build_table(users: list[dict], report: LoaderReport, *, min_posts: int = 4) -> PostTable:
  """Assembles parsed users (see :func:`parse_user`) into a :class:`PostTable`, applying
  the duplicate and ``min_posts`` rules. A post dict may carry its own ``followers``,
  ``following`` and ``media_count`` (the author's counts when that post was made); otherwise
  it gets its user's. Posts carrying ``image_features`` / ``text_features`` (lists of floats,
  one width for all) fill the table's columns of those names."""
  seen: set[str] = set()
  rows: dict[str, list] = {k: [] for k in PostTable._fields
                           if k not in ("usernames", "score", "image_features", "text_features")}
  dense: dict[str, list] = {"image_features": [], "text_features": []}
  usernames = []
  for u in users:
    posts = []
    for p in u["posts"]:
      if p["id"] in seen:
        report.skip("duplicate")
        continue
      seen.add(p["id"])
      posts.append(p)
    if len(posts) < min_posts:
      report.skip("user_few_posts")
      report.skip("user_few_posts_posts", len(posts))
      continue
    uid = len(usernames)
    usernames.append(u["username"])
    for p in posts:
      rows["user"].append(uid)
      rows["post_id"].append(p["id"])
      rows["caption"].append(p["caption"])
      rows["alt_text"].append(p["alt_text"])
      rows["likes"].append(p["likes"])
      rows["comments"].append(p["comments"])
      rows["timestamp"].append(p["timestamp"])
      rows["post_type"].append(p["post_type"])
      rows["has_location"].append(p["has_location"])
      for k in ("followers", "following", "media_count"):
        rows[k].append(p.get(k, u[k]))
      for k, col in dense.items():
        if k in p:
          col.append(p[k])
  likes = np.asarray(rows["likes"], np.int64)
  table = PostTable(
      user=np.asarray(rows["user"], np.int32), usernames=tuple(usernames),
      post_id=tuple(rows["post_id"]), caption=tuple(rows["caption"]),
      alt_text=tuple(rows["alt_text"]), likes=likes,
      comments=np.asarray(rows["comments"], np.int64),
      timestamp=np.asarray(rows["timestamp"], np.int64),
      post_type=np.asarray(rows["post_type"], np.int32),
      has_location=np.asarray(rows["has_location"], bool),
      followers=np.asarray(rows["followers"], np.int64),
      following=np.asarray(rows["following"], np.int64),
      media_count=np.asarray(rows["media_count"], np.int64),
      score=np.log1p(likes.astype(np.float64)).astype(np.float32),
      **{k: np.asarray(col, np.float32).reshape(len(col), -1) for k, col in dense.items() if col})
  report.users_kept = len(usernames)
  report.posts_kept = table.num_posts
  return table


def quartile_labels(user: np.ndarray, likes: np.ndarray, frac: float = 0.25) -> np.ndarray:
  """Dual-attention labels (Zhang et al. 2019, Sec. IV-A): per user, top ``frac`` of posts by likes -> 1,
  bottom ``frac`` -> 0, the rest -> -1 (unlabelled).

  Each quarter holds ``max(1, floor(frac * n_u))`` posts of a user with n_u posts; ties in likes are
  broken by row order (stable sort), so labels are deterministic.

  Args:
    user: int [N] user index per post.
    likes: [N] likes per post.

  Returns:
    int32 [N] in {-1, 0, 1}.
  """
  user = np.asarray(user)
  likes = np.asarray(likes)
  labels = np.full(user.shape, -1, np.int32)
  order = np.lexsort((likes, user))  # grouped by user, ascending likes within a user
  boundaries = np.flatnonzero(np.diff(user[order])) + 1
  for group in np.split(order, boundaries):
    n = group.size
    if n < 2:
      continue
    q = max(1, int(np.floor(frac * n)))
    labels[group[:q]] = 0
    labels[group[n - q:]] = 1
  return labels


class Split(NamedTuple):
  """Row indices into a PostTable.

  Attributes:
    train: int64 [n_train].
    val: int64 [n_val] (held out of train for model selection).
    test: int64 [n_test].
    kind: "random", "time" or "user".
    seed: the seed that drew it.
  """
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  kind: str
  seed: int


SPLIT_KINDS = ("random", "time", "user")


def make_split(table: PostTable, kind: str, seed: int, *, test_frac: float = 0.2,
               val_frac: float = 0.1) -> Split:
  """Seeded train/val/test split of the posts.

  * ``random``: a random ``test_frac`` of posts to test (Zhang et al.; Ding et al. Set-III).
  * ``time``: the latest ``test_frac`` of posts by ``taken_at_timestamp`` to test, one global cut
    (Ding et al. Set-I); ties are ordered by a seeded permutation.
  * ``user``: a random set of users, holding about ``test_frac`` of the posts, to test; test users
    are unseen in training (Ding et al. Set-II).

  Validation is a random ``val_frac`` of the remaining training posts (by time: the latest ones;
  by user: whole users).
  """
  rng = np.random.default_rng(seed)
  n = table.num_posts
  if kind == "random":
    perm = rng.permutation(n)
    n_test = int(round(test_frac * n))
    test, rest = perm[:n_test], perm[n_test:]
    n_val = int(round(val_frac * rest.size))
    val, train = rest[:n_val], rest[n_val:]
  elif kind == "time":
    tie = rng.permutation(n)
    order = np.lexsort((tie, table.timestamp))
    n_test = int(round(test_frac * n))
    rest, test = order[:n - n_test], order[n - n_test:]
    n_val = int(round(val_frac * rest.size))
    train, val = rest[:rest.size - n_val], rest[rest.size - n_val:]
  elif kind == "user":
    users = rng.permutation(table.num_users)
    counts = np.bincount(table.user, minlength=table.num_users)
    cum = np.cumsum(counts[users])
    test_users = users[: int(np.searchsorted(cum, test_frac * n)) + 1]
    rest_users = np.setdiff1d(users, test_users)
    rest_users = rest_users[rng.permutation(rest_users.size)]
    cum_rest = np.cumsum(counts[rest_users])
    val_users = rest_users[: int(np.searchsorted(cum_rest, val_frac * cum_rest[-1])) + 1]
    in_test = np.isin(table.user, test_users)
    in_val = np.isin(table.user, val_users)
    test = np.flatnonzero(in_test)
    val = np.flatnonzero(in_val & ~in_test)
    train = np.flatnonzero(~in_test & ~in_val)
  else:
    raise ValueError(f"unknown split kind {kind!r}; expected one of {SPLIT_KINDS}")
  return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64),
               np.sort(test).astype(np.int64), kind, int(seed))
