"""Ctrl-C during a real `popdiff train`: no crash, nothing half-written, a line that says how to
resume, exit status 130; the rerun resumes from the last finished epoch and completes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest


class _Run:
  """A `popdiff train` subprocess whose stderr (progress bars, epoch rows) is read by a thread."""

  def __init__(self, workdir, epochs):
    cmd = [sys.executable, "-m", "popdiff_jax.cli.main", "train", "ndm-tiny", "--workdir",
           str(workdir), "--train.num-epochs", str(epochs)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=env)
    self.err = []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for chunk in iter(lambda: self.proc.stderr.read(1), ""):
      self.err.append(chunk)

  def wait_for(self, text, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and self.proc.poll() is None:
      if text in "".join(self.err):
        return
      time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared; stderr: {''.join(self.err)[-2000:]}")

  def finish(self, timeout=900):
    self.proc.wait(timeout=timeout)
    self._reader.join(timeout=10)
    return self.proc.returncode, "".join(self.err)


@pytest.mark.parametrize("when", ["first_epoch", "after_an_epoch"])
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path, when):
  workdir = tmp_path / "run"
  run = _Run(workdir, 3)
  # First epoch: its bar appears before the first step compiles; after an epoch: the next bar.
  run.wait_for("epoch 1/3" if when == "first_epoch" else "epoch 2/3")
  run.proc.send_signal(signal.SIGINT)
  code, err = run.finish()
  assert code == 130, err[-3000:]
  assert "rerun the same command" in err and "Traceback" not in err
  assert "Segmentation" not in err and "core dumped" not in err
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()] \
      if (workdir / "metrics.jsonl").exists() else []
  if when == "after_an_epoch":
    assert rows and rows[0]["epoch"] == 0 and "resumes after epoch" in err
  # Nothing half-written: the config parses, every logged epoch has its checkpoint.
  json.loads((workdir / "config.json").read_text())
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) \
      if (workdir / "checkpoints").exists() else []
  assert [r["step"] for r in rows] == steps[-len(rows):] if rows else True
  code, err = _Run(workdir, 3).finish()
  assert code == 0, err[-3000:]
  result = json.loads((workdir / "results.json").read_text())
  assert result["epochs"] == 3 and 0.0 <= result["hits@10"] <= 1.0
  if when == "after_an_epoch":
    assert result["resumed_after_epoch"] >= 0
