"""A training process for tests/test_reliability.py, run as ``python tests/_train_child.py``.

Trains a small two-layer network with dropout through ``popdiff_jax.training.loop.fit`` (its real
orbax checkpoints and resume path) and writes the final state, the best parameters and the
epoch log to ``--out`` (an ``.npz`` of plain arrays, read back without pickle).

``--pause-in-save K:STAGE`` makes the process write ``<workdir>/PAUSED`` and sleep inside orbax's
K-th checkpoint save (1-based), at ``STAGE``: ``state`` = the training state's files are written
but that item is not committed yet; ``step`` = every item is written but the step folder is not
yet renamed into place. The test SIGKILLs the process there.
"""

import argparse
import json
import pathlib
import time


def _install_pause(save_index: int, stage: str, marker: pathlib.Path) -> None:
  import orbax.checkpoint._src.path.atomicity as atomicity

  original = atomicity.AtomicRenameTemporaryPath.finalize
  saves = {"done": 0}

  async def finalize(self):
    final = pathlib.Path(str(self._final_path))
    is_step = final.parent.name == "checkpoints"
    current = saves["done"] + 1  # the save in progress
    if is_step:
      saves["done"] += 1
    hit = (stage == "step" and is_step) or (stage == "state" and final.name == "state")
    if hit and current == save_index:
      marker.write_text(str(self._tmp_path))
      time.sleep(600)  # the test kills us here
    return await original(self)

  atomicity.AtomicRenameTemporaryPath.finalize = finalize


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--pause-in-save", default=None)
  a = p.parse_args()
  workdir = pathlib.Path(a.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if a.pause_in_save:
    k, stage = a.pause_in_save.split(":")
    _install_pause(int(k), stage, workdir / "PAUSED")

  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from popdiff_jax.training.loop import fit
  from popdiff_jax.training.state import apply_gradients, create_train_state

  rng = np.random.default_rng(a.seed)
  x = rng.normal(size=(256, 6)).astype(np.float32)
  y = np.tanh(x @ rng.normal(size=(6,))).astype(np.float32)
  tx = optax.adam(1e-2)

  def forward(params, xb, key):
    h = jax.nn.relu(xb @ params["w1"] + params["b1"])
    if key is not None:  # dropout 0.2: the step key matters
      h = jnp.where(jax.random.bernoulli(key, 0.8, h.shape), h / 0.8, 0.0)
    return h @ params["w2"]

  def step(state, batch, key):  # fit compiles it (jit, state donated)
    xb, yb = batch
    loss, grads = jax.value_and_grad(
        lambda p: jnp.mean((forward(p, xb, key) - yb) ** 2))(state.params)
    return apply_gradients(state, grads, tx), {"loss": loss}

  def batches(epoch):
    order = np.random.default_rng([a.seed, epoch]).permutation(len(x))
    return [(x[order[i:i + 32]], y[order[i:i + 32]]) for i in range(0, len(x), 32)]

  k1, k2 = jax.random.split(jax.random.key(a.seed))
  params = {"w1": 0.5 * jax.random.normal(k1, (6, 16)), "b1": jnp.zeros(16),
            "w2": 0.5 * jax.random.normal(k2, (16,))}
  result = fit(create_train_state(params, tx), train_step=step, train_batches=batches,
               evaluate=lambda s: {"loss": float(jnp.mean((forward(s.params, x, None) - y) ** 2))},
               workdir=workdir, num_epochs=a.epochs, base_key=jax.random.key(a.seed + 1),
               patience=None, progress=False)
  # The returned state: the best epoch's parameters with the last step's optimiser state and count.
  leaves = {"state" + jax.tree_util.keystr(path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(result.state)}
  log = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  for r in log:  # wall-clock fields differ between runs by nature
    r.pop("seconds", None)
    r.pop("examples_per_s", None)
  np.savez(a.out, log=np.asarray(json.dumps(log)), resumed_from=np.asarray(
      -1 if result.resumed_from is None else result.resumed_from), **leaves)


if __name__ == "__main__":
  main()
