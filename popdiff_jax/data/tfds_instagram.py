"""TFDS builder for ``instagram_likes``: one example per kept post, ArrayRecord, no TensorFlow.

Nothing is parsed here: the builder calls :func:`popdiff_jax.data.instagram.load_instagram` on its
manual dir (the folder holding ``UserData.tar.gz``), so a built dataset holds exactly the posts,
order and skip report of the library's reader. The data has no licence: build it into a private
``data_dir`` (never into the repository).

Each example is one post, in reader order (``post_index`` is also the example key; shuffling is
disabled, so ``source[i]`` is post ``i``): ``user`` (int32 user index), ``post_id``, ``caption``
and ``alt_text`` (UTF-8 text), ``likes``, ``comments``, ``timestamp``, ``followers``,
``following``, ``media_count`` (int64), ``post_type`` (int32: 0 image, 1 video, 2 sidecar),
``has_location`` (bool), ``score`` (float32 log(1 + likes)) and ``label`` (int32 per-user quarter
label in {-1, 0, 1}). Everything is in the single split ``posts``: the random, time and user splits
are seeded and drawn by :func:`popdiff_jax.data.instagram.make_split` on the table that
:func:`load_prepared` returns. ``info.metadata`` holds ``usernames`` and the loader ``report``.

Build and read::

  from popdiff_jax.data import tfds_instagram
  source = tfds_instagram.build_and_load("/tmp/tfds", "../shared/data/instagram_likes")
  source[0]["caption"]                     # bytes
  table = tfds_instagram.load_prepared("/tmp/tfds")   # a PostTable, as load_instagram gives
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from popdiff_jax._errors import DataError
from popdiff_jax.data.instagram import (PostTable, default_data_dir, load_instagram,
                                        quartile_labels)

SPLIT = "posts"
_INT64 = ("likes", "comments", "timestamp", "followers", "following", "media_count")


class InstagramLikes(tfds.core.GeneratorBasedBuilder):
  """instagram_likes posts (reader defaults: images and sidecars, users with >= 4 posts)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "popdiff_jax.data.instagram.load_instagram with its defaults."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at the folder holding UserData.tar.gz."

  def __init__(self, *, file_format: str = "array_record", **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    f = tfds.features
    return tfds.core.DatasetInfo(
        builder=self,
        features=f.FeaturesDict({
            "post_index": f.Scalar(np.int64), "user": f.Scalar(np.int32),
            "post_id": f.Text(), "caption": f.Text(), "alt_text": f.Text(),
            **{k: f.Scalar(np.int64) for k in _INT64},
            "post_type": f.Scalar(np.int32), "has_location": f.Scalar(np.bool_),
            "score": f.Scalar(np.float32), "label": f.Scalar(np.int32),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    table, report = load_instagram(pathlib.Path(os.fspath(dl_manager.manual_dir)))
    self.info.metadata.update({"usernames": list(table.usernames), "report": report.as_dict()})
    return {SPLIT: self._generate_examples(table)}

  def _generate_examples(self, table: PostTable):
    labels = quartile_labels(table.user, table.likes)
    for i in range(table.num_posts):
      yield i, {
          "post_index": i, "user": int(table.user[i]), "post_id": table.post_id[i],
          "caption": table.caption[i], "alt_text": table.alt_text[i],
          **{k: int(getattr(table, k)[i]) for k in _INT64},
          "post_type": int(table.post_type[i]), "has_location": bool(table.has_location[i]),
          "score": float(table.score[i]), "label": int(labels[i]),
      }


def build_and_load(data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None):
  """Builds the dataset under ``data_dir`` (once) and returns the random-access source of ``posts``."""
  manual = default_data_dir(manual_dir)
  builder = InstagramLikes(data_dir=os.fspath(data_dir))
  if not builder.is_prepared() and not (manual / "UserData.tar.gz").is_file():
    raise DataError("no UserData.tar.gz in the manual dir", str(manual))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder.as_data_source(split=SPLIT)


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def load_prepared(data_dir: str | os.PathLike) -> PostTable:
  """A built dataset back as the :class:`PostTable` that ``load_instagram`` returned."""
  builder = InstagramLikes(data_dir=os.fspath(data_dir))
  if not builder.is_prepared():
    raise DataError(f"instagram_likes is not built under {data_dir}; call build_and_load first")
  source = builder.as_data_source(split=SPLIT)
  ex = list(source.__getitems__(range(len(source)))) if hasattr(source, "__getitems__") else [
      source[i] for i in range(len(source))]
  ex.sort(key=lambda e: int(e["post_index"]))
  col = lambda k, dt: np.asarray([e[k] for e in ex], dt)  # noqa: E731
  return PostTable(
      user=col("user", np.int32), usernames=tuple(builder.info.metadata["usernames"]),
      post_id=tuple(_text(e["post_id"]) for e in ex), caption=tuple(_text(e["caption"]) for e in ex),
      alt_text=tuple(_text(e["alt_text"]) for e in ex),
      **{k: col(k, np.int64) for k in _INT64[:3]},
      post_type=col("post_type", np.int32), has_location=col("has_location", bool),
      **{k: col(k, np.int64) for k in _INT64[3:]}, score=col("score", np.float32))
