"""PyTorch anchor for benchmarks/gpu_suite.py: NDM trained by the official recipe.

The recipe of the authors' released code (a PyTorch Transformer-style trainer), as every public
diffusion-prediction code since (FOREST, MS-HGAT) does it: cascades shuffled into batches of 32,
each padded to its longest cascade; the model forms dense ``[B, L, U]`` scores; a dense float
``[B, L, U]`` mask with ``-inf`` at the previously infected users (``get_previous_user_mask``: a
scatter into a zero tensor) is added; cross-entropy with padding ignored; Adam.

The architecture and sizes are ``popdiff_jax.models.ndm.NDM``'s (same equations, same
initialisers' families, same dropout places), so the two differ only in how the loss is computed
and batches are shaped. Differences from the authors' code, kept on both sides: the loss is the mean
NLL per prediction (their ``size_average=False`` sum only rescales Adam's step slightly through
epsilon), constant learning rate 1e-3 (theirs: Noam), ``F_init`` uses ``act(u_0)`` (the paper).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


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


@torch.no_grad()
def rank_counts(model: TorchNDM, users: torch.Tensor, mask: torch.Tensor
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(greater, equal, target_mask)`` per step as ``metrics.ranking.target_rank_counts``."""
  inp, gold = users[:, :-1], users[:, 1:]
  logits = model(inp, mask[:, :-1]) + previous_user_mask(inp, model.num_items)
  t = torch.gather(logits, 2, gold[..., None].long())
  greater = (logits > t).sum(-1)
  equal = (logits == t).sum(-1) - 1
  tm = (gold != PAD) & mask[:, 1:]
  return greater.cpu().numpy(), equal.cpu().numpy(), tm.cpu().numpy()
