"""NDM+SN (Sec. 5.4): DeepWalk embeddings of a dataset's social graph as NDM's fixed block.

The first ``d/2 = 32`` of NDM's 64 embedding dimensions are fixed to DeepWalk vectors of the
social graph (``NDMConfig.frozen_dim``, filled through ``experiment.train(frozen_embedding=)``);
the other 32 are trained. Choices where the paper is silent:

* DeepWalk runs on the *whole* social graph (also users who never appear in a cascade: they
  carry paths between cascade users), undirected; a cascade user absent from the graph (many in
  ``topolstm_twitter``), padding and Terminate get a zero fixed block. With the leak-free split
  (``CascadeDataset.unknown`` set) DeepWalk runs on ``dataset.graph`` instead: the edges
  between users of the training cascades only, so no user or path known only from the
  validation or test cascades shapes a vector; the unknown user gets a zero block.
* The DeepWalk vectors are scaled by one global factor so that their root-mean-square entry over
  the users in the graph is 1, the scale of the trained block's N(0, 1) initialisation; the
  geometry (angles, relative distances) is unchanged.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from popdiff_jax.baselines.deepwalk import DeepWalkConfig, deepwalk
from popdiff_jax.data.cascades import (DATASETS, FORMATS, NUM_SPECIAL, CascadeDataset,
                                       dataset_folder, read_graph)

__all__ = ["SOCIAL_DATASETS", "social_graph", "social_embedding"]

# Datasets with a social graph.
SOCIAL_DATASETS = ("infvae/android", "infvae/christianity", "topolstm_twitter")


def social_graph(name: str, data_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
  """The whole social graph of a dataset, over all its users (not only those in cascades).

  Returns:
    ``(edges int32 [E, 2], names)``: node ``i`` is the user named ``names[i]``.

  Raises:
    ValueError: the dataset has no graph.
  """
  fmt = FORMATS[DATASETS[name].format] if name in DATASETS else None
  if fmt is None or not fmt.graph:
    raise ValueError(f"dataset {name!r} has no social graph")
  pairs = read_graph(dataset_folder(name, data_dir) / fmt.graph, fmt.graph_header)
  index: dict[str, int] = {}
  edges = np.array([[index.setdefault(u, len(index)), index.setdefault(v, len(index))]
                    for u, v in pairs], np.int32).reshape(-1, 2)
  return edges, list(index)


def social_embedding(dataset: CascadeDataset, data_dir: str | None = None,
                     config: DeepWalkConfig = DeepWalkConfig()) -> tuple[np.ndarray, dict]:
  """DeepWalk vectors of the dataset's social graph as a table over its vocabulary.

  Args:
    dataset: a dataset with a graph (``SOCIAL_DATASETS``, whose whole graph is read again, or
      a dataset read by path with a ``graph`` file, whose graph is ``dataset.graph``).
    data_dir: where its files are.
    config: DeepWalk's settings (``dim`` is the size of the fixed block, 32 in the paper).

  Returns:
    ``(table float32 [U, dim], info)``: row ``i`` is vocabulary index ``i``'s vector scaled to unit
    RMS over the users in the graph; zeros for users outside the graph, padding and Terminate.
    ``info`` counts the graph and the vocabulary users it covers, and DeepWalk's loss.
  """
  t0 = time.perf_counter()
  if dataset.graph is not None and (dataset.name not in DATASETS or dataset.unknown is not None):
    # A dataset read by path, or the leak-free split (edges between training users only).
    nodes = np.unique(dataset.graph)
    edges = np.searchsorted(nodes, dataset.graph).astype(np.int32)
    names = [dataset.vocab.user(int(i)) for i in nodes]
  else:
    edges, names = social_graph(dataset.name, data_dir)
  vectors, (loss_first, loss_last) = deepwalk(edges, len(names), config, return_loss=True)
  rows = np.array([dataset.vocab.index(n) if n in dataset.vocab else -1 for n in names])
  inside = rows >= 0
  table = np.zeros((len(dataset.vocab), config.dim), np.float32)
  table[rows[inside]] = vectors[inside]
  covered = table[NUM_SPECIAL:][np.any(table[NUM_SPECIAL:] != 0, axis=1)]
  rms = float(np.sqrt(np.mean(covered ** 2))) if covered.size else 1.0
  table /= max(rms, 1e-12)
  users = len(dataset.vocab) - NUM_SPECIAL
  info = {"graph_nodes": len(names), "graph_edges": int(len(edges)),
          "users_in_graph": int(inside.sum()), "users": users,
          "user_coverage": round(float(inside.sum()) / max(users, 1), 4),
          "deepwalk_loss_first": round(loss_first, 4), "deepwalk_loss_last": round(loss_last, 4),
          "deepwalk_seconds": round(time.perf_counter() - t0, 2),
          "deepwalk": dataclasses.asdict(config)}
  return table, info
