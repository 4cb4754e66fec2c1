"""docs/tables.py: the Markdown tables quoted from benchmarks/results/ match their result files."""

import importlib.util
import pathlib
import sys

import pytest

from popdiff_jax.results import write_results

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
  spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "docs" / "tables.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod  # dataclasses look their module up
  spec.loader.exec_module(mod)
  return mod


def test_every_quoted_table_matches_its_result_file(tables):
  files = tables.markdown_files()
  assert ROOT / "README.md" in files
  diffs = tables.update(files, write=False)
  assert not diffs, "tables differ from benchmarks/results (python docs/tables.py --write):\n" + \
      "\n".join(diffs)


def test_every_spec_renders_and_is_quoted(tables):
  text = "".join(f.read_text() for f in tables.markdown_files())
  for name in tables.TABLES:
    out = tables.table(name)
    assert out.count("\n") >= 2, f"{name}: no rows"
    assert f"<!-- table: {name} -->" in text, f"{name} is quoted nowhere"


@pytest.fixture
def demo(tables, tmp_path):
  """A result file, a spec on it and a Markdown file quoting it between prose."""
  write_results(tmp_path / "demo.json",
                [{"model": "ndm", "hits": 0.1234, "paper_hits": 0.2, "kind": "x"},
                 {"model": "lstm", "hits": 0.25, "kind": "x"},
                 {"model": "other", "hits": 0.9, "kind": "y"}], {"benchmark": "demo"})
  specs = {"demo": tables.Table("demo.json", (tables.Col("model", "model"),
                                              tables.Col("Hits", "hits", ".3f",
                                                         paper="paper_hits")),
                                where={"kind": "x"}, sort=lambda r: r["hits"])}
  md = tmp_path / "doc.md"
  before = "# Title\n\nText before, | not a table |.\n\n"
  after = "\nText after.\n<!-- not a marker -->\n"
  md.write_text(before + "<!-- table: demo -->\nstale\n<!-- /table -->\n" + after)
  return specs, md, before, after


def test_rewrite_between_markers_only(tables, demo, tmp_path):
  specs, md, before, after = demo
  run = dict(specs=specs, results=tmp_path, root=tmp_path)
  assert tables.update([md], write=False, **run)  # stale content is a difference
  assert "stale" in md.read_text()  # a check leaves the file alone
  tables.update([md], write=True, **run)
  text = md.read_text()
  assert text.startswith(before) and text.endswith(after)
  assert ("<!-- table: demo -->\n\n| model | Hits |\n|---|---|\n| ndm | 0.123 / 0.200 |\n"
          "| lstm | 0.250 |\n\n<!-- /table -->\n") in text
  assert tables.update([md], write=False, **run) == []  # fixed: no difference left


def test_a_changed_number_is_detected_and_written(tables, demo, tmp_path):
  specs, md, before, after = demo
  run = dict(specs=specs, results=tmp_path, root=tmp_path)
  tables.update([md], write=True, **run)
  md.write_text(md.read_text().replace("0.250", "0.251"))
  diffs = tables.update([md], write=False, **run)
  assert len(diffs) == 1 and "-| lstm | 0.251 |" in diffs[0] and "+| lstm | 0.250 |" in diffs[0]
  tables.update([md], write=True, **run)
  assert "| lstm | 0.250 |" in md.read_text() and md.read_text().endswith(after)
  # A new number in the result file shows up as a difference too.
  write_results(tmp_path / "demo.json", [{"model": "ndm", "hits": 0.5, "kind": "x"}], {})
  assert tables.update([md], write=False, **run)


def test_unknown_name_and_broken_markers_are_errors(tables, demo, tmp_path):
  specs, md, _, _ = demo
  run = dict(specs=specs, results=tmp_path, root=tmp_path)
  md.write_text("a\n<!-- table: nope -->\n<!-- /table -->\n")
  with pytest.raises(tables.TableError, match="unknown table 'nope'"):
    tables.update([md], write=True, **run)
  assert md.read_text() == "a\n<!-- table: nope -->\n<!-- /table -->\n"
  for text, match in (("<!-- table: demo -->\nx\n", "no <!-- /table -->"),
                      ("<!-- table: demo -->\n<!-- table: demo -->\n<!-- /table -->\n",
                       "inside table"),
                      ("x\n<!-- /table -->\n", "without a table marker")):
    md.write_text(text)
    with pytest.raises(tables.TableError, match=match):
      tables.update([md], write=False, **run)


def test_cells_missing_values_bold_and_nested_keys(tables):
  spec = tables.Table("-", (tables.Col("g", "g"), tables.Col("v", "v", ".1f", bold="max"),
                            tables.Col("p", ("d.a", "d.b"), ".0f"),
                            tables.Col("m", "m", std="s", labels={"x": "X"})), group=("g",))
  rows = [{"g": 1, "v": 1.0, "d": {"a": 1, "b": 2}, "m": 3, "s": 1},
          {"g": 1, "v": 2.0, "m": "x"}, {"g": 2, "v": 0.5, "m": None}]
  lines = tables.render(spec, rows).splitlines()
  assert lines[2:] == ["| 1 | 1.0 | 1 / 2 | 3 ± 1 |", "| 1 | **2.0** | – / – | X |",
                       "| 2 | **0.5** | – / – | – |"]


def test_cli_check_and_print(tables, capsys):
  assert tables.main(["--check"]) == 0
  assert tables.main(["--print", "ndm_paper_protocol"]) == 0
  assert "| dataset | model | protocol | macro_f1 |" in capsys.readouterr().out
  assert tables.main(["--print", "nope"]) == 2


def test_picks_draw_one_row_from_each_file(tables, tmp_path):
  write_results(tmp_path / "a.json", [{"model": "x", "f1": 0.5, "f1_std": 0.1, "seeds": [0, 1],
                                       "paper_f1": 0.6},
                                      {"model": "x", "f1": 0.4, "protocol": "leak_free"}], {})
  write_results(tmp_path / "b.json", [{"name": "y", "acc": 70.25}], {})
  spec = tables.Table("", (tables.Col("p", "paper_name"), tables.Col("ours", "ours", ".2f",
                                                                     std="ours_std"),
                           tables.Col("paper", "paper", ".2f"),
                           tables.Col("free", "ours_leak_free", ".2f"),
                           tables.Col("seeds", "seeds"), tables.Col("protocol", "protocol")),
                      picks=(tables.Pick("a.json", {"model": "x", "protocol": (None,)}, "f1",
                                         "paper_f1", {"paper_name": "A"},
                                         leak_free={"protocol": "leak_free"}),
                             tables.Pick("b.json", {"name": "y"}, "acc", 71.0,
                                         {"paper_name": "B"}),
                             tables.Pick("b.json", {"name": "missing"}, "acc", None,
                                         {"paper_name": "C"})))
  assert tables.table("t", {"t": spec}, tmp_path).splitlines()[2:] == [
      "| A | 0.50 ± 0.10 | 0.60 | 0.40 | 2 | project |",
      "| B | 70.25 | 71.00 | – | – | project |",
      "| C | – | – | – | – | – |"]
