"""``popdiff reproduce popularity`` bookkeeping: the rows over seeds, the merge into the result
file, resuming from finished runs, and the jobs of every split (the models' runs are faked)."""

import dataclasses
import json

import numpy as np
import pytest

from popdiff_jax import DataError
from popdiff_jax.data.posts import PostsSource
from popdiff_jax.projects import popularity_table as pt


def _fake_rows(calls):
  """A stand-in for ``_run_jobs``: seeded metrics for every job, each call recorded."""

  def run_jobs(config, seed, split, todo, *, workdir, progress, on_row):
    del config, workdir, progress
    for job in todo:
      calls.append((job.paper, job.model, split, seed))
      rng = np.random.default_rng([seed, len(job.model), pt.SPLITS.index(split)])
      if job.paper == "dual_attention":
        metrics = {m: float(rng.uniform(0.4, 0.7)) for m in pt.CLS_METRICS}
      else:
        metrics = {m: float(rng.uniform(0.1, 2.0)) for m in pt.REG_METRICS}
      on_row(job, {"paper": job.paper, "model": job.model, "split": split, **metrics,
                   "n_train": 100 + seed, "n_test": 20})
    return {"seconds": 0.0, "report": {"posts_kept": 1}} if todo else {}

  return run_jobs


def _config(tmp_path, **kw):
  base = dict(data=PostsSource(source="synthetic"), quick=True, seeds=(0, 1, 2),
              splits=("random", "user"), papers=("fusion_dnn",),
              fusion=pt.FusionOptions(studies=("only_user",), studies_split="random"),
              workdir=str(tmp_path / "w"), out=str(tmp_path / "popularity.json"))
  base.update(kw)
  return pt.ReproduceConfig(**base)


def test_aggregate_means_std_per_seed_and_the_papers_numbers():
  per_seed = [{"mae": 1.0, "mse": 2.0, "srcc": 0.5, "n_train": 10, "n_test": 4},
              {"mae": 2.0, "mse": 4.0, "srcc": 0.7, "n_train": 12, "n_test": 4}]
  row = pt.aggregate("fusion_dnn", "fusion_dnn", "time", per_seed, [3, 5])
  assert row["mae"] == 1.5 and row["mae_std"] == pytest.approx(np.std([1, 2], ddof=1), abs=1e-4)
  assert row["seeds"] == [3, 5] and row["per_seed"]["srcc"] == [0.5, 0.7]
  assert row["n_train"] == 11 and row["n_test"] == 4
  assert (row["paper_mae"], row["paper_mse"], row["paper_srcc"]) == (1.420, 3.361, 0.649)
  one = pt.aggregate("dual_attention", "ccr", "user",
                     [{"accuracy": 0.5, "precision": 0.6, "recall": 0.7, "f1": 0.65}], [0])
  assert one["accuracy"] == 50.0 and one["accuracy_std"] == 0.0  # percent; one seed: std 0
  assert one["paper_accuracy"] == 65.96  # a model the paper reports on one split only
  assert "paper_mae" not in pt.aggregate("multimodal_smp", "gradient_boosting", "random",
                                         per_seed, [0, 1])


def test_every_paper_has_jobs_on_the_user_split():
  config = pt.ReproduceConfig(quick=True, papers=pt.PAPERS, splits=("user",))
  by_paper = {}
  for job in pt.jobs(config, 0, "user"):
    by_paper.setdefault(job.paper, []).append(job)
    assert job.config.data.split == "user" and job.config.train.seed == 0
  assert set(by_paper) == set(pt.PAPERS)
  assert [j.model for j in by_paper["multimodal_smp"]] == [r for r, *_ in pt.SMP_MODELS]
  assert [j.model for j in by_paper["dual_attention"]] == list(pt.VARIANTS)


def test_rows_over_seeds_merge_into_the_file_and_a_rerun_resumes(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(pt, "_run_jobs", _fake_rows(calls))
  rows = pt.reproduce_popularity(_config(tmp_path), progress=False)
  assert [(r["model"], r["split"]) for r in rows] == [
      ("fusion_dnn", "random"), ("only_user", "random"), ("fusion_dnn", "user")]
  assert len(calls) == 9 and all(r["seeds"] == [0, 1, 2] for r in rows)
  meta = json.loads((tmp_path / "popularity.json").read_text())["meta"]
  assert meta["posts"] == "synthetic" and meta["quick"] is True
  # Another paper: its rows join the file, the fusion rows stay.
  pt.reproduce_popularity(_config(tmp_path, papers=("multimodal_smp",), splits=("user",)),
                          progress=False)
  saved = json.loads((tmp_path / "popularity.json").read_text())["rows"]
  assert {(r["paper"], r["split"]) for r in saved} == {
      ("fusion_dnn", "random"), ("fusion_dnn", "user"), ("multimodal_smp", "user")}
  assert len(saved) == 3 + len(pt.SMP_MODELS)
  # The same command again finds every run finished; a fourth seed runs only its own jobs.
  calls.clear()
  again = pt.reproduce_popularity(_config(tmp_path), progress=False)
  assert calls == [] and again == rows
  pt.reproduce_popularity(_config(tmp_path, seeds=(0, 1, 2, 3)), progress=False)
  assert {c[3] for c in calls} == {3} and len(calls) == 3
  row = next(r for r in json.loads((tmp_path / "popularity.json").read_text())["rows"]
             if r["model"] == "fusion_dnn" and r["split"] == "user")
  assert row["seeds"] == [0, 1, 2, 3] and len(row["per_seed"]["mae"]) == 4
  assert row["mae"] == pytest.approx(np.mean(row["per_seed"]["mae"]), abs=1e-4)


def test_a_result_file_of_other_posts_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(pt, "_run_jobs", _fake_rows([]))
  pt.reproduce_popularity(_config(tmp_path, seeds=(0,)), progress=False)
  other = _config(tmp_path, seeds=(0,), data=PostsSource(source=str(tmp_path / "p.csv")))
  with pytest.raises(DataError, match="another --out"):
    pt.reproduce_popularity(other, progress=False)


def test_the_command_line_options(tmp_path, monkeypatch, capsys):
  seen = {}

  def fake(config, progress):
    seen["config"] = config
    return []

  monkeypatch.setattr(pt, "reproduce_popularity", fake)
  assert pt.reproduce_main(["--data", "my.csv", "--format", "csv", "--splits", "user", "time",
                            "--seeds", "4", "--papers", "dual_attention", "--dual.dim", "32"],
                           progress=False) == 0
  c = seen["config"]
  assert (c.data.source, c.data.format, c.splits, c.seeds) == ("my.csv", "csv", ("user", "time"),
                                                               (4,))
  assert c.dual.dim == 32 and c.posts("user").split == "user"
  assert pt.reproduce_main(["--quick"], progress=False) == 0
  assert seen["config"] == dataclasses.replace(pt.QUICK)
  capsys.readouterr()
