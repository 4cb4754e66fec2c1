"""Large vocabularies: ``loss="auto"`` streams the loss when the dense scores would not fit, and
says so; an out-of-memory error names the size of the dense scores and the option to change."""

import dataclasses

import pytest

from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.projects.ndm import experiment as ex
from popdiff_jax.projects.ndm.configs import DataConfig, get_config


def test_auto_picks_lean_for_a_million_users_and_dense_otherwise(capsys):
  cfg = get_config("ndm").replace(data={"max_len": 500})
  big = ex.choose_loss(cfg, 1_000_002)
  assert big.train.loss == "lean"
  err = capsys.readouterr().err
  assert "[32, 501, 1000002]" in err and "lean" in err and "GiB" in err
  small = ex.choose_loss(cfg, 12_629)
  assert small.train.loss == "dense" and capsys.readouterr().err == ""
  fixed = cfg.replace(train={"loss": "dense"})
  assert ex.choose_loss(fixed, 1_000_002).train.loss == "dense"  # an explicit choice is kept


def test_out_of_memory_names_the_dense_scores_and_the_lean_option(tmp_path, monkeypatch):
  data = load_dataset("ndm/irvine")
  data = dataclasses.replace(data, train=data.train[:32], valid=data.valid[:8])

  def fail(*args, **kwargs):
    raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2TiB")

  monkeypatch.setattr(ex, "_fit", fail)
  cfg = get_config("ndm-tiny")
  with pytest.raises(MemoryError, match=r"dense \[32, 8, 542\] scores.*--train.loss lean"):
    ex.train(data, cfg, tmp_path, progress=False)
