"""The popdiff command: every command ends with a results table; options are generated from the
configs; bad input is one line, exit 2; the same seed gives the same metrics bit for bit."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from popdiff_jax._errors import DataError
from popdiff_jax.cli.main import build_parser, compile_cache_dir, main
from popdiff_jax.results import read_results


def test_version_and_configs_list_every_named_config(capsys):
  with pytest.raises(SystemExit) as info:
    main(["--version"])
  assert info.value.code == 0 and "popdiff_jax" in capsys.readouterr().out
  assert main(["configs"]) == 0
  table = capsys.readouterr().out
  for name in ("ndm", "ndm-prior", "lstm", "popularity", "ndm-sn"):
    assert f"\n{name} " in table


def test_reproduce_prints_a_table_and_writes_rows(tmp_path, capsys):
  out = tmp_path / "rows.json"
  assert main(["reproduce", "ndm", "--datasets", "ndm/irvine", "--configs", "popularity",
               "--workdir", str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert "hits@10" in table and "ndm/irvine" in table and "popularity" in table
  meta, (row,) = read_results(out)  # the one results schema
  assert row["dataset"] == "ndm/irvine" and 0.0 < row["hits@100"] <= 1.0
  assert row["seeds"] == [0] and row["protocol"] == "files" and meta["benchmark"] == "ndm_next_user"


def test_train_then_evaluate_the_same_checkpoint_and_same_seed_same_bits(tmp_path, capsys):
  args = ["train", "lstm", "--data", "ndm/irvine", "--train.num-epochs", "1",
          "--model.dim", "8", "--max-len", "16", "--no-progress"]
  assert main(args + ["--workdir", str(tmp_path / "a")]) == 0
  trained = json.loads((tmp_path / "a" / "results.json").read_text())
  assert trained["model"] == "lstm" and trained["epochs"] == 1
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
  # The same workdir with another learning rate: refused, the field named, nothing changed.
  before = (tmp_path / "a" / "metrics.jsonl").read_text()
  capsys.readouterr()
  assert main(args + ["--workdir", str(tmp_path / "a"), "--train.learning-rate", "0.01"]) == 2
  err = capsys.readouterr().err
  assert "train.learning_rate: 0.001 -> 0.01" in err and "--overwrite" in err
  assert (tmp_path / "a" / "metrics.jsonl").read_text() == before


def test_options_of_a_named_config_reach_the_run(tmp_path):
  """A named config with fields overridden: ndm-prior keeps its recipe, the overrides apply."""
  import dataclasses
  from popdiff_jax.cli import main as cli
  from popdiff_jax.projects import find_config

  _, default = find_config("ndm-prior")
  cfg = cli._parse_config(default, ["--train.seed", "3", "--model.window", "1"], "p", "d")
  assert (cfg.train.bias_init, cfg.train.output_init_scale, cfg.train.select_by,
          cfg.train.weight_decay) == ("log_frequency", 0.0, "map@10", 1.0)
  assert cfg.train.seed == 3 and cfg.model.window == 1
  assert dataclasses.replace(cfg, train=default.train).model.num_heads == 8


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
  code = main(["train", "ndm", "--data", "forest/twitter", "--workdir", str(tmp_path),
               "--data-dir", str(tmp_path / "absent"), "--no-progress"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and err.startswith("popdiff: error:") and "\n" not in err
  assert "forest/twitter" in err


@pytest.mark.parametrize("argv", [
    ["evaluate", "--workdir", "{tmp}/never_trained"],                  # no config.json
    ["train", "no-such-config"],
    ["data", "summary", "no/such-set"],
])
def test_more_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, argv):
  argv = [a.format(tmp=tmp_path) for a in argv] + ["--no-progress"]
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("popdiff: error:") and err.count("\n") == 1 and "Traceback" not in err
  with pytest.raises((DataError, OSError, ValueError)):
    main(argv + ["--debug"])


def test_bad_option_values_are_refused_before_anything_runs(tmp_path, capsys):
  with pytest.raises(SystemExit) as info:
    main(["train", "ndm", "--train.patience", "0", "--workdir", str(tmp_path / "w")])
  assert info.value.code == 2
  assert "patience" in capsys.readouterr().err
  assert not (tmp_path / "w").exists()


def test_help_of_every_command_formats():
  parser = build_parser()
  assert "train" in parser.format_help()
  for argv in (["train", "ndm", "--help"], ["reproduce", "ndm", "--help"]):
    with pytest.raises(SystemExit) as info:
      main(argv)
    assert info.value.code == 0


def test_data_summary_lists_what_it_finds_and_names_the_rest(tmp_path, capsys):
  assert main(["data", "summary", "--data-dir", str(tmp_path / "absent")]) == 0
  out = capsys.readouterr().out
  for name in ("ndm/irvine", "ndm/lastfm", "ndm/memetracker"):
    assert name in out.split("not found")[0]
  assert "not found" in out and "forest/twitter" in out.split("not found")[1]


def test_a_hand_written_csv_trains_evaluates_and_shows_in_the_summary(tmp_path, capsys):
  rows = ["cascade,user,time"]
  for c in range(40):  # cascades over ten users, written as a person would
    rows += [f"c{c},u{(c + j) % 10},{j * 1.5}" for j in range(2 + c % 4)]
  path = tmp_path / "mine.csv"
  path.write_text("\n".join(rows) + "\n")
  assert main(["data", "summary", "--data", str(path), "--format", "csv"]) == 0
  table = capsys.readouterr().out
  assert "csv" in table and str(path) in table and " 10 " in table  # ten users
  args = ["train", "ndm-tiny", "--data", str(path), "--format", "csv", "--workdir",
          str(tmp_path / "w"), "--no-progress"]
  assert main(args) == 0
  result = json.loads((tmp_path / "w" / "results.json").read_text())
  assert result["dataset"] == str(path) and 0.0 <= result["hits@10"] <= 1.0
  assert "F_init" in capsys.readouterr().err  # the data does not say it: the default is named
  assert main(["evaluate", "--workdir", str(tmp_path / "w"), "--no-progress"]) == 0
  assert f"{result['hits@10']:.4f}" in capsys.readouterr().out


def test_reproduce_popularity_on_synthetic_posts(tmp_path, capsys):
  out = tmp_path / "rows.json"
  assert main(["reproduce", "popularity", "--data", "synthetic", "--quick", "--papers",
               "fusion_dnn", "--splits", "random", "--fusion.studies", "--workdir",
               str(tmp_path / "w"), "--out", str(out), "--no-progress"]) == 0
  table = capsys.readouterr().out
  assert "fusion_dnn" in table and "srcc" in table and "synthetic" in table
  (row,) = json.loads(out.read_text())["rows"]
  assert row["model"] == "fusion_dnn" and row["srcc"] > 0.3  # the planted signal is learnt
  assert row["seeds"] == [0] and row["srcc_std"] == 0.0 and row["paper_srcc"] == 0.712


def test_train_a_popularity_config(tmp_path, capsys):
  assert main(["train", "fusion-dnn-tiny", "--workdir", str(tmp_path / "w"), "--no-progress"]) == 0
  (row,) = json.loads((tmp_path / "w" / "results.json").read_text())
  assert row["paper"] == "fusion_dnn" and "srcc" in capsys.readouterr().out


def test_your_own_trees_show_in_the_summary_and_train_diffusion_lstm(tmp_path, capsys):
  """The example tree CSV: ``data summary --kind trees`` and ``train diffusion-lstm-tiny --data
  PATH --format csv`` (with its labels) end with a table; the row names the file."""
  import pathlib
  examples = pathlib.Path(__file__).resolve().parents[1] / "popdiff_jax" / "data" / "examples"
  trees, labels = str(examples / "trees.csv"), str(examples / "tree_labels.csv")
  assert main(["data", "summary", "--kind", "trees", "--data", trees, "--labels", labels]) == 0
  table = capsys.readouterr().out
  assert trees in table and " csv " in table and " 64 " in table and " 778 " in table
  assert main(["data", "summary", "--data", trees, "--format", "weibo"]) == 2
  assert "is a tree format: add --kind trees" in capsys.readouterr().err
  args = ["train", "diffusion-lstm-tiny", "--data", trees, "--format", "csv", "--labels", labels,
          "--workdir", str(tmp_path / "w"), "--no-progress", "--train.epochs-high", "1",
          "--train.epochs-low", "1"]
  assert main(args) == 0
  out = capsys.readouterr().out
  assert "map_prototypes" in out and "Diffusion-LSTM" in out and trees in out
  (row,) = json.loads((tmp_path / "w" / "results.json").read_text())
  assert row["dataset"] == trees and row["epochs"] >= 1
  assert 0.0 <= row["ap_terminal"] <= 1.0 and 0.0 <= row["map_prototypes"] <= 1.0


def test_train_a_popularity_config_on_the_example_posts_csv(tmp_path, capsys):
  example = pathlib.Path(__file__).resolve().parents[1] / "popdiff_jax/data/examples/posts.csv"
  assert main(["train", "smp-tiny", "--data", str(example), "--format", "csv", "--split", "user",
               "--workdir", str(tmp_path / "w"), "--no-progress"]) == 0
  (row,) = json.loads((tmp_path / "w" / "results.json").read_text())
  assert row["paper"] == "multimodal_smp" and row["split"] == "user"
  assert "srcc" in capsys.readouterr().out


def test_compile_cache_folder_follows_the_environment(tmp_path, monkeypatch):
  before = jax.config.jax_compilation_cache_dir
  min_time = jax.config.jax_persistent_cache_min_compile_time_secs
  monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
  try:
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "own"))
    assert compile_cache_dir() == str(tmp_path / "own")  # JAX's own variable wins
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("POPDIFF_COMPILE_CACHE", "0")
    assert compile_cache_dir() is None
    monkeypatch.setenv("POPDIFF_COMPILE_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    want = str(tmp_path / "xdg" / "popdiff_jax" / "xla")
    assert compile_cache_dir() == want
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == want  # exported to subprocesses
    assert jax.config.jax_compilation_cache_dir == want
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0  # every program kept
    monkeypatch.setenv("POPDIFF_COMPILE_CACHE", str(tmp_path / "mine"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    assert compile_cache_dir() == str(tmp_path / "mine")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)


def test_a_rerun_loads_its_programs_from_the_cache_and_gives_the_same_bits(tmp_path):
  env = dict(os.environ, POPDIFF_COMPILE_CACHE=str(tmp_path / "cache"))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)
  results = []
  for run in ("a", "b"):
    subprocess.run([sys.executable, "-m", "popdiff_jax.cli.main", "train", "lstm", "--data",
                    "ndm/irvine", "--train.num-epochs", "1", "--model.dim", "8", "--max-len", "16",
                    "--no-progress", "--workdir", str(tmp_path / run)], env=env, check=True,
                   capture_output=True, timeout=600)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    results.append(json.loads((tmp_path / run / "results.json").read_text()))
    if run == "a":
      first = cached
  assert first and cached == first  # the rerun compiled nothing new: every program was found
  keep = lambda r: {k: v for k, v in r.items() if isinstance(v, float) and "second" not in k}  # noqa: E731
  assert keep(results[0]) and keep(results[0]) == keep(results[1])
