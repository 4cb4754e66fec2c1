"""The NDM project's result tables: each command's tiny mode writes its file in the one schema
(``seeds``, ``protocol``, ``_std`` over several seeds); the counting baseline against NumPy; the
job runner keeps a finished part when a later job is killed at the deadline.

Every tiny table trains the same tiny architecture, so the module compiles it once: a persistent
compilation cache (a temporary folder) serves the later tables; XLA's optimisations are off for
the module (``jax_disable_most_optimizations``: half the compile time; these tests check the
tables, not the compiled arithmetic).
"""

import json
import math
import sys
import time

import jax
import numpy as np
import pytest

from popdiff_jax.cli.main import main
from popdiff_jax.results import read_results, summary_path
from popdiff_jax.utils import jobs

EXAMPLES_NAME = "cascades"  # the tiny mode's data: popdiff_jax/data/examples/cascades.csv


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
  from jax.experimental.compilation_cache import compilation_cache as cc

  old = {k: jax.config.values[k] for k in (
      "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes", "jax_disable_most_optimizations")}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_disable_most_optimizations", True)
  cc.reset_cache()
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  cc.reset_cache()


def tiny(command, tmp_path, monkeypatch, *more):
  """Runs ``popdiff reproduce COMMAND --tiny`` in ``tmp_path`` (its files go to runs/tiny/)."""
  monkeypatch.chdir(tmp_path)
  assert main(["reproduce", command, "--tiny", "--no-progress", *more]) == 0


def _out(tmp_path, name):
  return tmp_path / "runs" / "tiny" / name


def _common_checks(meta, rows, protocols):
  if "runs" in meta:  # a merged file: this call is the last run
    meta = {**meta, **meta["runs"][-1]}
  assert meta["benchmark"] and "commit" in meta and "date" in meta
  assert meta["command"].startswith("popdiff reproduce") and "--tiny" in meta["command"]
  assert all(status in ("ok", "done earlier") for status in meta["jobs"].values())
  assert rows
  for r in rows:
    assert isinstance(r["seeds"], list) and r["protocol"] in protocols


def test_next_user_tiny_rows_merge_and_rerun(tmp_path, monkeypatch, capsys):
  out = _out(tmp_path, "ndm_next_user.json")
  out.parent.mkdir(parents=True)
  # A row of another dataset already in the file: kept, tagged with its run.
  out.write_text(json.dumps({"meta": {"benchmark": "ndm_next_user", "date": "old"},
                             "rows": [{"dataset": "ndm/other", "model": "ndm", "hits@10": 0.5}]}))
  tiny("ndm", tmp_path, monkeypatch)
  assert "Next-user prediction" in capsys.readouterr().out
  meta, rows = read_results(out)
  _common_checks(meta, [r for r in rows if r["dataset"] != "ndm/other"], ("files",))
  assert {r["model"] for r in rows} == {"ndm-tiny-examples", "popularity", "ndm"}
  old = next(r for r in rows if r["dataset"] == "ndm/other")
  assert old["run"] == "old" and [r["run"] for r in meta["runs"]][0] == "old"
  for r in rows:
    if r["dataset"] != "ndm/other":
      assert r["seeds"] == [0] and "hits@10_std" not in r
      for k in ("hits@10", "map@10", "hits@10_with_terminate", "map@100_with_terminate", "nll"):
        assert 0.0 <= r[k] <= 1.0 or k == "nll"
  # A rerun with the same options keeps the finished parts: nothing is trained again.
  tiny("ndm", tmp_path, monkeypatch)
  meta, again = read_results(out)
  assert set(meta["runs"][-1]["jobs"].values()) == {"done earlier"}
  assert len(again) == len(rows)
  # The protocol table scores the model this table trained, as it is.
  tiny("ndm-protocol", tmp_path, monkeypatch, "--workdir", "runs/tiny/ndm", "--models",
       "ndm-tiny-examples")
  (row,) = read_results(_out(tmp_path, "ndm_paper_protocol.json"))[1]
  assert row["model_source"].startswith("reused from") and row["epochs"] == 1


def test_small_sets_tiny_lines_and_summary_with_std(tmp_path, monkeypatch):
  tiny("ndm-small-sets", tmp_path, monkeypatch)
  out = _out(tmp_path, "ndm_small_sets.jsonl")
  meta, lines = read_results(out)
  assert len(lines) == 4 and {(r["name"], r["seed"]) for r in lines} == {
      (c, s) for c in ("ndm-tiny-examples", "popularity") for s in (0, 1)}
  for r in lines:
    assert r["seeds"] == [r["seed"]] and r["protocol"] == "files" and r["run"] == r["date"]
  ndm = next(r for r in lines if r["name"] == "ndm-tiny-examples")
  assert ndm["params_per_user"] > 0 and ndm["curve"][0]["epoch"] == 0
  summary = read_results(summary_path(out))[1]
  assert len(summary) == 2 and meta["runs"][-1]["jobs"]
  for r in summary:
    assert r["seeds"] == [0, 1] and r["protocol"] == "files"
    for k in ("hits@10", "map@10", "hits@10_with_terminate"):
      assert math.isfinite(r[k]) and r[f"{k}_std"] >= 0.0
  pop = next(r for r in summary if r["name"] == "popularity")
  assert pop["hits@10_std"] == 0.0  # no randomness
  tiny("ndm-small-sets", tmp_path, monkeypatch)  # lines already in the file are not run again
  assert len(read_results(out)[1]) == 4


def test_cooccurrence_tiny(tmp_path, monkeypatch):
  tiny("ndm-cooccurrence", tmp_path, monkeypatch)
  meta, rows = read_results(_out(tmp_path, "ndm_cooccurrence.json"))
  _common_checks(meta, rows, ("files",))
  assert [r["model"] for r in rows] == ["popularity (lam=0)", "counting, best on valid"]
  assert rows[0]["lam"] == 0.0 and rows[0]["seeds"] == [] and len(rows[1]["grid"]) == 3
  for k in ("hits@10", "map@10", "hits@10_with_terminate", "val_map@10_with_terminate"):
    assert k in rows[1]


def test_ic_baselines_and_protocol_tiny(tmp_path, monkeypatch):
  tiny("ic-baselines", tmp_path, monkeypatch)
  meta, rows = read_results(_out(tmp_path, f"ic_baselines_{EXAMPLES_NAME}.json"))
  _common_checks(meta, rows, ("project",))
  assert [r["model"] for r in rows] == ["embedded_ic", "netrate"]
  tiny("ndm-protocol", tmp_path, monkeypatch)
  meta, rows = read_results(_out(tmp_path, "ndm_paper_protocol.json"))
  _common_checks(meta, rows, ("project",))
  assert [r["model"] for r in rows] == ["NDM-TINY-EXAMPLES", "EmbeddedIC", "NetRate"]
  for r in rows:
    for k in ("macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5"):
      assert 0.0 <= r[k] <= 1.0
    assert r["runs_per_cascade"] == 8 and r["seeds"] == [0] and math.isfinite(r["msle"])


def test_norms_sensitivity_and_social_tiny(tmp_path, monkeypatch):
  tiny("ndm-norms", tmp_path, monkeypatch)
  meta, rows = read_results(_out(tmp_path, "ndm_norms.json"))
  _common_checks(meta, rows, ("project",))
  (r,) = rows
  assert r["W_init"] > 0 and r["init_W_init"] > 0 and r["W_2"] > 0 and r["epochs"] == 1
  tiny("ndm-sensitivity", tmp_path, monkeypatch)
  out = _out(tmp_path, "ndm_sensitivity.json")
  meta, rows = read_results(out)
  _common_checks(meta, rows, ("project",))
  assert [(r["param"], r["value"]) for r in rows] == [("win", 3), ("F_init", 1)]
  assert rows[0]["macro_f1"] == rows[1]["macro_f1"]  # one model serves both axes
  assert rows[0]["runs_per_cascade"] == 8 and out.with_suffix(".png").stat().st_size > 0
  tiny("ndm-social", tmp_path, monkeypatch)
  meta, rows = read_results(_out(tmp_path, "ndm_sn.json"))
  _common_checks(meta, rows, ("project",))
  assert [r["model"] for r in rows] == ["NDM", "NDM+SN"]
  assert rows[1]["users_in_graph"] == 30 and "micro_f1_rel_change" in rows[1]
  assert 0.0 <= rows[1]["micro_f1_first5"] <= 1.0


def test_several_seeds_give_mean_std_and_per_seed():
  from popdiff_jax.projects.ndm.tables.common import average_seeds

  rows = [{"dataset": "d", "model": "m", "seed": s, "hits@10": h, "runs_per_cascade": 8,
           "scored": c, "stopped_by": why}
          for s, h, c, why in ((1, 0.3, 5, "time"), (0, 0.1, 5, "patience"))]
  (r,) = average_seeds(rows, ("dataset", "model"))
  assert r["seeds"] == [0, 1] and r["hits@10"] == pytest.approx(0.2)
  assert r["hits@10_std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
  assert r["runs_per_cascade"] == 8 and "runs_per_cascade_std" not in r  # a setting, not a metric
  assert r["stopped_by"] == ["patience", "time"]
  assert [p["hits@10"] for p in r["per_seed"]] == [0.1, 0.3]


def test_paper_protocol_resplits_all_cascades_ninety_ten():
  from popdiff_jax.projects.ndm import configs as C
  from popdiff_jax.projects.ndm.tables.common import load_data, protocol_dataset

  data = load_data(C.get_config("ndm-tiny-examples").data)
  paper = protocol_dataset(data, "paper", seed=3)
  assert protocol_dataset(data, "project", seed=3) is data
  assert (len(paper.train), len(paper.valid), len(paper.test)) == (49, 5, 6)
  key = lambda c: tuple(c.users)  # noqa: E731
  pooled = sorted(map(key, data.train + data.valid + data.test))
  assert sorted(map(key, paper.train + paper.valid + paper.test)) == pooled
  assert paper.split.startswith("paper")


# ----------------------------------------------------------------------- the counting baseline


def _rank_metrics(scores, target, k):
  """Expected Hits@k and AP@k with ties broken uniformly at random (NumPy)."""
  t = scores[target]
  greater = float(np.sum(scores > t))
  tied = float(np.sum(scores == t))  # the target included
  hits = min(max((k - greater) / tied, 0.0), 1.0)
  top = min(k, greater + tied)
  ap = sum(1.0 / r for r in range(int(greater) + 1, int(top) + 1)) / tied if top > greater else 0.0
  return hits, ap


def _numpy_reference(train, test, num_items, window, lam, k):
  """Both conventions of Hits@k / MAP@k of the counting model, step by step."""
  counts = np.zeros((num_items, num_items))
  for c in train:
    seq = list(c.users) + [1]
    for j, u in enumerate(seq):
      for v in seq[j + 1:j + 1 + window]:
        counts[u, v] += 1
  pop = np.zeros(num_items)
  for c in train:
    for u in c.users:
      pop[u] += 1
  pop[1] = len(train)
  log_pop = np.log1p(pop)
  log_pop[0] = -np.inf
  sums = {"with": [0.0, 0.0, 0], "users": [0.0, 0.0, 0]}
  for c in test:
    seq = list(c.users) + [1]
    for j in range(len(seq) - 1):
      acc = sum(counts[seq[j - n]] for n in range(window) if j - n >= 0)
      scores = log_pop + lam * np.log1p(acc)
      scores[seq[:j + 1]] = -np.inf
      target = seq[j + 1]
      h, a = _rank_metrics(scores, target, k)
      sums["with"] = [sums["with"][0] + h, sums["with"][1] + a, sums["with"][2] + 1]
      if target != 1:
        s = scores.copy()
        s[1] = -np.inf
        h, a = _rank_metrics(s, target, k)
        sums["users"] = [sums["users"][0] + h, sums["users"][1] + a, sums["users"][2] + 1]
  return {f"hits@{k}_with_terminate": sums["with"][0] / sums["with"][2],
          f"map@{k}_with_terminate": sums["with"][1] / sums["with"][2],
          f"hits@{k}": sums["users"][0] / sums["users"][2],
          f"map@{k}": sums["users"][1] / sums["users"][2]}


def _random_cascades(rng, n, users):
  from popdiff_jax.data.cascades import Cascade

  out = []
  for _ in range(n):
    u = rng.choice(np.arange(2, users), size=int(rng.integers(2, 6)), replace=False)
    out.append(Cascade(u.astype(np.int32), np.arange(len(u), dtype=np.float64)))
  return out


@pytest.mark.parametrize("lam,window", [(0.0, 1), (1.5, 1), (0.7, 3)])
def test_counting_baseline_matches_numpy(lam, window):
  from popdiff_jax.baselines import cooccurrence as co
  from popdiff_jax.baselines.popularity import popularity_eval_step, popularity_scores
  from popdiff_jax.data.batching import make_batches
  from popdiff_jax.training import evaluate

  rng = np.random.default_rng(7)
  num_items = 12
  train, test = _random_cascades(rng, 30, num_items), _random_cascades(rng, 9, num_items)
  batches = make_batches(test, 4, max_len=8)
  model = co.fit_cooccurrence(train, num_items, window, lam)
  got = evaluate(co.cooccurrence_eval_step(window, ks=(3,)), model, None, batches)
  want = _numpy_reference(train, test, num_items, window, lam, 3)
  for k, x in want.items():
    np.testing.assert_allclose(got[k], x, rtol=1e-5, err_msg=k)
  if lam == 0.0:  # lam = 0 is the popularity floor exactly
    scores = jax.numpy.asarray(popularity_scores(train, num_items))
    pop = evaluate(popularity_eval_step((3,)), scores, None, batches)
    for k in pop:
      np.testing.assert_allclose(got[k], pop[k], rtol=1e-6, err_msg=k)


# ----------------------------------------------------------------------- the job runner


def test_job_runner_keeps_a_finished_part_when_a_later_job_is_killed(tmp_path):
  parts = tmp_path / "parts"

  def job(name, stages, sleep):  # writes its part after every stage, then sleeps
    path = jobs.part_path(parts, name)
    code = (f"import json, os, time\nos.makedirs({str(parts)!r}, exist_ok=True)\n"
            f"for s in range({stages}):\n"
            f"  open({str(path)!r} + '.tmp', 'w').write(json.dumps({{'stage': s + 1}}))\n"
            f"  os.replace({str(path)!r} + '.tmp', {str(path)!r})\n"
            f"time.sleep({sleep})\n")
    return jobs.Job(name, (sys.executable, "-c", code))

  seen = []
  t0 = time.time()
  status = jobs.run_jobs([job("first", 2, 0), job("slow", 1, 60), job("late", 1, 0)],
                         parallel=1, deadline=t0 + 2.5, grace=0.3, log_dir=tmp_path / "logs",
                         watch=parts, on_change=lambda s: seen.append(dict(s)), poll=0.1)
  assert status == {"first": "ok", "slow": "killed at the deadline", "late": "not started"}
  assert time.time() - t0 < 20
  got = jobs.read_parts(parts)
  assert got["first"] == {"stage": 2} and got["slow"] == {"stage": 1} and "late" not in got
  assert seen and seen[-1]["slow"] == "killed at the deadline"
