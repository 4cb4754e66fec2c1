"""benchmarks/popularity.py bookkeeping: per-seed aggregation and the merge of per-seed runs."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "popularity.py"


@pytest.fixture(scope="module")
def bench():
  spec = importlib.util.spec_from_file_location("popularity_bench", _PATH)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_aggregate_and_merge(bench, tmp_path):
  rng = np.random.default_rng(0)
  seeds = [{"mae": rng.random(), "mse": rng.random(), "srcc": rng.random(), "n_train": 10,
            "n_test": 5} for _ in range(3)]
  rows = [bench.aggregate("fusion_dnn", "fusion_dnn", "time", [s], bench.REG_METRICS) for s in seeds]
  assert rows[0]["paper_reported"] == {"mae": 1.420, "mse": 3.361, "srcc": 0.649}
  paths = []
  for i, r in enumerate(rows):
    p = tmp_path / f"part{i}.json"
    p.write_text(json.dumps({"rows": [r], "runs": {"fusion_dnn": {"seed": i}}}))
    paths.append(str(p))
  out = tmp_path / "merged.json"
  bench.merge(paths, str(out))
  merged = json.loads(out.read_text())["rows"]
  assert len(merged) == 1 and merged[0]["seeds"] == 3
  vals = [round(s["srcc"], 4) for s in seeds]
  assert merged[0]["srcc"] == pytest.approx(np.mean(vals), abs=1e-4)
  assert merged[0]["srcc_std"] == pytest.approx(np.std(vals, ddof=1), abs=1e-4)
  whole = bench.aggregate("fusion_dnn", "fusion_dnn", "time", seeds, bench.REG_METRICS)
  assert whole["mae"] == pytest.approx(merged[0]["mae"], abs=1e-3)


def test_classification_rows_in_percent(bench):
  r = bench.aggregate("dual_attention", "ccr", "random",
                      [{"accuracy": 0.5, "precision": 0.6, "recall": 0.7, "f1": 0.65}] * 2,
                      bench.CLS_METRICS)
  assert r["accuracy"] == 50.0 and r["accuracy_std"] == 0.0
  assert r["paper_reported"]["accuracy"] == 65.96
