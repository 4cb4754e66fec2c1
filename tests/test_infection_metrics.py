"""NDM's Macro/Micro-F1 and MSLE: a hand-worked example and a NumPy loop on random input."""

import numpy as np
import pytest

from popdiff_jax.metrics.infection import infection_f1, msle, truth_masks


def _hand_example():
  # U = 6 vocabulary slots: 0 = padding, 1 = Terminate, users 2..5.
  cascades = [np.array([2, 3, 4]), np.array([5, 2]), np.array([4])]
  probs = np.array([
      [0.0, 0.0, 1.0, 0.5, 0.25, 0.25],  # seed 2 has P = 1 but is excluded
      [0.3, 0.0, 0.2, 0.6, 0.0, 1.0],  # padding slot 0 and seed 5 are excluded
      [0.0, 0.0, 0.4, 0.1, 1.0, 0.0],  # only the seed observed: not scored
  ])
  return cascades, probs


def test_hand_worked_example():
  cascades, probs = _hand_example()
  truth, exclude = truth_masks(cascades, 6)
  np.testing.assert_array_equal(truth, [[0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0] * 6])
  r = infection_f1(probs, truth, exclude)
  # Cascade A: G = {3, 4}; hit = .5 + .25 = .75, total = .5 + .25 + .25 = 1 -> pre = .75,
  #   rec = .75 / 2 = .375, f = 2 * .75 * .375 / 1.125 = .5.
  # Cascade B: G = {2}; hit = .2, total = .2 + .6 = .8 -> pre = .25, rec = .2, f = .1 / .45 = 2/9.
  # Cascade C: |G| = 0, not scored.  Macro-F1 = (1/2 + 2/9) / 2 = 13/36.
  # Micro: hit = .95, total = 1.8, |G| = 3 -> pre = 19/36, rec = 19/60, F1 = 38/96.
  np.testing.assert_allclose(np.asarray(r.per_cascade_f1), [0.5, 2 / 9, 0.0], rtol=1e-6)
  np.testing.assert_allclose(float(r.macro_f1), 13 / 36, rtol=1e-6)
  np.testing.assert_allclose(float(r.micro_precision), 19 / 36, rtol=1e-6)
  np.testing.assert_allclose(float(r.micro_recall), 19 / 60, rtol=1e-6)
  np.testing.assert_allclose(float(r.micro_f1), 38 / 96, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(r.scored), [True, True, False])
  # Early stage with the first k = 1 user: cascade A's G = {3}: pre = .5, rec = .5, f = .5; B as before.
  truth1, exclude1 = truth_masks(cascades, 6, first_k=1)
  r1 = infection_f1(probs, truth1, exclude1)
  np.testing.assert_allclose(float(r1.macro_f1), (0.5 + 2 / 9) / 2, rtol=1e-6)


def test_msle_hand_worked():
  # (ln 3 - ln 1.5)^2 = (ln 2)^2 and (ln 2 - ln 4)^2 = (ln 2)^2; the padded third entry is ignored.
  v = msle(np.array([3.0, 2.0, 7.0]), np.array([1.5, 4.0, 100.0]), np.array([True, True, False]))
  np.testing.assert_allclose(float(v), np.log(2.0) ** 2, rtol=1e-6)
  assert np.isfinite(float(msle(np.array([1.0]), np.array([0.0]))))


def _numpy_reference(probs, truth, exclude):
  f, hit_s, tot_s, size_s = [], 0.0, 0.0, 0.0
  for c in range(probs.shape[0]):
    hit = tot = size = 0.0
    for u in range(probs.shape[1]):
      if exclude[c, u]:
        continue
      tot += probs[c, u]
      if truth[c, u]:
        hit += probs[c, u]
        size += 1
    if size == 0:
      continue
    pre = hit / tot if tot > 0 else 0.0
    rec = hit / size
    f.append(2 * pre * rec / (pre + rec) if pre + rec > 0 else 0.0)
    hit_s, tot_s, size_s = hit_s + hit, tot_s + tot, size_s + size
  pre, rec = hit_s / tot_s, hit_s / size_s
  return np.mean(f), 2 * pre * rec / (pre + rec)


@pytest.mark.parametrize("seed", [0, 1])
def test_against_numpy_loop_on_random_input(seed):
  rng = np.random.default_rng(seed)
  c, u = 9, 40
  cascades = [rng.choice(np.arange(2, u), size=rng.integers(1, 12), replace=False) for _ in range(c)]
  probs = rng.random((c, u)) * (rng.random((c, u)) < 0.4)
  for first_k in (None, 5):
    truth, exclude = truth_masks(cascades, u, first_k=first_k)
    r = infection_f1(probs, truth, exclude)
    macro, micro = _numpy_reference(probs, truth, exclude)
    np.testing.assert_allclose(float(r.macro_f1), macro, rtol=1e-5)
    np.testing.assert_allclose(float(r.micro_f1), micro, rtol=1e-5)


def test_degenerate_inputs_are_finite():
  truth = np.zeros((3, 5), bool)
  truth[0, 2] = True
  r = infection_f1(np.zeros((3, 5)), truth, cascade_mask=np.array([True, True, False]))
  assert all(np.isfinite(float(x)) for x in (r.macro_f1, r.micro_f1, r.micro_precision))
  assert float(r.macro_f1) == 0.0
  r = infection_f1(np.zeros((2, 5)), np.zeros((2, 5), bool))
  assert float(r.macro_f1) == 0.0 and float(r.micro_f1) == 0.0
