"""Reliability under faults: SIGKILL during a checkpoint save, same seed = same bits, corrupt
checkpoints.

The SIGKILL tests run ``tests/_train_child.py`` (a small network trained by ``fit``) in a
subprocess that pauses inside orbax's save (after the files are written, before they are committed)
and kill it there with SIGKILL; a second process resumes in the same workdir and must end with
exactly the parameters, optimiser state and epoch log of a run that was never interrupted.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest


from popdiff_jax.training.checkpoint import CheckpointError

_CHILD = pathlib.Path(__file__).with_name("_train_child.py")
_ROOT = _CHILD.parent.parent


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(_ROOT))
  env.pop("XLA_FLAGS", None)  # the parent's forced 4 host devices are not needed here
  return env


def _train(workdir, out, *extra, timeout=120):
  subprocess.run([sys.executable, str(_CHILD), "--workdir", str(workdir), "--out", str(out),
                  *extra], check=True, env=_env(), timeout=timeout, capture_output=True)
  with np.load(out, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def _kill_during_save(workdir, out, pause):
  proc = subprocess.Popen([sys.executable, str(_CHILD), "--workdir", str(workdir), "--out",
                           str(out), "--pause-in-save", pause], env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  marker = pathlib.Path(workdir) / "PAUSED"
  deadline = time.monotonic() + 120
  try:
    while not marker.exists():
      assert proc.poll() is None, "the training process ended before reaching the save"
      assert time.monotonic() < deadline, "the training process never reached the save"
      time.sleep(0.05)
    tmp = pathlib.Path(marker.read_text())
    assert tmp.exists() and "tmp" in tmp.name  # orbax's uncommitted folder is on disk
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
  return tmp


def _same(a, b):
  assert sorted(a) == sorted(b)
  assert json.loads(str(a["log"])) == json.loads(str(b["log"]))
  for k in a:
    if k.startswith("state"):
      np.testing.assert_array_equal(a[k], b[k], err_msg=k, strict=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  d = tmp_path_factory.mktemp("straight")
  return _train(d / "run", d / "out.npz")


@pytest.mark.parametrize("stage", ["state", "step"])
def test_sigkill_during_save_then_resume_equals_uninterrupted(tmp_path, uninterrupted, stage):
  workdir = tmp_path / "run"
  tmp = _kill_during_save(workdir, tmp_path / "killed.npz", f"3:{stage}")  # in epoch 3's save
  steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  assert "24" not in steps and any("tmp" in s for s in steps), steps  # epoch 3 never committed
  resumed = _train(workdir, tmp_path / "resumed.npz")
  assert int(resumed["resumed_from"]) == 1  # restarted after epoch 2 (0-based 1), the last commit
  _same(uninterrupted, resumed)
  after = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  assert not tmp.exists() and not any("tmp" in s for s in after), after  # the debris is cleaned up


def test_same_seed_same_bits_in_two_processes(tmp_path, uninterrupted):
  again = _train(tmp_path / "run", tmp_path / "out.npz")
  _same(uninterrupted, again)


# --- corrupt or truncated checkpoints, through ``fit`` -------------------------------------------

_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(64, 3)).astype(np.float32)
_Y = (_X @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)
_BATCHES = [(_X[i:i + 16], _Y[i:i + 16]) for i in range(0, 64, 16)]


def _tx():
  import optax
  return optax.adam(0.05)


def _toy_step(state, batch, key):
  from popdiff_jax.training.state import apply_gradients
  xb, yb = batch
  noise = 0.01 * jax.random.normal(key, (3,))
  loss, g = jax.value_and_grad(lambda w: jnp.mean((xb @ (w + noise) - yb) ** 2))(state.params)
  return apply_gradients(state, g, _tx()), {"loss": loss}


def _toy_fit(workdir, num_epochs):
  from popdiff_jax.training.loop import fit
  from popdiff_jax.training.state import create_train_state

  return fit(create_train_state(jnp.zeros(3, jnp.float32), _tx()), train_step=_toy_step,
             train_batches=lambda e: _BATCHES,
             evaluate=lambda s: {"loss": float(jnp.mean((_X @ s.params - _Y) ** 2))},
             workdir=workdir, num_epochs=num_epochs, base_key=jax.random.key(0), patience=None,
             progress=False, keep_checkpoints=3)


def _corrupt(step_dir: pathlib.Path, how: str) -> None:
  data_files = [f for f in (step_dir / "state").rglob("*") if f.is_file()
                and f.stat().st_size > 0 and "commit_success" not in f.name]
  if how == "truncate":  # e.g. a disk that filled up
    for f in data_files:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  elif how == "zero_length":
    for f in data_files:
      f.write_bytes(b"")
  elif how == "array_data_garbage":  # bit rot in the tensor store's data blocks, metadata intact
    rng = np.random.default_rng(0)
    for f in data_files:
      if f.parent.name == "d":
        f.write_bytes(rng.integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())
  elif how == "metadata_truncated":  # the epoch log / early-stopping counters
    f = step_dir / "metadata" / "metadata"
    f.write_bytes(f.read_bytes()[:10])
  elif how == "state_deleted":
    import shutil
    shutil.rmtree(step_dir / "state")
  else:
    raise ValueError(how)


@pytest.fixture(scope="module")
def toy_straight(tmp_path_factory):
  return _toy_fit(tmp_path_factory.mktemp("toy") / "run", 4)


@pytest.mark.parametrize("how", ["truncate", "zero_length", "array_data_garbage",
                                 "metadata_truncated",
                                 "state_deleted"])
def test_corrupt_newest_checkpoint_falls_back_and_resumes_exactly(tmp_path, toy_straight, how,
                                                                  caplog):
  _toy_fit(tmp_path, 3)  # checkpoints after epochs 1, 2, 3 (steps 4, 8, 12)
  _corrupt(tmp_path / "checkpoints" / "12", how)
  with caplog.at_level("WARNING"):
    resumed = _toy_fit(tmp_path, 4)
  assert resumed.resumed_from == 1  # the newest readable checkpoint: epoch 2 (0-based 1)
  assert any("step 12" in r.getMessage() and "skipping" in r.getMessage()
             for r in caplog.records)  # the skipped checkpoint is named in the log
  chex.assert_trees_all_equal(toy_straight.state, resumed.state)
  assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in toy_straight.history]


def test_every_checkpoint_corrupt_is_one_clear_error(tmp_path):
  _toy_fit(tmp_path, 2)
  for step_dir in (tmp_path / "checkpoints").iterdir():
    _corrupt(step_dir, "truncate")
  with pytest.raises(CheckpointError) as info:
    _toy_fit(tmp_path, 3)
  msg = str(info.value)
  assert "no readable checkpoint in" in msg and str(tmp_path / "checkpoints") in msg
  assert "step 8" in msg and "step 4" in msg  # each attempt is named
