"""NDM's own evaluation (Sec. 5.3-5.5): Monte Carlo identification F1 and cascade-size MSLE.

For every test cascade ``c = (u_0, u_1, ...)``:

* Table 2: given ``u_0``, ``runs`` simulations each infect at most ``|G^c| = |c| - 1`` new users (or
  stop at Terminate); ``P_u`` = fraction of runs infecting ``u``; Macro/Micro-F1 as in
  ``metrics.infection``.
* Table 3 (early stage): the same with ``G^c`` = the next five users and a budget of five.
* Sec. 5.5: given the first five users, runs continue until Terminate (or ``max_len`` users); the
  predicted size is the mean final size; MSLE over cascades with at least five users.

Cascades are cut to ``max_len`` users, as in training. Paper numbers are kept in ``PAPER_TABLES``.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np

from popdiff_jax.data.cascades import CascadeDataset
from popdiff_jax.metrics.infection import infection_f1, msle, truth_masks
from popdiff_jax.projects.ndm.experiment import Trained
from popdiff_jax.simulate.sampler import simulate_dataset

__all__ = ["PAPER_TABLES", "PROTOCOLS", "protocol_settings", "evaluate_protocol", "evaluate_f1"]

# Paper Table 2 (Macro-F1, Micro-F1) and Table 3 (first five only), NDM rows.
PAPER_TABLES = {
    "ndm/lastfm": {"macro_f1": 0.056, "micro_f1": 0.095, "macro_f1_first5": 0.048,
                   "micro_f1_first5": 0.045},
    "ndm/memetracker": {"macro_f1": 0.139, "micro_f1": 0.171, "macro_f1_first5": 0.122,
                        "micro_f1_first5": 0.126},
    "ndm/irvine": {"macro_f1": 0.076, "micro_f1": 0.108, "macro_f1_first5": 0.064,
                   "micro_f1_first5": 0.065},
    "forest/twitter": {"macro_f1": 0.139, "micro_f1": 0.087, "macro_f1_first5": 0.123,
                       "micro_f1_first5": 0.118},
}


#: The two evaluation protocols of the F1 tables. ``paper``: the authors' evaluate.py (100
#: multinomial continuations from the first user, the first |truth| predictions counted, the end
#: token never sampled: their training gives it zero weight); ``project``: the paper's text
#: (1,000 runs) with the model's own distribution, Terminate included (a run may stop early).
PROTOCOLS = {"paper": {"runs": 100, "terminate": "masked"},
             "project": {"runs": 1000, "terminate": "allowed"}}


def protocol_settings(protocol: str, runs: int | None = None,
                      terminate: str | None = None) -> tuple[int, str]:
  """``(runs, terminate)`` of a named protocol, with either overridden."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
  base = PROTOCOLS[protocol]
  return (base["runs"] if runs is None else runs,
          base["terminate"] if terminate is None else terminate)


def _f1_row(trained: Trained, cascades: Sequence, num_items: int, budgets: Sequence[int],
            first_k: int | None, runs: int, key: jax.Array, progress: bool, desc: str,
            terminate: str = "allowed") -> dict:
  freq, _ = simulate_dataset(trained.model, trained.variables, cascades, num_given=1,
                             budgets=budgets, num_runs=runs, key=key, num_items=num_items,
                             progress=progress, desc=desc, terminate=terminate)
  truth, exclude = truth_masks(cascades, num_items, num_given=1, first_k=first_k)
  scores = infection_f1(freq, truth, exclude)
  return {"macro_f1": float(scores.macro_f1), "micro_f1": float(scores.micro_f1),
          "scored_cascades": int(np.asarray(scores.scored).sum())}


def evaluate_protocol(dataset: CascadeDataset, trained: Trained, *, runs: int | None = 1000,
                      size_runs: int | None = None, seed: int = 0, progress: bool = True,
                      protocol: str = "project", terminate: str | None = None) -> dict:
  """Macro/Micro-F1 (full and first five) and size MSLE of a trained model on the test split.

  Args:
    dataset: the dataset (its ``test`` split is evaluated).
    trained: a trained NDM or LSTM (``experiment.train`` / ``experiment.load_trained``).
    runs: Monte Carlo runs per cascade for the F1 protocols (paper's text: 1000; the authors'
      code: 100); None takes the protocol's.
    size_runs: runs per cascade for the size prediction (default: ``runs``).
    seed: the simulations' seed.
    progress: progress bars.
    protocol: ``"project"`` or ``"paper"`` (:data:`PROTOCOLS`).
    terminate: ``"allowed"`` or ``"masked"`` while sampling the F1 runs; None takes the
      protocol's (the size prediction always allows it: a size needs an end). A model trained
      with Terminate's weight 0 (``paper-recipe``) has no learned end: its ``msle`` is NaN and
      ``msle_note`` says why.

  Returns:
    A results row: ``macro_f1``, ``micro_f1``, ``macro_f1_first5``, ``micro_f1_first5``, ``msle``,
    ``runs_per_cascade``, ``size_runs_per_cascade``, ``protocol``, ``terminate``,
    ``simulate_seconds`` (and ``msle_note`` where the size is not scored).
  """
  runs, terminate = protocol_settings(protocol, runs, terminate)
  if trained.model is None:
    raise ValueError("the popularity baseline has no sampler; use an NDM or LSTM model")
  max_len = trained.config.data.max_len
  num_items = len(dataset.vocab)
  test = [c for c in dataset.test if len(c.users) >= 2]
  cut = [c._replace(users=c.users[:max_len], times=c.times[:max_len]) for c in test]
  key = jax.random.key(seed)
  t0 = time.perf_counter()
  name = f"{trained.config.model.name} {dataset.name}"
  full = _f1_row(trained, cut, num_items, [len(c.users) - 1 for c in cut], None, runs,
                 jax.random.fold_in(key, 0), progress, f"{name} F1", terminate)
  first5 = _f1_row(trained, cut, num_items, [min(5, len(c.users) - 1) for c in cut], 5, runs,
                   jax.random.fold_in(key, 1), progress, f"{name} F1 first five", terminate)
  sized = [c for c in cut if len(c.users) >= 5]
  size_runs = runs if size_runs is None else size_runs
  size_error, size_note = float("nan"), None
  if trained.config.train.terminate_weight == 0.0:
    # Trained without Terminate as a target (the authors' recipe), the model has no learned
    # end: every run would go on to max_len, so the size has no prediction to score.
    size_note = "not scored: Terminate had weight 0 in training (the model never ends a run)"
  elif sized:
    _, mean_new = simulate_dataset(trained.model, trained.variables, sized, num_given=5,
                                   budgets=[max_len - 5] * len(sized), num_runs=size_runs,
                                   key=jax.random.fold_in(key, 2), num_items=num_items,
                                   progress=progress, desc=f"{name} size")
    true_sizes = np.array([len(c.users) for c in sized], np.float32)
    size_error = float(msle(true_sizes, 5.0 + mean_new))
  return {"macro_f1": full["macro_f1"], "micro_f1": full["micro_f1"],
          "macro_f1_first5": first5["macro_f1"], "micro_f1_first5": first5["micro_f1"],
          "msle": size_error, "scored_cascades": full["scored_cascades"],
          "size_cascades": len(sized), "runs_per_cascade": runs,
          "size_runs_per_cascade": size_runs, "protocol": protocol, "terminate": terminate,
          **({"msle_note": size_note} if size_note else {}),
          "simulate_seconds": round(time.perf_counter() - t0, 1)}


def evaluate_f1(dataset: CascadeDataset, trained: Trained, *, runs: int, first_k: int | None = None,
                seed: int = 0, max_rows: int = 2 ** 15, progress: bool = False,
                terminate: str = "allowed") -> dict:
  """NDM's Monte Carlo identification F1 (Tables 2-3) on the test split.

  Given ``u_0`` of each test cascade (cut to ``max_len``), ``runs`` simulations each infect at most
  ``|G|`` users (``first_k=5``: at most five, with ``G`` the next five users: the early stage).

  Args:
    dataset: the data.
    trained: an NDM (or LSTM) from ``experiment.train``.
    runs: Monte Carlo runs per cascade (paper: 1000).
    first_k: None for Table 2, 5 for Table 3.
    seed: the simulations' seed (folded with 0 for the full and 1 for the early F1, as in
      ``evaluate_protocol``).
    max_rows: runs advanced together (bounds the decoding cache: ``max_rows x h x L x d``).
    progress: a progress bar.
    terminate: ``"allowed"`` or ``"masked"`` while sampling (:data:`PROTOCOLS`).

  Returns:
    ``macro_f1``, ``micro_f1`` (suffixed ``_first5`` for ``first_k=5``), ``scored_cascades``,
    ``seconds``.
  """
  t0 = time.perf_counter()
  max_len = trained.config.data.max_len
  num_items = len(dataset.vocab)
  cut = [c._replace(users=c.users[:max_len], times=c.times[:max_len])
         for c in dataset.test if len(c.users) >= 2]
  budgets = [len(c.users) - 1 if first_k is None else min(first_k, len(c.users) - 1) for c in cut]
  key = jax.random.fold_in(jax.random.key(seed), 0 if first_k is None else 1)
  freq, _ = simulate_dataset(trained.model, trained.variables, cut, num_given=1, budgets=budgets,
                             num_runs=runs, key=key, num_items=num_items, max_rows=max_rows,
                             progress=progress, desc=f"F1 {dataset.name}", terminate=terminate)
  truth, exclude = truth_masks(cut, num_items, num_given=1, first_k=first_k)
  scores = infection_f1(freq, truth, exclude)
  suffix = "" if first_k is None else f"_first{first_k}"
  return {f"macro_f1{suffix}": float(scores.macro_f1), f"micro_f1{suffix}": float(scores.micro_f1),
          f"scored_cascades{suffix}": int(np.asarray(scores.scored).sum()),
          f"f1_seconds{suffix}": round(time.perf_counter() - t0, 1)}
