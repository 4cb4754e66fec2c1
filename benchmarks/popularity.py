"""Popularity benchmark: the three papers' tables on instagram_likes, three seeds, mean ± std.

Usage (CPU; the data is read in place from $POPDIFF_DATA_DIR or ../shared/data)::

  PYTHONPATH=. python benchmarks/popularity.py --papers multimodal_smp fusion_dnn dual_attention \
      --workdir /tmp/popdiff_popularity

Rows are merged into ``benchmarks/results/popularity.json`` (a paper's old rows are replaced when
it is rerun), so the papers can be run one after the other. Each row: ``paper``, ``model``,
``split``, the metrics (``accuracy``/``precision``/``recall``/``f1`` or ``mae``/``mse``/``srcc``)
as mean and std over seeds, the per-seed values, and the paper's own number where it has one.
The committed results came from ``benchmarks/popularity_device.sh`` (one process per paper and
seed on a GPU machine, merged with ``--merge``) with the defaults below.
The seed draws the split (random and user splits; the time split's tie order) and initialises the
model. Reduced settings for a shared 2-core CPU are recorded under ``meta.config``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popdiff_jax.data import instagram as ig  # noqa: E402
from popdiff_jax.data.posts import PostsConfig, load_posts  # noqa: E402
from popdiff_jax.models.dual_attention import VARIANTS  # noqa: E402
from popdiff_jax.projects.dual_attention import configs as da_configs  # noqa: E402
from popdiff_jax.projects.dual_attention import experiment as da  # noqa: E402
from popdiff_jax.projects.fusion_dnn import configs as fusion_configs  # noqa: E402
from popdiff_jax.projects.fusion_dnn import experiment as fusion  # noqa: E402
from popdiff_jax.projects.multimodal_smp import configs as smp_configs  # noqa: E402
from popdiff_jax.projects.multimodal_smp import experiment as smp  # noqa: E402
from popdiff_jax.utils import report  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "popularity.json"

# The papers' own numbers (their data, not ours).
PAPER = {
    ("dual_attention", "visual"): {"precision": 58.61, "recall": 59.76, "f1": 59.18, "accuracy": 58.34},
    ("dual_attention", "textual"): {"precision": 65.09, "recall": 72.48, "f1": 68.59, "accuracy": 66.46},
    ("dual_attention", "early_fusion"): {"precision": 66.56, "recall": 71.70, "f1": 69.02, "accuracy": 67.49},
    ("dual_attention", "late_fusion"): {"precision": 67.44, "recall": 66.71, "f1": 67.07, "accuracy": 66.90},
    ("dual_attention", "ccr"): {"precision": 63.90, "recall": 74.99, "f1": 69.01, "accuracy": 65.96},
    ("dual_attention", "similarity"): {"precision": 65.27, "recall": 71.02, "f1": 68.02, "accuracy": 66.26},
    ("dual_attention", "e_attn"): {"precision": 67.25, "recall": 71.64, "f1": 69.38, "accuracy": 68.05},
    ("dual_attention", "env"): {"precision": 67.26, "recall": 69.55, "f1": 68.39, "accuracy": 67.51},
    ("dual_attention", "env_iattn"): {"precision": 69.85, "recall": 67.00, "f1": 68.40, "accuracy": 68.72},
    ("dual_attention", "e_attn_env"): {"precision": 70.10, "recall": 72.39, "f1": 71.23, "accuracy": 70.45},
    ("dual_attention", "dual_attention"): {"precision": 69.91, "recall": 75.45, "f1": 72.58, "accuracy": 71.19},
    ("fusion_dnn", "fusion_dnn", "time"): {"mae": 1.420, "mse": 3.361, "srcc": 0.649},
    ("fusion_dnn", "fusion_dnn", "user"): {"mae": 1.432, "mse": 3.448, "srcc": 0.640},
    ("fusion_dnn", "fusion_dnn", "random"): {"mae": 1.275, "mse": 2.847, "srcc": 0.712},
    ("fusion_dnn", "only_user"): {"mae": 1.521, "mse": 4.140, "srcc": 0.558},
    ("fusion_dnn", "only_visual"): {"mae": 1.842, "mse": 5.312, "srcc": 0.320},
    ("fusion_dnn", "only_text"): {"mae": 1.775, "mse": 4.923, "srcc": 0.395},
    ("fusion_dnn", "only_time_location"): {"mae": 1.942, "mse": 5.915, "srcc": 0.101},
    ("fusion_dnn", "only_deep_image"): {"mae": 1.872, "mse": 5.478, "srcc": 0.302},
    ("fusion_dnn", "only_deep_text"): {"mae": 1.802, "mse": 5.028, "srcc": 0.376},
    ("fusion_dnn", "only_tags_count"): {"mae": 1.860, "mse": 5.358, "srcc": 0.338},
    ("fusion_dnn", "only_caption_length"): {"mae": 1.954, "mse": 5.958, "srcc": 0.128},
    ("fusion_dnn", "drop_user"): {"mae": 1.688, "mse": 4.522, "srcc": 0.501},
    ("fusion_dnn", "drop_deep_text"): {"mae": 1.431, "mse": 3.509, "srcc": 0.631},
    ("fusion_dnn", "drop_deep_image"): {"mae": 1.423, "mse": 3.525, "srcc": 0.640},
    ("fusion_dnn", "drop_tags_count"): {"mae": 1.418, "mse": 3.450, "srcc": 0.650},
    ("multimodal_smp", "random_forest"): {"srcc": 0.69, "mae": 1.27, "mse": 2.98},
    ("multimodal_smp", "random_forest_no_comments"): None,
    ("multimodal_smp", "conv1d"): {"srcc": 0.73, "mae": 1.21, "mse": 2.51},
    ("multimodal_smp", "image_model"): {"srcc": 0.27, "mae": 1.88, "mse": 5.59},
    ("multimodal_smp", "conv1d_multimodal"): {"srcc": 0.75, "mae": 1.12, "mse": 2.39},
}
CLS_METRICS = ("accuracy", "precision", "recall", "f1")
REG_METRICS = ("mae", "mse", "srcc")


def paper_number(paper, model, split):
  return PAPER.get((paper, model, split)) or PAPER.get((paper, model))


class FeatureCache:
  """Builds features once per (split kind, seed, topics) and keeps them in memory."""

  def __init__(self, table, args):
    self.table, self.args, self.cache, self.seconds = table, args, {}, {}

  def get(self, kind, seed, n_topics):
    key = (kind, seed, n_topics)
    if key not in self.cache:
      t0 = time.perf_counter()
      posts = load_posts(PostsConfig(split=kind, n_topics=n_topics, lda_iter=self.args.lda_iter,
                                     lsa_dim=self.args.lsa_dim, n_jobs=self.args.n_jobs),
                         seed=seed, workdir=self.args.workdir, table=self.table)
      self.seconds[f"{kind}/seed{seed}/topics{n_topics}"] = round(time.perf_counter() - t0, 1)
      self.cache = {k: v for k, v in self.cache.items() if k[2] == n_topics}
      self.cache[key] = (posts.split, posts.feats)
    return self.cache[key]


def aggregate(paper, model, split, per_seed, metrics):
  row = {"paper": paper, "model": model, "split": split, "seeds": len(per_seed)}
  for m in metrics:
    vals = np.asarray([r[m] for r in per_seed], np.float64)
    scale = 100.0 if m in CLS_METRICS else 1.0  # classification in percent, like Table I
    row[m] = round(float(vals.mean()) * scale, 4)
    row[f"{m}_std"] = round(float(vals.std(ddof=1)) * scale, 4) if len(vals) > 1 else 0.0
    row[f"{m}_per_seed"] = [round(float(v) * scale, 4) for v in vals]
  for k in ("n_train", "n_test"):
    if k in per_seed[0]:
      row[k] = int(np.mean([r[k] for r in per_seed]))
  row["paper_reported"] = paper_number(paper, model, split)
  return row


SMP_CONFIGS = ("smp-random-forest", "smp-random-forest-no-comments", "smp-image-model",
               "smp-gradient-boosting", "smp-conv1d", "smp-conv1d-multimodal")


def smp_config(name, args, seed):
  """The named SMP config with this run's epochs, patience, trees, workers and seed."""
  cfg = smp_configs.get_config(name)
  train = dataclasses.replace(cfg.train, num_epochs=args.smp_epochs, patience=args.smp_patience,
                              n_jobs=args.n_jobs, seed=seed)
  model = cfg.model
  if isinstance(model, smp_configs.RandomForestConfig):
    model = dataclasses.replace(model, n_estimators=args.rf_trees)
  return dataclasses.replace(cfg, model=model, train=train)


def run_smp(fc, args, seeds, log, flush):
  rows = []
  for kind in args.splits:
    per = {}
    for seed in seeds:
      split, feats = fc.get(kind, seed, 0)
      t0 = time.perf_counter()
      for name in SMP_CONFIGS:
        cfg = smp_config(name, args, seed)
        r, _ = smp.train_and_test(feats, split, cfg, workdir=pathlib.Path(args.workdir) / "runs")
        per.setdefault(smp.row_name(cfg), []).append(r)
      log(f"smp {kind} seed {seed}: {time.perf_counter() - t0:.0f}s "
          + ", ".join(f"{k} srcc={v[-1]['srcc']:.3f}" for k, v in per.items()))
    for name, rs in per.items():
      rows.append(aggregate("multimodal_smp", name, kind, rs, REG_METRICS))
    flush(rows)
  return rows


def run_fusion(fc, args, seeds, log, flush):
  rows = []
  base = fusion_configs.ExperimentConfig(train=fusion_configs.TrainConfig(
      num_epochs=args.fusion_epochs))
  jobs = [(kind, "fusion_dnn", None, None) for kind in args.splits]
  if "time" in args.splits and not args.skip_studies:
    jobs += [("time", f"only_{g}", g, None) for g in fusion_configs.FUSION_GROUPS]
    jobs += [("time", f"drop_{g}", None, g) for g in ("user", "deep_text", "deep_image", "tags_count")]
  for kind, name, only, drop in jobs:
    rs = []
    for seed in seeds:
      split, feats = fc.get(kind, seed, 0)
      t0 = time.perf_counter()
      cfg = dataclasses.replace(
          base, data=dataclasses.replace(base.data, split=kind, only=only, drop=drop),
          train=dataclasses.replace(base.train, seed=seed))
      r, _ = fusion.train_and_test(feats, split, cfg, workdir=pathlib.Path(args.workdir) / "runs")
      rs.append(r)
      log(f"fusion {kind} {name} seed {seed}: {time.perf_counter() - t0:.0f}s srcc={r['srcc']:.3f}")
    rows.append(aggregate("fusion_dnn", name, kind, rs, REG_METRICS))
    flush(rows)
  return rows


def run_dual(fc, args, seeds, log, flush):
  rows = []
  base = da_configs.ExperimentConfig()
  model = dataclasses.replace(base.model, embed_dim=args.da_dim, hidden_dim=args.da_dim,
                              out_dim=args.da_dim)
  for kind in args.da_splits:
    per = {}
    for seed in seeds:
      split, feats = fc.get(kind, seed, args.topics)
      for variant in args.variants:
        t0 = time.perf_counter()
        cfg = dataclasses.replace(
            base, model=dataclasses.replace(model, variant=variant),
            train=dataclasses.replace(base.train, num_epochs=args.da_epochs,
                                      patience=args.da_epochs, seed=seed))
        r, _ = da.train_and_test(feats, split, cfg, workdir=pathlib.Path(args.workdir) / "runs")
        per.setdefault(variant, []).append(r)
        log(f"dual {kind} {variant} seed {seed}: {time.perf_counter() - t0:.0f}s "
            f"acc={r['accuracy']:.3f} f1={r['f1']:.3f}")
        # Provisional rows after every run, so a cut-off run leaves what it finished.
        flush(rows + [aggregate("dual_attention", v, kind, rs, CLS_METRICS) for v, rs in per.items()])
    for name, rs in per.items():
      rows.append(aggregate("dual_attention", name, kind, rs, CLS_METRICS))
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--papers", nargs="+", default=["multimodal_smp", "fusion_dnn", "dual_attention"])
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--splits", nargs="+", default=list(ig.SPLIT_KINDS))
  p.add_argument("--da-splits", nargs="+", default=["random"])
  p.add_argument("--variants", nargs="+", default=list(VARIANTS))
  p.add_argument("--data-dir", default=None)
  p.add_argument("--workdir", default="/tmp/popdiff_popularity")
  p.add_argument("--topics", type=int, default=400)
  p.add_argument("--lda-iter", type=int, default=5)
  p.add_argument("--lsa-dim", type=int, default=128)
  p.add_argument("--da-dim", type=int, default=512, help="paper: 512; reduce on a CPU")
  p.add_argument("--da-epochs", type=int, default=5)
  p.add_argument("--fusion-epochs", type=int, default=10)
  p.add_argument("--smp-epochs", type=int, default=20)
  p.add_argument("--smp-patience", type=int, default=4)
  p.add_argument("--rf-trees", type=int, default=200)
  p.add_argument("--skip-studies", action="store_true")
  p.add_argument("--n-jobs", type=int, default=1, help="scikit-learn workers (LDA, forests)")
  p.add_argument("--out", default=str(RESULT))
  p.add_argument("--merge", nargs="+", default=None,
                 help="merge result files of separate runs (e.g. one per seed) into --out and exit")
  args = p.parse_args(argv)
  if args.merge:
    merge(args.merge, args.out)
    return

  t_start = time.perf_counter()

  def log(msg):
    print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

  table, report = ig.load_instagram(args.data_dir)
  log(f"loaded {report.as_dict()}")
  fc = FeatureCache(table, args)
  new_rows = []
  runners = {"multimodal_smp": run_smp, "fusion_dnn": run_fusion, "dual_attention": run_dual}
  for paper in args.papers:
    t0 = time.perf_counter()
    def flush(partial, done=list(new_rows)):
      write(args, done + partial, report, fc, t_start)

    rows = runners[paper](fc, args, args.seeds, log, flush)
    log(f"{paper}: {len(rows)} rows in {time.perf_counter() - t0:.0f}s")
    new_rows += rows
    # Write after each paper so a long run leaves its finished parts behind.
    write(args, new_rows, report, fc, t_start)
  print_table(new_rows)


DATA = ("instagram_likes (1,897 scraped Instagram users, April 2019; no pixels, alt-text as the "
        "image input). NOT the papers' data: Zhang et al. used 441 private Instagram users, Ding "
        "et al. SMPD2019 (Flickr), Meghawat et al. SMP-T1 (Flickr); their numbers are shown for "
        "orientation only.")
METRIC_NOTES = ("classification metrics in percent (Table I style); regression on log(1+likes): "
                "mae, mse, srcc (Spearman). mean and std (ddof=1) over seeds.")
DEVIATIONS = [
    "image input = Instagram alt-text concept vector (no pixels); deep text = LSA (TF-IDF + SVD), "
    "not BERT",
    "dual attention: embedding/LSTM/output widths --da-dim (paper 512), epochs --da-epochs (paper "
    "unstated), best epoch on validation accuracy",
    "LDA: 400 topics, --lda-iter passes of batch variational Bayes (scikit-learn)",
    "fusion DNN: hidden widths 512-256-128-64 + linear output; standardised target",
    "SMP: 14 features mapped from SMP-T1 fields (README table); image model = ridge on the alt-text "
    "vector (out-of-fold on train)",
    "SMP Conv1d: kernel 3, Adam 1e-3, up to --smp-epochs with early stopping on validation MSE",
]


def _used_runs(meta: dict, rows: list[dict]) -> dict:
  """``meta`` without the runs that no row names any more (``run`` or ``runs``)."""
  if not isinstance(meta.get("runs"), list):
    return meta
  used = {r.get("run") for r in rows} | {x for r in rows for x in r.get("runs", [])}
  return dict(meta, runs=[m for m in meta["runs"] if m.get("run") in used])


def write(args, new_rows, report, fc, t_start):
  """Writes this run's rows into ``--out``: rows of the papers it ran replace the file's rows of
  those papers (and their runs' metas); the other papers' rows and runs are kept."""
  from popdiff_jax.results import merge_runs, read_results, run_metadata, write_results
  out = pathlib.Path(args.out)
  papers = sorted({r["paper"] for r in new_rows})
  meta = run_metadata(
      "popularity", config={k: v for k, v in vars(args).items() if k != "out"},
      packages=("scikit-learn",), papers=papers, data=DATA, loader_report=report.as_dict(),
      metric_notes=METRIC_NOTES, deviations=DEVIATIONS,
      wall_seconds=round(time.perf_counter() - t_start, 1), feature_seconds=fc.seconds)
  rows = new_rows
  if out.exists():
    old_meta, old_rows = read_results(out)
    kept = [r for r in old_rows if r["paper"] not in papers]
    meta, rows = merge_runs([(old_meta, kept), (meta, new_rows)])
    meta = _used_runs(meta, rows)
  write_results(out, rows, meta)


def merge(paths, out):
  """Merges result files of runs over disjoint seeds: per-seed values are pooled per
  (paper, model, split) and mean/std recomputed; each file's meta is kept under ``meta.runs`` and
  each pooled row names the runs it pools (``runs``)."""
  from popdiff_jax.results import merge_results, write_results
  meta, parts = merge_results(paths)
  pooled, order = {}, []
  for r in parts:
    key = (r["paper"], r["model"], r["split"])
    if key not in pooled:
      pooled[key] = []
      order.append(key)
    pooled[key].append(r)
  rows = []
  for key in order:
    rs = pooled[key]
    metrics = CLS_METRICS if key[0] == "dual_attention" else REG_METRICS
    out_row = {"paper": key[0], "model": key[1], "split": key[2]}
    seeds = []
    for m in metrics:
      vals = [v for r in rs for v in r[f"{m}_per_seed"]]
      out_row[m] = round(float(np.mean(vals)), 4)
      out_row[f"{m}_std"] = round(float(np.std(vals, ddof=1)), 4) if len(vals) > 1 else 0.0
      out_row[f"{m}_per_seed"] = vals
      seeds = vals
    out_row["seeds"] = len(seeds)
    for k in ("n_train", "n_test"):
      if k in rs[0]:
        out_row[k] = int(np.mean([r[k] for r in rs]))
    out_row["paper_reported"] = rs[0].get("paper_reported")
    out_row["runs"] = list(dict.fromkeys(x for r in rs for x in r.get("runs", [r.get("run")])))
    rows.append(out_row)
  write_results(out, rows, meta)
  print_table(rows)


def print_table(rows):
  for r in rows:
    ms = CLS_METRICS if r["paper"] == "dual_attention" else REG_METRICS
    cells = "  ".join(f"{m}={r[m]:.3f}±{r[m + '_std']:.3f}" for m in ms)
    print(f"{r['paper']:15s} {r['model']:22s} {r['split']:7s} {cells}")


if __name__ == "__main__":
  main()
