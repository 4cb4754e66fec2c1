"""benchmarks/gpu_suite.py bookkeeping and the fidelity of its PyTorch anchor (_torch_ndm.py)."""

import importlib.util
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from popdiff_jax.data.batching import make_batches
from popdiff_jax.metrics.ranking import target_rank_counts
from popdiff_jax.nn.masking import infected_before, mask_infected, shift_targets

_DIR = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name, path):
  spec = importlib.util.spec_from_file_location(name, path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def suite():
  return _load("gpu_suite_bench", _DIR / "gpu_suite.py")


def test_synthetic_cascades_are_seeded_distinct_and_bounded(suite):
  a = suite.synthetic_cascades(5000, 200, max_len=60, seed=3)
  b = suite.synthetic_cascades(5000, 200, max_len=60, seed=3)
  assert len(a) == 200
  lengths = np.array([len(c.users) for c in a])
  assert lengths.min() >= 2 and lengths.max() == 60
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.users, y.users)
    assert len(np.unique(x.users)) == len(x.users)
    assert x.users.min() >= 2 and x.users.max() < 5002


def test_floor_and_ratios(suite):
  f = suite.floor("NVIDIA H100 80GB HBM3", 32, 501, 192, 1_000_002, True, 0.1)
  assert f["proj_flops"] == pytest.approx(6 * 32 * 501 * 192 * 1_000_002)
  assert f["bound"] == "compute"
  assert f["fraction_of_floor"] == pytest.approx(f["proj_flops"] / 494.7e12 / 0.1)
  dense = suite.floor("NVIDIA H100 80GB HBM3", 32, 201, 256, 12_629, False, 1e-3)
  assert dense["bound"] == "memory"
  assert suite.floor("cpu", 2, 3, 4, 5, True, 1.0).get("floor_seconds") is None
  rows = [{"bench": "x", "impl": "torch_recipe", "throughput": 10.0, "peak_mem_bytes": 100},
          {"bench": "x", "impl": "jax_lean", "throughput": 55.0, "peak_mem_bytes": 20},
          {"bench": "y", "impl": "jax_lean", "throughput": 1.0, "peak_mem_bytes": 1}]
  suite.add_ratios(rows)
  assert rows[1]["ratio_vs_anchor"] == pytest.approx(5.5)
  assert rows[1]["mem_ratio_vs_anchor"] == pytest.approx(0.2)
  assert rows[2]["ratio_vs_anchor"] is None


def test_torch_recipe_masks_and_ranks_like_the_library(suite):
  torch = pytest.importorskip("torch")
  sys.path.insert(0, str(_DIR))
  try:
    tn = _load("torch_ndm_anchor", _DIR / "_torch_ndm.py")
  finally:
    sys.path.remove(str(_DIR))
  cascades = suite.synthetic_cascades(40, 6, max_len=9, seed=1)
  batch = make_batches(cascades, 6, max_len=9, buckets=(10,))[0]
  users, mask = jnp.asarray(batch.users), jnp.asarray(batch.mask)
  t_users = torch.as_tensor(batch.users)
  # The recipe's dense mask marks exactly the library's blocked users (on the L - 1 input steps).
  dense = np.asarray(infected_before(users, mask, 42))[:, :-1]
  recipe = tn.previous_user_mask(t_users[:, :-1], 42).numpy()
  np.testing.assert_array_equal(np.isneginf(recipe), dense)
  # Its rank counts equal metrics.ranking's on the same scores.
  torch.manual_seed(0)
  model = tn.TorchNDM(42, dim=8, num_heads=2, window=3, f_init=1).eval()
  greater, equal, tm = tn.rank_counts(model, t_users, torch.as_tensor(batch.mask))
  with torch.no_grad():
    logits = model(t_users[:, :-1], torch.as_tensor(batch.mask)[:, :-1]).numpy()
  targets, target_mask = shift_targets(users, mask)
  masked = mask_infected(jnp.asarray(logits), users[:, :-1], mask[:, :-1])
  g, e = target_rank_counts(masked, targets[:, :-1])
  np.testing.assert_array_equal(tm, np.asarray(target_mask[:, :-1]))
  np.testing.assert_array_equal(greater[tm], np.asarray(g)[tm])
  np.testing.assert_array_equal(equal[tm], np.asarray(e)[tm])
  loss, count = tn.loss_and_count(model, t_users, torch.as_tensor(batch.mask))
  assert count == int(target_mask.sum()) and np.isfinite(float(loss.detach()))
