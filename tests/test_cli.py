"""The popdiff command: each command ends with a results table; bad input is one line, exit 2;
``--help`` documents every option; the same seed gives the same metrics bit for bit."""

import argparse
import json

import pytest

from popdiff_jax._errors import DataError
from popdiff_jax.cli.main import build_parser, main


def test_reproduce_prints_a_table_and_writes_rows(tmp_path, capsys):
  out = tmp_path / "rows.json"
  assert main(["reproduce", "ndm", "--datasets", "ndm/irvine", "--models", "popularity",
               "--workdir", str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert "hits@10" in table and "ndm/irvine" in table and "popularity" in table
  (row,) = json.loads(out.read_text())
  assert row["dataset"] == "ndm/irvine" and 0.0 < row["hits@100"] <= 1.0


def test_train_then_evaluate_the_same_checkpoint_and_same_seed_same_bits(tmp_path, capsys):
  args = ["train", "--dataset", "ndm/irvine", "--model", "lstm", "--epochs", "1", "--dim", "8",
          "--max-len", "16", "--no-progress"]
  assert main(args + ["--workdir", str(tmp_path / "a")]) == 0
  trained = json.loads((tmp_path / "a" / "results.json").read_text())
  capsys.readouterr()
  assert main(["evaluate", "--workdir", str(tmp_path / "a"), "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert f"{trained['hits@10']:.4f}" in table  # the best checkpoint scores as it did after training
  # A second run with the same seed in a fresh workdir: every metric equal, bit for bit.
  assert main(args + ["--workdir", str(tmp_path / "b")]) == 0
  again = json.loads((tmp_path / "b" / "results.json").read_text())
  metrics = [k for k in trained if k.startswith(("hits@", "map@", "nll", "val_"))]
  assert len(metrics) >= 8
  assert {k: trained[k] for k in metrics} == {k: again[k] for k in metrics}


def test_reproduce_popularity_on_synthetic_posts(tmp_path, capsys):
  out = tmp_path / "rows.json"
  assert main(["reproduce", "popularity", "--synthetic", "--quick", "--papers", "fusion_dnn",
               "--no-studies", "--workdir", str(tmp_path / "w"), "--out", str(out),
               "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert "fusion_dnn" in table and "srcc" in table and "synthetic posts" in table
  (row,) = json.loads(out.read_text())
  assert row["model"] == "fusion_dnn" and row["srcc"] > 0.3  # the planted signal is learnt


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
  code = main(["train", "--dataset", "forest/twitter", "--workdir", str(tmp_path),
               "--data-dir", str(tmp_path / "absent"), "--no-progress"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and err.startswith("popdiff: error:") and "\n" not in err
  assert "forest/twitter" in err


@pytest.mark.parametrize("argv", [
    ["evaluate", "--workdir", "{tmp}/never_trained"],                  # no config.json
    ["reproduce", "popularity", "--data-dir", "{tmp}/no_posts", "--papers", "fusion_dnn"],
    ["data", "summary", "forest/twitter", "--data-dir", "{tmp}/absent"],
])
def test_more_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, argv):
  argv = [a.format(tmp=tmp_path) for a in argv] + ["--no-progress"]
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("popdiff: error:") and err.count("\n") == 1 and "Traceback" not in err
  with pytest.raises((DataError, OSError, ValueError)):
    main(argv + ["--debug"])


def _subparsers(parser):
  yield parser
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for sub in action.choices.values():
        yield from _subparsers(sub)


def test_help_documents_every_option():
  parser = build_parser()
  seen = 0
  for p in _subparsers(parser):
    p.format_help()  # every help string formats (no stray % placeholders)
    for action in p._actions:
      if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        continue
      text = (action.help or "").replace("(%(default)s)", "").strip()
      assert len(text.split()) >= 2, f"{p.prog} {action.option_strings or action.dest}: {action.help!r}"
      seen += 1
  assert seen > 40


def test_model_selection_and_prior_flags_reach_the_config():
  from popdiff_jax.cli.main import _overrides
  from popdiff_jax.experiments.next_user import NextUserConfig
  a = build_parser().parse_args(["train", "--dataset", "ndm/irvine", "--workdir", "w",
                                 "--bias-init", "log_frequency", "--output-init-scale", "0",
                                 "--select-by", "map@10", "--weight-decay", "1.0",
                                 "--loss-per", "cascade"])
  config = NextUserConfig(**_overrides(a))
  assert (config.bias_init, config.output_init_scale, config.select_by, config.weight_decay,
          config.loss_per) == ("log_frequency", 0.0, "map@10", 1.0, "cascade")
  defaults = NextUserConfig(**_overrides(build_parser().parse_args(
      ["train", "--dataset", "ndm/irvine", "--workdir", "w"])))
  assert (defaults.bias_init, defaults.output_init_scale, defaults.select_by,
          defaults.loss_per) == ("zeros", 1.0, "nll", "prediction")
