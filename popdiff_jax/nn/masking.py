"""The masks of the next-user softmax (NDM Sec. 4.5, Eq. 7): who can be infected next.

Every next-user model maps a batch of cascades ``users: int32 [B, L]`` (with ``mask: bool [B, L]``)
to raw scores ``logits: float [B, L, U]`` where row ``j`` scores the user infected at step ``j + 1``.
The functions here turn raw scores into the paper's distribution: users already infected at or before
step ``j`` (and padding) can never be predicted; Terminate (index 1) always can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from popdiff_jax.types import PAD

__all__ = ["infection_step", "infected_before", "mask_infected", "shift_targets"]


def infection_step(users: jax.Array, mask: jax.Array, num_items: int) -> jax.Array:
  """The step at which each user was infected in each cascade (``L`` if never).

  A scatter of ``B * L`` entries: the dense ``[B, L, U]`` mask of infected users is then the
  comparison ``infection_step[b, None, u] <= j``, which XLA fuses into whatever consumes it.

  Args:
    users: int32 [B, L] vocabulary indices.
    mask: bool [B, L] real positions.
    num_items: U.

  Returns:
    int32 [B, U].
  """
  b, length = users.shape
  steps = jnp.where(mask, jnp.arange(length, dtype=jnp.int32)[None, :], length)
  first = jnp.full((b, num_items), length, jnp.int32)
  return first.at[jnp.arange(b)[:, None], users].min(steps)


def infected_before(users: jax.Array, mask: jax.Array, num_items: int) -> jax.Array:
  """bool [B, L, U]: is user ``u`` infected at or before step ``j`` (or is it padding)?"""
  length = users.shape[1]
  first = infection_step(users, mask, num_items)
  infected = first[:, None, :] <= jnp.arange(length, dtype=jnp.int32)[None, :, None]
  is_pad = jnp.arange(num_items) == PAD
  return infected | is_pad[None, None, :]


def mask_infected(logits: jax.Array, users: jax.Array, mask: jax.Array) -> jax.Array:
  """Sets the scores of padding and of already-infected users to ``-inf`` (NDM Sec. 4.5).

  Args:
    logits: float [B, L, U] raw scores; row ``j`` predicts the user after step ``j``.
    users: int32 [B, L].
    mask: bool [B, L].

  Returns:
    float [B, L, U] with ``-inf`` at padding and at every user in ``users[b, :j + 1]``.
  """
  blocked = infected_before(users, mask, logits.shape[-1])
  return jnp.where(blocked, jnp.asarray(-jnp.inf, logits.dtype), logits)


def shift_targets(users: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Targets of each step: the next user (or Terminate), and where a target exists.

  Returns:
    ``(targets int32 [B, L], target_mask bool [B, L])``; the last step never has a target.
  """
  targets = jnp.concatenate([users[:, 1:], jnp.full_like(users[:, :1], PAD)], axis=1)
  target_mask = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
  return targets, target_mask & mask
