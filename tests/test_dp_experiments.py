"""Issue 6 wiring: the lean loss in NextUserConfig, data parallelism in the experiment loops
(4 forced CPU devices equal 1 device), masked padding rows for batches that do not divide."""

import dataclasses
import warnings

import jax
import numpy as np
import pytest

from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.experiments import next_user as nu


@pytest.fixture(scope="module")
def irvine():
  """A slice of the embedded Irvine set (real cascades over its full vocabulary): 3 training
  steps of 32, one bucket of 8 tokens (max_len 7)."""
  full = load_dataset("ndm/irvine")
  return dataclasses.replace(full, train=full.train[:96], valid=full.valid[:48],
                             test=full.test[:48])


def _tiny(model, **kw):
  base = nu.NextUserConfig(model=model, dim=8, num_heads=2, max_len=7, num_epochs=1,
                           eval_batch_size=48)
  return dataclasses.replace(base, **kw)


@pytest.fixture(autouse=True)
def _no_truncation_warnings():
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*are truncated to their first.*")
    yield


@pytest.mark.parametrize("model", ["ndm", "lstm"])
def test_lean_epoch_equals_dense_epoch(irvine, tmp_path, model):
  rows = {}
  for loss in ("dense", "lean"):
    cfg = _tiny(model, loss=loss, lean_chunk=512)
    trained = nu.train(irvine, cfg, tmp_path / loss, progress=False)
    rows[loss] = (trained, nu.test_metrics(irvine, trained, "valid"))
  (dense, m_dense), (lean, m_lean) = rows["dense"], rows["lean"]
  assert set(m_dense) == set(m_lean) and "hits@10" in m_lean
  for k in m_dense:
    np.testing.assert_allclose(m_lean[k], m_dense[k], rtol=1e-5, atol=1e-5, err_msg=k)
  np.testing.assert_allclose(lean.info["val_nll"], dense.info["val_nll"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(lean.params), jax.tree.leaves(dense.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_cli_train_on_four_devices_with_two_steps_per_call(tmp_path, capsys):
  import json

  from popdiff_jax.cli.main import build_parser, main

  assert jax.device_count() >= 4
  # 30 rows per batch do not divide by 4 devices: each batch gets 2 masked padding rows.
  args = ["train", "--dataset", "ndm/irvine", "--model", "ndm", "--epochs", "1", "--dim", "8",
          "--heads", "2", "--max-len", "7", "--batch-size", "30", "--devices", "4",
          "--steps-per-call", "2", "--lean", "--lean-chunk", "256", "--workdir", str(tmp_path),
          "--no-progress"]
  assert main(args) == 0
  table = capsys.readouterr().out
  assert "hits@10" in table and "ndm/irvine" in table
  row = json.loads((tmp_path / "results.json").read_text())
  assert 0.0 < row["hits@100"] <= 1.0 and row["epochs"] == 1
  config = json.loads((tmp_path / "config.json").read_text())["config"]
  assert (config["num_devices"], config["steps_per_call"], config["loss"]) == (4, 2, "lean")
  a = build_parser().parse_args(["reproduce", "ndm", "--devices", "0", "--model-parallel", "2",
                                 "--distributed"])
  assert (a.devices, a.model_parallel, a.distributed, a.lean) == (0, 2, True, False)
