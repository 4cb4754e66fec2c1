"""Every config checks its fields when built: the error names the config, the field, the value and
what is allowed; the command line shows the same message, without a traceback."""

import math

import pytest

from popdiff_jax import ConfigError
from popdiff_jax.cli.main import main
from popdiff_jax.models.lstm import LSTMConfig
from popdiff_jax.models.ndm import NDMConfig
from popdiff_jax.projects.ndm.configs import DataConfig, ReproduceConfig, TrainConfig
from popdiff_jax.projects.diffusion_lstm.configs import DataConfig as TreeDataConfig

RULES = [
    # (config class, field, bad value, words of the message)
    (NDMConfig, "dim", 0, "> 0"),
    (NDMConfig, "dim", -3, "> 0"),
    (NDMConfig, "num_heads", 0, "> 0"),
    (NDMConfig, "window", 0, "> 0"),
    (NDMConfig, "f_init", 2, "one of"),
    (NDMConfig, "dropout_rate", 1.5, "[0, 1)"),
    (NDMConfig, "dropout_rate", 1.0, "[0, 1)"),
    (NDMConfig, "embedding_dropout", -0.1, "[0, 1)"),
    (NDMConfig, "attention_scale", math.nan, "> 0"),
    (NDMConfig, "frozen_dim", 64, "smaller than dim"),
    (NDMConfig, "num_items", -1, ">= 0"),
    (LSTMConfig, "dim", 0, "> 0"),
    (LSTMConfig, "dropout_rate", 1.5, "[0, 1)"),
    (TrainConfig, "batch_size", 0, "> 0"),
    (TrainConfig, "num_epochs", 0, "> 0"),
    (TrainConfig, "num_epochs", -3, "> 0"),
    (TrainConfig, "patience", 0, "> 0"),
    (TrainConfig, "learning_rate", math.nan, "finite number > 0"),
    (TrainConfig, "learning_rate", math.inf, "finite number > 0"),
    (TrainConfig, "learning_rate", 0.0, "> 0"),
    (TrainConfig, "warmup", 0, "> 0"),
    (TrainConfig, "weight_decay", -1.0, ">= 0"),
    (TrainConfig, "select_by", "hits@7", "one of"),
    (TrainConfig, "schedule", "cosine", "one of"),
    (TrainConfig, "loss", "sparse", "one of"),
    (TrainConfig, "loss_per", "token", "one of"),
    (TrainConfig, "eval_batch_size", 0, "> 0"),
    (TrainConfig, "lean_chunk", 0, "> 0"),
    (TrainConfig, "max_train_seconds", -5.0, "> 0"),
    (TrainConfig, "num_devices", -1, ">= 0"),
    (TrainConfig, "steps_per_call", 0, "> 0"),
    (DataConfig, "max_len", 0, "> 0"),
    (DataConfig, "split", "by-user", "one of"),
    (ReproduceConfig, "configs", ("ndm", "nope"), "unknown named config"),
    (TreeDataConfig, "source", "", "a preset (synthetic, twitter15) or the path"),
    (TreeDataConfig, "source", " ", "a preset (synthetic, twitter15) or the path"),
    (TreeDataConfig, "format", "newick", "one of None, 'twitter15', 'weibo'"),
    (TreeDataConfig, "format", "csv", "a preset has its own"),
    (TreeDataConfig, "labels", "labels.csv", "the presets bring their own"),
    (TreeDataConfig, "max_trees", 0, "> 0"),
    (TreeDataConfig, "num_protos", 0, "> 0"),
    (TreeDataConfig, "kmeans_iters", 0, "> 0"),
    (TreeDataConfig, "kmeans_max_points", -1, "> 0"),
    (TreeDataConfig, "chunk", 0, "> 0"),
    (TreeDataConfig, "seed", -1, ">= 0"),
    (TreeDataConfig, "buckets", (), "one or more positive integers"),
]


@pytest.mark.parametrize("cls,field,value,words", RULES,
                         ids=[f"{c.__name__}.{f}={v!r}" for c, f, v, _ in RULES])
def test_each_rule_names_field_value_and_what_is_allowed(cls, field, value, words):
  with pytest.raises(ConfigError) as e:
    cls(**{field: value})
  msg = str(e.value)
  assert msg.startswith(f"{cls.__name__}.{field} = {value!r}: ") and words in msg
  assert e.value.field == field


def test_the_defaults_are_valid():
  for cls in (NDMConfig, LSTMConfig, TrainConfig, DataConfig, ReproduceConfig, TreeDataConfig):
    cls()
  # The data rules of the tree configs allow what they should: a path with its format and labels,
  # a preset in its own format.
  TreeDataConfig(source="my_trees.csv", format="csv", labels="labels.csv")
  TreeDataConfig(source="twitter15", format="twitter15")


@pytest.mark.parametrize("option,value,field", [
    ("--train.patience", "0", "TrainConfig.patience = 0"),
    ("--train.learning-rate", "nan", "TrainConfig.learning_rate = nan"),
    ("--model.dropout-rate", "1.5", "NDMConfig.dropout_rate = 1.5"),
    ("--train.batch-size", "0", "TrainConfig.batch_size = 0"),
    ("--model.dim", "0", "NDMConfig.dim = 0"),
])
def test_the_command_line_shows_the_message_without_a_traceback(tmp_path, capsys, option, value,
                                                                field):
  with pytest.raises(SystemExit) as e:
    main(["train", "ndm", option, value, "--workdir", str(tmp_path / "w")])
  assert e.value.code == 2
  err = " ".join(capsys.readouterr().err.split())
  assert field in err and "Traceback" not in err
  assert not (tmp_path / "w").exists()


def test_the_tree_data_options_have_no_prefix_and_show_the_rule(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    main(["train", "diffusion-lstm-tiny", "--data", "twitter15", "--format", "csv",
          "--workdir", str(tmp_path / "w")])
  assert e.value.code == 2
  err = " ".join(capsys.readouterr().err.split())
  assert "DataConfig.format = 'csv'" in err and "Traceback" not in err
  assert not (tmp_path / "w").exists()
