"""Workdirs are safe: one process at a time (the holder is named), a different config refuses
and names the fields (unless --overwrite / --resume), a refused run changes nothing."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from popdiff_jax.training.workdir import WorkdirError, claim, config_differences, write_config

CFG = {"dataset": "ndm/irvine", "config": {"train": {"learning_rate": 0.001, "seed": 0},
                                           "model": {"dim": 8}}}


def _snapshot(path):
  return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else None)
                for p in path.rglob("*"))


def test_config_differences_name_the_fields():
  other = {"dataset": "ndm/irvine", "config": {"train": {"learning_rate": 0.01, "seed": 0},
                                               "model": {"dim": 16}}}
  assert config_differences(CFG, other) == ["config.model.dim: 8 -> 16",
                                            "config.train.learning_rate: 0.001 -> 0.01"]
  assert config_differences(CFG, CFG) == []


def test_another_config_is_refused_and_nothing_changes(tmp_path):
  with claim(tmp_path / "w", CFG) as w:
    write_config(w, CFG)
    (w / "metrics.jsonl").write_text("{}\n")
  before = _snapshot(tmp_path / "w")
  other = json.loads(json.dumps(CFG))
  other["config"]["train"]["learning_rate"] = 0.01
  with pytest.raises(WorkdirError, match=r"train.learning_rate: 0.001 -> 0.01.*--overwrite"):
    with claim(tmp_path / "w", other):
      pass
  assert _snapshot(tmp_path / "w") == before
  with claim(tmp_path / "w", other, resume=True):  # continue anyway: files kept
    assert (tmp_path / "w" / "metrics.jsonl").exists()
  with claim(tmp_path / "w", other, overwrite=True) as w:  # start over: the old run is gone
    assert not (w / "metrics.jsonl").exists() and not (w / "config.json").exists()
  with claim(tmp_path / "w", CFG):  # the same config claims again without a flag
    pass


def test_a_refused_new_folder_is_not_left_behind(tmp_path):
  with claim(tmp_path / "a", CFG) as w:
    write_config(w, CFG)
  with pytest.raises(ValueError):
    with claim(tmp_path / "b", CFG, overwrite=True, resume=True):
      pass
  assert not (tmp_path / "b").exists()


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import time
      from popdiff_jax.training.workdir import claim
      with claim({str(tmp_path / 'w')!r}, {{}}):
          print("claimed", flush=True)
          time.sleep(60)
      """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  try:
    assert holder.stdout.readline().strip() == "claimed"
    with pytest.raises(WorkdirError, match=f"in use by process {holder.pid} on "):
      with claim(tmp_path / "w", {}):
        pass
  finally:
    holder.kill()
    holder.wait()
  time.sleep(0.1)
  with claim(tmp_path / "w", {}):  # a killed holder's lock is free again
    pass


def test_the_same_config_with_tuples_claims_again(tmp_path):
  cfg = {"config": {"data": {"buckets": (8, 16)}}}
  with claim(tmp_path / "w", cfg) as w:
    write_config(w, cfg)
  with claim(tmp_path / "w", cfg):  # tuples and the lists config.json holds are the same config
    pass
