"""The functional API: build a model from keyword hyperparameters, get ``params``, call a pure
``apply(params, batch, key=None)`` under ``jax.jit`` / ``jax.vmap`` / ``jax.grad``.

::

  import jax, popdiff_jax.functional as F

  model = F.build("ndm", num_items=100, dim=16, num_heads=2)          # a Model: params + apply
  batch = F.cascade_batch([[5, 9, 2], [7, 3]])                         # typed CascadeBatch
  logits = jax.jit(model.apply)(model.params, batch)                   # float32 [B, L, num_items]
  loss = lambda p: F.next_user_loss(model.apply(p, batch, jax.random.key(0)), batch)
  grads = jax.grad(loss)(model.params)                                 # same pytree as params

Models (``build(name, ...)``; keyword hyperparameters are the module's own, defaults the paper's):

=================  =========================================  ==========================================
name               batch                                      ``apply`` returns
=================  =========================================  ==========================================
``ndm``            :class:`CascadeBatch` (``cascade_batch``)  float32 [B, L, num_items] next-user logits
``lstm``           :class:`CascadeBatch`                      float32 [B, L, num_items]
``diffusion_lstm`` :class:`TreeBatch` (``tree_batch``)        float32 [N, num_protos + 1] node logits
``dual_attention`` dict: tokens, token_mask, image,           dict: logit, prob [B], attention [B, T],
                   env_image, env_topic                       aux_logits [B, 3]
``fusion_dnn``     dict: image, text, numeric                 float32 [B] (standardised popularity)
``smp_conv1d``     dict: features                             float32 [B]
=================  =========================================  ==========================================

``key`` is the dropout key: ``None`` is evaluation mode (no dropout), a ``jax.random.key`` is
training mode. ``fusion_dnn`` has BatchNorm: its running statistics are ``Model.state``, read by
``apply`` in evaluation mode; ``apply_train(params, state, batch) -> (pred, new_state)`` is its
training-mode call. Everything here is a thin layer over the modules in ``popdiff_jax.models``
(``nnx.split`` once at build time, ``nnx.merge`` inside ``apply``), so ``apply`` is a pure function
of arrays: jit it, vmap it over stacked params, differentiate it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from popdiff_jax._errors import DataError
from popdiff_jax.data.batching import CascadeBatch, bucket_lengths, pack, sequence_length
from popdiff_jax.data.cascades import Cascade
from popdiff_jax.data.trees import (TreeExample, make_tree_batch, num_chunks_needed,
                                    tree_from_parents)
from popdiff_jax.types import TreeBatch

__all__ = ["Model", "build", "MODEL_NAMES", "cascade_batch", "tree_batch", "next_user_loss"]

MODEL_NAMES = ("ndm", "lstm", "diffusion_lstm", "dual_attention", "fusion_dnn", "smp_conv1d")


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as data plus pure functions.

  Attributes:
    name: one of ``MODEL_NAMES``.
    params: the trainable parameters (a pytree of arrays; ``nnx.State``).
    state: non-trainable variables (BatchNorm statistics of ``fusion_dnn``; empty otherwise).
    apply: ``apply(params, batch, key=None)`` -> outputs (see the module docstring).
    apply_train: ``fusion_dnn`` only: ``(params, state, batch) -> (pred, new_state)``; else None.
    hparams: the keyword hyperparameters it was built with.
  """

  name: str
  params: Any
  state: Any
  apply: Callable
  apply_train: Callable | None
  hparams: dict


def _module(name: str, seed: int, hp: dict) -> nnx.Module:
  from popdiff_jax.models.diffusion_lstm import DiffusionLSTM
  from popdiff_jax.models.dual_attention import DualAttention
  from popdiff_jax.models.fusion_dnn import FusionDNN
  from popdiff_jax.models.lstm import LSTMNextUser
  from popdiff_jax.models.ndm import NDM
  from popdiff_jax.models.smp import SMPConv1d

  classes = {"ndm": (NDM, ("num_items",)), "lstm": (LSTMNextUser, ("num_items",)),
             "diffusion_lstm": (DiffusionLSTM, ("input_dim", "content_dim", "num_protos")),
             "dual_attention": (DualAttention, ("vocab_size", "image_dim", "topic_dim")),
             "fusion_dnn": (FusionDNN, ("image_dim", "text_dim", "numeric_dim")),
             "smp_conv1d": (SMPConv1d, ("num_features",))}
  if name not in classes:
    raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
  cls, positional = classes[name]
  missing = [p for p in positional if p not in hp]
  if missing:
    raise TypeError(f"build({name!r}) needs the keyword argument(s) {missing}")
  args = [hp.pop(p) for p in positional]
  if name == "diffusion_lstm":
    from popdiff_jax.models.diffusion_lstm import DiffusionLSTMConfig
    return cls(DiffusionLSTMConfig(**dict(zip(positional, args)), **hp), rngs=nnx.Rngs(seed))
  return cls(*args, **hp, rngs=nnx.Rngs(params=seed) if name in ("ndm", "lstm") else nnx.Rngs(seed))


def build(name: str, *, seed: int = 0, **hparams) -> Model:
  """Builds a model from keyword hyperparameters and splits it into params and pure functions.

  Args:
    name: one of ``MODEL_NAMES``.
    seed: parameter initialisation seed.
    **hparams: the module's constructor arguments as keywords, e.g. ``num_items``, ``dim``,
      ``num_heads``, ``window``, ``f_init``, ``dropout_rate`` for ``ndm``
      (:class:`popdiff_jax.models.ndm.NDM`); ``input_dim``, ``content_dim``, ``num_protos``,
      ``hidden``, ``variant`` for ``diffusion_lstm``; ``vocab_size``, ``image_dim``,
      ``topic_dim``, ``variant`` for ``dual_attention``; ``image_dim``, ``text_dim``,
      ``numeric_dim``, ``hidden`` for ``fusion_dnn``; ``num_features`` for ``smp_conv1d``.

  Returns:
    A :class:`Model`.
  """
  hp = dict(hparams)
  module = _module(name, seed, dict(hp))
  graphdef, params, state = nnx.split(module, nnx.Param, ...)

  def merged(p, s):
    return nnx.merge(graphdef, p, s, copy=True)

  apply_train = None
  if name in ("ndm", "lstm"):
    def apply(params, batch: CascadeBatch, key=None, *, state=state):
      return merged(params, state)(jnp.asarray(batch.users), jnp.asarray(batch.mask), key)
  elif name == "diffusion_lstm":
    def apply(params, batch: TreeBatch, key=None, *, state=state):
      return merged(params, state)(jax.tree.map(jnp.asarray, batch), key=key)
  elif name == "dual_attention":
    def apply(params, batch: dict, key=None, *, state=state):
      del key  # no dropout in the paper's model
      return merged(params, state)(batch["tokens"], batch["token_mask"], batch["image"],
                                   batch["env_image"], batch["env_topic"])
  elif name == "fusion_dnn":
    def apply(params, batch: dict, key=None, *, state=state):
      del key  # no dropout; BatchNorm uses the running statistics in ``state``
      return merged(params, state)(batch["image"], batch["text"], batch["numeric"], train=False)

    def apply_train(params, state, batch: dict):
      model = merged(params, state)
      pred = model(batch["image"], batch["text"], batch["numeric"], train=True)
      return pred, nnx.split(model, nnx.Param, ...)[2]
  else:  # smp_conv1d
    def apply(params, batch: dict, key=None, *, state=state):
      return merged(params, state)(batch["features"], key=key)
  return Model(name=name, params=params, state=state, apply=apply, apply_train=apply_train,
               hparams={"seed": seed, **hp})


def cascade_batch(cascades: Sequence[Sequence[int] | tuple[Sequence[int], Sequence[float]]], *,
                  max_len: int | None = None, rows: int | None = None) -> CascadeBatch:
  """A :class:`CascadeBatch` from plain Python lists.

  Args:
    cascades: one list of user indices per cascade, in infection order (indices >= 2: 0 is
      padding and 1 is Terminate, as in every vocabulary of the library), or ``(users, times)``
      pairs. Terminate is appended to each cascade that is not cut.
    max_len: cut cascades to this many users (default: the longest; a cut one gets no Terminate).
    rows: batch rows B (default: the number of cascades; more rows are padding).

  Returns:
    ``CascadeBatch`` with ``users`` int32 [B, L], ``times`` float32 [B, L], ``mask`` bool [B, L];
    L is the smallest static bucket length (``bucket_lengths``) that holds the longest cascade.

  Raises:
    DataError: an empty cascade, a user index < 2, non-integer users, or times of another length.
  """
  parsed = []
  for i, c in enumerate(cascades):
    users, times = (c if isinstance(c, tuple) and len(c) == 2 else (c, None))
    try:
      u = np.asarray(users, np.int64)
    except (TypeError, ValueError, OverflowError):
      raise DataError(f"cascade {i}: users must be integers, got {users!r}"[:200]) from None
    if u.ndim != 1 or u.size == 0:
      raise DataError(f"cascade {i} is empty or not a flat list")
    if (u < 2).any() or (u >= 2**31).any():
      raise DataError(f"cascade {i}: user indices must be in [2, 2^31) (0 = padding, 1 = "
                      f"Terminate), got {int(u.min()) if (u < 2).any() else int(u.max())}")
    t = np.arange(u.size, dtype=np.float64) if times is None else np.asarray(times, np.float64)
    if t.shape != u.shape or not np.isfinite(t).all():
      raise DataError(f"cascade {i}: {t.size} times for {u.size} users, or a non-finite time")
    parsed.append(Cascade(users=u.astype(np.int32), times=t))
  if not parsed:
    raise DataError("no cascades")
  max_len = max(len(c.users) for c in parsed) if max_len is None else max_len
  need = max(sequence_length(c, max_len) for c in parsed)
  length = next(b for b in bucket_lengths(max_len) if b >= need)
  return pack(parsed, length, len(parsed) if rows is None else rows, max_len)


def tree_batch(parents: Sequence[Sequence[int]], *, node_features: Sequence[Any] | None = None,
               content: Sequence[Any] | None = None, protos: Sequence[Sequence[int]] | None = None,
               num_protos: int = 1, chunk: int | None = None) -> TreeBatch:
  """A level-wise :class:`TreeBatch` from plain parent arrays.

  Args:
    parents: one parent array per tree (``-1`` for the root, else a node index), any node order.
    node_features: per tree, float [n, D] node inputs (default: ones, D = 1).
    content: per tree, float [F] content feature (default: ones, F = 1).
    protos: per tree, int [n] prototype ids in [0, num_protos) (default: zeros).
    num_protos: k; targets get k + 1 columns (the last is terminal).
    chunk: chunk width C (default: the widest level, i.e. one scan step per depth).

  Returns:
    The ``TreeBatch`` (nodes in breadth-first order, so features are reordered with the nodes).

  Raises:
    DataError: a malformed parent array (no or several roots, a missing parent, a cycle).
  """
  examples = []
  for i, par in enumerate(parents):
    try:
      par = [int(p) for p in par]
    except (TypeError, ValueError):
      raise DataError(f"tree {i}: parent indices must be integers") from None
    for j, p in enumerate(par):
      if not -1 <= p < len(par):
        raise DataError(f"tree {i}: node {j} has parent {p}, which is missing")
    tree = tree_from_parents(par, name=str(i))
    order = tree.user.astype(np.int64)  # user ids default to the original node indices
    n = tree.size
    x = (np.ones((n, 1), np.float32) if node_features is None
         else np.asarray(node_features[i], np.float32)[order])
    if x.shape[0] != n:
      raise DataError(f"tree {i}: {x.shape[0]} feature rows for {n} nodes")
    pr = np.zeros(n, np.int32) if protos is None else np.asarray(protos[i], np.int32)[order]
    if pr.shape != (n,) or (pr < 0).any() or (pr >= num_protos).any():
      raise DataError(f"tree {i}: prototypes must be {n} ids in [0, {num_protos})")
    cont = np.ones(1, np.float32) if content is None else np.asarray(content[i], np.float32)
    examples.append(TreeExample(name=str(i), parent=tree.parent, depth=tree.depth, x=x,
                                proto=pr, content=cont))
  if not examples:
    raise DataError("no trees")
  if chunk is None:
    chunk = max(int(np.bincount(e.depth).max()) for e in examples)
  k = num_chunks_needed([e.depth for e in examples], chunk)
  return make_tree_batch(examples, num_protos=num_protos, chunk=chunk, num_chunks=k,
                         batch_trees=len(examples))


def next_user_loss(logits: jax.Array, batch: CascadeBatch) -> jax.Array:
  """Mean next-user NLL (NDM Eq. 8) of ``apply``'s logits on ``batch``: a scalar, for ``jax.grad``."""
  from popdiff_jax.models.next_user import next_user_nll

  total, count = next_user_nll(logits, jnp.asarray(batch.users), jnp.asarray(batch.mask))
  return total / jnp.maximum(count, 1.0)

