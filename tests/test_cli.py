"""The popdiff command: each command ends with a results table; bad input is one line, exit 2."""

import json

from popdiff_jax.cli.main import main


def test_reproduce_prints_a_table_and_writes_rows(tmp_path, capsys):
  out = tmp_path / "rows.json"
  assert main(["reproduce", "ndm", "--datasets", "ndm/irvine", "--models", "popularity",
               "--workdir", str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert "hits@10" in table and "ndm/irvine" in table and "popularity" in table
  (row,) = json.loads(out.read_text())
  assert row["dataset"] == "ndm/irvine" and 0.0 < row["hits@100"] <= 1.0


def test_train_then_evaluate_the_same_checkpoint(tmp_path, capsys):
  workdir = tmp_path / "lstm"
  args = ["train", "--dataset", "ndm/irvine", "--model", "lstm", "--workdir", str(workdir),
          "--epochs", "1", "--dim", "8", "--max-len", "16", "--no-progress"]
  assert main(args) == 0
  trained = json.loads((workdir / "results.json").read_text())
  capsys.readouterr()
  assert main(["evaluate", "--workdir", str(workdir), "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert f"{trained['hits@10']:.4f}" in table  # the best checkpoint scores as it did after training


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
  code = main(["train", "--dataset", "forest/twitter", "--workdir", str(tmp_path),
               "--data-dir", str(tmp_path / "absent"), "--no-progress"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and err.startswith("popdiff: error:") and "\n" not in err
  assert "forest/twitter" in err
