"""``popdiff reproduce ndm``: NDM, LSTM and popularity on the NDM paper's data, in one call."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.experiments import next_user

EMBEDDED_NDM_DATASETS = ("ndm/irvine", "ndm/memetracker", "ndm/lastfm")
NEXT_USER_COLUMNS = ("dataset", "model", "hits@10", "hits@50", "hits@100", "map@10", "map@50",
                     "map@100", "epochs", "stopped_by", "train_seconds")


def reproduce_next_user(datasets: Sequence[str] = EMBEDDED_NDM_DATASETS,
                        models: Sequence[str] = next_user.MODELS, *,
                        workdir: str | pathlib.Path = "runs", data_dir: str | None = None,
                        split: str = "files", progress: bool = True,
                        **overrides) -> list[dict]:
  """Trains and tests every model on every dataset; returns one results row per pair.

  Args:
    datasets: registry names (``popdiff_jax.data.cascades.DATASETS``).
    models: ``ndm``, ``lstm``, ``popularity``.
    workdir: root folder; each run resumes from ``workdir/<dataset>/<model>``.
    data_dir: where non-embedded datasets are.
    split: ``files``, ``random`` or ``time`` (see ``load_dataset``).
    progress: progress bars.
    **overrides: ``NextUserConfig`` fields (e.g. ``num_epochs=2`` for a quick run).
  """
  rows = []
  for name in datasets:
    data = load_dataset(name, data_dir, split=split)
    for model in models:
      config = dataclasses.replace(next_user.NextUserConfig(model=model), **overrides)
      run_dir = pathlib.Path(workdir) / name.replace("/", "_") / model
      rows.append(next_user.run(data, config, run_dir, progress=progress))
  return rows
