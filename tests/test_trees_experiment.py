"""End to end: the Diffusion-LSTM project on a tiny synthetic set (configs, data preparation,
the train step, training, evaluation, generation, resume, four devices)."""

import chex
import jax
import numpy as np
import optax
import pytest

from popdiff_jax import ConfigError, losses
from popdiff_jax.projects.diffusion_lstm import configs as C
from popdiff_jax.projects.diffusion_lstm import data as D
from popdiff_jax.projects.diffusion_lstm import experiment as E
from popdiff_jax.training import create_train_state, make_train_step

CFG = C.get_config("diffusion-lstm-tiny")


@pytest.fixture(scope="module")
def prepared():
  return D.prepare(CFG.data)


def test_named_configs_and_checks():
  labels = {name: C.row_label(fn()) for name, fn in C.CONFIGS.items()}
  assert labels == {"diffusion-lstm": "Diffusion-LSTM", "social-only": "social-only",
                    "content-only": "content-only", "fc": "FC", "random": "random",
                    "diffusion-lstm-paper": "Diffusion-LSTM",
                    "diffusion-lstm-tiny": "Diffusion-LSTM"}
  for fn in C.CONFIGS.values():
    if fn is not C.tiny:
      assert "Command: ``popdiff train" in fn.__doc__, fn.__name__
  paper = C.get_config("diffusion-lstm-paper")
  assert (paper.train.optimizer, paper.train.learning_rate, paper.train.learning_rate_low) == (
      "sgd", 0.2, 0.02) and paper.data.num_protos == 100
  tw = C.get_config("fc").replace(**C.TWITTER15_CPU)
  assert tw.data.source == "twitter15" and tw.model.variant == "fc" and tw.train.epochs_low == 1
  with pytest.raises(ConfigError, match="buckets"):
    C.DataConfig(buckets=())
  with pytest.raises(ConfigError, match="optimizer"):
    C.TrainConfig(optimizer="rmsprop")
  with pytest.raises(ConfigError, match="threshold_grid"):
    C.EvalConfig(threshold_grid=(1.5,))
  with pytest.raises(ValueError, match="unknown"):
    C.get_config("lstm")


def test_prepare_synthetic(prepared):
  assert [len(prepared.train), len(prepared.val), len(prepared.test)] == [240, 40, 40]
  assert prepared.proto_x.shape == (8, 14) and prepared.hist_feats.shape == (8, 10)
  np.testing.assert_allclose(prepared.hist_feats.sum(1), 1.0, rtol=1e-5)
  e = prepared.train[0]
  np.testing.assert_allclose(e.x, prepared.proto_x[e.proto])
  assert prepared.pos_counts.shape == (9,)
  assert prepared.pos_counts[-1] + prepared.neg_counts[-1] == sum(x.parent.size
                                                                  for x in prepared.train)
  assert (prepared.input_dim, prepared.content_dim, prepared.num_protos) == (14, 16, 8)


def test_train_step_jit_matches_no_jit_and_is_finite(prepared):
  cfg = E.resolve(CFG.replace(model={"hidden": 8, "head_hidden": 8}), prepared)
  model, variables = E.build(cfg)
  tx = optax.sgd(0.2)
  wp, wn = losses.class_weights(prepared.pos_counts, prepared.neg_counts)
  step = make_train_step(model, E.loss_fn(wp, wn), tx)
  batch = E.batches(prepared.train[:20], cfg, batch_trees=32)[0]
  state = create_train_state(variables.params, tx, extra=variables.state)
  s1, m1 = jax.jit(step)(state, batch, jax.random.key(3))
  with jax.disable_jit():
    s2, m2 = step(state, batch, jax.random.key(3))
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
  chex.assert_trees_all_close(s1.params, s2.params, rtol=1e-4, atol=1e-6)
  chex.assert_tree_all_finite(s1.params)
  assert int(s1.step) == 1


def test_run_trains_better_than_random_and_resumes(prepared, tmp_path):
  random = CFG.replace(train={"random_weights": True})
  rows = E.run([random, CFG], prepared=prepared, workdir=tmp_path)
  by = {r["model"]: r for r in rows}
  assert list(by) == ["random", "Diffusion-LSTM"]
  for r in rows:
    for k in ("ap_terminal", "map_prototypes", "map_all", "depth_mae", "hist_intersection",
              "depth_mae_sampled", "hist_intersection_sampled"):
      assert np.isfinite(r[k]), (r["model"], k)
    assert 0.0 <= r["hist_intersection"] <= 1.0
  assert by["random"]["epochs"] == 0 and "val_loss_by_epoch" not in by["random"]
  assert by["Diffusion-LSTM"]["epochs"] >= 2
  assert len(by["Diffusion-LSTM"]["val_loss_by_epoch"]) == by["Diffusion-LSTM"]["epochs"]
  assert by["Diffusion-LSTM"]["test_loss"] < by["random"]["test_loss"]
  assert by["Diffusion-LSTM"]["ap_terminal"] > by["random"]["ap_terminal"]
  # Same workdir again: the fit loop resumes from the checkpoints and gives the same numbers.
  (again,) = E.run(CFG, prepared=prepared, workdir=tmp_path)
  assert again["map_all"] == pytest.approx(by["Diffusion-LSTM"]["map_all"], rel=1e-5)
  assert again["val_loss_by_epoch"] == by["Diffusion-LSTM"]["val_loss_by_epoch"]
  # Another config under the same name is refused, not resumed.
  from popdiff_jax.training.workdir import WorkdirError
  with pytest.raises(WorkdirError, match=r"another config \(train.learning_rate: 0.01 -> 0.5\)"):
    E.train(prepared, CFG.replace(train={"learning_rate": 0.5}), tmp_path / prepared.name)


def test_loop_on_four_devices_equals_one(tmp_path):
  """train with num_devices=4 (the batches split over 4 forced CPU devices) gives the losses
  and parameters of one device."""
  from popdiff_jax.data.trees.synthetic import SyntheticTreesConfig

  cfg = CFG.replace(data={"synthetic": SyntheticTreesConfig(num_users=100, num_trees=96,
                                                            seed=2)},
                    train={"epochs_high": 1, "epochs_low": 0})
  prepared = D.prepare(cfg.data)
  runs = {n: E.train(prepared, cfg.replace(train={"num_devices": n}), tmp_path / f"d{n}")
          for n in (1, 4)}
  losses_ = [[r[k] for r in runs[n].info["history"] for k in ("train_loss", "val_loss")]
             for n in (1, 4)]
  assert len(losses_[0]) == 2
  np.testing.assert_allclose(losses_[1], losses_[0], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(runs[4].params), jax.tree.leaves(runs[1].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_prepare_twitter15_small():
  from _shared_data import require_shared
  d = require_shared("twitter15_16_trees")
  p = D.prepare(C.DataConfig(source="twitter15", data_dir=str(d), max_trees=40, num_protos=8,
                             kmeans_iters=10))
  assert p.info["split"] == [30, 5, 5] and p.info["cleaning"]["trees"] == 40
  e = p.test[0]
  assert e.x.shape == (e.parent.shape[0], 8) and e.content.shape == (9,)
  np.testing.assert_allclose(e.x, p.proto_x[e.proto])
  assert np.all((0 <= e.proto) & (e.proto < 8))
  np.testing.assert_allclose(np.stack([x.content for x in p.train]).mean(0), 0.0, atol=1e-5)
  # The same trees read by path are prepared alike (the content feature too: Twitter15's format).
  q = D.prepare(C.DataConfig(source=str(d / "twitter15_tree.tar.gz"), format="twitter15",
                             max_trees=40, num_protos=8, kmeans_iters=10))
  assert q.name.endswith("twitter15_tree.tar.gz") and q.info["split"] == p.info["split"]
  np.testing.assert_array_equal(q.proto_x, p.proto_x)
  for a, b in zip(p.train + p.val + p.test, q.train + q.val + q.test):
    assert a.name == b.name
    np.testing.assert_array_equal(a.content, b.content)
    np.testing.assert_array_equal(a.proto, b.proto)


def test_prepare_trees_of_your_own():
  """The example CSV with its labels: split 6:1:1, prototypes from the training trees, a content
  feature of the two labels and the early statistics (no tweet time)."""
  import dataclasses
  import pathlib
  ex = pathlib.Path(__file__).resolve().parents[1] / "popdiff_jax" / "data" / "examples"
  p = D.prepare(dataclasses.replace(CFG.data, source=str(ex / "trees.csv"),
                                    labels=str(ex / "tree_labels.csv")))
  assert p.name == str(ex / "trees.csv") and p.info["split"] == [48, 8, 8]
  assert p.info["format"] == "csv" and p.info["labels"] == ["meme", "news"]
  assert (p.input_dim, p.content_dim, p.num_protos) == (8, 4, 8)
  e = p.test[0]
  np.testing.assert_allclose(e.x, p.proto_x[e.proto])
  np.testing.assert_allclose(np.stack([x.content for x in p.train]).mean(0), 0.0, atol=1e-5)
  unlabelled = D.prepare(C.DataConfig(source=str(ex / "trees.csv"), num_protos=8))
  assert unlabelled.content_dim == 2 and unlabelled.info["labels"] == []


def test_too_few_trees_or_nodes_are_one_error(tmp_path):
  from popdiff_jax import DataError
  rows = ["tree,parent,child,time"] + [f"t{i},,u{i},0\nt{i},u{i},v{i},1" for i in range(5)]
  path = tmp_path / "few.csv"
  path.write_text("\n".join(rows) + "\n")
  with pytest.raises(DataError, match="5 trees are too few to split 6:1:1"):
    D.prepare(C.DataConfig(source=str(path), num_protos=2))
  rows = ["tree,parent,child,time"] + [f"t{i},,u{i},0" for i in range(8)]
  path.write_text("\n".join(rows) + "\n")
  with pytest.raises(DataError, match="6 nodes, fewer than the num_protos=8"):
    D.prepare(C.DataConfig(source=str(path), num_protos=8))
  with pytest.raises(DataError, match="not a registered name"):
    D.prepare(C.DataConfig(source=str(tmp_path / "absent.csv")))


def test_reproduce_converges_every_model_and_averages_seeds(tmp_path, monkeypatch):
  from popdiff_jax.results import read_results

  seen = []

  def fake_run(cfg, prepared, workdir, progress):
    seen.append((cfg.train.epochs_high, cfg.train.epochs_low, cfg.train.patience,
                 cfg.train.seed))
    m = 0.1 + 0.2 * cfg.train.seed
    return [{"dataset": prepared.name, "model": "Diffusion-LSTM", "map_all": m, "ap_terminal": m,
             "map_prototypes": m, "depth_mae": 2.0, "hist_intersection": m, "test_loss": 1.0}]

  monkeypatch.setattr(E, "run", fake_run)
  out = tmp_path / "diffusion_lstm.json"
  assert E.reproduce_main(["--datasets", "synthetic", "--configs", "diffusion-lstm",
                           "--seeds", "0", "1", "--converge", "--workdir", str(tmp_path),
                           "--out", str(out)], progress=False) == 0
  assert seen == [(30, 30, 3, 0), (30, 30, 3, 1)]  # not the CPU budget of the named config
  _, (row,) = read_results(out)
  assert row["seeds"] == [0, 1] and row["map_all"] == pytest.approx(0.2)
  assert row["map_all_std"] == pytest.approx(0.1) and row["depth_mae_std"] == 0.0
