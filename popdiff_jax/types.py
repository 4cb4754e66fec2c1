"""The batch types of the library: every model, loss, step and metric takes one of these.

Each batch is a ``NamedTuple`` of arrays (a pytree: it goes through ``jax.jit``, ``jax.vmap`` and
``jax.tree.map`` as it is), built on the host with NumPy by ``popdiff_jax.data`` and padded to a
few static shapes with masks, like jraph's ``GraphsTuple``:

* :class:`CascadeBatch`: cascades of infected users (NDM, the LSTM baseline, Embedded IC, NetRate,
  the NDM sampler). Built by ``popdiff_jax.data.batching.make_batches``.
* :class:`TreeBatch`: re-share trees laid out level by level (Diffusion-LSTM). Built by
  ``popdiff_jax.data.trees.bucket_tree_batches``.
* :class:`PostBatch`: social-media posts with their features (dual attention, fusion DNN, SMP).
  Built by ``popdiff_jax.data.posts.iterate_batches``.

Padding never needs special cases downstream: padded rows and positions hold zeros and are
``False`` in the masks, and every loss and metric divides by ``max(sum(mask), 1)``. The
``check_*`` functions assert the shapes and dtypes with chex (they run on the host or under
``jax.jit`` at trace time).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax.numpy as jnp
import numpy as np

__all__ = ["PAD", "TERMINATE", "NUM_SPECIAL", "CascadeBatch", "TreeBatch", "PostBatch",
           "check_cascade_batch", "check_tree_batch", "check_post_batch"]

#: Vocabulary index of padding (every user vocabulary of the library).
PAD = 0
#: Vocabulary index of the virtual *Terminate* user, the target after a cascade's last user.
TERMINATE = 1
#: Number of reserved vocabulary indices; real users start here.
NUM_SPECIAL = 2


class CascadeBatch(NamedTuple):
  """A padded batch of ``B`` cascades of at most ``L`` tokens: the input of next-user models.

  Position ``j`` holds the ``j``-th infected user of a cascade. A cascade that ended within the
  length limit is followed by the Terminate user (index 1), so a model learns when a cascade
  stops; a cascade cut at the limit has no Terminate. ``L`` is one of a few bucket lengths
  (``data.batching.bucket_lengths``); batches are grouped by bucket so each shape compiles once.

  Padding: padded positions and whole padding rows (added so that every batch has ``B`` rows,
  e.g. the last batch of an evaluation or rows that make ``B`` divide by the device count) hold
  user ``PAD`` (0), time 0 and ``mask == False``. ``mask`` is a prefix of each row.

  Attributes:
    users: int32 [B, L] vocabulary indices (``PAD`` = 0, ``TERMINATE`` = 1, users >= 2).
    times: float32 [B, L] time since the cascade's first infection, in the data's unit
      (Terminate repeats the last time; 0 at padding).
    mask: bool [B, L] True at real users and at Terminate.
  """

  users: np.ndarray
  times: np.ndarray
  mask: np.ndarray

  @property
  def num_cascades(self) -> int:
    """The number of real (non-padding) rows."""
    return int(np.asarray(self.mask)[:, 0].sum())


class TreeBatch(NamedTuple):
  """A level-wise batch of ``B`` tree slots and ``N = K * C`` node slots: the Diffusion-LSTM input.

  Node slots are ordered depth by depth; each depth is padded to a multiple of the chunk width
  ``C``, so chunk ``k`` (slots ``k*C .. k*C+C-1``) holds nodes of a single depth whose parents lie
  in earlier chunks, and one step of the tree LSTM computes one chunk. Model states live in a
  buffer of ``B + N`` rows: rows ``0..B-1`` are the virtual parents of the roots (h = 0,
  c = content embedding), row ``B + j`` is node slot ``j``. ``K`` is one of a few bucket sizes.

  Padding: padding node slots point at row 0, belong to tree 0, have depth 0, prototype 0, zero
  features and targets and ``node_mask == False``; padding tree slots have zero content and
  ``tree_mask == False``.

  The slots of the nodes that have children (the *parents*) are listed again in ``S`` chunks of
  ``W``, the sequential steps of ``nn.tree_lstm.tree_lstm_by_parents``: each listed parent's own
  parent is a virtual root or listed in an earlier chunk; unused entries hold ``N``. ``S`` is
  one of a few bucket sizes as well.

  Attributes:
    x: float32 [N, D] node inputs (the node user's social feature).
    parent: int32 [N] row of the parent's state in the ``(B + N)``-row state buffer.
    tree: int32 [N] tree slot of each node, in ``[0, B)``.
    depth: int32 [N] depth of each node (0 for roots and padding).
    proto: int32 [N] prototype of each node's user, in ``[0, k)`` (0 for padding).
    targets: float32 [N, k + 1] multi-hot prototypes of the node's children, and in the last
      column whether the node is a leaf (``data.trees.node_targets``).
    node_mask: bool [N] True for real nodes.
    content: float32 [B, F] content feature of each tree (the paper's image feature).
    tree_mask: bool [B] True for real trees.
    chunk_depth: int32 [K] depth of each chunk (``C = N // K``).
    parent_chunks: int32 [S, W] node slots of the parents, chunk by chunk (``N``: unused).
  """

  x: np.ndarray
  parent: np.ndarray
  tree: np.ndarray
  depth: np.ndarray
  proto: np.ndarray
  targets: np.ndarray
  node_mask: np.ndarray
  content: np.ndarray
  tree_mask: np.ndarray
  chunk_depth: np.ndarray
  parent_chunks: np.ndarray

  @property
  def num_chunks(self) -> int:
    """``K``, the number of chunks (steps of the level-wise tree LSTM)."""
    return int(np.shape(self.chunk_depth)[0])


class PostBatch(NamedTuple):
  """A batch of ``B`` posts with the features of the three popularity models.

  A model reads only its own fields; the fields it does not read have width 0 (e.g. ``tokens``
  is ``[B, 0]`` for the fusion DNN), so one type serves every popularity model.

  Padding: the last evaluation batch is filled up to ``B`` rows with copies of a real row whose
  ``mask`` is False; losses and metrics are masked means over ``mask``.

  Attributes:
    tokens: int32 [B, T] caption word indices (0 = padding), dual attention.
    token_mask: bool [B, T] real words.
    image: float32 [B, Di] image feature (dual attention: visual embedding; fusion DNN: deep
      image feature).
    text: float32 [B, Dt] deep text feature (fusion DNN).
    numeric: float32 [B, Dn] numerical features (fusion DNN).
    features: float32 [B, F] tabular features (SMP's CON-SOC features).
    env_image: float32 [B, Di] the user's environment image feature (dual attention).
    env_topic: float32 [B, K] the user's environment topic feature (dual attention).
    label: float32 [B] classification label in {0, 1} (dual attention).
    target: float32 [B] standardised regression target (fusion DNN, SMP).
    mask: bool [B] True for real posts.
  """

  tokens: np.ndarray
  token_mask: np.ndarray
  image: np.ndarray
  text: np.ndarray
  numeric: np.ndarray
  features: np.ndarray
  env_image: np.ndarray
  env_topic: np.ndarray
  label: np.ndarray
  target: np.ndarray
  mask: np.ndarray


def _dtype_kind(x, kind: str, name: str) -> None:
  dtype = jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
  ok = {"int": jnp.issubdtype(dtype, jnp.integer), "float": jnp.issubdtype(dtype, jnp.floating),
        "bool": dtype == jnp.bool_}[kind]
  if not ok:
    raise AssertionError(f"{name} must be {kind}, got {dtype}")


def check_cascade_batch(batch: CascadeBatch) -> None:
  """Asserts the shapes and dtypes of a :class:`CascadeBatch` (``[B, L]`` int, float, bool)."""
  chex.assert_rank(batch.users, 2)
  chex.assert_equal_shape([batch.users, batch.times, batch.mask])
  _dtype_kind(batch.users, "int", "users")
  _dtype_kind(batch.times, "float", "times")
  _dtype_kind(batch.mask, "bool", "mask")


def check_tree_batch(batch: TreeBatch) -> None:
  """Asserts the shapes and dtypes of a :class:`TreeBatch` (see its docstring)."""
  n = np.shape(batch.x)[0]
  b = np.shape(batch.content)[0]
  chex.assert_rank([batch.x, batch.targets, batch.content], 2)
  chex.assert_shape([batch.parent, batch.tree, batch.depth, batch.proto, batch.node_mask], (n,))
  chex.assert_shape(batch.tree_mask, (b,))
  chex.assert_rank(batch.chunk_depth, 1)
  chex.assert_rank(batch.parent_chunks, 2)
  if n % max(batch.num_chunks, 1):
    raise AssertionError(f"N = {n} node slots is not a multiple of K = {batch.num_chunks}")
  for name in ("parent", "tree", "depth", "proto", "chunk_depth", "parent_chunks"):
    _dtype_kind(getattr(batch, name), "int", name)
  for name in ("node_mask", "tree_mask"):
    _dtype_kind(getattr(batch, name), "bool", name)


def check_post_batch(batch: PostBatch) -> None:
  """Asserts that every field of a :class:`PostBatch` has the same leading size ``B``."""
  b = np.shape(batch.mask)[0]
  chex.assert_shape([batch.label, batch.target, batch.mask], (b,))
  chex.assert_rank([batch.tokens, batch.token_mask, batch.image, batch.text, batch.numeric,
                    batch.features, batch.env_image, batch.env_topic], 2)
  for x in batch[:8]:
    if np.shape(x)[0] != b:
      raise AssertionError(f"every PostBatch field needs {b} rows, got shape {np.shape(x)}")
  _dtype_kind(batch.tokens, "int", "tokens")
  _dtype_kind(batch.mask, "bool", "mask")
