"""Posts for the three popularity papers: loading, features, :class:`PostBatch` arrays and batches.

::

  posts = load_posts(PostsConfig(source="synthetic"), seed=0, workdir="runs/x")  # table, split,
  arrays = make_arrays(posts.feats, use=("features",), features=x, target=y)     # features
  for batch in iterate_batches(arrays, posts.split.train, 128, shuffle_seed=0, drop_last=True):
    ...                                                        # PostBatch, every field [128, ...]

* :class:`PostsConfig` / :func:`load_posts`: which posts (``source``, ``--data`` on the command
  line): the preset ``instagram`` (``instagram_likes``, read in place from a data directory and
  never copied: the data has no licence), the preset ``synthetic`` (Instagram-like users with a
  planted signal, ``data.synthetic_posts``), or the path of your own posts in the ``instagram``
  layout or the plain ``csv`` format (:func:`read_posts_csv`). The posts are split
  (``data.instagram.make_split``) and turned into a ``FeatureSet`` with every statistic fitted
  on the training posts (``features.build_features``).
* :func:`make_arrays`: full-length ``PostBatch`` arrays (all N posts) holding the fields a model
  reads; the others get width 0.
* :func:`iterate_batches`: shuffled training batches (the remainder dropped) or, for evaluation,
  batches in order padded with masked rows to one static shape.
* :func:`predict_rows`: a jitted predict step over the evaluation batches of some rows.
* :func:`standardize`: the regressors' target z-scored with the training mean and deviation.

The plain ``csv`` format: a header line naming the columns, then one post per row (RFC 4180
quoting: a caption holding commas, quotes or line breaks is quoted; UTF-8). Columns, and which
model reads them (``features.build_features`` derives every feature from them):

* ``user`` (required): all three: per-user labels and environment (dual attention), the user's
  mean popularity (SMP), the ``user`` split.
* ``time`` (required; Unix seconds): the ``time`` split; post age, hour and weekday (fusion
  DNN); post date and hour (SMP).
* ``likes`` (required): the target of all three, ``log(1 + likes)``; the per-user top and bottom
  quarters (dual attention); SMP's dictionaries and user mean.
* ``caption`` (required; rows with a blank one are skipped): tokens and LDA topics (dual
  attention); the LSA text vector, tag count and caption length (fusion DNN); lengths, tag count,
  dictionaries and sentiment (SMP).
* ``comments`` (default 0): SMP's comment count (``random_forest_no_comments`` drops it).
* ``followers``, ``following``, ``posts`` (default 0; the author's counts when posting): the
  fusion DNN's user group; SMP's audience, following and post-count features.
* ``alt_text`` (default ""): an Instagram-style image description ("Image may contain: ..."):
  the image input of all three models when no ``image_columns`` are given; SMP's has-people.
* ``post_type`` (``image``, ``sidecar`` or ``video``; default image): the fusion DNN's
  is-sidecar.
* ``has_location`` (0 or 1; default 0): the fusion DNN's has-location.
* ``id`` (default ``<file>:<line>``): the post id; a repeated id is skipped.
* the numeric columns named in ``PostsConfig.image_columns`` / ``text_columns`` (optional):
  precomputed image vectors (e.g. a ResNet-50 pool) or caption vectors (e.g. BERT) replacing
  the alt-text concepts / the LSA vector in all three models.

A column a CSV lacks reads as its default for every post, so the feature it feeds is constant
and z-scores to zero (the training mean): without ``followers`` the fusion DNN's user group is
zero; without ``alt_text`` and ``image_columns`` the image input of every model is zero (the
``visual`` and image-model rows then predict the training mean). Other columns are ignored.
As for ``instagram_likes``, users with fewer than 4 kept posts are skipped (each quarter of a
user's posts must hold one). Malformed input raises :class:`~popdiff_jax.DataError` naming the
file, the line and what was expected (an empty file, a header without a required column, a
truncated line, a wrong number of fields, a non-numeric time or count).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import pathlib
from typing import Annotated, Any, Callable, Iterator, Literal, NamedTuple, Sequence

import jax
import numpy as np
import tyro

from popdiff_jax import _validate as v
from popdiff_jax._errors import DataError
from popdiff_jax.types import PostBatch

__all__ = ["PRESETS", "FORMATS", "CSV_REQUIRED", "CSV_OPTIONAL", "PostsSource", "PostsConfig",
           "Posts", "source_format", "read_posts_csv", "write_posts_csv", "load_table",
           "load_posts", "make_arrays", "iterate_batches", "predict_rows", "standardize"]

#: The posts named by a word instead of a path.
PRESETS = ("instagram", "synthetic")
#: The formats of a path: the ``UserData`` JSON layout, or the plain CSV table.
FORMATS = ("instagram", "csv")
#: The columns every posts CSV has.
CSV_REQUIRED = ("user", "time", "likes", "caption")
#: The columns a posts CSV may have (defaults in the module docstring).
CSV_OPTIONAL = ("id", "comments", "followers", "following", "posts", "alt_text", "post_type",
                "has_location")
_CSV_POST_TYPES = {"image": 0, "video": 1, "sidecar": 2}
_CSV_BOOL = {"0": False, "1": True, "false": False, "true": True, "no": False, "yes": True}


def _is_csv_path(source: str) -> bool:
  return source.lower().endswith(".csv")


@dataclasses.dataclass(frozen=True)
class PostsSource:
  """Which posts: a preset or a path (on the command line ``--data``, ``--format``, ...).

  Attributes:
    source: ``instagram`` (``instagram_likes`` from ``data_dir``), ``synthetic`` (generated
      users, no data needed) or the path of your own posts. On the command line: ``--data``.
    format: the format of a path: ``instagram`` (a ``UserData``-style folder of
      ``<username>.json`` files, or a ``.tar.gz`` of them) or ``csv`` (the plain table of the
      module docstring); None detects it (a ``.csv`` file; a folder or ``.tar.gz``).
    data_dir: folder holding ``UserData.tar.gz``, or a ``shared/data``-like root with an
      ``instagram_likes`` folder, for the ``instagram`` preset (default:
      ``$POPDIFF_DATA_DIR/instagram_likes``, else ``../shared/data/instagram_likes`` beside a
      checkout).
    image_columns: CSV columns holding a precomputed image vector per post (replacing the
      alt-text concepts).
    text_columns: CSV columns holding a precomputed caption vector per post (replacing LSA).
  """

  source: Annotated[str, tyro.conf.arg(name="data")] = "instagram"
  format: str | None = None
  data_dir: str | None = None
  image_columns: tuple[str, ...] = ()
  text_columns: tuple[str, ...] = ()

  def __post_init__(self):
    v.require(self, "source", bool(self.source.strip()),
              f"must be a preset ({', '.join(PRESETS)}) or the path of your posts")
    v.one_of(self, "format", (None,) + FORMATS)
    v.require(self, "format", self.format is None or self.source not in PRESETS,
              f"names the format of a path; the preset {self.source!r} has its own")
    is_csv = self.format == "csv" or (self.format is None and _is_csv_path(self.source))
    for name in ("image_columns", "text_columns"):
      cols = getattr(self, name)
      v.require(self, name, not cols or is_csv, "columns are read from a csv (--format csv)")
      v.require(self, name, len(set(cols)) == len(cols), "names a column twice")
    clash = set(self.image_columns) & (set(self.text_columns) | set(CSV_REQUIRED + CSV_OPTIONAL))
    v.require(self, "image_columns", not clash, f"also used as another column: {sorted(clash)}")
    clash = set(self.text_columns) & set(CSV_REQUIRED + CSV_OPTIONAL)
    v.require(self, "text_columns", not clash, f"also used as another column: {sorted(clash)}")


@dataclasses.dataclass(frozen=True)
class PostsConfig(PostsSource):
  """Which posts (:class:`PostsSource`), how they are split, and how their features are built.

  Attributes:
    synthetic_users: users generated by the ``synthetic`` preset.
    posts_per_user: posts of each generated user.
    split: ``random`` (20% test), ``time`` (latest 20% of posts to test) or ``user`` (users
      unseen in training); validation is 10% of the rest (``data.instagram.make_split``).
    n_topics: LDA topics (the dual attention's topic environment; paper: 400); 0 skips LDA.
    lda_iter: LDA passes of batch variational Bayes.
    lsa_dim: width of the LSA caption vector (the stand-in for BERT).
    max_len: caption tokens kept (the dual attention's sequence length).
    n_jobs: scikit-learn workers of the LDA fit.
  """

  synthetic_users: int = 600
  posts_per_user: int = 12
  split: Literal["random", "time", "user"] = "random"
  n_topics: int = 400
  lda_iter: int = 5
  lsa_dim: int = 128
  max_len: int = 48
  n_jobs: int = 1

  def __post_init__(self):
    super().__post_init__()
    v.positive(self, "synthetic_users", "posts_per_user", "lda_iter", "lsa_dim", "max_len",
               "n_jobs")
    v.non_negative(self, "n_topics")
    v.one_of(self, "split", ("random", "time", "user"))


class Posts(NamedTuple):
  """Posts ready for the popularity models.

  Attributes:
    table: the ``data.instagram.PostTable``.
    split: the ``data.instagram.Split`` (train / val / test row indices).
    feats: the ``features.FeatureSet`` of every post (fitted on ``split.train``).
    stats: the ``features.FittedStats`` (vocabulary, dictionaries, ...).
  """

  table: Any
  split: Any
  feats: Any
  stats: Any


def source_format(config: PostsSource) -> str:
  """How ``config.source`` is read: ``instagram`` or ``synthetic`` (the presets), or the format
  of a path, ``instagram-path`` or ``csv`` (``config.format``, else detected).

  Raises:
    DataError: a path that does not exist, or whose format cannot be told from its name.
  """
  if config.source in PRESETS:
    return config.source
  path = pathlib.Path(config.source)
  if config.format is not None:
    return "csv" if config.format == "csv" else "instagram-path"
  if _is_csv_path(config.source):
    return "csv"
  if path.is_dir() or path.name.lower().endswith((".tar.gz", ".tgz")):
    return "instagram-path"
  if not path.exists():
    raise DataError(f"no such file or folder, and not a preset ({', '.join(PRESETS)})",
                    path=str(path))
  raise DataError("cannot tell the format of this file: pass --format csv or --format instagram",
                  path=str(path))


# ----------------------------------------------------------------------------- the csv format


def _csv_records(path: pathlib.Path) -> Iterator[tuple[int, list[str]]]:
  """``(first line, fields)`` of every record of a CSV file (blank lines skipped)."""
  try:
    raw = path.read_bytes()
  except OSError as e:
    raise DataError(f"cannot read file: {e.strerror}", str(path)) from e
  if not raw.strip():
    raise DataError(f"empty file: expected a header line naming the columns "
                    f"({','.join(CSV_REQUIRED)}, ...), then one post per line", str(path), 1)
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(f"not UTF-8 text (byte {e.start}): {e.reason}", str(path),
                    raw[:e.start].count(b"\n") + 1) from None
  reader = csv.reader(io.StringIO(text, newline=""), strict=True)
  start = 1
  while True:
    try:
      fields = next(reader)
    except StopIteration:
      return
    except csv.Error as e:
      if "end of data" in str(e):
        raise DataError("truncated line: a quoted field is not closed before the end of the file",
                        str(path), start) from None
      raise DataError(f"malformed CSV ({e}): a field holding commas, quotes or line breaks must "
                      f"be quoted, with inner quotes doubled", str(path), start) from None
    if fields:
      yield start, fields
    start = reader.line_num + 1


def _count(text: str, column: str, path: pathlib.Path, line: int, default: int | None = None,
           ) -> int:
  """A non-negative integer cell (``12``, ``12.0``); blank gives ``default`` where allowed."""
  text = text.strip()
  if not text and default is not None:
    return default
  try:
    value = int(text)
  except ValueError:
    try:
      x = float(text)
    except ValueError:
      x = math.nan
    value = int(x) if math.isfinite(x) and x == int(x) else None
  if value is None or not 0 <= value < 2**63:
    raise DataError(f"{column!r} must be a non-negative integer, got {text!r}", str(path), line)
  return value


def _time(text: str, path: pathlib.Path, line: int) -> int:
  """A Unix time in seconds (fractions are cut)."""
  try:
    x = float(text.strip())
  except ValueError:
    x = math.nan
  if not math.isfinite(x) or abs(x) >= 2**62:
    raise DataError(f"'time' must be a Unix time in seconds (a number), got {text.strip()!r}",
                    str(path), line)
  return int(math.floor(x))


def _real(text: str, column: str, path: pathlib.Path, line: int) -> float:
  try:
    x = float(text.strip())
  except ValueError:
    x = math.nan
  if not math.isfinite(x):
    raise DataError(f"feature column {column!r} must be a finite number, got {text.strip()!r}",
                    str(path), line)
  return x


def read_posts_csv(path: str | os.PathLike, *, image_columns: Sequence[str] = (),
                   text_columns: Sequence[str] = (), min_posts: int = 4):
  """Reads a posts CSV (the module docstring's columns) into a ``PostTable``.

  Users are indexed in the order of their first row; each user's posts keep the file's order.
  ``followers``, ``following`` and ``posts`` are per row (the author's counts when posting).

  Args:
    path: the file.
    image_columns: columns of a precomputed image vector (``PostTable.image_features``).
    text_columns: columns of a precomputed caption vector (``PostTable.text_features``).
    min_posts: users with fewer kept posts are skipped (``user_few_posts``).

  Returns:
    ``(data.instagram.PostTable, data.instagram.LoaderReport)``; ``files_read`` is 1, skips are
    counted under ``no_caption``, ``duplicate`` and ``user_few_posts``.

  Raises:
    DataError: naming the file and line: an empty file, a header without a required or declared
      column, a truncated line, a wrong number of fields, a non-numeric time, count or feature.
  """
  from popdiff_jax.data import instagram as ig

  path = pathlib.Path(path)
  records = _csv_records(path)
  _, header = next(records)
  header = [h.strip() for h in header]
  dup = sorted({h for h in header if header.count(h) > 1})
  if dup:
    raise DataError(f"the header names the column(s) {dup} twice", str(path), 1)
  for what, names in (("required", CSV_REQUIRED), ("image_columns", image_columns),
                      ("text_columns", text_columns)):
    missing = [c for c in names if c not in header]
    if missing:
      raise DataError(f"the header lacks the {what} column(s) {', '.join(map(repr, missing))} "
                      f"(required: {','.join(CSV_REQUIRED)}; got: {','.join(header)[:120]})",
                      str(path), 1)
  col = {h: i for i, h in enumerate(header)}
  report = ig.LoaderReport(files_read=1)
  users: dict[str, dict] = {}
  rows = 0
  for line, fields in records:
    rows += 1
    if len(fields) != len(header):
      what = "truncated line: " if len(fields) < len(header) else ""
      raise DataError(f"{what}expected {len(header)} comma-separated fields as in the header "
                      f"({','.join(header)[:80]}), got {len(fields)} (a field holding commas "
                      f"must be quoted)", str(path), line)
    get = lambda name, default="": fields[col[name]] if name in col else default  # noqa: E731
    report.posts_seen += 1
    username = get("user").strip()
    if not username:
      raise DataError("empty 'user' field", str(path), line)
    timestamp = _time(get("time"), path, line)
    likes = _count(get("likes"), "likes", path, line)
    post = {"id": get("id").strip() or f"{path.name}:{line}", "caption": get("caption"),
            "alt_text": get("alt_text"), "likes": likes, "timestamp": timestamp,
            "comments": _count(get("comments"), "comments", path, line, 0),
            "followers": _count(get("followers"), "followers", path, line, 0),
            "following": _count(get("following"), "following", path, line, 0),
            "media_count": _count(get("posts"), "posts", path, line, 0)}
    ptype = get("post_type").strip().lower().removeprefix("graph")
    if ptype and ptype not in _CSV_POST_TYPES:
      raise DataError(f"'post_type' must be one of {', '.join(_CSV_POST_TYPES)}, got "
                      f"{get('post_type')!r}", str(path), line)
    post["post_type"] = _CSV_POST_TYPES.get(ptype, 0)
    loc = get("has_location").strip().lower()
    if loc and loc not in _CSV_BOOL:
      raise DataError(f"'has_location' must be 0 or 1, got {get('has_location')!r}", str(path),
                      line)
    post["has_location"] = _CSV_BOOL.get(loc, False)
    if image_columns:
      post["image_features"] = [_real(get(c), c, path, line) for c in image_columns]
    if text_columns:
      post["text_features"] = [_real(get(c), c, path, line) for c in text_columns]
    if not post["caption"].strip():
      report.skip("no_caption")
      continue
    user = users.setdefault(username, {"username": username, "followers": 0, "following": 0,
                                       "media_count": 0, "posts": []})
    user["posts"].append(post)
  if rows == 0:
    raise DataError("no rows after the header", str(path))
  table = ig.build_table(list(users.values()), report, min_posts=min_posts)
  if table.num_posts == 0:
    raise DataError(f"no post left: every user has fewer than {min_posts} posts with a caption "
                    f"({report.skipped})", str(path))
  return table, report


def write_posts_csv(table, path: str | os.PathLike, *, image_columns: Sequence[str] | None = None,
                    text_columns: Sequence[str] | None = None) -> pathlib.Path:
  """Writes a ``PostTable`` as a posts CSV that :func:`read_posts_csv` reads back unchanged.

  Every column of the module docstring is written (text quoted, UTF-8); the table's
  ``image_features`` / ``text_features`` go to ``image_columns`` / ``text_columns`` (default
  names ``image_0``, ... and ``text_0``, ...).

  Returns:
    The path.
  """
  from popdiff_jax.data.instagram import POST_TYPES

  path = pathlib.Path(path)
  dense = {}
  for name, cols, prefix in (("image_features", image_columns, "image"),
                             ("text_features", text_columns, "text")):
    x = getattr(table, name)
    if x is not None:
      cols = list(cols) if cols is not None else [f"{prefix}_{j}" for j in range(x.shape[1])]
      if len(cols) != x.shape[1]:
        raise ValueError(f"{len(cols)} names for the {x.shape[1]} columns of {name}")
      dense[name] = (cols, np.asarray(x))
  header = ["id", "user", "time", "likes", "caption", "comments", "followers", "following",
            "posts", "alt_text", "post_type", "has_location"]
  header += [c for cols, _ in dense.values() for c in cols]
  types = [t.removeprefix("Graph").lower() for t in POST_TYPES]
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", encoding="utf-8", newline="") as f:
    csv.writer(f, lineterminator="\n").writerow(header)
    # Text quoted, numbers not: a caption's line breaks (even a lone CR) survive the round trip.
    w = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    for i in range(table.num_posts):
      row = [table.post_id[i], table.usernames[table.user[i]], int(table.timestamp[i]),
             int(table.likes[i]), table.caption[i], int(table.comments[i]),
             int(table.followers[i]), int(table.following[i]), int(table.media_count[i]),
             table.alt_text[i], types[int(table.post_type[i])], int(table.has_location[i])]
      for _, x in dense.values():
        row += [float(val) for val in x[i]]
      w.writerow(row)
  return path


# ----------------------------------------------------------------------------- loading


def load_table(config: PostsConfig, *, seed: int = 0,
               workdir: str | pathlib.Path = "runs/popularity"):
  """The post table and the loader report of ``config.source``.

  ``instagram``: ``instagram_likes`` from ``config.data_dir``; ``synthetic``:
  ``config.synthetic_users`` users drawn from ``seed`` (written under
  ``workdir/synthetic_posts``); a path: read in its format (:func:`source_format`).
  """
  from popdiff_jax.data import instagram as ig
  from popdiff_jax.data import synthetic_posts as sp

  kind = source_format(config)
  if kind == "synthetic":
    users = sp.generate_users(config.synthetic_users, config.posts_per_user, seed=seed)
    return ig.load_instagram(sp.write_archive(pathlib.Path(workdir) / "synthetic_posts", users))
  if kind == "csv":
    return read_posts_csv(config.source, image_columns=config.image_columns,
                          text_columns=config.text_columns)
  if kind == "instagram-path":
    return ig.load_instagram(config.source)
  data_dir = config.data_dir
  if data_dir is not None and (pathlib.Path(data_dir) / "instagram_likes").is_dir():
    data_dir = pathlib.Path(data_dir) / "instagram_likes"  # the shared/data root was given
  elif data_dir is None:
    data_dir = ig.default_data_dir(None)
  return ig.load_instagram(data_dir)


def load_posts(config: PostsConfig | str | os.PathLike, *, format: str | None = None,
               seed: int = 0, workdir: str | pathlib.Path = "runs/popularity",
               table=None) -> Posts:
  """Loads (or takes) the post table, splits it by ``seed`` and builds the features.

  ::

    posts = load_posts("my_posts.csv")                         # PostsConfig's defaults
    posts = load_posts("UserData/", format="instagram", seed=1)
    posts = load_posts(PostsConfig(source="synthetic", split="user"))

  Args:
    config: the posts and their features, or the path of posts (or a preset name): then
      ``PostsConfig(source=config, format=format)``, every other field its default.
    format: the format of a path given as ``config`` (``csv`` or ``instagram``; None detects
      it, see :class:`PostsSource`); with a ``PostsConfig``, leave it None.
    seed: the seed of the synthetic users, of the split and of the LDA / SVD fits.
    workdir: the synthetic archive and the LDA cache (``workdir/lda_cache``) go here.
    table: an already loaded ``PostTable`` (then ``config``'s source fields are not used).

  Returns:
    :class:`Posts`.

  Raises:
    DataError: the posts cannot be read (naming the file and, for a CSV, the line).
    ConfigError: ``format`` is not a format, or is given beside a ``PostsConfig``.
  """
  from popdiff_jax._errors import ConfigError
  from popdiff_jax.data import instagram as ig
  from popdiff_jax.features import build_features

  if not isinstance(config, PostsConfig):
    config = PostsConfig(source=os.fspath(config), format=format)
  elif format is not None:
    raise ConfigError("load_posts", "format", format,
                      "give the format inside the PostsConfig (PostsConfig.format)")
  if table is None:
    table, _ = load_table(config, seed=seed, workdir=workdir)
  split = ig.make_split(table, config.split, seed)
  feats, stats = build_features(table, split.train, n_topics=config.n_topics,
                                lda_iter=config.lda_iter, lsa_dim=config.lsa_dim,
                                max_len=config.max_len, seed=seed,
                                cache_dir=pathlib.Path(workdir) / "lda_cache",
                                image_features=table.image_features,
                                text_features=table.text_features, n_jobs=config.n_jobs)
  return Posts(table, split, feats, stats)


def make_arrays(feats, *, use: Sequence[str], features: np.ndarray | None = None,
                target: np.ndarray | None = None, column_keep: dict | None = None) -> PostBatch:
  """Full-length arrays (all N posts) for a model; the fields it does not read get width 0.

  Args:
    feats: the ``features.FeatureSet``.
    use: names of the ``PostBatch`` fields the model reads.
    features: float [N, F] tabular features (the ``features`` field).
    target: float [N] standardised regression target (the ``target`` field; zeros if None).
    column_keep: per field, a float [D] 0/1 vector multiplied into its columns (ablations).

  Returns:
    A ``PostBatch`` of N rows: ``label`` is ``max(feats.label, 0)`` (unlabelled posts read 0;
    the classifier uses labelled rows only) and ``mask`` is all True.
  """
  n = feats.score.shape[0]
  full = {
      "tokens": feats.tokens, "token_mask": feats.token_mask, "image": feats.image,
      "text": feats.text, "numeric": feats.numeric,
      "features": np.zeros((n, 0), np.float32) if features is None else features.astype(np.float32),
      "env_image": feats.env_image, "env_topic": feats.env_topic,
  }
  out = {}
  for k, x in full.items():
    if k in use:
      if column_keep and k in column_keep:
        x = (x * column_keep[k][None, :]).astype(x.dtype)
      out[k] = x
    else:
      out[k] = np.zeros((n, 0), x.dtype)
  out["label"] = np.maximum(feats.label, 0).astype(np.float32)
  out["target"] = np.zeros(n, np.float32) if target is None else target.astype(np.float32)
  out["mask"] = np.ones(n, bool)
  return PostBatch(**out)


def iterate_batches(arrays: PostBatch, idx: np.ndarray, batch_size: int, *,
                    shuffle_seed: int | None = None,
                    drop_last: bool = False) -> Iterator[PostBatch]:
  """Batches of the rows ``idx`` of ``arrays``.

  Args:
    arrays: full-length arrays from :func:`make_arrays`.
    idx: int [n] the rows to batch.
    batch_size: rows per batch B.
    shuffle_seed: shuffle the rows with ``np.random.default_rng(shuffle_seed)`` (training);
      None keeps their order (evaluation).
    drop_last: drop the last incomplete batch (training); otherwise it is padded up to B rows
      with copies of its first row whose ``mask`` is False (one static shape, no post lost).

  Yields:
    ``PostBatch`` with every field of B rows.
  """
  idx = np.asarray(idx)
  if shuffle_seed is not None:
    idx = idx[np.random.default_rng(shuffle_seed).permutation(idx.size)]
  n_full = idx.size // batch_size
  stop = n_full * batch_size if drop_last else idx.size
  for start in range(0, stop, batch_size):
    rows = idx[start:start + batch_size]
    pad = batch_size - rows.size
    take = np.concatenate([rows, np.full(pad, rows[0] if rows.size else 0, rows.dtype)])
    batch = PostBatch(*(a[take] for a in arrays))
    if pad:
      batch = batch._replace(mask=np.arange(batch_size) < rows.size)
    yield batch


def predict_rows(predict_step: Callable, params: Any, state: Any, arrays: PostBatch,
                 idx: np.ndarray, batch_size: int) -> Any:
  """A predict step's outputs for the rows ``idx``, in order, padding rows removed.

  Args:
    predict_step: ``(params, state, batch) -> outputs`` (``training.make_predict_step``), each
      output leaf of leading size B.
    params, state: the model's variables.
    arrays: full-length arrays from :func:`make_arrays`.
    idx: int [n] rows.
    batch_size: evaluation batch size B.

  Returns:
    The outputs as NumPy arrays of leading size n (the pytree structure of one call's outputs).
  """
  parts = []
  for batch in iterate_batches(arrays, idx, batch_size):
    k = int(batch.mask.sum())
    parts.append(jax.tree.map(lambda x: np.asarray(x)[:k], predict_step(params, state, batch)))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def standardize(score: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, float, float]:
  """The regression target ``(score - mean) / std`` with the training rows' mean and standard
  deviation (1 when it is 0); predictions are mapped back with ``pred * std + mean``.

  Args:
    score: float [N] popularity ``log(1 + likes)``.
    train: int [n] training rows.

  Returns:
    ``(target float64 [N], mean, std)``.
  """
  y = score[train].astype(np.float64)
  mean, std = float(y.mean()), float(y.std() or 1.0)
  return (score.astype(np.float64) - mean) / std, mean, std
