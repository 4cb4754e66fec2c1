"""IC-based baselines of NDM's Sec. 5: Embedded IC and NetRate, evaluated through the IC engine.

Both learn pairwise transmission parameters from training cascades and are then evaluated with NDM's
protocol (`evaluate_ic_baseline`): per test cascade, seed u_0, `num_sims` IC runs each stopped once
it has |G^c| + 1 active users (round granularity, see `simulate_ic`'s `max_active`), P^c_u = share of
runs infecting u, then Macro/Micro-F1 (`popdiff_jax.metrics.infection`). `ic_size_msle` does
Sec. 5.5's cascade-size identification: the first five users given, the mean IC spread as the
predicted size, MSLE.

Candidate edges (`candidate_edges`): NDM Sec. 5 "we assume that there exists a link between two users
if they appear in the same cascade"; we keep ordered pairs (u_i -> u_j, i < j) with j - i <= `max_lag`
(default 50, so one long cascade adds O(len x 50) pairs, not O(len^2)), counted over the training
cascades, and keep the `max_pairs` most frequent (default 200k; ties broken by first appearance). The
IC graph of both models is this candidate set.

Embedded IC (Bourigault, Lamprier & Gallinari, WSDM 2016): every user has a sender embedding z_u, a
sender bias z0_u and a receiver embedding w_v; p(u -> v) = sigmoid(-(z0_u + ||z_u - w_v||^2)), i.e.
1 / (1 + exp(z0_u + ||z_u - w_v||^2)) as in the paper. Training maximises the delay-agnostic IC
likelihood of Saito et al. that the paper uses: for cascade D in infection order,
  sum_{j >= 1} log(1 - prod_{i < j} (1 - p(D_i, D_j))) + sum_{v not in D} sum_{i} log(1 - p(D_i, v)).
Deviation: the paper fits it by EM; we maximise the same likelihood by Adam on minibatches of
cascades (the negative term runs over every user, as in the paper). The trained model is simulated on
the candidate edges only.

NetRate (Gomez-Rodriguez, Balduzzi & Schoelkopf, ICML 2011), exponential model: with rates
alpha_uv >= 0 on candidate edges, a cascade with infection times t over a window T has
  log L = sum_{v in D, v != D_0} [log sum_{u: t_u < t_v} alpha_uv - sum_{u: t_u < t_v} alpha_uv (t_v - t_u)]
          - sum_{v not in D} sum_{u in D} alpha_uv (T - t_u),
concave in alpha; we maximise it by projected gradient ascent (optax Adam, then projection onto
alpha >= 0, `optax.projections.projection_non_negative`). Times are shifted to start at 0 per
cascade and divided by the median cascade duration; each cascade's window T is its own duration
(so the median window is 1). For IC simulation a rate becomes p_uv = 1 - exp(-alpha_uv), the chance
that the exponential delay falls within the median window (deviation: NDM simulates "the
corresponding generation process"; our engine is discrete IC, so the timing is dropped).

Cascades longer than `max_len` users are cut to their first `max_len` users for training (documented
truncation; the evaluation uses the full cascades).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popdiff_jax._errors import DataError
from popdiff_jax.metrics.infection import infection_f1, msle, truth_masks
from popdiff_jax.simulate.graph import build_graph
from popdiff_jax.simulate.ic import simulate_ic
from popdiff_jax.types import CascadeBatch


def _users(c):
  return np.asarray(getattr(c, "users", c), np.int64)


def candidate_edges(cascades: Sequence, num_users: int, *, max_lag: int = 50,
                    max_pairs: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
  """Ordered co-occurrence pairs of the training cascades (see the module docstring).

  Returns:
    (edges int32 [E, 2] as (earlier user, later user), counts int32 [E]).
  """
  keys = []
  for c in cascades:
    u = _users(c)
    if u.size and (u.min() < 0 or u.max() >= num_users):
      raise DataError(f"cascade user index outside [0, {num_users})")
    for lag in range(1, min(max_lag, u.size - 1) + 1):
      keys.append(u[:-lag] * num_users + u[lag:])
  if not keys:
    return np.zeros((0, 2), np.int32), np.zeros(0, np.int32)
  keys = np.concatenate(keys)
  uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
  order = np.lexsort((first, -counts))[:max_pairs]
  uniq, counts = uniq[order], counts[order]
  edges = np.stack([uniq // num_users, uniq % num_users], 1).astype(np.int32)
  return edges, counts.astype(np.int32)


def make_batch(cascades: Sequence, max_len: int = 100, time_scale: float | None = None) -> CascadeBatch:
  """Pads cascades (cut to ``max_len`` users; L = the longest kept length) into a ``CascadeBatch``
  for the likelihoods: no Terminate token, times relative to the first user and divided by
  ``time_scale`` (default: the median cascade duration, or 1 when every duration is 0).

  Each cascade's observation window T (NetRate) is its last real time (``window``)."""
  b = len(cascades)
  max_len = max(1, min(max_len, max((len(_users(c)) for c in cascades), default=1)))
  users = np.zeros((b, max_len), np.int32)
  times = np.zeros((b, max_len), np.float64)
  mask = np.zeros((b, max_len), bool)
  for i, c in enumerate(cascades):
    u = _users(c)[:max_len]
    t = np.asarray(getattr(c, "times", np.arange(len(u))), np.float64)[:len(u)]
    users[i, :len(u)] = u
    times[i, :len(u)] = t - t[0] if len(t) else 0.0
    mask[i, :len(u)] = True
  durations = times.max(axis=1)
  if time_scale is None:
    pos = durations[durations > 0]
    time_scale = float(np.median(pos)) if pos.size else 1.0
  times /= time_scale
  return CascadeBatch(jnp.asarray(users), jnp.asarray(times, jnp.float32), jnp.asarray(mask))


def window(batch: CascadeBatch) -> jax.Array:
  """NetRate's observation window T of each cascade: its last (scaled) time, at least 1e-6.

  Returns:
    float32 [B].
  """
  last = jnp.max(jnp.where(batch.mask, batch.times, 0.0), axis=1)
  return jnp.maximum(last, 1e-6)


# ---------------------------------------------------------------- Embedded IC

class EmbICParams(NamedTuple):
  """Embedded IC parameters.

  Attributes:
    sender: float32 [U, d]; z_u.
    bias: float32 [U]; z0_u.
    receiver: float32 [U, d]; w_v.
  """
  sender: jax.Array
  bias: jax.Array
  receiver: jax.Array


def init_embedded_ic(key, num_users: int, dim: int = 32) -> EmbICParams:
  """Embedded IC parameters at initialisation: small random embeddings, sender bias 3 (p ~ 0.05)."""
  k1, k2 = jax.random.split(key)
  return EmbICParams(sender=0.1 * jax.random.normal(k1, (num_users, dim)),
                     bias=jnp.full((num_users,), 3.0),
                     receiver=0.1 * jax.random.normal(k2, (num_users, dim)))


def embedded_ic_logits(params: EmbICParams, senders, receivers=None):
  """Logit of p(u -> v) = -(z0_u + ||z_u - w_v||^2): [..., U] for all receivers, or elementwise."""
  z, b = params.sender[senders], params.bias[senders]
  if receivers is None:
    d2 = (jnp.sum(z * z, -1, keepdims=True) - 2.0 * z @ params.receiver.T
          + jnp.sum(params.receiver ** 2, -1)[None, :].reshape((1,) * (z.ndim - 1) + (-1,)))
    return -(b[..., None] + jnp.maximum(d2, 0.0))
  w = params.receiver[receivers]
  return -(b + jnp.sum((z - w) ** 2, -1))


def embedded_ic_nll(params: EmbICParams, batch: CascadeBatch, reserved: int = 2):
  """Mean negative IC log-likelihood per cascade (module docstring), NaN-safe on padding."""
  logit = embedded_ic_logits(params, batch.users)  # [B, L, U]
  log_fail = -jax.nn.softplus(logit)  # log(1 - p)
  m = batch.mask
  b, l = batch.users.shape
  u_all = log_fail.shape[-1]
  # log prod_{i<j} (1 - p(D_i, D_j)) for every later position j.
  pair = jnp.take_along_axis(log_fail, jnp.broadcast_to(batch.users[:, None, :], (b, l, l)), axis=2)
  earlier = (jnp.arange(l)[:, None] < jnp.arange(l)[None, :])[None] & m[:, :, None] & m[:, None, :]
  fail_before = jnp.sum(jnp.where(earlier, pair, 0.0), axis=1)  # [B, L]
  infected = m & (jnp.arange(l)[None, :] > 0)
  # log(1 - exp(s)) for s < 0, stable; s = 0 (no earlier user can reach) is impossible on infected.
  s = jnp.minimum(fail_before, -1e-6)
  pos_term = jnp.sum(jnp.where(infected, jnp.log(-jnp.expm1(s)), 0.0), axis=1)
  # Users never infected in D: every member failed.
  rows_b = jnp.broadcast_to(jnp.arange(b)[:, None], (b, l))
  in_d = jnp.zeros((b, u_all), bool).at[rows_b, batch.users].max(m)
  not_in = ~in_d & (jnp.arange(u_all)[None, :] >= reserved)
  neg_term = jnp.sum(jnp.where(m[:, :, None] & not_in[:, None, :], log_fail, 0.0), axis=(1, 2))
  n = jnp.maximum(jnp.sum(jnp.any(m, axis=1)), 1).astype(jnp.float32)
  return -jnp.sum(pos_term + neg_term) / n


# ---------------------------------------------------------------- NetRate

def netrate_nll(alpha, batch: CascadeBatch, reserved: int = 2):
  """Mean negative NetRate log-likelihood per cascade (module docstring).

  Args:
    alpha: float32 [U, U]; rates, zero outside the candidate edges (the caller masks them).
    batch: `CascadeBatch` with scaled times and windows.
  """
  m = batch.mask
  b, l = batch.users.shape
  u_all = alpha.shape[0]
  a = alpha[batch.users[:, :, None], batch.users[:, None, :]]  # [B, L, L]: alpha(D_i -> D_j)
  t = batch.times
  before = (t[:, :, None] < t[:, None, :]) | ((t[:, :, None] == t[:, None, :])
                                              & (jnp.arange(l)[:, None] < jnp.arange(l)[None, :])[None])
  valid = before & m[:, :, None] & m[:, None, :]
  hazard = jnp.sum(jnp.where(valid, a, 0.0), axis=1)  # [B, L]
  dt = jnp.maximum(t[:, None, :] - t[:, :, None], 0.0)
  surv_in = jnp.sum(jnp.where(valid, a * dt, 0.0), axis=1)
  infected = m & (jnp.arange(l)[None, :] > 0)
  pos = jnp.sum(jnp.where(infected, jnp.log(jnp.where(infected, hazard, 1.0) + 1e-8) - surv_in, 0.0), 1)
  # Survival of users outside D until the window's end: sum_u (T - t_u) (rowsum(alpha_u) - sum_{v in D} alpha_uv).
  rows_b = jnp.broadcast_to(jnp.arange(b)[:, None], (b, l))
  in_d = jnp.zeros((b, u_all), bool).at[rows_b, batch.users].max(m)
  out_mask = (~in_d & (jnp.arange(u_all)[None, :] >= reserved)).astype(alpha.dtype)  # [B, U]
  rows = alpha[batch.users]  # [B, L, U]
  out_rate = jnp.einsum("blu,bu->bl", rows, out_mask)
  neg = jnp.sum(jnp.where(m, (window(batch)[:, None] - t) * out_rate, 0.0), axis=1)
  n = jnp.maximum(jnp.sum(jnp.any(m, axis=1)), 1).astype(jnp.float32)
  return -jnp.sum(pos - neg) / n


# ---------------------------------------------------------------- fitting

class FittedIC(NamedTuple):
  """A learned IC model on candidate edges.

  Attributes:
    edges: int32 [E, 2]; candidate (sender, receiver) user indices.
    probs: float32 [E]; transmission probabilities.
    losses: float32 [steps]; training loss curve.
  """
  edges: np.ndarray
  probs: np.ndarray
  losses: np.ndarray


def _batches(n, batch_size, key, steps):
  """Minibatch indices: a fresh seeded permutation per epoch (fixed batch size, wrapping around)."""
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
  bs = min(batch_size, n)
  perm, pos = rng.permutation(n), 0
  for _ in range(steps):
    if pos + bs > n:
      perm, pos = rng.permutation(n), 0
    yield perm[pos:pos + bs]
    pos += bs


def _training_data(cascades: Sequence, num_users: int, max_len: int, max_lag: int,
                   max_pairs: int):
  """Candidate edges and the padded cascade batch shared by both baselines' fits."""
  edges, _ = candidate_edges(cascades, num_users, max_lag=max_lag, max_pairs=max_pairs)
  if not edges.shape[0]:
    raise DataError("no candidate edges: every training cascade has fewer than two users")
  return edges, make_batch(cascades, max_len)


def fit_embedded_ic(cascades: Sequence, num_users: int, key, *, dim: int = 32, steps: int = 300,
                    batch_size: int = 64, learning_rate: float = 0.05, max_len: int = 100,
                    max_lag: int = 50, max_pairs: int = 200_000) -> FittedIC:
  """Trains Embedded IC on `cascades` and returns probabilities on the candidate edges."""
  edges, data = _training_data(cascades, num_users, max_len, max_lag, max_pairs)
  k_init, k_data = jax.random.split(key)
  params = init_embedded_ic(k_init, num_users, dim)
  opt = optax.adam(learning_rate)
  state = opt.init(params)

  @jax.jit
  def step(params, state, idx):
    batch = jax.tree.map(lambda x: x[idx], data)
    loss, g = jax.value_and_grad(embedded_ic_nll)(params, batch)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state, loss

  losses = []  # device scalars, fetched once at the end (no host sync per step)
  for idx in _batches(len(cascades), batch_size, k_data, steps):
    params, state, loss = step(params, state, jnp.asarray(idx))
    losses.append(loss)
  logit = embedded_ic_logits(params, jnp.asarray(edges[:, 0]), jnp.asarray(edges[:, 1]))
  return FittedIC(edges, np.asarray(jax.nn.sigmoid(logit), np.float32), np.asarray(jax.device_get(losses), np.float32))


def fit_netrate(cascades: Sequence, num_users: int, key, *, steps: int = 300, batch_size: int = 64,
                learning_rate: float = 0.05, max_len: int = 100, max_lag: int = 50,
                max_pairs: int = 200_000, init_rate: float = 0.05) -> FittedIC:
  """Fits NetRate rates on the candidate edges by projected gradient ascent (alpha >= 0)."""
  edges, data = _training_data(cascades, num_users, max_len, max_lag, max_pairs)
  src, dst = jnp.asarray(edges[:, 0]), jnp.asarray(edges[:, 1])
  rates = jnp.full((edges.shape[0],), init_rate, jnp.float32)
  opt = optax.adam(learning_rate)
  state = opt.init(rates)

  def loss_fn(r, batch):
    alpha = jnp.zeros((num_users, num_users), jnp.float32).at[src, dst].set(r)
    return netrate_nll(alpha, batch)

  @jax.jit
  def step(r, state, idx):
    batch = jax.tree.map(lambda x: x[idx], data)
    loss, g = jax.value_and_grad(loss_fn)(r, batch)
    upd, state = opt.update(g, state, r)
    return optax.projections.projection_non_negative(optax.apply_updates(r, upd)), state, loss

  losses = []
  for idx in _batches(len(cascades), batch_size, key, steps):
    rates, state, loss = step(rates, state, jnp.asarray(idx))
    losses.append(loss)
  probs = -np.expm1(-np.asarray(rates, np.float64))
  return FittedIC(edges, probs.astype(np.float32), np.asarray(jax.device_get(losses), np.float32))


# ---------------------------------------------------------------- evaluation

def evaluate_ic_baseline(model: FittedIC, test_cascades: Sequence, num_users: int, key, *,
                         num_sims: int = 1000, first_k: int | None = None, method: str = "dense",
                         words_per_chunk: int = 256):
  """NDM's diffusion-identification protocol for an IC model (Sec. 5.3).

  Each test cascade is seeded with u_0; runs stop once they hold min(|G^c|, first_k) + 1 users
  (round granularity). Cascades with a single user are not scored (see `infection_f1`).

  Args:
    model: a `FittedIC`.
    test_cascades: C cascades (user index arrays or `Cascade`s).
    num_users: U = len(vocab).
    key: PRNG key.
    num_sims: Monte Carlo runs per cascade (1000 in the paper).
    first_k: None (full protocol) or 5 (early stage).

  Returns:
    (`InfectionF1`, P float32 [C, U]).
  """
  graph, _ = build_graph(model.edges, model.probs, num_users)
  seeds = np.array([[_users(c)[0]] for c in test_cascades], np.int32)
  sizes = np.array([len(_users(c)) - 1 for c in test_cascades])
  if first_k is not None:
    sizes = np.minimum(sizes, first_k)
  kwargs = {} if method != "dense" else {"max_active": np.maximum(sizes, 1) + 1,
                                         "words_per_chunk": words_per_chunk}
  res = simulate_ic(graph, seeds, key, num_sims, method=method, **kwargs)
  truth, exclude = truth_masks(test_cascades, num_users, first_k=first_k)
  probs = res.activation_prob
  return infection_f1(probs, truth, exclude), probs


def ic_size_msle(model: FittedIC, test_cascades: Sequence, num_users: int, key, *, num_sims: int = 1000,
                 num_given: int = 5, method: str = "dense"):
  """NDM Sec. 5.5 cascade-size identification for an IC model: seed each test cascade with its first
  `num_given` users, predict its final size as the mean IC spread, score by MSLE.

  Returns:
    (msle float32 [], predicted sizes float32 [C], true sizes int [C]).
  """
  graph, _ = build_graph(model.edges, model.probs, num_users)
  given = [_users(c)[:num_given] for c in test_cascades]
  seeds = np.full((len(given), num_given), -1, np.int32)
  for i, g in enumerate(given):
    seeds[i, :len(g)] = g
  res = simulate_ic(graph, seeds, key, num_sims, method=method)
  pred = jnp.mean(res.spread.astype(jnp.float32), axis=1)
  true = np.array([len(_users(c)) for c in test_cascades])
  return msle(true, pred), pred, true
