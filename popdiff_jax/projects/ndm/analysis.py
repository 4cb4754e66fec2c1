"""NDM's analyses: parameter sensitivity (Sec. 5.6, Fig. 8) and interpretability (Sec. 5.7,
Table 4).

* Sensitivity: one axis at a time from the paper's Lastfm defaults (h = 8, win = 3, d = 64,
  F_init = 0) over ``SENSITIVITY_GRID``, scored by the Monte Carlo F1 protocol.
* Interpretability: squared Frobenius norms of the learned ``W^C_init, W^C_0, W^C_1, W^C_2``
  (``wc_norms``) of an NDM trained with F_init = 1, beside their values at initialisation
  (``initial_wc_norms``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from popdiff_jax.data.cascades import CascadeDataset
from popdiff_jax.projects.ndm.configs import NextUserConfig
from popdiff_jax.projects.ndm.experiment import build, resolve

__all__ = ["NORM_DATASETS", "SENSITIVITY_DATASET", "SENSITIVITY_BASE", "SENSITIVITY_GRID",
           "PARAM_LABELS", "PAPER_NORMS", "sensitivity_configs", "sensitivity_rows", "wc_norms",
           "initial_wc_norms"]

# The four datasets of Table 4 (Twitter: FOREST's copy, as in protocol.PAPER_TABLES).
NORM_DATASETS = ("ndm/lastfm", "ndm/memetracker", "ndm/irvine", "forest/twitter")

# Sec. 5.6: the paper's base point and the values of Fig. 8, on ndm/lastfm.
SENSITIVITY_DATASET = "ndm/lastfm"
SENSITIVITY_BASE = {"num_heads": 8, "window": 3, "dim": 64, "f_init": 0}
SENSITIVITY_GRID = {"num_heads": (1, 2, 4, 8, 16), "window": (1, 2, 3, 4, 5),
                    "dim": (16, 32, 64, 128), "f_init": (0, 1)}
PARAM_LABELS = {"num_heads": "h", "window": "win", "dim": "d", "f_init": "F_init"}

# Table 4: ||W||_F^2 of the learned projections (F_init = 1 on all four datasets).
PAPER_NORMS = {
    "ndm/lastfm": {"W_init": 32.3, "W_0": 60.0, "W_1": 49.2, "W_2": 49.1},
    "ndm/memetracker": {"W_init": 13.3, "W_0": 16.6, "W_1": 13.3, "W_2": 13.0},
    "ndm/irvine": {"W_init": 13.9, "W_0": 13.9, "W_1": 13.7, "W_2": 13.7},
    "forest/twitter": {"W_init": 130.3, "W_0": 93.6, "W_1": 91.5, "W_2": 91.5},
}


def sensitivity_configs(grid: dict = SENSITIVITY_GRID, base: dict = SENSITIVITY_BASE) -> list[dict]:
  """The distinct NDM settings of the sweep: the base point, then one axis changed at a time.

  Args:
    grid: the values of each axis (default: Fig. 8's).
    base: the point the axes start from (default: the paper's Lastfm settings).
  """
  out = [dict(base)]
  for param, values in grid.items():
    for v in values:
      point = dict(base, **{param: v})
      if point not in out:
        out.append(point)
  return out


def sensitivity_rows(results: list[dict], grid: dict = SENSITIVITY_GRID,
                     base: dict = SENSITIVITY_BASE) -> list[dict]:
  """Fig. 8's rows ``(param, value, ...)`` from results that carry their settings.

  Args:
    results: dicts with the four setting keys (``num_heads``, ``window``, ``dim``, ``f_init``) and
      the scores; the base run serves every axis.
    grid, base: as :func:`sensitivity_configs`.

  Returns:
    One row per (axis, value) found, with ``param`` the paper's symbol and ``value``.
  """
  rows = []
  for param, values in grid.items():
    for v in values:
      point = dict(base, **{param: v})
      for r in results:
        if all(r.get(k) == point[k] for k in point):
          rows.append({"param": PARAM_LABELS[param], "value": v, **r})
          break
  return rows


def wc_norms(params: Any) -> dict[str, float]:
  """Table 4: ``||W||_F^2`` of ``W^C_init`` (if F_init = 1) and of ``W^C_n``, n < win.

  Args:
    params: a trained NDM's parameters (``Trained.variables.params``).

  Returns:
    ``W_init`` (absent without F_init) and ``W_0 .. W_{win-1}``.
  """
  w_c = np.asarray(params["w_c"][...], np.float64)  # [win, d, U]
  out = {f"W_{n}": float(np.sum(w_c[n] ** 2)) for n in range(w_c.shape[0])}
  if "w_c_init" in params:
    out = {"W_init": float(np.sum(np.asarray(params["w_c_init"][...], np.float64) ** 2)), **out}
  return out


def initial_wc_norms(config: NextUserConfig, dataset: CascadeDataset) -> dict[str, float]:
  """``wc_norms`` of a freshly initialised NDM (same seed as ``train``): the baseline of Table 4.

  Glorot initialisation gives ``W^C_n`` (one [win, d, U] array) a variance of ``2 / (win (d + U))``
  and ``W^C_init`` (a [d, U] array) ``2 / (d + U)``, so ``W^C_init`` starts ``win`` times larger
  (the authors' PyTorch Conv1d and Linear defaults differ the same way); compare the learned norms
  with these.
  """
  _, variables = build(resolve(config, dataset), dataset)
  return wc_norms(variables.params)
