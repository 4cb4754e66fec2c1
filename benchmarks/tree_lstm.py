"""Speed of Diffusion-LSTM's tree LSTM (Eq. 1) in JAX against PyTorch, on Twitter15 trees.

The JAX side is the library as the model calls it: ``W x + b`` of every node slot in one product,
then ``nn.tree_lstm.tree_lstm_by_parents`` on a ``TreeBatch`` (``data.trees.make_tree_batch``),
jitted; and, for training, the Diffusion-LSTM project's ``experiment.train`` (``training.fit``).
The anchors are PyTorch loops of the same cell on the same trees with the same sizes:

* ``torch_node_by_node``: one node at a time in breadth-first order, the parent's ``(h, c)``
  from a Python list (timed on the first trees, at least ``--node_min`` nodes).
* ``torch_levelwise``: one step per depth over all nodes of that depth of all trees, parents
  gathered from the previous level's tensors (``index_select``), autograd through the levels.

Parts (``--parts``, run in the order timing, scaling, fit). ``fp32``: full float32 products on
both sides (JAX precision "highest", TF32 off in torch); ``tf32``: TF32 products on both sides
(rows tagged ``-tf32``).

* ``timing`` (rows of kind ``timing``, each of ``--precisions``): on the first ``--trees``
  Twitter15 trees (0 = all 1,490), the two torch anchors and every JAX variant of
  ``--variants``: fwd = the states of all nodes; fwd+bwd = the gradient of Σ h·r (r random)
  w.r.t. W, U, b, the root memory and the inputs. A variant is ``parents:W[:U]``
  (``tree_lstm_by_parents`` with W parents per sequential step, 0 = the widest level of
  parents; U the scan's unroll factor or ``full``), ``chunks:C[:U]`` (``levelwise_tree_lstm``:
  one scan step per chunk of C nodes) or ``levelx:C`` (``levelwise_tree_lstm_inputs_by_level``:
  one step per level, one compile per level profile). Each JAX row carries ``compile_s`` (first
  call minus a warm call, forward plus gradient), ``max_abs_diff_vs_torch`` (its states against
  torch level-wise), the sequential ``steps``, the FLOPs and the bytes of its main arrays, the
  floor ``max(FLOPs / peak, bytes / bandwidth)`` of the device (``PEAKS``) and the share of it
  reached, and the copies of state-sized buffers in its optimized HLO (``hlo_buffer_copies_*``).
* ``scaling`` (kind ``scaling``, each of ``--scaling_precisions``): ``--scaling_trees`` trees,
  the first JAX variant and ``torch_levelwise`` (the timing part's measurements reused where
  they exist); drawn log-log into ``--png`` (default ``tree_lstm_scaling.png`` beside ``--out``).
* ``fit`` (kind ``fit``, each of ``--fit_precisions``): the project's training
  (``experiment.train`` of ``--fit_config`` with the Twitter15 CPU overrides on the first
  ``--fit_max_trees`` trees, ``--fit_epochs`` epochs of one phase) against a PyTorch level-wise
  training loop with the same model (the same initial parameters), optimiser, loss (Eq. 2 with
  the same class weights), batches and epochs, each epoch followed by a validation pass on both
  sides. ``nodes_per_s_fwd_bwd`` is the median training epoch from the second on (an epoch that
  meets a batch shape first compiles it); JAX's ``compile_s`` is the time of all its
  compilations in ``experiment.train`` (JAX's monitoring events: tracing, lowering, and XLA's
  compile or, where ``JAX_COMPILATION_CACHE_DIR`` is set and holds the program, its load;
  ``programs_compiled`` / ``programs_from_cache`` count them), and ``trees_per_s_total`` counts
  everything each side does. ``--fit_buckets`` / ``--fit_parent_buckets`` replace the config's
  shape buckets (one value each: every batch padded to one shape, one train program).

Rows of kind ``best``: the fastest JAX variant per device, trees and precision. Timings are
medians after a warm-up call, with ``block_until_ready`` / ``torch.cuda.synchronize``. The
result file (``popdiff_jax.results``) is written after every row; a failing row records its
``error``; a row not started within ``--budget_s`` (the fit: with less than ``--fit_reserve_s``
left) records ``skipped``, as do the torch rows where PyTorch is not installed. A row that has
started runs to its end, so a run can pass the budget by one row (a compile of the largest
batch: tens of seconds).

Usage::

  python benchmarks/tree_lstm.py --quick --out /tmp/tree_lstm_quick.json   # CPU check, ~4 min
  python benchmarks/tree_lstm.py --tar .carry_data/twitter15_16_trees/twitter15_tree.tar.gz \
      --out $OUT/tree_lstm_speed.json --budget_s 240          # GPU: the defaults, ~4 min
  python benchmarks/tree_lstm.py --plot --out benchmarks/results/tree_lstm_speed.json

Trees: ``--tar`` (default ``$TWITTER15_TAR``, else ``../shared/data/twitter15_16_trees/`` beside
the checkout); without it, random trees of Twitter15-like size (timing) and the synthetic set (fit).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# PyTorch shares the GPU: JAX must not take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from popdiff_jax.data import trees as T  # noqa: E402
from popdiff_jax.nn import tree_lstm as M  # noqa: E402

JAX_PRECISION = {"fp32": "highest", "tf32": "tensorfloat32"}
#: Device-kind substring -> (fp32 FLOP/s, dense TF32 FLOP/s, memory bytes/s), the vendors' peaks.
PEAKS = {"H200": (67e12, 495e12, 4.8e12), "H100 PCIe": (51e12, 378e12, 2.0e12),
         "H100": (67e12, 495e12, 3.35e12), "A100": (19.5e12, 156e12, 2.0e12)}
#: Node-layout chunk of the ``parents`` variants: it only pads each level of the node slots.
NODE_CHUNK = 64
#: JAX's monitoring events of a compilation (their durations are summed in the fit part).
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  # XLA's compile, or the load of a program found in the persistent cache
                  "/jax/core/compile/backend_compile_duration")
REQUIRED = ("impl", "trees", "precision", "nodes_per_s_fwd", "nodes_per_s_fwd_bwd",
            "ratio_fwd_vs_torch_levelwise", "ratio_fwd_bwd_vs_torch_levelwise", "compile_s",
            "device")


# ------------------------------------------------------------------------------------- helpers

def timeit(fn, repeats: int, warmup: int = 1) -> float:
  """Median seconds of ``repeats`` calls of ``fn`` (which waits for the device) after warm-up."""
  for _ in range(warmup):
    fn()
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def first_call_s(fn) -> float:
  """Seconds of one call (the first: tracing, compilation and one run)."""
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def _count_buffer_copies(hlo: str, rows: int) -> dict:
  """Copies of (rows, *) float buffers in an optimized HLO module: all, and inside while bodies.

  A ``copy`` of a state or cotangent buffer inside a while body means a scan step costs the
  buffer's size, not the chunk's.
  """
  pat = re.compile(r"= f(?:32|64)\[%d,\d+\]\{[^}]*\} copy\(" % rows)
  bodies = {m.group(1) for m in re.finditer(r"while\([^)]*\)[^\n]*body=%?([\w.\-]+)", hlo)}
  total = in_body = 0
  current = None
  for line in hlo.splitlines():
    head = re.match(r"^%?([\w.\-]+) .*\{$", line) or re.match(r"^ENTRY %?([\w.\-]+)", line)
    if head and not line.startswith(" "):
      current = head.group(1)
    if pat.search(line):
      total += 1
      in_body += current in bodies
  return {"total": total, "in_while_body": in_body}


def peaks(device_kind: str):
  """``(fp32 FLOP/s, tf32 FLOP/s, bytes/s)`` of a device kind, or None (CPU, unknown GPU)."""
  for key, value in PEAKS.items():
    if key in device_kind:
      return value
  return None


def parse_variant(spec: str) -> tuple[str, int, int | bool]:
  """``"parents:8192"`` -> ("parents", 8192, 1); ``"chunks:4096:full"`` -> (.., True)."""
  parts = spec.strip().split(":")
  if parts[0] not in ("parents", "chunks", "levelx") or len(parts) not in (2, 3):
    raise SystemExit(f"bad variant {spec!r}: want parents:W[:U], chunks:C[:U] or levelx:C")
  unroll = parts[2] if len(parts) == 3 else "1"
  if not (parts[1].isdigit() and (unroll == "full" or unroll.isdigit())):
    raise SystemExit(f"bad variant {spec!r}: W / C an integer, U an integer or 'full'")
  return parts[0], int(parts[1]), True if unroll == "full" else int(unroll)


def variant_name(kind: str, width: int, unroll) -> str:
  """The row name of a variant: ``jax_parents[W=4096,unroll=full]``."""
  u = "" if unroll is not True and unroll == 1 else \
      f",unroll={'full' if unroll is True else unroll}"
  key = {"parents": "W", "chunks": "C", "levelx": "C"}[kind]
  return f"jax_{kind}[{key}={width}{u}]"


# --------------------------------------------------------------------------------------- trees

def load_trees(tar: str | None, n: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
  """Parent arrays of the first ``n`` Twitter15 trees by name (0: all), or random trees."""
  if tar and os.path.exists(tar):
    trees, _ = T.read_twitter15(tar, max_trees=n or None)
    return [t.parent for t in trees], "twitter15"
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n or 1490):
    size = int(np.clip(rng.lognormal(5.5, 0.8), 2, 3000))
    par = [-1] + [0 if rng.random() < 0.6 else int(rng.integers(0, i)) for i in range(1, size)]
    out.append(T.tree_from_parents(par, name="r").parent)
  return out, "random(twitter15-like)"


@dataclasses.dataclass
class Problem:
  """One set of trees with random inputs, parameters and readout weights (host NumPy)."""

  parents: list
  depths: list
  x: np.ndarray       # [n_nodes, D] in tree order
  c_root: np.ndarray  # [n_trees, H]
  r: np.ndarray       # [n_nodes, H]
  w: np.ndarray
  u: np.ndarray
  b: np.ndarray

  @property
  def n_trees(self) -> int:
    """Number of trees."""
    return len(self.parents)

  @property
  def n_nodes(self) -> int:
    """Number of nodes of all trees."""
    return int(self.x.shape[0])

  @property
  def levels(self) -> int:
    """Levels of the deepest tree."""
    return int(max(d.max() for d in self.depths)) + 1

  def examples(self):
    """The trees as ``TreeExample`` s (inputs in tree order, no targets)."""
    offs = np.concatenate([[0], np.cumsum([p.shape[0] for p in self.parents])])
    return [T.TreeExample("t", p, d.astype(np.int32), self.x[o:o + p.shape[0]],
                          np.zeros(p.shape[0], np.int32), np.zeros(1, np.float32))
            for p, d, o in zip(self.parents, self.depths, offs[:-1])]


def make_problem(parents, hid: int, dim: int, seed: int = 0) -> Problem:
  """Depths, random inputs, root memories, readout weights and parameters of ``parents``."""
  rng = np.random.default_rng(seed)
  depths = []
  for p in parents:
    d = np.zeros(p.shape[0], np.int64)
    for i in range(1, p.shape[0]):
      d[i] = d[p[i]] + 1
    depths.append(d)
  n = sum(p.shape[0] for p in parents)
  return Problem(parents, depths, rng.normal(size=(n, dim)).astype(np.float32),
                 rng.normal(size=(len(parents), hid)).astype(np.float32),
                 rng.normal(size=(n, hid)).astype(np.float32),
                 (rng.normal(size=(dim, 4 * hid)) / np.sqrt(dim)).astype(np.float32),
                 (rng.normal(size=(hid, 4 * hid)) / np.sqrt(hid)).astype(np.float32),
                 (rng.normal(size=4 * hid) * 0.1).astype(np.float32))


# --------------------------------------------------------------------------------------- torch

class TorchTrees:
  """The PyTorch anchors on one :class:`Problem` (tensors on the torch device)."""

  def __init__(self, prob: Problem, torch, device):
    self.torch, self.dev, self.prob = torch, device, prob
    tt = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)
    self.w, self.u, self.b = (tt(a).requires_grad_() for a in (prob.w, prob.u, prob.b))
    self.x = tt(prob.x).requires_grad_()
    self.c0 = tt(prob.c_root).requires_grad_()
    self.r = tt(prob.r)
    sizes = [p.shape[0] for p in prob.parents]
    self.offs = np.concatenate([[0], np.cumsum(sizes)])
    all_depth = np.concatenate(prob.depths)
    all_tree = np.repeat(np.arange(prob.n_trees), sizes)
    all_par = np.concatenate([np.where(p >= 0, p + o, -1)
                              for p, o in zip(prob.parents, self.offs[:-1])])
    self.lvl_nodes = [np.flatnonzero(all_depth == lv) for lv in range(prob.levels)]
    local = np.empty(prob.n_nodes, np.int64)
    for nodes in self.lvl_nodes:
      local[nodes] = np.arange(nodes.size)
    self.lvl_idx = [tt(nodes, torch.long) for nodes in self.lvl_nodes]
    self.lvl_par = [tt(all_tree[self.lvl_nodes[0]], torch.long)] + \
        [tt(local[all_par[nodes]], torch.long) for nodes in self.lvl_nodes[1:]]
    self.hid = prob.u.shape[0]
    self._subsets: dict = {}

  def sync(self):
    """Waits for the torch device."""
    if self.dev.type == "cuda":
      self.torch.cuda.synchronize()

  def _finish(self, loss, grad: bool, leaves=()):
    if grad:
      loss.backward()
      for t in (self.w, self.u, self.b, self.x, self.c0, *leaves):
        t.grad = None
    self.sync()

  def levelwise(self, grad: bool, keep: bool = False):
    """One step per depth; returns the per-level h when ``keep``."""
    torch = self.torch
    with torch.set_grad_enabled(grad):
      hp = torch.zeros(self.prob.n_trees, self.hid, device=self.dev)
      cp = self.c0
      loss, hs = 0.0, []
      for lv in range(self.prob.levels):
        xi = self.x.index_select(0, self.lvl_idx[lv])
        h_par = hp.index_select(0, self.lvl_par[lv])
        c_par = cp.index_select(0, self.lvl_par[lv])
        z = xi @ self.w + h_par @ self.u + self.b
        i, f, g, o = z.chunk(4, dim=1)  # nn.lstm_cell's gate order
        c = torch.sigmoid(f) * c_par + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if grad:  # the forward alone keeps the states only (as the JAX forward)
          loss = loss + (h * self.r.index_select(0, self.lvl_idx[lv])).sum()
        hs.append(h)
        hp, cp = h, c
    self._finish(loss, grad)
    return hs if keep else None

  def node_by_node(self, grad: bool, n_trees: int):
    """One node at a time over the first ``n_trees`` trees, breadth-first."""
    torch = self.torch
    n_sub = int(self.offs[n_trees])
    with torch.set_grad_enabled(grad):
      loss = 0.0
      zero = torch.zeros(self.hid, device=self.dev)
      # Leaves of the timed nodes alone, split into per-node views once: views of the whole
      # input would make every node's backward add a gradient of the whole input (quadratic
      # in the batch), which is not the cell's cost.
      if n_trees not in self._subsets:
        self._subsets[n_trees] = (self.x[:n_sub].detach().clone().requires_grad_(),
                                  self.c0[:n_trees].detach().clone().requires_grad_())
      x_sub, c0_sub = self._subsets[n_trees]
      xs, rs, c0s = x_sub.unbind(0), self.r[:n_sub].unbind(0), c0_sub.unbind(0)
      for j in range(n_trees):
        hs, cs = [], []
        par = self.prob.parents[j]
        for i in range(par.shape[0]):
          q = int(par[i])
          hp_, cp_ = (zero, c0s[j]) if q < 0 else (hs[q], cs[q])
          z = xs[self.offs[j] + i] @ self.w + hp_ @ self.u + self.b
          ii, f, g, o = z.chunk(4)
          c = torch.sigmoid(f) * cp_ + torch.sigmoid(ii) * torch.tanh(g)
          h = torch.sigmoid(o) * torch.tanh(c)
          hs.append(h)
          cs.append(c)
          loss = loss + (h * rs[self.offs[j] + i]).sum()
    self._finish(loss, grad, (x_sub, c0_sub))

  def states(self) -> np.ndarray:
    """h of every node, tree order (the reference of the JAX check)."""
    hs = self.levelwise(False, keep=True)
    out = np.zeros((self.prob.n_nodes, self.hid), np.float32)
    for nodes, h in zip(self.lvl_nodes, hs):
      out[nodes] = h.detach().cpu().numpy()
    return out


# ------------------------------------------------------------------------------- cost and floor

def costs(kind: str, n_real: int, n_slots: int, b: int, dim: int, hid: int,
          rec_rows: int = 0) -> dict:
  """FLOPs and main-array bytes (float32) of one forward and one forward+backward.

  ``parents``: ``x W`` over the node slots, ``U h`` over the ``B + S·W`` recursion rows; bytes:
  x, xw (written and read), the gathered ``U h`` and ``c`` of the parent, h and c out (forward,
  ``D + 15H`` floats a slot); the backward re-reads them, reads the two cotangents, writes and
  scatter-adds ``dz`` and ``dc·f``, and reads ``dz`` for ``dW`` and ``dx`` (``34H + 2D`` more).
  The others: ``[x, h_p] [W; U]`` per slot, bytes as for torch's minimum (x, h_p, c_p in, z out
  and in, h and c out: ``D + 12H`` forward, ``3×`` that for forward+backward).
  """
  g = 4 * hid
  if kind == "parents":
    f_fwd = 2 * n_slots * dim * g + 2 * (b + rec_rows) * hid * g
    f_all = 3 * f_fwd
    b_fwd = 4 * n_slots * (dim + 15 * hid)
    b_all = b_fwd + 4 * n_slots * (34 * hid + 2 * dim)
  else:
    n = n_real if kind == "torch" else n_slots
    f_fwd = 2 * n * (dim + hid) * g
    f_all = 3 * f_fwd
    b_fwd = 4 * n * (dim + 12 * hid)
    b_all = 3 * b_fwd
  return dict(flops_fwd=f_fwd, flops_fwd_bwd=f_all, bytes_fwd=b_fwd, bytes_fwd_bwd=b_all)


def floor_fields(c: dict, t_fwd: float, t_all: float, peak, precision: str) -> dict:
  """The floor ``max(FLOPs / peak, bytes / bandwidth)`` of a row and the share reached."""
  if peak is None:
    return {}
  flops = peak[0] if precision == "fp32" else peak[1]
  ff = max(c["flops_fwd"] / flops, c["bytes_fwd"] / peak[2])
  fa = max(c["flops_fwd_bwd"] / flops, c["bytes_fwd_bwd"] / peak[2])
  return dict(floor_fwd_ms=ff * 1e3, floor_fwd_bwd_ms=fa * 1e3, of_floor_fwd=ff / t_fwd,
              of_floor_fwd_bwd=fa / t_all,
              floor_bound_fwd="flops" if c["flops_fwd"] / flops > c["bytes_fwd"] / peak[2]
              else "bytes")


# ----------------------------------------------------------------------------------------- JAX

def run_jax_variant(prob: Problem, spec: str, precision: str, repeats: int,
                    h_ref: np.ndarray | None):
  """Builds the batch, compiles, checks against torch's states ``h_ref`` (when given) and times
  one JAX variant."""
  kind, width, unroll = parse_variant(spec)
  exs = prob.examples()
  all_depth = np.concatenate(prob.depths)
  if kind == "parents":
    chunk = NODE_CHUNK
    if width == 0:
      has = [np.bincount(d[np.bincount(p[1:], minlength=p.shape[0]) > 0]) for p, d in
             zip(prob.parents, prob.depths)]
      width = int(max(np.bincount(np.concatenate([np.repeat(np.arange(h.size), h)
                                                  for h in has]))))
  else:
    chunk = width or int(np.bincount(all_depth).max())
  k = T.num_chunks_needed([e.depth for e in exs], chunk)
  batch = T.make_tree_batch(exs, num_protos=1, chunk=chunk, num_chunks=k,
                            batch_trees=prob.n_trees,
                            parent_chunk=width if kind == "parents" else None)
  n_slots = batch.x.shape[0]
  order = np.lexsort((np.arange(prob.n_nodes), all_depth))  # slots: by depth, then tree order
  slot_of = np.empty(prob.n_nodes, np.int64)
  slot_of[order] = np.flatnonzero(batch.node_mask)
  r_slots = np.zeros((n_slots, prob.r.shape[1]), np.float32)
  r_slots[slot_of] = prob.r
  runs = M.chunk_runs(batch.chunk_depth)
  jb = jax.device_put(dict(x=batch.x, parent=batch.parent, parent_chunks=batch.parent_chunks,
                           r=r_slots, c0=prob.c_root))
  jp = jax.device_put(dict(w=prob.w, u=prob.u, b=prob.b))

  def states(p, bb):
    with jax.default_matmul_precision(JAX_PRECISION[precision]):
      h0 = jnp.zeros_like(bb["c0"])
      if kind == "levelx":
        return M.levelwise_tree_lstm_inputs_by_level(bb["x"], p["w"], p["b"], bb["parent"], h0,
                                                     bb["c0"], p["u"], runs)[0]
      xw = bb["x"] @ p["w"] + p["b"][None, :]
      if kind == "parents":
        return M.tree_lstm_by_parents(xw, bb["parent"], bb["parent_chunks"], h0, bb["c0"],
                                      p["u"], unroll=unroll)[0]
      return M.levelwise_tree_lstm(xw, bb["parent"], h0, bb["c0"], p["u"], k, unroll=unroll)[0]

  def loss(p, x, c0, bb):
    return jnp.sum(states(p, dict(bb, x=x, c0=c0)) * bb["r"])

  # Compiled ahead of time (to read the HLO), so "first call" = lowering + compiling + one run.
  t0 = time.perf_counter()
  fwd = jax.jit(states).lower(jp, jb).compile()
  t_cf = time.perf_counter() - t0
  t0 = time.perf_counter()
  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(jp, jb["x"], jb["c0"], jb).compile()
  t_cg = time.perf_counter() - t0
  call_f = lambda: jax.block_until_ready(fwd(jp, jb))
  call_g = lambda: jax.block_until_ready(grad(jp, jb["x"], jb["c0"], jb))
  first_f, first_g = t_cf + first_call_s(call_f), t_cg + first_call_s(call_g)
  err = (None if h_ref is None else
         float(np.max(np.abs(np.asarray(fwd(jp, jb))[slot_of] - h_ref))))
  t_f = timeit(call_f, repeats)
  t_g = timeit(call_g, repeats)
  warm_f, warm_g = min(t_f, first_call_s(call_f)), min(t_g, first_call_s(call_g))
  buf_rows = prob.n_trees + (batch.parent_chunks.size if kind == "parents" else n_slots)
  copies = dict(hlo_buffer_copies_fwd=_count_buffer_copies(fwd.as_text(), buf_rows),
                hlo_buffer_copies_fwd_bwd=_count_buffer_copies(grad.as_text(), buf_rows))
  s, w = batch.parent_chunks.shape
  steps = s if kind == "parents" else (len(runs) if kind == "levelx" else k)
  return dict(impl=variant_name(kind, width, unroll), jax_impl=kind, variant=spec, chunk=chunk,
              parent_chunk=w if kind == "parents" else None, steps=steps, node_slots=n_slots,
              recursion_rows=s * w if kind == "parents" else None, fwd_ms=t_f * 1e3,
              fwd_bwd_ms=t_g * 1e3, compile_s=(first_f - warm_f) + (first_g - warm_g),
              compile_s_fwd=first_f - warm_f, compile_s_fwd_bwd=first_g - warm_g,
              max_abs_diff_vs_torch=err, **copies,
              **costs(kind, prob.n_nodes, n_slots, prob.n_trees, prob.w.shape[0],
                      prob.u.shape[0], s * w if kind == "parents" else 0))


# ----------------------------------------------------------------------------------------- fit

def torch_tree_batches(batches, torch, dev):
  """Per TreeBatch: its real nodes level by level (indices, parent's index in the level above
  or tree slot for roots), in the order of the returned targets."""
  out = []
  for bt in batches:
    bsz = bt.content.shape[0]
    real = np.flatnonzero(bt.node_mask)
    depth = bt.depth[real]
    pos = np.zeros(bt.x.shape[0], np.int64)
    levels = []
    for lv in range(int(depth.max()) + 1 if real.size else 0):
      idx = real[depth == lv]
      pos[idx] = np.arange(idx.size)
      par = bt.parent[idx] if lv == 0 else pos[bt.parent[idx] - bsz]
      levels.append((torch.as_tensor(idx, device=dev), torch.as_tensor(par, device=dev)))
    order = np.concatenate([real[depth == lv] for lv in range(len(levels))]) if levels else real
    out.append(dict(x=torch.as_tensor(bt.x, device=dev),
                    content=torch.as_tensor(bt.content, device=dev),
                    targets=torch.as_tensor(bt.targets[order], device=dev), levels=levels))
  return out


def make_torch_model(params, rate: float, torch, dev):
  """Diffusion-LSTM "full" in PyTorch from the JAX initial parameters (flax kernels: [in, out])."""
  t = lambda a: torch.nn.Parameter(torch.as_tensor(np.array(a), device=dev))
  p = torch.nn.ParameterDict(dict(
      w=t(params["w"]), u=t(params["u"]), b=t(params["b"]),
      cw=t(params["content_fc"]["kernel"]), cb=t(params["content_fc"]["bias"]),
      h1w=t(params["head1"]["kernel"]), h1b=t(params["head1"]["bias"]),
      h2w=t(params["head2"]["kernel"]), h2b=t(params["head2"]["bias"])))
  F = torch.nn.functional

  def logits(tb, train: bool):
    c_prev = tb["content"] @ p["cw"] + p["cb"]
    h_prev = torch.zeros_like(c_prev)
    hs = []
    for idx, par in tb["levels"]:
      z = tb["x"].index_select(0, idx) @ p["w"] + h_prev.index_select(0, par) @ p["u"] + p["b"]
      i, f, g, o = z.chunk(4, dim=1)
      c = torch.sigmoid(f) * c_prev.index_select(0, par) + torch.sigmoid(i) * torch.tanh(g)
      h = torch.sigmoid(o) * torch.tanh(c)
      hs.append(h)
      h_prev, c_prev = h, c
    h = torch.cat(hs)
    z = F.relu(F.dropout(h, rate, train) @ p["h1w"] + p["h1b"])
    return F.dropout(z, rate, train) @ p["h2w"] + p["h2b"]

  return p, logits


def run_fit(args, precision: str, device: str, torch, log) -> list[dict]:
  """The project's training against a PyTorch level-wise training loop (``torch`` the module,
  None: that row is skipped); two rows."""
  from popdiff_jax import losses
  from popdiff_jax.projects.diffusion_lstm import configs as C
  from popdiff_jax.projects.diffusion_lstm import data as D
  from popdiff_jax.projects.diffusion_lstm import experiment as E

  cfg = C.get_config(args.fit_config)
  if cfg.model.variant != "full":
    raise ValueError(f"the torch loop is Diffusion-LSTM 'full'; {args.fit_config} is "
                     f"{cfg.model.variant!r}")
  if args.tar and os.path.exists(args.tar):
    cfg = cfg.replace(**C.TWITTER15_CPU).replace(
        data={"data_dir": str(pathlib.Path(args.tar).parent), "max_trees": args.fit_max_trees})
  else:
    cfg = cfg.replace(data={"source": "synthetic"})
  if args.fit_chunk:
    cfg = cfg.replace(data={"chunk": args.fit_chunk})
  if args.fit_buckets:
    cfg = cfg.replace(data={"buckets": tuple(args.fit_buckets)})
  if args.fit_parent_buckets:
    cfg = cfg.replace(data={"parent_buckets": tuple(args.fit_parent_buckets)})
  cfg = cfg.replace(train={"epochs_high": args.fit_epochs, "epochs_low": 0,
                           "patience": args.fit_epochs + 1})
  key = (cfg.data,)
  if key not in _PREPARED:
    t0 = time.perf_counter()
    _PREPARED[key] = D.prepare(cfg.data)
    log(f"fit data {cfg.data.source}: {time.perf_counter() - t0:.1f} s")
  prepared = _PREPARED[key]
  n_train = len(prepared.train)
  nodes_train = sum(e.parent.shape[0] for e in prepared.train)
  base = dict(kind="fit", precision=precision, device=device, trees=n_train,
              nodes=nodes_train, dataset=prepared.name, config=args.fit_config,
              epochs=args.fit_epochs, batch_trees=cfg.train.batch_trees,
              chunk=cfg.data.chunk, parent_chunk=cfg.data.parent_chunk,
              buckets=list(cfg.data.buckets), parent_buckets=list(cfg.data.parent_buckets),
              compile_cache=jax.config.jax_compilation_cache_dir,
              nodes_per_s_fwd=None, ratio_fwd_vs_torch_levelwise=None)
  # JAX: the project's training, one phase of fit_epochs epochs; its compilations (tracing,
  # lowering, XLA: one train step per batch shape, whichever epoch first meets it) are summed
  # from JAX's monitoring events and taken out of the training time.
  compile_s = [0.0]
  programs = {"programs": 0, "from_cache": 0}

  def on_event(event, secs, **_):
    if event in COMPILE_EVENTS:
      compile_s[0] += secs
    if event == "/jax/core/compile/backend_compile_duration":
      programs["programs"] += 1

  def on_count(event, **_):
    if event == "/jax/compilation_cache/cache_hits":
      programs["from_cache"] += 1

  jax.monitoring.register_event_duration_secs_listener(on_event)
  jax.monitoring.register_event_listener(on_count)
  try:
    with jax.default_matmul_precision(JAX_PRECISION[precision]), \
        tempfile.TemporaryDirectory() as tmp:
      t0 = time.perf_counter()
      trained = E.train(prepared, cfg, tmp)
      jax_total = time.perf_counter() - t0
  finally:
    jax.monitoring.unregister_event_duration_listener(on_event)
    jax.monitoring.unregister_event_listener(on_count)
  hist = trained.info["history"]
  secs = [r["seconds"] for r in hist]
  # The epochs after the first (which compiles the shapes it meets); one epoch: less compiling.
  steady = (statistics.median(secs[1:]) if len(secs) > 1 else
            max(secs[0] - compile_s[0], 0.1 * secs[0]))
  jax_row = dict(base, impl=f"jax_fit[{args.fit_config}]",
                 nodes_per_s_fwd_bwd=nodes_train / steady, trees_per_s=n_train / steady,
                 trees_per_s_total=n_train * len(secs) / jax_total,
                 compile_s=compile_s[0],
                 programs_compiled=programs["programs"] - programs["from_cache"],
                 programs_from_cache=programs["from_cache"], epoch_seconds=secs,
                 train_seconds_total=jax_total, final_val_loss=hist[-1]["val_loss"])
  if torch is None:
    return [dict(base, impl="torch_levelwise_fit", skipped="PyTorch is not installed"), jax_row]
  torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
  # Torch: the same batches, model (initial parameters), optimiser, loss and epochs.
  rcfg = E.resolve(cfg, prepared)
  _, variables = E.build(rcfg)
  dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  params, logits_fn = make_torch_model(jax.device_get(variables.params),
                                       rcfg.model.dropout_rate, torch, dev)
  wp, wn = (torch.as_tensor(np.array(a), device=dev)
            for a in losses.class_weights(prepared.pos_counts, prepared.neg_counts))
  opt = (torch.optim.Adam(params.values(), lr=cfg.train.learning_rate)
         if cfg.train.optimizer == "adam" else
         torch.optim.SGD(params.values(), lr=cfg.train.learning_rate))
  F = torch.nn.functional

  def bce(lg, t):
    per = -(wp * t * F.logsigmoid(lg) + wn * (1.0 - t) * F.logsigmoid(-lg))
    return per.sum(-1)

  val = E.batches(prepared.val, rcfg, batch_trees=rcfg.eval.batch_trees)
  t_train, t_eval, val_loss = [], 0.0, None
  t_all = time.perf_counter()
  for epoch in range(args.fit_epochs):
    t0 = time.perf_counter()
    order = np.random.default_rng((cfg.train.seed, epoch)).permutation(n_train)
    for tb in torch_tree_batches(E.batches(prepared.train, rcfg,
                                           batch_trees=cfg.train.batch_trees, order=order),
                                 torch, dev):
      opt.zero_grad(set_to_none=True)
      loss = bce(logits_fn(tb, True), tb["targets"]).mean()
      loss.backward()
      opt.step()
    if dev.type == "cuda":
      torch.cuda.synchronize()
    t_train.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with torch.no_grad():
      tot = cnt = 0.0
      for tb in torch_tree_batches(val, torch, dev):
        tot += float(bce(logits_fn(tb, False), tb["targets"]).sum())
        cnt += tb["targets"].shape[0]
      val_loss = tot / max(cnt, 1)
    t_eval += time.perf_counter() - t0
  torch_total = time.perf_counter() - t_all
  torch_steady = statistics.median(t_train[1:]) if len(t_train) > 1 else t_train[0]
  jax_row.update(torch_val_loss=val_loss, ratio_fwd_bwd_vs_torch_levelwise=torch_steady / steady,
                 ratio_total_vs_torch_levelwise=torch_total / jax_total)
  torch_row = dict(base, impl="torch_levelwise_fit", nodes_per_s_fwd_bwd=nodes_train / torch_steady,
                   trees_per_s=n_train / torch_steady,
                   trees_per_s_total=n_train * args.fit_epochs / torch_total,
                   ratio_fwd_bwd_vs_torch_levelwise=1.0, compile_s=None,
                   epoch_seconds=t_train, eval_seconds=t_eval, train_seconds_total=torch_total,
                   final_val_loss=val_loss)
  return [torch_row, jax_row]


_PREPARED: dict = {}


# ----------------------------------------------------------------------------------------- main

def best_variants(rows: list[dict]) -> list[dict]:
  """Per (device, trees, precision): the timing row of the JAX variant with the most nodes/s,
  forward and forward+backward."""
  out = []
  timing = [r for r in rows if r.get("kind") == "timing" and "jax_impl" in r
            and r.get("nodes_per_s_fwd")]
  for dev, n, prec in sorted({(r["device"], r["trees"], r["precision"]) for r in timing}):
    js = [r for r in timing if (r["device"], r["trees"], r["precision"]) == (dev, n, prec)]
    bf = max(js, key=lambda r: r["nodes_per_s_fwd"])
    bfb = max(js, key=lambda r: r["nodes_per_s_fwd_bwd"])
    out.append(dict(kind="best", device=dev, trees=n, precision=prec, fwd_impl=bf["impl"],
                    ratio_fwd_vs_torch_levelwise=bf["ratio_fwd_vs_torch_levelwise"],
                    ratio_fwd_vs_node_by_node=bf.get("ratio_fwd_vs_node_by_node"),
                    fwd_bwd_impl=bfb["impl"],
                    ratio_fwd_bwd_vs_torch_levelwise=bfb["ratio_fwd_bwd_vs_torch_levelwise"],
                    ratio_fwd_bwd_vs_node_by_node=bfb.get("ratio_fwd_bwd_vs_node_by_node"),
                    compile_s=bfb.get("compile_s")))
  return out


def plot(path: str, png: str) -> None:
  """The scaling rows of ``path`` as a log-log figure: nodes/s against nodes in the batch."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from popdiff_jax.results import read_results

  _, rows = read_results(path)
  rows = [r for r in rows if r.get("kind") == "scaling" and r.get("nodes_per_s_fwd")]
  if not rows:
    raise SystemExit(f"{path} has no rows of kind 'scaling'")
  precs = sorted({r["precision"] for r in rows})
  fig, axes = plt.subplots(1, len(precs), figsize=(6 * len(precs), 4.2), squeeze=False)
  for ax, prec in zip(axes[0], precs):
    for impl in sorted({r["impl"] for r in rows if r["precision"] == prec}):
      pts = sorted((r["nodes"], r["nodes_per_s_fwd"], r["nodes_per_s_fwd_bwd"]) for r in rows
                   if r["impl"] == impl and r["precision"] == prec)
      x = [p[0] for p in pts]
      torch_side = impl.startswith("torch")
      ax.plot(x, [p[1] for p in pts], marker="o", ls="-", color="C1" if torch_side else "C0",
              label=f"{impl} forward")
      ax.plot(x, [p[2] for p in pts], marker="s", ls="--", color="C1" if torch_side else "C0",
              label=f"{impl} forward+backward")
    trees = sorted(r["trees"] for r in rows if r["precision"] == prec)
    ax.set(xscale="log", yscale="log",
           xlabel=f"nodes in the batch ({trees[0]:,} to {trees[-1]:,} trees)",
           ylabel="nodes / s", title=f"Tree LSTM, {prec} ({rows[0]['device']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  pathlib.Path(png).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(png, dpi=120)
  print(f"wrote {png}")


def main(argv=None):
  """Runs the parts and writes the result file (and the scaling plot)."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default=str(ROOT / "benchmarks/results/tree_lstm_speed.json"))
  ap.add_argument("--plot", action="store_true", help="only draw --png from the rows in --out")
  ap.add_argument("--png", default=None,
                  help="the scaling plot (default: tree_lstm_scaling.png beside --out)")
  ap.add_argument("--quick", action="store_true",
                  help="a CPU check: small sizes, fp32, few repeats, a short fit")
  ap.add_argument("--parts", nargs="+", default=["timing", "scaling", "fit"],
                  choices=("timing", "scaling", "fit"), help="run in this order")
  ap.add_argument("--precisions", nargs="+", default=["fp32", "tf32"], choices=JAX_PRECISION)
  ap.add_argument("--trees", type=int, nargs="+", default=[256, 0],
                  help="timing sizes: the first trees by name; 0 = all (1,490)")
  ap.add_argument("--scaling_trees", type=int, nargs="+", default=[64, 128, 256, 512, 0])
  ap.add_argument("--scaling_precisions", nargs="+", default=["fp32"], choices=JAX_PRECISION)
  ap.add_argument("--variants", nargs="+", default=["parents:4096", "parents:8192:full"],
                  help="JAX variants (module docstring); the first also runs the scaling part")
  ap.add_argument("--tar", default=os.environ.get(
      "TWITTER15_TAR", str(ROOT.parent / "shared" / "data" / "twitter15_16_trees" /
                          "twitter15_tree.tar.gz")))
  ap.add_argument("--hidden", type=int, default=128)
  ap.add_argument("--input_dim", type=int, default=42)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--node_min", type=int, default=1000)
  ap.add_argument("--fit_config", default="diffusion-lstm")
  ap.add_argument("--fit_max_trees", type=int, default=400)
  ap.add_argument("--fit_epochs", type=int, default=3)
  ap.add_argument("--fit_precisions", nargs="+", default=["fp32"], choices=JAX_PRECISION)
  ap.add_argument("--fit_reserve_s", type=float, default=60.0,
                  help="the fit starts only with this much of --budget_s left")
  ap.add_argument("--fit_chunk", type=int, default=0,
                  help="node-layout chunk of the fit (0: the config's)")
  ap.add_argument("--fit_buckets", type=int, nargs="+", default=None,
                  help="chunk counts K of the fit's batches (default: the config's); one value: "
                       "every batch padded to it, one compiled train step")
  ap.add_argument("--fit_parent_buckets", type=int, nargs="+", default=None,
                  help="sequential step counts S of the fit's batches (default: the config's)")
  ap.add_argument("--budget_s", type=float, default=240.0,
                  help="rows not started within this many seconds are recorded as skipped")
  args = ap.parse_args(argv)
  args.png = args.png or str(pathlib.Path(args.out).with_name("tree_lstm_scaling.png"))
  if args.plot:
    plot(args.out, args.png)
    return
  if args.quick:
    args.precisions = args.fit_precisions = args.scaling_precisions = ["fp32"]
    args.trees, args.scaling_trees = [64], [32, 64, 128]
    args.variants = ["parents:512", "parents:0:full"]
    args.repeats, args.node_min = 3, 100
    args.fit_max_trees, args.fit_epochs, args.fit_reserve_s = 80, 2, 0.0
    args.budget_s = max(args.budget_s, 600.0)

  try:
    import torch
  except ImportError:
    torch = None

  from popdiff_jax.results import run_metadata, write_results

  no_torch = "PyTorch is not installed"
  tdev = (torch.device("cuda" if torch.cuda.is_available() else "cpu")
          if torch is not None else None)
  jdev = jax.devices()[0]
  device = f"{jdev.platform}:{getattr(jdev, 'device_kind', '')}"
  peak = peaks(device)
  meta = run_metadata("tree_lstm_speed", config=vars(args), packages=("torch",),
                      peaks_assumed=dict(zip(("fp32_flops", "tf32_flops", "bytes_per_s"), peak))
                      if peak else None)
  rows: list[dict] = []
  t_start = time.perf_counter()

  def log(msg):
    print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

  def write():
    write_results(args.out, rows + best_variants(rows), meta)

  def emit(row):
    row = {**{k: None for k in REQUIRED}, **row}
    rows.append(row)
    if row.get("nodes_per_s_fwd_bwd") is not None:
      f = row["nodes_per_s_fwd"]
      log(f"{row['kind']:7s} {row['impl']:38s} {row['precision']} trees {row['trees']:5d}  "
          f"fwd {f if f is not None else float('nan'):12.0f}  f+b "
          f"{row['nodes_per_s_fwd_bwd']:12.0f} n/s  x lvl "
          f"{row.get('ratio_fwd_vs_torch_levelwise') or float('nan'):5.2f} / "
          f"{row.get('ratio_fwd_bwd_vs_torch_levelwise') or float('nan'):5.2f}  compile "
          f"{row.get('compile_s') or 0:5.1f} s")
    else:
      log(f"{row['kind']} {row['impl']} {row['precision']} trees {row['trees']}: "
          f"{row.get('error') or row.get('skipped')}")
    write()

  @contextlib.contextmanager
  def guarded(base, reserve_s: float = 0.0):
    """Runs a row's work; a failure, the time budget (less ``reserve_s``, the least the row
    needs) or a missing PyTorch for a torch row gives a row saying so."""
    if time.perf_counter() - t_start > args.budget_s - reserve_s:
      emit(dict(base, skipped=f"time budget of {args.budget_s:.0f} s spent"
                + (f" (the row needs {reserve_s:.0f} s)" if reserve_s else "")))
      yield False
      return
    if torch is None and base.get("impl", "").startswith("torch"):
      emit(dict(base, skipped=no_torch))
      yield False
      return
    try:
      yield True
    except Exception as e:  # noqa: BLE001 - the row records any failure
      emit(dict(base, error=f"{type(e).__name__}: {e}"[:2000]))
      traceback.print_exc()

  sizes = sorted(set(args.trees if "timing" in args.parts else [])
                 | set(args.scaling_trees if "scaling" in args.parts else []),
                 key=lambda n: n or 10**9)
  parents_all, source = load_trees(args.tar, 0 if 0 in sizes else max(sizes or [1]))
  log(f"{len(parents_all)} trees ({source}); torch on {tdev}, JAX on {device}")
  measured: dict = {}  # (trees, precision, impl) -> row, for the scaling part
  node_times: dict = {}  # (trees timed, precision) -> node-by-node seconds (fwd, fwd+bwd)

  def problem(n_req):
    parents = parents_all[:n_req] if n_req else parents_all
    prob = make_problem(parents, args.hidden, args.input_dim)
    return prob, (TorchTrees(prob, torch, tdev) if torch is not None else None)

  def base_of(prob, precision, kind):
    return dict(kind=kind, device=device, precision=precision, trees=prob.n_trees,
                nodes=prob.n_nodes, levels=prob.levels, hidden=args.hidden,
                input_dim=args.input_dim, tree_source=source)

  def torch_rows(prob, tt, precision, kind, node_by_node):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    base = base_of(prob, precision, kind)
    out = {}
    if node_by_node:
      k_sub = min(int(np.searchsorted(np.cumsum([p.shape[0] for p in prob.parents]),
                                      args.node_min) + 1), prob.n_trees)
      n_sub = int(tt.offs[k_sub])
      # The same first trees at every size: timed once per precision.
      if (k_sub, precision) not in node_times:
        reps = max(2, args.repeats // 4)
        node_times[(k_sub, precision)] = (
            timeit(lambda: tt.node_by_node(False, k_sub), reps, 1),
            timeit(lambda: tt.node_by_node(True, k_sub), reps, 1))
      t_f, t_b = node_times[(k_sub, precision)]
      out["node"] = dict(base, impl="torch_node_by_node", nodes_timed=n_sub, trees_timed=k_sub,
                         nodes_per_s_fwd=n_sub / t_f, nodes_per_s_fwd_bwd=n_sub / t_b,
                         fwd_ms=t_f * 1e3, fwd_bwd_ms=t_b * 1e3)
    t_f = timeit(lambda: tt.levelwise(False), args.repeats)
    t_b = timeit(lambda: tt.levelwise(True), args.repeats)
    c = costs("torch", prob.n_nodes, prob.n_nodes, prob.n_trees, args.input_dim, args.hidden)
    out["level"] = dict(base, impl="torch_levelwise", steps=prob.levels,
                        nodes_per_s_fwd=prob.n_nodes / t_f, nodes_per_s_fwd_bwd=prob.n_nodes / t_b,
                        fwd_ms=t_f * 1e3, fwd_bwd_ms=t_b * 1e3,
                        ratio_fwd_vs_torch_levelwise=1.0, ratio_fwd_bwd_vs_torch_levelwise=1.0,
                        **c, **floor_fields(c, t_f, t_b, peak, precision))
    return out

  def jax_row(prob, tt, precision, kind, spec, anchors, h_ref):
    r = run_jax_variant(prob, spec, precision, args.repeats, h_ref)
    t_f, t_b = r["fwd_ms"] / 1e3, r["fwd_bwd_ms"] / 1e3
    lvl = anchors.get("level")
    row = dict(base_of(prob, precision, kind), **r, nodes_per_s_fwd=prob.n_nodes / t_f,
               nodes_per_s_fwd_bwd=prob.n_nodes / t_b,
               ratio_fwd_vs_torch_levelwise=prob.n_nodes / t_f / lvl["nodes_per_s_fwd"]
               if lvl else None,
               ratio_fwd_bwd_vs_torch_levelwise=prob.n_nodes / t_b / lvl["nodes_per_s_fwd_bwd"]
               if lvl else None,
               **floor_fields(r, t_f, t_b, peak, precision))
    if "node" in anchors:
      row["ratio_fwd_vs_node_by_node"] = row["nodes_per_s_fwd"] / anchors["node"][
          "nodes_per_s_fwd"]
      row["ratio_fwd_bwd_vs_node_by_node"] = row["nodes_per_s_fwd_bwd"] / anchors["node"][
          "nodes_per_s_fwd_bwd"]
    return row

  def tagged(row, precision):
    return dict(row, impl=row["impl"] if precision == "fp32" else f"{row['impl']}-{precision}")

  # ---- timing: the anchors and every variant at the timing sizes
  if "timing" in args.parts:
    for precision in args.precisions:
      for n_req in args.trees:
        prob, tt = problem(n_req)
        base = base_of(prob, precision, "timing")
        log(f"timing {prob.n_trees} trees, {prob.n_nodes} nodes, {precision}")
        anchors, h_ref = {}, None
        with guarded(dict(base, impl="torch_levelwise")) as go:
          if go:
            anchors = torch_rows(prob, tt, precision, "timing", node_by_node=True)
            h_ref = tt.states()
            lvl, node = anchors["level"], anchors["node"]
            emit(tagged(dict(node, ratio_fwd_vs_torch_levelwise=node["nodes_per_s_fwd"]
                             / lvl["nodes_per_s_fwd"], ratio_fwd_bwd_vs_torch_levelwise=node[
                                 "nodes_per_s_fwd_bwd"] / lvl["nodes_per_s_fwd_bwd"]),
                        precision))
            emit(tagged(dict(lvl, ratio_fwd_vs_node_by_node=lvl["nodes_per_s_fwd"]
                             / node["nodes_per_s_fwd"], ratio_fwd_bwd_vs_node_by_node=lvl[
                                 "nodes_per_s_fwd_bwd"] / node["nodes_per_s_fwd_bwd"]),
                        precision))
            measured[(prob.n_trees, precision, "torch_levelwise")] = lvl
        for spec in args.variants:
          with guarded(dict(base, impl=variant_name(*parse_variant(spec)))) as go:
            if go:
              row = jax_row(prob, tt, precision, "timing", spec, anchors, h_ref)
              measured[(prob.n_trees, precision, spec)] = row
              emit(tagged(row, precision))
        del tt
        if tdev is not None and tdev.type == "cuda":
          torch.cuda.empty_cache()

  # ---- scaling: the first variant and torch level-wise at every scaling size
  if "scaling" in args.parts:
    spec = args.variants[0]
    for precision in args.scaling_precisions:
      for n_req in args.scaling_trees:
        n_trees = len(parents_all[:n_req] if n_req else parents_all)
        lvl = measured.get((n_trees, precision, "torch_levelwise"))
        jr = measured.get((n_trees, precision, spec))
        prob = tt = None
        if lvl is None or jr is None:
          prob, tt = problem(n_req)
        base = dict(kind="scaling", device=device, precision=precision, trees=n_trees)
        with guarded(dict(base, impl="torch_levelwise")) as go:
          if go:
            if lvl is None:
              lvl = torch_rows(prob, tt, precision, "scaling", node_by_node=False)["level"]
            emit(tagged(dict(lvl, kind="scaling"), precision))
        with guarded(dict(base, impl=variant_name(*parse_variant(spec)))) as go:
          if go:
            if jr is None:
              jr = jax_row(prob, tt, precision, "scaling", spec, {"level": lvl} if lvl else {},
                           tt.states() if tt is not None else None)
            emit(tagged(dict(jr, kind="scaling"), precision))
        del tt

  # ---- fit: the project's training against a torch training loop
  if "fit" in args.parts:
    for precision in args.fit_precisions:
      base = dict(kind="fit", device=device, precision=precision, trees=None,
                  impl=f"jax_fit[{args.fit_config}]")
      with guarded(base, reserve_s=args.fit_reserve_s) as go:
        if go:
          log(f"fit {args.fit_config}, {precision}")
          for row in run_fit(args, precision, device, torch, log):
            emit(tagged(row, precision))
  write()
  log(f"wrote {args.out}")
  if any(r.get("kind") == "scaling" and r.get("nodes_per_s_fwd") for r in rows):
    try:
      plot(args.out, args.png)
    except Exception as e:  # noqa: BLE001 - the results are written; the figure is extra
      log(f"no plot: {type(e).__name__}: {e}")
  fmt = lambda v: "n/a" if v is None else f"{v:.2f}x"
  for b in best_variants(rows):
    log(f"best of {b['trees']} trees {b['precision']}: fwd {b['fwd_impl']} "
        f"{fmt(b['ratio_fwd_vs_torch_levelwise'])} torch level-wise; fwd+bwd "
        f"{b['fwd_bwd_impl']} {fmt(b['ratio_fwd_bwd_vs_torch_levelwise'])}")

if __name__ == "__main__":
  main()
