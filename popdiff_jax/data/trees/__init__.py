"""Propagation trees: the container, its readers, level-wise batches, features, a generator.

One module per job:

* ``tree``: :class:`Tree` (host NumPy, breadth-first order, node 0 the root, ``parent[i] < i``),
  :func:`tree_from_parents`, :func:`tree_from_edges` and the cleaning rule with its
  :class:`CleaningReport`.
* ``formats``: :func:`load_trees` (any trees by path and format, with labels; ``TREE_FORMATS``,
  :func:`detect_tree_format`), the presets :data:`TREE_DATASETS` and :func:`load_tree_dataset`,
  the result :class:`TreeSet`.
* ``twitter15``: :func:`read_twitter15` (straight from ``twitter15_tree.tar.gz``, or its extracted
  ``tree/`` folder), :func:`read_twitter15_labels`.
* ``weibo``: :func:`read_weibo` (the CasFlow / DeepHawkes path format).
* ``parent_arrays``: :func:`read_parent_arrays`, :func:`write_parent_arrays`
  (``name<TAB>p_0 p_1 ...[<TAB>users[<TAB>delays]]``, strict).
* ``tree_csv``: :func:`read_tree_csv`, :func:`write_tree_csv` (the plain CSV, header
  ``tree,parent,child,time``, strict) and :func:`read_label_csv` (``tree,label``).
* ``batching``: :class:`TreeExample`, :func:`node_targets`, :func:`num_chunks_needed`,
  :func:`make_tree_batch`, :func:`bucket_tree_batches`: trees laid out level by level into a
  :class:`popdiff_jax.types.TreeBatch`.
* ``stats``: :func:`tree_stats`, :func:`truncate_tree`.
* ``user_features``: Twitter15's behavioural user features and root content features.
* ``synthetic``: a Pinterest-like tree generator whose ground truth needs memory.

Every reader raises :class:`~popdiff_jax.DataError` naming the file and line of bad input.
The names below are re-exported here; ``user_features`` and ``synthetic`` are reached as
submodules.
"""

from popdiff_jax.data.trees.batching import (TreeExample, bucket_tree_batches, make_tree_batch, tree_batch,
                                             node_targets, num_chunks_needed)
from popdiff_jax.data.trees.formats import (TREE_DATASETS, TREE_FORMATS, TreeFormat, TreeSet,
                                            detect_tree_format, load_tree_dataset, load_trees,
                                            read_labels, tree_dataset_path)
from popdiff_jax.data.trees.parent_arrays import read_parent_arrays, write_parent_arrays
from popdiff_jax.data.trees.stats import tree_stats, truncate_tree
from popdiff_jax.data.trees.tree import CleaningReport, Tree, tree_from_edges, tree_from_parents
from popdiff_jax.data.trees.tree_csv import read_label_csv, read_tree_csv, write_tree_csv
from popdiff_jax.data.trees.twitter15 import read_twitter15, read_twitter15_labels
from popdiff_jax.data.trees.weibo import read_weibo

__all__ = ["Tree", "CleaningReport", "tree_from_parents", "tree_from_edges",
           "TreeFormat", "TREE_FORMATS", "TREE_DATASETS", "TreeSet", "detect_tree_format",
           "load_trees", "load_tree_dataset", "tree_dataset_path", "read_labels",
           "read_twitter15", "read_twitter15_labels", "read_weibo", "read_parent_arrays",
           "write_parent_arrays", "read_tree_csv", "write_tree_csv", "read_label_csv",
           "TreeExample", "node_targets", "num_chunks_needed", "make_tree_batch", "tree_batch",
           "bucket_tree_batches", "tree_stats", "truncate_tree"]
