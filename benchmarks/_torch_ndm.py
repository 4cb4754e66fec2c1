"""PyTorch anchor for benchmarks/gpu_suite.py: NDM trained by the recipe of the authors' code.

The recipe of the authors' released code (a PyTorch Transformer-style trainer), as every public
diffusion-prediction code since (FOREST, MS-HGAT) does it: every epoch the training cascades are
shuffled into batches of 32, each padded to its longest cascade; the model forms dense
``[B, L, U]`` scores; a dense float ``[B, L, U]`` mask with ``-inf`` at the previously infected
users (``get_previous_user_mask``: a scatter into a zero tensor) is added; cross-entropy with
padding ignored; Adam. :func:`train` is that loop, with a validation pass after every epoch.

The architecture and sizes are ``popdiff_jax.models.ndm.NDM``'s (same equations, same
initialisers' families, same dropout places), so the two differ only in how the loss is computed
and batches are shaped. Differences from the authors' code: the loss is the mean NLL per
prediction of a batch (their ``size_average=False`` sum only rescales Adam's step slightly
through epsilon), constant learning rate 1e-3 (theirs: Noam), ``F_init`` uses ``act(u_0)`` (the
paper). Validation Hits@k / MAP@k are the library's users-only convention
(``metrics.ranking.next_user_sums``' ``hits@k``): the steps whose target is a real user, ranked
among the users (Terminate no candidate), ties counted in expectation.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD = 0
TERMINATE = 1


def _glorot(*shape: int) -> nn.Parameter:
  fan_in, fan_out = shape[-2], shape[-1]
  bound = math.sqrt(6.0 / (fan_in + fan_out))
  return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class TorchNDM(nn.Module):
  """NDM (Eqs. 3-7) returning dense scores ``[B, L, U]``, as ``popdiff_jax.models.ndm.NDM``."""

  def __init__(self, num_items: int, dim: int = 64, num_heads: int = 8, window: int = 3,
               f_init: int = 0, dropout: float = 0.1):
    super().__init__()
    self.num_items, self.dim, self.num_heads, self.window, self.f_init = (
        num_items, dim, num_heads, window, f_init)
    self.scale = dim ** -0.5
    self.embedding = nn.Parameter(torch.randn(num_items, dim))
    self.w_q = _glorot(num_heads, dim, dim)
    self.w_k = _glorot(num_heads, dim, dim)
    self.w_v = _glorot(num_heads, dim, dim)
    self.w_o = _glorot(num_heads * dim, dim)
    self.layer_norm = nn.LayerNorm(dim, eps=1e-6)
    self.w_c = _glorot(window * dim, num_items)
    self.w_c_init = _glorot(dim, num_items) if f_init else None
    self.bias = nn.Parameter(torch.zeros(num_items))
    self.drop = nn.Dropout(dropout)

  def forward(self, users: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    emb = self.embedding[users]  # [B, L, d]
    q = torch.einsum("bld,hde->bhle", emb, self.w_q)
    k = torch.einsum("bld,hde->bhle", emb, self.w_k)
    v = torch.einsum("bld,hde->bhle", emb, self.w_v)
    scores = torch.einsum("bhje,bhke->bhjk", q, k) * self.scale
    length = users.shape[1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=users.device))
    allowed = causal[None, None] & mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    any_key = allowed.any(-1, keepdim=True)
    weights = torch.softmax(torch.where(any_key, scores, torch.zeros_like(scores)), -1)
    heads = torch.einsum("bhjk,bhke->bjhe", self.drop(weights), v)
    act = self.drop(heads.reshape(*heads.shape[:2], -1) @ self.w_o)
    act = self.layer_norm(emb + act) * mask[..., None]
    shifted = [act] + [F.pad(act, (0, 0, n, 0))[:, :-n] for n in range(1, self.window)]
    logits = torch.cat(shifted, -1) @ self.w_c
    if self.w_c_init is not None:
      logits = logits + act[:, :1] @ self.w_c_init
    return logits + self.bias


def previous_user_mask(seq: torch.Tensor, num_items: int) -> torch.Tensor:
  """The recipe's dense mask: float [B, L, U], ``-inf`` at users ``seq[:, :j+1]`` and at PAD.

  As the authors' ``get_previous_user_mask``: a ``[B, L, L]`` lower-triangular copy of the
  sequence scattered into a zero ``[B, L, U]`` tensor (padding positions hold user 0 = PAD).
  """
  b, length = seq.shape
  seqs = seq[:, None, :].expand(b, length, length)
  tril = torch.tril(torch.ones(length, length, device=seq.device, dtype=seq.dtype))
  prev = torch.cat([seqs * tril, torch.zeros(b, length, 1, dtype=seq.dtype, device=seq.device)], -1)
  out = torch.zeros(b, length, num_items, device=seq.device)
  return out.scatter_(2, prev.long(), float("-inf"))


def loss_and_count(model: TorchNDM, users: torch.Tensor, mask: torch.Tensor
                   ) -> tuple[torch.Tensor, int]:
  """Mean NLL per prediction of a batch padded to its longest cascade (the recipe's loss)."""
  inp, gold = users[:, :-1], users[:, 1:]
  logits = model(inp, mask[:, :-1]) + previous_user_mask(inp, model.num_items)
  nll = F.cross_entropy(logits.reshape(-1, model.num_items), gold.reshape(-1).long(),
                        ignore_index=PAD, reduction="sum")
  count = int((gold != PAD).sum())
  return nll / max(count, 1), count


def _harmonic(n: torch.Tensor) -> torch.Tensor:
  """H(n) = sum_{r=1}^n 1/r for real n >= 0."""
  return torch.special.digamma(n + 1.0) + 0.5772156649015329


def ranking_sums(logits: torch.Tensor, users: torch.Tensor, mask: torch.Tensor, k: int = 10
                 ) -> dict[str, float]:
  """Users-only Hits@k and MAP@k sums of a batch, and their count.

  Args:
    logits: float [B, L - 1, U] raw scores of ``users[:, :-1]`` (row ``j`` scores the user after
      step ``j``), as the recipe's model gives them.
    users: int [B, L] the cascades padded with PAD (0), Terminate (1) after a cascade's end.
    mask: bool [B, L] real positions.
    k: the cut-off.

  Returns:
    ``{"hits@k": sum, "map@k": sum, "count": number of steps scored}``: the steps whose target
    is a real user, ranked among the users not yet infected (Terminate and PAD no candidates);
    with ``g`` users above the target and ``e`` tied with it, Hits@k and AP@k are their
    expectations over a uniform rank in ``g+1 .. g+e+1``.
  """
  inp, gold = users[:, :-1], users[:, 1:].long()
  scores = logits + previous_user_mask(inp, logits.shape[-1])
  scores[..., TERMINATE] = float("-inf")
  target = torch.gather(scores, 2, gold[..., None])
  greater = (scores > target).sum(-1).float()
  tied = ((scores == target).sum(-1) - 1).float() + 1.0
  scored = mask[:, 1:] & mask[:, :-1] & (gold != PAD) & (gold != TERMINATE)
  hits = ((k - greater) / tied).clamp(0.0, 1.0)
  top = torch.minimum(torch.full_like(greater, float(k)), greater + tied)
  ap = torch.where(top > greater, (_harmonic(top) - _harmonic(greater)) / tied,
                   torch.zeros_like(greater))
  zero = torch.zeros_like(hits)
  return {f"hits@{k}": float(torch.where(scored, hits, zero).sum()),
          f"map@{k}": float(torch.where(scored, ap, zero).sum()),
          "count": float(scored.sum())}


def _pad(cascades: Sequence, max_len: int):
  """One batch padded to its longest cascade (the recipe's batching): ``(users, mask)`` NumPy."""
  from popdiff_jax.data.batching import pack, sequence_length

  longest = max(sequence_length(c, max_len) for c in cascades)
  b = pack(cascades, longest, len(cascades), max_len)
  return b.users, b.mask


@torch.no_grad()
def evaluate(model: TorchNDM, batches: Sequence, device: torch.device, k: int = 10
             ) -> dict[str, float]:
  """Users-only Hits@k and MAP@k means over padded ``(users, mask)`` batches (eval mode)."""
  model.eval()
  total = {f"hits@{k}": 0.0, f"map@{k}": 0.0, "count": 0.0}
  for users, mask in batches:
    users = torch.as_tensor(users, device=device)
    mask = torch.as_tensor(mask, device=device)
    sums = ranking_sums(model(users[:, :-1], mask[:, :-1]), users, mask, k)
    total = {key: total[key] + sums[key] for key in total}
  n = max(total.pop("count"), 1.0)
  return {key: v / n for key, v in total.items()}


def train(model: TorchNDM, train_cascades: Sequence, valid_cascades: Sequence, *, epochs: int,
          device: torch.device, max_len: int = 200, batch_size: int = 32, lr: float = 1e-3,
          eval_batch_size: int = 64, seed: int = 0, sync: Callable[[], None] = lambda: None,
          on_epoch: Callable[[list[dict]], None] = lambda history: None) -> list[dict]:
  """The recipe's training loop; one history row per epoch, as ``training.fit`` writes them.

  Each epoch shuffles the cascades (seeded by ``(seed, epoch)``), pads each batch of
  ``batch_size`` to its longest cascade and copies it to the device as it goes, and takes one
  Adam step per batch; ``seconds`` runs from the shuffle to the last step's end (``sync``), as
  ``fit``'s does. The validation pass after it (the first ``eval_batch_size`` cascades, then the
  next, each batch padded to its longest) is not in ``seconds``.

  Returns:
    ``[{"epoch", "seconds", "steps", "train_loss", "val_hits@10", "val_map@10",
    "val_seconds"}, ...]``; ``on_epoch(history)`` is called after every epoch.
  """
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  valid = [_pad(valid_cascades[s:s + eval_batch_size], max_len)
           for s in range(0, len(valid_cascades), eval_batch_size)]
  history: list[dict] = []
  for epoch in range(epochs):
    model.train()
    sync()
    t0 = time.perf_counter()
    order = np.random.default_rng([seed, epoch]).permutation(len(train_cascades))
    total, steps = None, 0
    for s in range(0, len(order), batch_size):
      users, mask = _pad([train_cascades[i] for i in order[s:s + batch_size]], max_len)
      loss, _ = loss_and_count(model, torch.as_tensor(users, device=device),
                               torch.as_tensor(mask, device=device))
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      total = loss.detach() if total is None else total + loss.detach()
      steps += 1
    sync()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    val = evaluate(model, valid, device)
    history.append({"epoch": epoch, "seconds": round(seconds, 3), "steps": steps,
                    "train_loss": float(total) / max(steps, 1),
                    **{f"val_{key}": v for key, v in val.items()},
                    "val_seconds": round(time.perf_counter() - t1, 3)})
    on_epoch(history)
  return history
