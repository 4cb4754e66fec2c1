"""The instagram_likes TFDS builder reads back exactly what the reader reads (synthetic archive)."""

import numpy as np
import pytest

from popdiff_jax import DataError
from popdiff_jax.data import instagram as ig
from popdiff_jax.data import synthetic_posts as sp

tfds = pytest.importorskip("tensorflow_datasets")
ti = pytest.importorskip("popdiff_jax.data.tfds_instagram")
tfds.disable_progress_bar()


def test_round_trip(tmp_path):
  users = sp.generate_users(5, 6, seed=1)
  users[0]["posts"][0]["edge_media_to_caption"] = "héllo 😍 #tag @you"
  manual = sp.write_archive(tmp_path / "raw", users)
  want, report = ig.load_instagram(manual)
  source = ti.build_and_load(tmp_path / "tfds", manual)
  assert len(source) == want.num_posts
  got = ti.load_prepared(tmp_path / "tfds")
  for name, w in want._asdict().items():
    g = getattr(got, name)
    if w is None or isinstance(w, tuple):  # None: no precomputed image / text vectors
      assert g == w, name
    else:
      assert g.dtype == w.dtype, name
      np.testing.assert_array_equal(g, w, err_msg=name)
  builder = ti.InstagramLikes(data_dir=str(tmp_path / "tfds"))
  assert builder.info.metadata["report"] == report.as_dict()
  np.testing.assert_array_equal([source[i]["label"] for i in range(len(source))],
                                ig.quartile_labels(want.user, want.likes))


def test_missing_manual_dir(tmp_path):
  with pytest.raises(DataError, match="UserData.tar.gz"):
    ti.build_and_load(tmp_path / "tfds", tmp_path / "nothing")
