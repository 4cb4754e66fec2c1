"""TFDS builders: built ArrayRecord datasets read back exactly what ``load_dataset`` reads."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from _shared_data import require_shared
from popdiff_jax import DataError
from popdiff_jax.data.cascades import embedded_root, load_dataset

tfds = pytest.importorskip("tensorflow_datasets")
tb = pytest.importorskip("popdiff_jax.data.tfds_builders")
tfds.disable_progress_bar()


def assert_same_cascades(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g.users.dtype == np.int32 and g.times.dtype == np.float64
    np.testing.assert_array_equal(g.users, w.users)
    np.testing.assert_array_equal(g.times, w.times)  # exact: float64 is stored as raw bytes


def assert_same_dataset(got, want):
  for attr in ("train", "valid", "test"):
    assert_same_cascades(getattr(got, attr), getattr(want, attr))
  assert [got.vocab.user(i) for i in range(len(got.vocab))] == [
      want.vocab.user(i) for i in range(len(want.vocab))]
  if want.graph is None:
    assert got.graph is None
  else:
    np.testing.assert_array_equal(got.graph, want.graph)
  assert got.split == want.split and got.report == want.report


def test_ndm_irvine_round_trip(tmp_path):
  want = load_dataset("ndm/irvine")
  sources = tb.build_and_load("ndm/irvine", tmp_path)  # default manual dir: the embedded copy
  assert set(sources) == {"train", "validation", "test"}
  assert {k: len(v) for k, v in sources.items()} == {
      "train": len(want.train), "validation": len(want.valid), "test": len(want.test)}
  first = sources["train"][0]
  assert int(first["cascade_id"]) == 0
  np.testing.assert_array_equal(first["users"], want.train[0].users)
  assert_same_cascades(tb.source_to_cascades(sources["validation"]), want.valid)

  # The documented path: tfds.data_source on the registered name, with no TensorFlow.
  opened = tfds.data_source("ndm_cascades/irvine", data_dir=str(tmp_path))
  for split, attr in tb.SPLITS.items():
    assert_same_cascades(tb.source_to_cascades(opened[split]), getattr(want, attr))
  assert_same_dataset(tb.load_prepared("ndm/irvine", tmp_path), want)
  assert "tensorflow" not in sys.modules
  assert list(tmp_path.glob("ndm_cascades/irvine/1.0.0/*.array_record-*"))


def test_manual_dir_of_any_name(tmp_path):
  raw = tmp_path / "my_raw_files"
  shutil.copytree(embedded_root() / "ndm" / "irvine", raw / "irvine")
  sources = tb.build_and_load("ndm/irvine", tmp_path / "tfds", raw)
  want = load_dataset("ndm/irvine", tmp_path / "nothing_here")  # the embedded copy
  assert_same_cascades(tb.source_to_cascades(sources["test"]), want.test)


def test_manual_dir_errors(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    tb.build_and_load("ndm/irvine", tmp_path / "a", tmp_path / "missing")
  wrong = tmp_path / "wrong"
  (wrong / "lastfm").mkdir(parents=True)  # not irvine: must not fall back to the embedded copy
  with pytest.raises(DataError, match="irvine"):
    tb.build_and_load("ndm/irvine", tmp_path / "b", wrong)
  with pytest.raises(DataError, match="not built"):
    tb.load_prepared("ndm/irvine", tmp_path / "c")


def test_every_registered_dataset_has_a_builder():
  from popdiff_jax.data.cascades import DATASETS
  for name in DATASETS:
    builder_cls = tb.BUILDERS[name.split("/")[0]]
    assert [c for c in builder_cls.BUILDER_CONFIGS if c.dataset == name]


def test_infvae_christianity_round_trip_with_graph(tmp_path):
  family = require_shared("infvae")
  require_shared("infvae", "christianity")
  want = load_dataset("infvae/christianity", family.parent)
  assert want.graph is not None and len(want.graph) > 0
  sources = tb.build_and_load("infvae/christianity", tmp_path, family)
  for split, attr in tb.SPLITS.items():
    assert_same_cascades(tb.source_to_cascades(sources[split]), getattr(want, attr))
  got = tb.load_prepared("infvae/christianity", tmp_path)
  assert_same_dataset(got, want)
  assert got.graph.dtype == np.int32 and got.graph.shape == want.graph.shape


def test_core_package_imports_without_tfds():
  code = ("import sys, popdiff_jax, popdiff_jax.data.cascades, popdiff_jax.data.batching; "
          "assert 'tensorflow_datasets' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)
