"""popdiff_jax.results: run metadata, the one result-file schema, JSON-lines files and merges."""

import dataclasses
import json

import numpy as np
import pytest

import popdiff_jax
from popdiff_jax import results


@dataclasses.dataclass(frozen=True)
class _Config:
  lr: float = 1e-3
  buckets: tuple = (4, 8)


def test_run_metadata_records_device_versions_commit_config_and_command(monkeypatch):
  monkeypatch.setenv("POPDIFF_COMMIT", "abc1234")
  meta = results.run_metadata("demo", config={"a": _Config()}, command="demo --x 1",
                              packages=("pytest",), note="n")
  assert meta["benchmark"] == "demo" and meta["commit"] == "abc1234"
  import jax
  assert meta["device"] == jax.devices()[0].device_kind and meta["n_devices"] == jax.device_count()
  assert meta["platform"] == jax.devices()[0].platform and meta["host"] and meta["os"]
  assert meta["versions"]["popdiff_jax"] == popdiff_jax.__version__
  assert {"python", "jax", "numpy", "pytest"} <= set(meta["versions"])
  assert meta["config"] == {"a": {"lr": 1e-3, "buckets": [4, 8]}}
  assert meta["command"] == "demo --x 1" and meta["note"] == "n"
  assert meta["date"].endswith("+00:00")
  json.dumps(meta)  # JSON-able as it is
  lean = results.run_metadata("demo", devices=False)
  assert lean["device"] is None and lean["n_devices"] is None


def test_git_commit_prefers_the_environment(monkeypatch):
  monkeypatch.setenv("POPDIFF_COMMIT", "feed")
  assert results.git_commit() == "feed"
  monkeypatch.delenv("POPDIFF_COMMIT")
  got = results.git_commit()
  assert got is None or (got and " " not in got)


def test_to_json_converts_numpy_and_rejects_objects():
  assert results.to_json({"x": np.float32(0.5), "y": np.arange(2), 3: {1, 2}}) == {
      "x": 0.5, "y": [0, 1], "3": [1, 2]}
  with pytest.raises(TypeError):
    results.to_json({"f": object()})


def test_write_read_round_trip_and_schema_checks(tmp_path):
  path = tmp_path / "sub" / "r.json"
  rows = [{"model": "ndm", "hits@10": np.float64(0.25)}, {"model": "lstm", "hits@10": 0.3}]
  results.write_results(path, rows, {"benchmark": "t"})
  doc = json.loads(path.read_text())
  assert set(doc) == {"meta", "rows"} and doc["rows"][0]["hits@10"] == 0.25
  assert path.read_text().startswith('{\n "meta"')  # indent 1
  assert results.read_results(path) == ({"benchmark": "t"}, doc["rows"])
  with pytest.raises(ValueError):
    results.write_results(path, [1, 2], {})
  (tmp_path / "bad.json").write_text("[1, 2]")
  with pytest.raises(ValueError):
    results.read_results(tmp_path / "bad.json")
  # A file with top-level fields instead of a meta object: those fields are its meta.
  (tmp_path / "flat.json").write_text(json.dumps({"benchmark": "x", "rows": [{"a": 1}]}))
  assert results.read_results(tmp_path / "flat.json") == ({"benchmark": "x"}, [{"a": 1}])


def test_jsonl_rows_with_summary_meta(tmp_path):
  path = tmp_path / "small.jsonl"
  results.append_row(path, {"name": "a", "seed": 0})
  results.append_row(path, {"name": "a", "seed": 1})
  assert results.read_results(path) == ({}, [{"name": "a", "seed": 0}, {"name": "a", "seed": 1}])
  results.write_results(results.summary_path(path), [{"name": "a", "seeds": 2}],
                        {"benchmark": "small"})
  assert results.summary_path(path).name == "small.jsonl.summary.json"
  assert results.read_results(path)[0] == {"benchmark": "small"}
  with pytest.raises(ValueError):
    results.write_results(path, [], {})
  with pytest.raises(ValueError):
    results.append_row(tmp_path / "x.json", {})


def test_merge_tags_rows_keeps_metas_and_nests(tmp_path):
  a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
  results.write_results(a, [{"x": 1}, {"x": 2}], {"benchmark": "t", "commit": "1", "date": "d1"})
  results.write_results(b, [{"x": 3}], {"benchmark": "t", "commit": "2", "date": "d2"})
  meta, rows = results.merge_results([a, b])
  assert [r["x"] for r in rows] == [1, 2, 3] and [r["run"] for r in rows] == ["a", "a", "b"]
  assert meta["benchmark"] == "t"  # shared by both runs
  assert meta["runs"] == [{"run": "a", "commit": "1", "date": "d1", "file": "a.json"},
                          {"run": "b", "commit": "2", "date": "d2", "file": "b.json"}]
  # A merged file merges again: its runs and tags are kept, a clashing name gets a suffix.
  results.write_results(c, rows, meta)
  results.write_results(tmp_path / "d" / "a.json", [{"x": 4}],
                        {"benchmark": "t", "commit": "3", "date": "d3"})
  meta2, rows2 = results.merge_results([c, tmp_path / "d" / "a.json"])
  assert [r["run"] for r in rows2] == ["a", "a", "b", "a-2"]
  assert [r["run"] for r in meta2["runs"]] == ["a", "b", "a-2"]
  assert meta2["runs"][0]["commit"] == "1" and meta2["runs"][2]["commit"] == "3"
  assert meta2["benchmark"] == "t"
  # In-memory parts are named by their date unless given a name.
  m3, r3 = results.merge_runs([({"date": "d9"}, [{"x": 0}]), ({"run": "mine"}, [{"x": 1}])])
  assert [r["run"] for r in r3] == ["d9", "mine"] and len(m3["runs"]) == 2
