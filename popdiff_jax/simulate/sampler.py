"""Monte Carlo continuations of cascades from a trained next-user model (NDM Sec. 5.3, 5.5).

Given cascade prefixes, draws ``S`` continuations per prefix in one jitted computation: all
``C x S`` runs advance together, one infected user per step (``lax.scan`` over steps), each run
stopping at its own budget of new users or when it samples Terminate; users already infected are
masked at every step. Models decode incrementally through three methods (``NDM`` and
``LSTMNextUser`` have them; ``Model.bind`` gives the module inside the jitted loop): ``decode_init(users, mask, max_len) -> cache``,
``decode_logits(cache) -> [N, U]`` and ``decode_step(cache, user) -> cache``, so a step costs one
attention row and one projection, not a forward pass over the whole prefix.

Host-side, ``simulate_dataset`` groups cascades by the number of steps they need (power-of-two
buckets, so one compile per bucket) and by how many runs fit in memory at once.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from popdiff_jax.data.cascades import Cascade
from popdiff_jax.models.registry import Model, Variables
from popdiff_jax.types import PAD, TERMINATE

__all__ = ["Simulation", "simulate", "simulate_dataset", "TERMINATE_CHOICES"]


class Simulation(NamedTuple):
  """Monte Carlo runs of a batch of prefixes.

  Attributes:
    infected_counts: float32 [C, U]: in how many of the ``S`` runs each user was infected after the
      prefix (prefix users, padding and Terminate count 0).
    new_users: int32 [C, S]: users each run infected after the prefix.
    sequences: int32 [C, S, T] the sampled users step by step (PAD once a run has stopped; a run
      that stopped by Terminate shows it), or None unless asked for.
  """

  infected_counts: jax.Array
  new_users: jax.Array
  sequences: jax.Array | None


TERMINATE_CHOICES = ("allowed", "masked")


@functools.partial(jax.jit, static_argnames=("model", "num_runs", "num_steps",
                                              "return_sequences", "terminate"))
def simulate(model: Model, variables: Variables, prefix_users: jax.Array,
             prefix_mask: jax.Array, budgets: jax.Array, key: jax.Array, *, num_runs: int,
             num_steps: int, return_sequences: bool = False,
             terminate: str = "allowed") -> Simulation:
  """Samples ``num_runs`` continuations of each prefix.

  Args:
    model, variables: a next-user model with ``decode_*`` methods (``models.init``) and its
      variables.
    prefix_users: int32 [C, P] left-aligned prefixes, each with at least one user.
    prefix_mask: bool [C, P].
    budgets: int32 [C] how many new users a run may infect before it stops (``0`` stops at once).
    key: PRNG key; the same key gives the same runs.
    num_runs: S.
    num_steps: T, the most steps any run takes (``>= max(budgets)`` to honour every budget).
    return_sequences: also return the sampled sequences (for tests and inspection).
    terminate: ``"allowed"`` (a run may sample Terminate and stop before its budget: the
      model's own distribution) or ``"masked"`` (Terminate is never sampled, so every run spends
      its budget; the authors' evaluation, whose training gives the end token zero weight).

  Returns:
    A ``Simulation``.
  """
  module = model.bind(variables.params, variables.state)
  c, p = prefix_users.shape
  n = c * num_runs
  users = jnp.repeat(prefix_users, num_runs, axis=0)  # row r belongs to cascade r // S
  mask = jnp.repeat(prefix_mask, num_runs, axis=0)
  budget = jnp.repeat(budgets, num_runs, axis=0)
  cache = module.decode_init(users, mask, p + num_steps)
  num_items = model.config.num_items
  rows = jnp.arange(n)
  prefix = jnp.zeros((n, num_items), bool).at[rows[:, None], jnp.where(mask, users, PAD)].set(True)
  blocked0 = prefix.at[:, PAD].set(True)
  if terminate == "masked":
    blocked0 = blocked0.at[:, TERMINATE].set(True)
  elif terminate != "allowed":
    raise ValueError(f"terminate must be one of {TERMINATE_CHOICES}, got {terminate!r}")

  def step(carry):
    t, cache, blocked, count, done, seq = carry
    logits = module.decode_logits(cache)
    logits = jnp.where(blocked, -jnp.inf, logits)
    user = jax.random.categorical(jax.random.fold_in(key, t), logits, axis=-1).astype(jnp.int32)
    user = jnp.where(done, PAD, user)
    infects = (user != PAD) & (user != TERMINATE)
    blocked = blocked.at[rows, user].set(blocked[rows, user] | infects)
    count = count + infects.astype(jnp.int32)
    done = done | (user == TERMINATE) | (count >= budget)
    cache = module.decode_step(cache, jnp.where(user == PAD, TERMINATE, user))
    if return_sequences:
      seq = jax.lax.dynamic_update_index_in_dim(seq, user, t, axis=0)
    return t + 1, cache, blocked, count, done, seq

  # Stop as soon as every run has stopped: most cascades end long before the longest budget.
  def not_finished(carry):
    t, *_, done, _ = carry
    return (t < num_steps) & ~jnp.all(done)

  seq0 = jnp.full((num_steps if return_sequences else 0, n), PAD, jnp.int32)
  init = (jnp.int32(0), cache, blocked0, jnp.zeros(n, jnp.int32), budget <= 0, seq0)
  _, _, blocked, count, _, seq = jax.lax.while_loop(not_finished, step, init)
  infected = blocked & ~blocked0
  infected = infected.at[:, TERMINATE].set(False)
  counts = infected.reshape(c, num_runs, num_items).sum(1).astype(jnp.float32)
  seqs = jnp.swapaxes(seq, 0, 1).reshape(c, num_runs, num_steps) if return_sequences else None
  return Simulation(counts, count.reshape(c, num_runs), seqs)


def _bucket(n: int, base: int) -> int:
  """The smallest power of ``base`` that is >= n (``base`` 4 for steps: few compiles; 2 for rows)."""
  b = 1
  while b < n:
    b *= base
  return b


def _cache_floats_per_position(model: Model) -> int:
  """Floats the model's decoding cache keeps per run and position (NDM: keys and values of every
  head, ``2 h d``; 0 for models whose cache does not grow with the sequence, such as the LSTM)."""
  heads = getattr(model.config, "num_heads", None)
  dim = getattr(model.config, "dim", None)
  return 2 * heads * dim if heads and dim else 0


def simulate_dataset(model: Model, variables: Variables, cascades: Sequence[Cascade], *,
                     num_given: int, budgets: Sequence[int], num_runs: int, key: jax.Array,
                     max_rows: int = 2 ** 15, max_elements: int = 2 ** 26,
                     max_cache_elements: int = 2 ** 29, num_items: int,
                     progress: bool = True, desc: str = "simulate",
                     terminate: str = "allowed") -> tuple[np.ndarray, np.ndarray]:
  """Runs ``simulate`` over many cascades, bucketed by steps and chunked to fit memory.

  Args:
    model, variables: the model and its variables.
    cascades: the test cascades; the first ``num_given`` users of each are the prefix.
    num_given: prefix length.
    budgets: new users allowed per cascade.
    num_runs: Monte Carlo runs per cascade.
    key: PRNG key; cascade ``i`` uses ``fold_in(key, i)``-derived draws through its chunk.
    max_rows: most runs (cascades x runs) advanced together.
    max_elements: most entries of the ``[runs, U]`` score matrix at once.
    max_cache_elements: most entries of the decoding cache at once (NDM keeps keys and values of
      ``h`` heads for every position: ``runs x (prefix + steps) x 2 h d`` floats; 2^29 floats are
      2 GiB). A chunk holds at least one cascade's ``num_runs`` runs whatever the bounds.
    num_items: U.
    progress: a progress bar over chunks.
    desc: its label.
    terminate: ``"allowed"`` or ``"masked"`` (see :func:`simulate`).

  Returns:
    ``(frequencies float32 [C, U], mean_new_users float32 [C])``: P_u (fraction of runs infecting
    each user after the prefix) and the mean number of new users per run.
  """
  c = len(cascades)
  freq = np.zeros((c, num_items), np.float32)
  mean_new = np.zeros(c, np.float32)
  budgets = np.asarray(budgets, np.int64)
  steps = np.array([_bucket(max(int(b), 1), 4) for b in budgets])
  width = _cache_floats_per_position(model)
  chunks = []
  for s in sorted(set(steps.tolist())):
    idx = np.flatnonzero(steps == s)
    rows_cap = min(max_rows, max_elements // num_items,
                   max_cache_elements // max(1, (num_given + s) * width))
    per_chunk = max(1, rows_cap // num_runs)
    chunks += [(s, per_chunk, idx[i:i + per_chunk]) for i in range(0, len(idx), per_chunk)]
  for chunk_id, (s, per_chunk, idx) in enumerate(tqdm(chunks, desc=desc, disable=not progress,
                                                      leave=False)):
    # Pad the chunk to a power of two of cascades: few shapes to compile, little padded work.
    rows = min(per_chunk, _bucket(len(idx), 2))
    users = np.zeros((rows, num_given), np.int32)
    mask = np.zeros((rows, num_given), bool)
    bud = np.zeros(rows, np.int32)
    for r, i in enumerate(idx):
      prefix = cascades[i].users[:num_given]
      users[r, :len(prefix)] = prefix
      mask[r, :len(prefix)] = True
      bud[r] = budgets[i]
    mask[len(idx):, 0] = True  # padding cascades: a dummy one-user prefix with budget 0
    users[len(idx):, 0] = TERMINATE
    out = simulate(model, variables, jnp.asarray(users), jnp.asarray(mask), jnp.asarray(bud),
                   jax.random.fold_in(key, chunk_id), num_runs=num_runs, num_steps=int(s),
                   terminate=terminate)
    counts, new = jax.device_get((out.infected_counts, out.new_users))
    freq[idx] = counts[:len(idx)] / num_runs
    mean_new[idx] = new[:len(idx)].mean(1)
  return freq, mean_new
