"""Training and evaluation drivers for the three popularity papers; every driver returns result rows.

* ``run_dual_attention``: Zhang et al. 2019 classifier or one of its baselines/ablations
  (``popdiff_jax.models.dual_attention.VARIANTS``) on the per-user top/bottom-quarter labels.
* ``run_fusion_dnn``: Ding et al. 2019 regressor, optionally with feature groups kept alone
  (univariate study) or zeroed (ablation).
* ``run_smp``: Meghawat et al. 2018 Conv1d on the 14 CON-SOC features (+ the image score as a 15th),
  the random forest, the image model alone, and a gradient-boosting baseline.

The neural models train through :func:`popdiff_jax.train.loop.fit` with pure jitted
``train_step(state, batch, key) -> (state, metrics)`` steps built here; BatchNorm statistics of the
fusion DNN travel in ``TrainState.extra``. Note that ``fit`` keeps the best epoch's ``params`` but
the *final* ``extra``; for the fusion DNN (a fixed 10 epochs in the paper) we therefore monitor the
training loss with no early stopping, so the kept epoch is the one with the lowest training loss
(normally the last one, under the decaying learning rate; the epoch is not recorded in the rows) and its parameters match
the final running statistics. A non-final best epoch would pair its parameters with the last
epoch's statistics; ``fit`` would need to keep ``extra`` with the best params to avoid that.

Targets of the regressors are standardised with the training mean and standard deviation (the
paper regresses raw log views with PyTorch over ~2k steps per epoch; with ~100 steps per epoch here
and Adam at 1e-4, an unstandardised output could not reach a mean of ~11); predictions are mapped
back before any metric is computed.

Data parallelism (issue 6): every config has ``num_devices`` (1 = one device, as before; 0 = all).
With more than one, the training step is jitted over a ``("data",)`` mesh through
``train.parallel.fit_arguments``: each training batch is split over the devices, the state is
replicated and the compiler averages the gradients, so the steps equal the one-device steps up to
float rounding (same global ``batch_size``). Batches of the dual attention and SMP models whose
rows do not divide by the device count get masked zero rows (their losses are masked means); the
fusion DNN's BatchNorm would count padding rows in its batch statistics, so its batches are never
padded (a batch that does not divide is then replicated rather than split: still exact).
Evaluation runs the jitted predict steps on the replicated state.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popdiff_jax.features.pipeline import FeatureSet, NUMERIC_GROUPS
from popdiff_jax.metrics.popularity import classification_metrics, regression_metrics
from popdiff_jax.models import dual_attention as da
from popdiff_jax.models import fusion_dnn, smp
from popdiff_jax.models._popularity_common import make_apply, make_rngs as _rngs, split_model
from popdiff_jax.train.loop import fit
from popdiff_jax.train.parallel import fit_arguments
from popdiff_jax.train.state import apply_gradients, create_train_state


@dataclasses.dataclass(frozen=True)
class DualAttentionConfig:
  """Dual attention (paper: 512-D embeddings/LSTM, k = 128, Adam 1e-3 for 2 epochs then 1e-4,
  batch 128). ``epochs`` is ours (the paper does not say); the best epoch on validation accuracy is kept.
  ``num_devices``: data parallelism over that many devices (module docstring; 0 = all)."""
  embed_dim: int = 512
  hidden_dim: int = 512
  attn_dim: int = 128
  out_dim: int = 256
  batch_size: int = 128
  epochs: int = 6
  lr_high: float = 1e-3
  lr_low: float = 1e-4
  high_epochs: int = 2
  patience: int = 3
  num_devices: int = 1


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  """Fusion DNN (paper: Adam 1e-4 decayed x0.9 per epoch, L2 1e-3, batch 128, 10 epochs).
  ``num_devices``: data parallelism over that many devices (module docstring; 0 = all)."""
  hidden: tuple = (512, 256, 128, 64)
  batch_size: int = 128
  epochs: int = 10
  lr: float = 1e-4
  decay: float = 0.9
  weight_decay: float = 1e-3
  num_devices: int = 1


@dataclasses.dataclass(frozen=True)
class SMPConfig:
  """SMP Conv1d (paper: Conv1d 20/50, dropout 0.1/0.3, dense 50/1; optimiser, epochs unstated:
  Adam 1e-3 (Keras' default), best epoch on validation MSE) and the tree models.
  ``num_devices``: data parallelism of the Conv1d over that many devices (module docstring)."""
  batch_size: int = 128
  epochs: int = 30
  lr: float = 1e-3
  patience: int = 5
  rf_trees: int = 200
  rf_min_leaf: int = 3
  gb_iter: int = 300
  num_devices: int = 1


class PostBatch(NamedTuple):
  """A batch of B posts (fields a model does not use have width 0).

  Attributes:
    tokens: int32 [B, T].
    token_mask: bool [B, T].
    image: float32 [B, Di].
    text: float32 [B, Dt].
    numeric: float32 [B, Dn].
    features: float32 [B, F] tabular features (SMP).
    env_image: float32 [B, Di].
    env_topic: float32 [B, K].
    label: float32 [B] classification label in {0, 1}.
    target: float32 [B] standardised regression target.
    mask: bool [B] real posts (False for padding).
  """
  tokens: np.ndarray
  token_mask: np.ndarray
  image: np.ndarray
  text: np.ndarray
  numeric: np.ndarray
  features: np.ndarray
  env_image: np.ndarray
  env_topic: np.ndarray
  label: np.ndarray
  target: np.ndarray
  mask: np.ndarray


def make_arrays(feats: FeatureSet, *, use: Sequence[str], features: np.ndarray | None = None,
                target: np.ndarray | None = None, column_keep: dict | None = None) -> PostBatch:
  """Full-length arrays (all N posts) for a model; unused fields get width 0.

  Args:
    feats: the feature set.
    use: names of PostBatch fields the model reads.
    features: float [N, F] tabular features (for ``features``).
    target: float [N] standardised regression target.
    column_keep: per field, a float [D] 0/1 vector multiplied into its columns (ablations).
  """
  n = feats.score.shape[0]
  full = {
      "tokens": feats.tokens, "token_mask": feats.token_mask, "image": feats.image,
      "text": feats.text, "numeric": feats.numeric,
      "features": np.zeros((n, 0), np.float32) if features is None else features.astype(np.float32),
      "env_image": feats.env_image, "env_topic": feats.env_topic,
  }
  out = {}
  for k, v in full.items():
    if k in use:
      if column_keep and k in column_keep:
        v = (v * column_keep[k][None, :]).astype(v.dtype)
      out[k] = v
    else:
      out[k] = np.zeros((n, 0), v.dtype)
  out["label"] = np.maximum(feats.label, 0).astype(np.float32)
  out["target"] = (np.zeros(n, np.float32) if target is None else target.astype(np.float32))
  out["mask"] = np.ones(n, bool)
  return PostBatch(**out)


def iterate_batches(arrays: PostBatch, idx: np.ndarray, batch_size: int, *,
                    shuffle_seed: int | None = None, drop_last: bool = False):
  """Batches of rows ``idx``: shuffled by ``shuffle_seed`` (training, remainder dropped) or in
  order and padded with masked rows to a full batch (evaluation: one static shape, no post lost)."""
  idx = np.asarray(idx)
  if shuffle_seed is not None:
    idx = idx[np.random.default_rng(shuffle_seed).permutation(idx.size)]
  n_full = idx.size // batch_size
  stop = n_full * batch_size if drop_last else idx.size
  for start in range(0, stop, batch_size):
    rows = idx[start:start + batch_size]
    pad = batch_size - rows.size
    take = np.concatenate([rows, np.full(pad, rows[0] if rows.size else 0, rows.dtype)])
    batch = PostBatch(*(a[take] for a in arrays))
    if pad:
      mask = np.arange(batch_size) < rows.size
      batch = batch._replace(mask=mask)
    yield batch


def _workdir(root, name) -> pathlib.Path:
  path = pathlib.Path(root) / name
  if path.exists():
    shutil.rmtree(path)
  return path


# ----------------------------------------------------------------------------- dual attention


def dual_attention_steps(graphdef, tx, variant: str, jit: bool = True):
  """(train_step, predict_step) for a dual-attention variant; ``jit=False`` leaves the train step
  un-jitted (for ``train.parallel``)."""
  apply = make_apply(graphdef)

  def forward(params, extra, batch):
    out, _ = apply(params, extra, batch.tokens, batch.token_mask, batch.image, batch.env_image,
                   batch.env_topic)
    return out

  def loss_fn(params, extra, batch):
    out = forward(params, extra, batch)
    return da.classification_loss(out, batch.label, batch.mask, variant), out

  # No donate_argnames: fit() keeps a reference to the best epoch's params, which donation would
  # invalidate.
  def train_step(state, batch, key):
    del key  # the paper uses no dropout; the key is kept for a uniform step signature
    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.extra, batch)
    correct = jnp.where(batch.mask, (out["prob"] > 0.5) == (batch.label > 0.5), False)
    acc = jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1)
    return apply_gradients(state, grads, tx), {"loss": loss, "accuracy": acc}

  if jit:
    train_step = jax.jit(train_step)

  @jax.jit
  def predict_step(state, batch):
    out = forward(state.params, state.extra, batch)
    return out["prob"], out["attention"]

  return train_step, predict_step


def predict_dual_attention(predict_step, state, arrays, idx, batch_size):
  """(probabilities [n], attention [n, T]) of rows ``idx``."""
  probs, atts = [], []
  for batch in iterate_batches(arrays, idx, batch_size):
    p, a = predict_step(state, batch)
    k = int(batch.mask.sum())
    probs.append(np.asarray(p)[:k])
    atts.append(np.asarray(a)[:k])
  return np.concatenate(probs), np.concatenate(atts)


def run_dual_attention(feats: FeatureSet, split, variant: str, *, seed: int,
                       config: DualAttentionConfig = DualAttentionConfig(), workdir,
                       vocab_size: int | None = None, progress: bool = False):
  """Trains one dual-attention variant on the labelled posts of ``split``; returns (row, extras).

  Returns:
    (row dict with the test ``accuracy``, ``precision``, ``recall``, ``f1``; extras dict with the
    fitted state, predict step, arrays, test rows and the training history).
  """
  labelled = feats.label >= 0
  train = split.train[labelled[split.train]]
  val = split.val[labelled[split.val]]
  test = split.test[labelled[split.test]]
  vocab_size = int(feats.tokens.max()) + 1 if vocab_size is None else vocab_size
  model = da.DualAttention(vocab_size, feats.image.shape[1], feats.env_topic.shape[1],
                           variant=variant, embed_dim=config.embed_dim,
                           hidden_dim=config.hidden_dim, attn_dim=config.attn_dim,
                           out_dim=config.out_dim, rngs=_rngs(seed))
  graphdef, params, extra = split_model(model)
  steps_per_epoch = max(train.size // config.batch_size, 1)
  schedule = optax.piecewise_constant_schedule(
      config.lr_high, {config.high_epochs * steps_per_epoch: config.lr_low / config.lr_high})
  tx = optax.adam(schedule)
  state = create_train_state(params, tx, extra)
  train_step, predict_step = dual_attention_steps(graphdef, tx, variant, jit=False)
  state, step_args = fit_arguments(train_step, state, config.num_devices, pad=True)
  arrays = make_arrays(feats, use=("tokens", "token_mask", "image", "env_image", "env_topic"))

  def evaluate(st):
    p, _ = predict_dual_attention(predict_step, st, arrays, val, config.batch_size)
    return classification_metrics(feats.label[val], p > 0.5)

  result = fit(state, **step_args,
               train_batches=lambda e: iterate_batches(arrays, train, config.batch_size,
                                                       shuffle_seed=seed * 1000 + e, drop_last=True),
               evaluate=evaluate, workdir=_workdir(workdir, f"dual_attention_{variant}"),
               num_epochs=config.epochs, base_key=jax.random.key(seed), monitor="val_accuracy",
               mode="max", patience=config.patience, desc=variant, progress=progress)
  p, att = predict_dual_attention(predict_step, result.state, arrays, test, config.batch_size)
  row = classification_metrics(feats.label[test], p > 0.5)
  row.update({"n_train": int(train.size), "n_test": int(test.size),
              "epochs_run": len(result.history), "best_epoch": result.best.get("epoch")})
  return row, {"state": result.state, "predict_step": predict_step, "arrays": arrays,
               "test": test, "probs": p, "attention": att, "history": result.history}


# ----------------------------------------------------------------------------- regressors


def _target_stats(feats: FeatureSet, train: np.ndarray) -> tuple[float, float]:
  y = feats.score[train].astype(np.float64)
  return float(y.mean()), float(y.std() or 1.0)


def regression_steps(graphdef, tx, kind: str, jit: bool = True):
  """(train_step, predict_step) for ``kind`` in {"fusion", "smp"} with masked MSE on the
  standardised target; ``jit=False`` leaves the train step un-jitted (for ``train.parallel``)."""
  apply = make_apply(graphdef)

  def forward(params, extra, batch, key, train):
    if kind == "fusion":
      return apply(params, extra, batch.image, batch.text, batch.numeric, train=train)
    return apply(params, extra, batch.features, key=key)

  def loss_fn(params, extra, batch, key):
    pred, new_extra = forward(params, extra, batch, key, True)
    err = jnp.where(batch.mask, pred - batch.target, jnp.zeros_like(pred))
    loss = jnp.sum(err * err) / jnp.maximum(jnp.sum(batch.mask), 1).astype(err.dtype)
    return loss, new_extra

  # No donate_argnames: fit() keeps a reference to the best epoch's params, which donation would
  # invalidate.
  def train_step(state, batch, key):
    (loss, new_extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.extra, batch, key)
    return apply_gradients(state, grads, tx, extra=new_extra), {"loss": loss}

  if jit:
    train_step = jax.jit(train_step)

  @jax.jit
  def predict_step(state, batch):
    pred, _ = forward(state.params, state.extra, batch, None, False)
    return pred

  return train_step, predict_step


def predict_regression(predict_step, state, arrays, idx, batch_size, mean, std) -> np.ndarray:
  preds = []
  for batch in iterate_batches(arrays, idx, batch_size):
    k = int(batch.mask.sum())
    preds.append(np.asarray(predict_step(state, batch))[:k])
  return np.concatenate(preds).astype(np.float64) * std + mean


def _fit_regressor(model, arrays, feats, split, tx, kind, *, seed, epochs, batch_size, workdir,
                   name, patience, monitor, progress, mean, std, num_devices=1):
  graphdef, params, extra = split_model(model)
  state = create_train_state(params, tx, extra)
  train_step, predict_step = regression_steps(graphdef, tx, kind, jit=False)
  # BatchNorm (fusion) must not see padding rows in its batch statistics.
  state, step_args = fit_arguments(train_step, state, num_devices, pad=kind != "fusion")

  def evaluate(st):
    p = predict_regression(predict_step, st, arrays, split.val, batch_size, mean, std)
    return regression_metrics(feats.score[split.val], p)

  result = fit(state, **step_args,
               train_batches=lambda e: iterate_batches(arrays, split.train, batch_size,
                                                       shuffle_seed=seed * 1000 + e, drop_last=True),
               evaluate=evaluate if split.val.size else None, workdir=_workdir(workdir, name),
               num_epochs=epochs, base_key=jax.random.key(seed), monitor=monitor, mode="min",
               patience=patience, desc=name, progress=progress)
  pred = predict_regression(predict_step, result.state, arrays, split.test, batch_size, mean, std)
  row = regression_metrics(feats.score[split.test], pred)
  row.update({"n_train": int(split.train.size), "n_test": int(split.test.size),
              "epochs_run": len(result.history)})
  return row, pred, result


FUSION_GROUPS = ("user", "visual", "text", "time_location", "deep_image", "deep_text",
                 "tags_count", "caption_length")


def fusion_column_keep(feats: FeatureSet, *, only: str | None = None,
                       drop: str | None = None) -> dict:
  """0/1 column vectors for the univariate study (``only``: keep one group) or the ablation
  (``drop``: zero one group). Groups (Ding et al. Table 2-3): user (log followers, followings,
  posts), visual (deep image + post type), text (deep text + tag count + caption length),
  time_location (post age, hour, weekday, has-location), deep_image, deep_text, tags_count,
  caption_length. Inputs are z-scored, so zero is the training mean."""
  di, dt, dn = feats.image.shape[1], feats.text.shape[1], feats.numeric.shape[1]
  members = {
      "user": {"numeric": NUMERIC_GROUPS["user"]},
      "visual": {"image": "all", "numeric": NUMERIC_GROUPS["post_type"]},
      "text": {"text": "all", "numeric": NUMERIC_GROUPS["tags_count"] + NUMERIC_GROUPS["caption_length"]},
      "time_location": {"numeric": NUMERIC_GROUPS["time_location"]},
      "deep_image": {"image": "all"},
      "deep_text": {"text": "all"},
      "tags_count": {"numeric": NUMERIC_GROUPS["tags_count"]},
      "caption_length": {"numeric": NUMERIC_GROUPS["caption_length"]},
  }
  dims = {"image": di, "text": dt, "numeric": dn}
  group = only if only is not None else drop
  if group is None:
    return {}
  if group not in members:
    raise ValueError(f"unknown feature group {group!r}; expected one of {FUSION_GROUPS}")
  sel = {k: np.zeros(d, np.float32) for k, d in dims.items()}
  for k, cols in members[group].items():
    if cols == "all":
      sel[k][:] = 1.0
    else:
      sel[k][list(cols)] = 1.0
  if only is not None:
    return sel
  return {k: (1.0 - v).astype(np.float32) for k, v in sel.items()}


def run_fusion_dnn(feats: FeatureSet, split, *, seed: int, config: FusionConfig = FusionConfig(),
                   workdir, only: str | None = None, drop: str | None = None,
                   progress: bool = False):
  """Trains the fusion DNN (optionally one group alone or one zeroed); returns (row, predictions)."""
  mean, std = _target_stats(feats, split.train)
  target = (feats.score.astype(np.float64) - mean) / std
  keep = fusion_column_keep(feats, only=only, drop=drop)
  arrays = make_arrays(feats, use=("image", "text", "numeric"), target=target, column_keep=keep)
  model = fusion_dnn.FusionDNN(feats.image.shape[1], feats.text.shape[1], feats.numeric.shape[1],
                               hidden=tuple(config.hidden), rngs=_rngs(seed))
  steps_per_epoch = max(split.train.size // config.batch_size, 1)
  schedule = optax.exponential_decay(config.lr, steps_per_epoch, config.decay, staircase=True)
  # PyTorch's Adam(weight_decay=1e-3): the L2 term's gradient is added before the Adam scaling.
  tx = optax.chain(optax.add_decayed_weights(config.weight_decay), optax.scale_by_adam(),
                   optax.scale_by_learning_rate(schedule))
  name = "fusion" + (f"_only_{only}" if only else "") + (f"_drop_{drop}" if drop else "")
  row, pred, _ = _fit_regressor(model, arrays, feats, split, tx, "fusion", seed=seed,
                                epochs=config.epochs, batch_size=config.batch_size,
                                workdir=workdir, name=name, patience=None, monitor="train_loss",
                                progress=progress, mean=mean, std=std,
                                num_devices=config.num_devices)
  return row, pred


def smp_features(feats: FeatureSet, split, *, with_image: bool) -> np.ndarray:
  """The 14 CON-SOC features, plus the image model's score (z-scored on training rows) as a 15th."""
  if not with_image:
    return feats.smp
  s = feats.image_score.astype(np.float64)
  m, sd = s[split.train].mean(), s[split.train].std() or 1.0
  return np.concatenate([feats.smp, ((s - m) / sd)[:, None].astype(np.float32)], axis=1)


def run_smp_conv1d(feats: FeatureSet, split, *, seed: int, with_image: bool,
                   config: SMPConfig = SMPConfig(), workdir, progress: bool = False):
  """Trains the Conv1d regressor on 14 (or 15) features; returns (row, predictions)."""
  mean, std = _target_stats(feats, split.train)
  target = (feats.score.astype(np.float64) - mean) / std
  x = smp_features(feats, split, with_image=with_image)
  arrays = make_arrays(feats, use=("features",), features=x, target=target)
  model = smp.SMPConv1d(x.shape[1], rngs=_rngs(seed))
  name = "smp_conv1d" + ("_multimodal" if with_image else "")
  row, pred, _ = _fit_regressor(model, arrays, feats, split, optax.adam(config.lr), "smp",
                                seed=seed, epochs=config.epochs, batch_size=config.batch_size,
                                workdir=workdir, name=name, patience=config.patience,
                                monitor="val_mse", progress=progress, mean=mean, std=std,
                                num_devices=config.num_devices)
  return row, pred


def run_smp_trees(feats: FeatureSet, split, *, seed: int, config: SMPConfig = SMPConfig(),
                  n_jobs: int = 1) -> dict[str, dict]:
  """Random forest on the 14 CON-SOC features (Meghawat et al. Sec. 3.1), the image model alone
  (Sec. 3.3's role, here a ridge on the image input) and gradient boosting on all 15 (our
  baseline: scikit-learn's HistGradientBoostingRegressor, what wins SMP challenges today).

  Returns:
    {model name: metrics row}.
  """
  from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

  y = feats.score.astype(np.float64)
  rows = {}
  x14 = smp_features(feats, split, with_image=False)
  rf = RandomForestRegressor(n_estimators=config.rf_trees, min_samples_leaf=config.rf_min_leaf,
                             random_state=seed, n_jobs=n_jobs).fit(x14[split.train], y[split.train])
  rows["random_forest"] = regression_metrics(y[split.test], rf.predict(x14[split.test]))
  # Comments are counted after posting, like likes; SMP-T1 ships them as a field, so the paper's
  # feature set has them, but a forecaster before posting would not: this row drops them.
  no_c = np.delete(x14, 1, axis=1)
  rf_nc = RandomForestRegressor(n_estimators=config.rf_trees, min_samples_leaf=config.rf_min_leaf,
                                random_state=seed, n_jobs=n_jobs).fit(no_c[split.train], y[split.train])
  rows["random_forest_no_comments"] = regression_metrics(y[split.test], rf_nc.predict(no_c[split.test]))
  rows["image_model"] = regression_metrics(y[split.test], feats.image_score[split.test])
  x15 = smp_features(feats, split, with_image=True)
  gb = HistGradientBoostingRegressor(random_state=seed, early_stopping=False,
                                     max_iter=config.gb_iter,
                                     learning_rate=0.05).fit(x15[split.train], y[split.train])
  rows["gradient_boosting"] = regression_metrics(y[split.test], gb.predict(x15[split.test]))
  for r in rows.values():
    r.update({"n_train": int(split.train.size), "n_test": int(split.test.size)})
  return rows
