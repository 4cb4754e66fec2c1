"""``popdiff reproduce popularity``: the three popularity papers' tables over seeds and splits.

One driver over the three projects (``projects.multimodal_smp``, ``projects.fusion_dnn``,
``projects.dual_attention``)::

  popdiff reproduce popularity --data-dir ../shared/data            # the full tables
  popdiff reproduce popularity --papers fusion_dnn --splits time --seeds 0 1 2 --fusion.epochs 10
  popdiff reproduce popularity --data synthetic --quick             # a minute or two on a CPU
  popdiff reproduce popularity --data my_posts.csv --format csv     # your own posts

For every split of ``--splits`` and every seed of ``--seeds`` the posts are loaded and their
features built once (``data.posts.load_posts``; the seed draws the split, the features' fits and
every model), then each model runs through its project's ``experiment.train_and_test``:

* multimodal SMP (Meghawat et al.): the random forest with and without the comment count, the
  image model, gradient boosting and the Conv1d without and with the image score (``SMP_MODELS``);
* fusion DNN (Ding et al.): the full model on every split, and the univariate / ablation rows of
  ``--fusion.studies`` on ``--fusion.studies-split`` (the paper's Tables 2-3 use the time split);
* dual attention (Zhang et al.): the variants of ``--dual.variants``.

Each result row is one (paper, model, split): every metric's mean over the seeds and
``<metric>_std`` (ddof 1; 0 for one seed), ``seeds``, ``per_seed`` (each metric's values in seed
order), ``n_train`` / ``n_test`` (mean over seeds) and the paper's own number beside ours,
``paper_<metric>`` (``PAPER``; on the paper's data, not ours). Classification metrics are in
percent, as in Zhang et al.'s Table I; regression metrics are on ``log(1 + likes)``. The rows are
merged into ``--out`` (``popdiff_jax.results``: one ``{meta, rows}`` file; rows of papers, models
and splits this run does not measure are kept), the file is rewritten after every finished
(split, seed), and every finished run is kept under ``--workdir`` so that a rerun of the same
command redoes nothing it has finished. A progress bar counts the runs; the table is printed at
the end.

``instagram_likes`` is read from a data directory (never shipped: it has no licence);
``--data synthetic`` generates Instagram-like users with a planted signal
(``data.synthetic_posts``) so that everything runs anywhere; a path reads your own posts
(``data.posts``: the ``instagram`` layout or the plain ``csv`` table). ``--quick`` starts from
:data:`QUICK`: each project's test config (tiny models, few epochs, 6 LDA topics, 120 synthetic
users), one seed, the random and user splits; every other option still applies on top. The
commands need scikit-learn (random forest, LDA): ``pip install "popdiff_jax[popularity]"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from typing import Annotated, Any, Callable, Literal, NamedTuple, Sequence

import numpy as np
import tyro
from tqdm.auto import tqdm

from popdiff_jax import _validate as v
from popdiff_jax._errors import DataError
from popdiff_jax.data.posts import PostsConfig, PostsSource
from popdiff_jax.models.dual_attention import VARIANTS

__all__ = ["PAPERS", "SPLITS", "CLS_METRICS", "REG_METRICS", "PAPER", "SMP_MODELS",
           "FUSION_STUDY_ROWS", "FUSION_STUDIES", "DUAL_VARIANTS", "COLUMNS", "SMPOptions",
           "FusionOptions", "DualOptions", "FeatureOptions", "ReproduceConfig", "QUICK", "Job",
           "paper_number", "metrics_of", "jobs", "run_seed", "aggregate", "reproduce_popularity",
           "reproduce_main"]

PAPERS = ("multimodal_smp", "fusion_dnn", "dual_attention")
SPLITS = ("random", "time", "user")
CLS_METRICS = ("accuracy", "precision", "recall", "f1")
REG_METRICS = ("mae", "mse", "srcc")
Paper = Literal["multimodal_smp", "fusion_dnn", "dual_attention"]
SplitKind = Literal["random", "time", "user"]

#: The papers' own numbers (their data, not ours): (paper, model) or (paper, model, split).
PAPER = {
    ("dual_attention", "visual"): {"precision": 58.61, "recall": 59.76, "f1": 59.18,
                                   "accuracy": 58.34},
    ("dual_attention", "textual"): {"precision": 65.09, "recall": 72.48, "f1": 68.59,
                                    "accuracy": 66.46},
    ("dual_attention", "early_fusion"): {"precision": 66.56, "recall": 71.70, "f1": 69.02,
                                         "accuracy": 67.49},
    ("dual_attention", "late_fusion"): {"precision": 67.44, "recall": 66.71, "f1": 67.07,
                                        "accuracy": 66.90},
    ("dual_attention", "ccr"): {"precision": 63.90, "recall": 74.99, "f1": 69.01,
                                "accuracy": 65.96},
    ("dual_attention", "similarity"): {"precision": 65.27, "recall": 71.02, "f1": 68.02,
                                       "accuracy": 66.26},
    ("dual_attention", "e_attn"): {"precision": 67.25, "recall": 71.64, "f1": 69.38,
                                   "accuracy": 68.05},
    ("dual_attention", "env"): {"precision": 67.26, "recall": 69.55, "f1": 68.39,
                                "accuracy": 67.51},
    ("dual_attention", "env_iattn"): {"precision": 69.85, "recall": 67.00, "f1": 68.40,
                                      "accuracy": 68.72},
    ("dual_attention", "e_attn_env"): {"precision": 70.10, "recall": 72.39, "f1": 71.23,
                                       "accuracy": 70.45},
    ("dual_attention", "dual_attention"): {"precision": 69.91, "recall": 75.45, "f1": 72.58,
                                           "accuracy": 71.19},
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
    ("multimodal_smp", "conv1d"): {"srcc": 0.73, "mae": 1.21, "mse": 2.51},
    ("multimodal_smp", "image_model"): {"srcc": 0.27, "mae": 1.88, "mse": 5.59},
    ("multimodal_smp", "conv1d_multimodal"): {"srcc": 0.75, "mae": 1.12, "mse": 2.39},
}

#: SMP rows in order: (row, model kind, image score as an input, comment count kept).
SMP_MODELS = (("random_forest", "random_forest", False, True),
              ("random_forest_no_comments", "random_forest", False, False),
              ("image_model", "image_model", False, True),
              ("gradient_boosting", "gradient_boosting", True, True),
              ("conv1d", "smp_conv1d", False, True),
              ("conv1d_multimodal", "smp_conv1d", True, True))
#: Every fusion-DNN study row: one feature group alone (Ding et al. Table 2) or zeroed (Table 3).
FUSION_STUDY_ROWS = (
    "only_user", "only_visual", "only_text", "only_time_location", "only_deep_image",
    "only_deep_text", "only_tags_count", "only_caption_length",
    "drop_user", "drop_deep_text", "drop_deep_image", "drop_tags_count")
#: The study rows of ``--quick``.
FUSION_STUDIES = ("only_user", "only_text", "only_deep_image", "drop_user", "drop_deep_text")
#: The dual-attention variants of ``--quick`` (the full table runs all of ``VARIANTS``).
DUAL_VARIANTS = ("visual", "textual", "early_fusion", "dual_attention")


def paper_number(paper: str, model: str, split: str) -> dict | None:
  """The paper's own metrics for a row (:data:`PAPER`), None when it reports none."""
  return PAPER.get((paper, model, split)) or PAPER.get((paper, model))


def metrics_of(paper: str) -> tuple[str, ...]:
  """The test metrics of a paper's rows."""
  return CLS_METRICS if paper == "dual_attention" else REG_METRICS


def _unique(cfg: Any, field: str) -> None:
  values = getattr(cfg, field)
  v.require(cfg, field, len(values) > 0, "must name at least one")
  v.require(cfg, field, len(set(values)) == len(values), "names one twice")


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class SMPOptions:
  """The multimodal-SMP runs (Meghawat et al. give neither optimiser nor epochs).

  Attributes:
    epochs: the Conv1d's maximum epochs.
    patience: the Conv1d's epochs without a lower validation MSE before stopping.
    trees: the random forest's trees.
    boosting_iters: gradient boosting's iterations.
  """

  epochs: int = 20
  patience: int = 4
  trees: int = 200
  boosting_iters: int = 300

  def __post_init__(self):
    v.positive(self, "epochs", "patience", "trees", "boosting_iters")


@dataclasses.dataclass(frozen=True)
class FusionOptions:
  """The fusion-DNN runs (Ding et al.: 10 epochs).

  Attributes:
    epochs: epochs (Adam 1e-4 decayed x0.9 per epoch).
    studies: univariate (``only_<group>``) and ablation (``drop_<group>``) rows to run
      (``FUSION_STUDY_ROWS``); none with an empty list.
    studies_split: the split of the study rows (the paper's: time); the first of ``--splits``
      when the run does not include it.
  """

  epochs: int = 10
  studies: tuple[str, ...] = FUSION_STUDY_ROWS
  studies_split: SplitKind = "time"

  def __post_init__(self):
    v.positive(self, "epochs")
    unknown = sorted(set(self.studies) - set(FUSION_STUDY_ROWS))
    v.require(self, "studies", not unknown,
              f"unknown row(s) {unknown}; choose from {', '.join(FUSION_STUDY_ROWS)}")
    v.require(self, "studies", len(set(self.studies)) == len(self.studies), "names one twice")
    v.one_of(self, "studies_split", SPLITS)


@dataclasses.dataclass(frozen=True)
class DualOptions:
  """The dual-attention runs (Zhang et al.: 512-D embedding and LSTM, 400 LDA topics).

  Attributes:
    epochs: epochs (no early stop: patience = epochs; the best validation epoch is kept).
    dim: the embedding, LSTM and output widths (paper: 512; k = 128 stays).
    topics: LDA topics of the topic environment (paper: 400).
    variants: the variants to run (``models.dual_attention.VARIANTS``).
  """

  epochs: int = 5
  dim: int = 512
  topics: int = 400
  variants: tuple[str, ...] = VARIANTS

  def __post_init__(self):
    v.positive(self, "epochs", "dim", "topics")
    unknown = sorted(set(self.variants) - set(VARIANTS))
    v.require(self, "variants", not unknown,
              f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    _unique(self, "variants")


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
  """The features shared by the three papers (``features.build_features``).

  Attributes:
    lda_iter: LDA passes of batch variational Bayes.
    lsa_dim: width of the LSA caption vector (the stand-in for BERT).
    max_len: caption tokens kept (the dual attention's sequence length).
    n_jobs: scikit-learn workers (LDA, random forest).
  """

  lda_iter: int = 5
  lsa_dim: int = 128
  max_len: int = 48
  n_jobs: int = 1

  def __post_init__(self):
    v.positive(self, "lda_iter", "lsa_dim", "max_len", "n_jobs")


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
  """``popdiff reproduce popularity``: the three popularity papers' tables, mean ± std over seeds.

  Attributes:
    data: which posts (``--data instagram|synthetic|PATH``, ``--format``, ``--data-dir``).
    papers: which papers' models (``multimodal_smp``, ``fusion_dnn``, ``dual_attention``).
    seeds: the seeds; each draws the split, the features' fits and every model.
    splits: ``random`` (20% of posts to test), ``time`` (the latest 20%) and ``user`` (users
      unseen in training: no user in two parts).
    quick: each project's test config as the base (tiny widths, small batches; 120 synthetic
      users); on the command line ``--quick`` also starts from the options of ``QUICK``.
    smp: the SMP runs.
    fusion: the fusion-DNN runs.
    dual: the dual-attention runs.
    features: the shared features.
    workdir: checkpoints, finished runs (a rerun skips them), the LDA cache and the synthetic
      archive.
    out: the result file, merged into (default: ``benchmarks/results/popularity.json`` for
      ``instagram`` without ``--quick``, else ``<workdir>/popularity.json``).
  """

  data: Annotated[PostsSource, tyro.conf.OmitArgPrefixes] = PostsSource()
  papers: tuple[Paper, ...] = PAPERS
  seeds: tuple[int, ...] = (0, 1, 2)
  splits: tuple[SplitKind, ...] = SPLITS
  quick: bool = False
  smp: SMPOptions = SMPOptions()
  fusion: FusionOptions = FusionOptions()
  dual: DualOptions = DualOptions()
  features: FeatureOptions = FeatureOptions()
  workdir: str = "runs/reproduce_popularity"
  out: str | None = None

  def __post_init__(self):
    unknown = sorted(set(self.papers) - set(PAPERS))
    v.require(self, "papers", not unknown, f"unknown paper(s) {unknown}; choose from {PAPERS}")
    _unique(self, "papers")
    unknown = sorted(set(self.splits) - set(SPLITS))
    v.require(self, "splits", not unknown, f"unknown split(s) {unknown}; choose from {SPLITS}")
    _unique(self, "splits")
    v.require(self, "seeds", all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                 for s in self.seeds), "must be integers >= 0")
    _unique(self, "seeds")

  def studies_split(self) -> str:
    """The split the fusion DNN's study rows run on."""
    return self.fusion.studies_split if self.fusion.studies_split in self.splits else (
        self.splits[0])

  def posts(self, split: str, *, topics: bool = True) -> PostsConfig:
    """The posts and features of one split (LDA only with ``topics`` and the dual attention)."""
    f = self.features
    n_topics = self.dual.topics if topics and "dual_attention" in self.papers else 0
    return PostsConfig(**dataclasses.asdict(self.data),
                       synthetic_users=120 if self.quick else 600, split=split,
                       n_topics=n_topics, lda_iter=f.lda_iter, lsa_dim=f.lsa_dim,
                       max_len=f.max_len, n_jobs=f.n_jobs)

  def out_path(self) -> pathlib.Path:
    """Where the rows go (``out``, else the default of its docstring)."""
    from popdiff_jax.results import results_dir

    if self.out:
      return pathlib.Path(self.out)
    if self.quick or self.data.source != "instagram":
      return pathlib.Path(self.workdir) / "popularity.json"
    return results_dir() / "popularity.json"


#: ``--quick``: the projects' test configs, one seed, the random and user splits, a few rows.
QUICK = ReproduceConfig(
    quick=True, seeds=(0,), splits=("random", "user"),
    smp=SMPOptions(epochs=4, patience=5, trees=20, boosting_iters=50),
    fusion=FusionOptions(epochs=4, studies=FUSION_STUDIES),
    dual=DualOptions(epochs=4, dim=16, topics=6, variants=DUAL_VARIANTS),
    features=FeatureOptions(lda_iter=2, lsa_dim=8, max_len=20),
    workdir="runs/reproduce_popularity_quick")


# ----------------------------------------------------------------------------- runs


class Job(NamedTuple):
  """One model on one split and seed: its paper, row name, project module and config."""

  paper: str
  model: str
  experiment: Any
  config: Any


def _smp_jobs(config: ReproduceConfig, seed: int, split: str) -> list[Job]:
  from popdiff_jax.baselines.regressors import GradientBoostingConfig, ImageModelConfig
  from popdiff_jax.projects.multimodal_smp import configs, experiment

  o = config.smp
  base = configs.tiny() if config.quick else configs.ExperimentConfig()
  train = dataclasses.replace(base.train, num_epochs=o.epochs, patience=o.patience,
                              n_jobs=config.features.n_jobs, seed=seed)
  kinds = {"random_forest": configs.RandomForestConfig(n_estimators=o.trees),
           "image_model": ImageModelConfig(),
           "gradient_boosting": GradientBoostingConfig(max_iter=o.boosting_iters),
           "smp_conv1d": base.model}
  return [Job("multimodal_smp", row, experiment, dataclasses.replace(
      base, model=kinds[kind], train=train,
      data=dataclasses.replace(base.data, split=split, image_score=image, comments=comments)))
      for row, kind, image, comments in SMP_MODELS]


def _fusion_jobs(config: ReproduceConfig, seed: int, split: str) -> list[Job]:
  from popdiff_jax.projects.fusion_dnn import configs, experiment

  base = configs.tiny() if config.quick else configs.ExperimentConfig()
  base = dataclasses.replace(base, train=dataclasses.replace(
      base.train, num_epochs=config.fusion.epochs, seed=seed))
  rows = [("fusion_dnn", None, None)]
  if split == config.studies_split():
    for row in config.fusion.studies:
      kind, group = row.split("_", 1)
      rows.append((row, group if kind == "only" else None, group if kind == "drop" else None))
  return [Job("fusion_dnn", row, experiment, dataclasses.replace(
      base, data=dataclasses.replace(base.data, split=split, only=only, drop=drop)))
      for row, only, drop in rows]


def _dual_jobs(config: ReproduceConfig, seed: int, split: str) -> list[Job]:
  from popdiff_jax.projects.dual_attention import configs, experiment

  o = config.dual
  base = configs.tiny() if config.quick else configs.ExperimentConfig()
  model = dataclasses.replace(base.model, embed_dim=o.dim, hidden_dim=o.dim, out_dim=o.dim)
  train = dataclasses.replace(base.train, num_epochs=o.epochs, patience=o.epochs, seed=seed)
  return [Job("dual_attention", variant, experiment, dataclasses.replace(
      base, model=dataclasses.replace(model, variant=variant), train=train,
      data=dataclasses.replace(base.data, split=split)))
      for variant in o.variants]


def jobs(config: ReproduceConfig, seed: int, split: str) -> list[Job]:
  """Every run of one seed and split, in order (SMP, fusion DNN, dual attention)."""
  make = {"multimodal_smp": _smp_jobs, "fusion_dnn": _fusion_jobs, "dual_attention": _dual_jobs}
  return [job for paper in PAPERS if paper in config.papers
          for job in make[paper](config, seed, split)]


def _run_jobs(config: ReproduceConfig, seed: int, split: str, todo: Sequence[Job], *,
              workdir: pathlib.Path, progress: bool,
              on_row: Callable[[Job, dict], None]) -> dict:
  """Loads the posts of one split and seed once, runs ``todo`` and hands each row to ``on_row``.

  Returns:
    ``{"seconds": the posts' and features' time, "report": the loader report}`` ({} when
    ``todo`` is empty).
  """
  from popdiff_jax.data.posts import load_posts, load_table

  if not todo:
    return {}
  t0 = time.perf_counter()
  # LDA (costly at 400 topics) only when a dual-attention run is left; no other model reads it.
  posts_config = config.posts(split, topics=any(j.paper == "dual_attention" for j in todo))
  table, report = load_table(posts_config, seed=seed, workdir=workdir)
  posts = load_posts(posts_config, seed=seed, workdir=workdir, table=table)
  info = {"seconds": round(time.perf_counter() - t0, 1), "report": report.as_dict()}
  runs = workdir / "runs" / f"{split}_seed{seed}"
  for job in todo:
    row, _ = job.experiment.train_and_test(posts.feats, posts.split, job.config, workdir=runs,
                                           progress=progress)
    on_row(job, {"paper": job.paper, "model": job.model, "split": split, **row})
  return info


def run_seed(config: ReproduceConfig, seed: int, split: str, *,
             workdir: str | pathlib.Path | None = None, progress: bool = False) -> list[dict]:
  """The rows of every model of ``config`` on one split and seed (no averaging, no files).

  Args:
    config: the options (``papers``, ``data``, ``quick`` and the per-paper options).
    seed: the seed of the split, the features' fits and every model.
    split: ``random``, ``time`` or ``user``.
    workdir: checkpoints, the LDA cache and the synthetic archive (default ``config.workdir``).
    progress: the models' progress bars.

  Returns:
    One row per model: ``paper``, ``model``, ``split`` and its project's test row
    (classification: ``accuracy``, ``precision``, ``recall``, ``f1`` as fractions; regression
    on log(1 + likes): ``mae``, ``mse``, ``srcc``; ``n_train``, ``n_test``, ``epochs_run`` for
    the networks, ``best_epoch`` for the classifiers).
  """
  rows: list[dict] = []
  _run_jobs(config, seed, split, jobs(config, seed, split),
            workdir=pathlib.Path(workdir or config.workdir), progress=progress,
            on_row=lambda job, row: rows.append(row))
  return rows


def aggregate(paper: str, model: str, split: str, per_seed: Sequence[dict],
              seeds: Sequence[int]) -> dict:
  """One result row from the rows of several seeds (same order as ``seeds``).

  Returns:
    ``paper``, ``model``, ``split``, each metric's mean and ``<metric>_std`` (ddof 1; 0.0 for
    one seed), ``seeds``, ``per_seed`` (``{metric: [value per seed]}``), ``n_train`` and
    ``n_test`` (means) and ``paper_<metric>`` where the paper reports it. Classification
    metrics in percent; values rounded to 4 decimals.
  """
  row: dict[str, Any] = {"paper": paper, "model": model, "split": split}
  per: dict[str, list] = {}
  for m in metrics_of(paper):
    scale = 100.0 if m in CLS_METRICS else 1.0  # classification in percent, like Table I
    vals = np.asarray([r[m] for r in per_seed], np.float64) * scale
    row[m] = round(float(vals.mean()), 4)
    row[f"{m}_std"] = round(float(vals.std(ddof=1)), 4) if vals.size > 1 else 0.0
    per[m] = [round(float(x), 4) for x in vals]
  row["seeds"] = [int(s) for s in seeds]
  row["per_seed"] = per
  for k in ("n_train", "n_test"):
    if k in per_seed[0]:
      row[k] = int(np.mean([r[k] for r in per_seed]))
  for m, value in (paper_number(paper, model, split) or {}).items():
    row[f"paper_{m}"] = value
  return row


# ----------------------------------------------------------------------------- the result file

DATA = ("instagram_likes (1,897 scraped Instagram users, April 2019; no pixels, alt-text as the "
        "image input). NOT the papers' data: Zhang et al. used 441 private Instagram users, Ding "
        "et al. SMPD2019 (Flickr), Meghawat et al. SMP-T1 (Flickr); their numbers are shown for "
        "orientation only.")
METRIC_NOTES = ("classification metrics in percent (Table I style); regression on log(1+likes): "
                "mae, mse, srcc (Spearman). mean and std (ddof=1) over seeds.")
DEVIATIONS = [
    "image input = Instagram alt-text concept vector (no pixels); deep text = LSA (TF-IDF + SVD), "
    "not BERT",
    "dual attention: embedding/LSTM/output widths --dual.dim (paper 512), epochs --dual.epochs "
    "(paper unstated), best epoch on validation accuracy",
    "LDA: --dual.topics topics (paper 400), --features.lda-iter passes of batch variational "
    "Bayes (scikit-learn)",
    "fusion DNN: hidden widths 512-256-128-64 + linear output; standardised target",
    "SMP: 14 features mapped from SMP-T1 fields (README table); image model = ridge on the alt-text "
    "vector (out-of-fold on train)",
    "SMP Conv1d: kernel 3, Adam 1e-3, up to --smp.epochs with early stopping on validation MSE",
]
_ORDER = {"multimodal_smp": [r for r, *_ in SMP_MODELS],
          "fusion_dnn": ["fusion_dnn", *FUSION_STUDY_ROWS],
          "dual_attention": list(VARIANTS)}


def _data_note(config: ReproduceConfig) -> str:
  if config.data.source == "instagram":
    return DATA
  if config.data.source == "synthetic":
    return ("synthetic Instagram-like users with a planted signal (data.synthetic_posts; other "
            "users for each seed)")
  return f"your posts: {config.data.source} (format {config.data.format or 'detected'})"


def _row_order(row: dict) -> tuple:
  paper, model, split = row["paper"], row["model"], row["split"]
  order = _ORDER.get(paper, [])
  return (PAPERS.index(paper) if paper in PAPERS else len(PAPERS),
          SPLITS.index(split) if split in SPLITS else len(SPLITS),
          order.index(model) if model in order else len(order), model)


def _used_runs(meta: dict, rows: list[dict]) -> dict:
  """``meta`` without the runs that no row names any more (``run`` or ``runs``)."""
  if not isinstance(meta.get("runs"), list):
    return meta
  used = {r.get("run") for r in rows} | {x for r in rows for x in r.get("runs", [])}
  return dict(meta, runs=[m for m in meta["runs"] if m.get("run") in used])


def _read_base(out: pathlib.Path, posts: str, quick: bool) -> tuple[dict, list[dict]] | None:
  """The result file's ``(meta, rows)`` before this run (None when there is none).

  Raises:
    DataError: it holds rows of other posts, or of the other mode (``quick``).
  """
  from popdiff_jax.results import read_results

  if not out.exists():
    return None
  meta, rows = read_results(out)
  old = (meta.get("posts", "instagram"), meta.get("quick", False))
  if old != (posts, quick):
    raise DataError(f"holds rows of posts {old[0]!r} (quick {old[1]}), this run is on {posts!r} "
                    f"(quick {quick}): pass another --out", str(out))
  return meta, rows


def _write(out: pathlib.Path, rows: list[dict], meta: dict,
           base: tuple[dict, list[dict]] | None) -> None:
  """Writes ``rows`` merged into ``base`` (the file before this run): its rows of the same
  (paper, model, split) are replaced, the others kept with their runs' metas."""
  from popdiff_jax.results import merge_runs, write_results

  if base is not None:
    old_meta, old_rows = base
    new = {(r["paper"], r["model"], r["split"]) for r in rows}
    kept = [r for r in old_rows if (r["paper"], r["model"], r["split"]) not in new]
    meta, rows = merge_runs([(old_meta, kept), (meta, rows)])
    meta = _used_runs(meta, rows)
  write_results(out, sorted(rows, key=_row_order), meta)


def _store_key(config: ReproduceConfig, paper: str) -> str:
  """What a finished run's numbers depend on (besides its model, split and seed)."""
  from popdiff_jax.results import to_json

  own = {"multimodal_smp": to_json(config.smp),
         "fusion_dnn": {"epochs": config.fusion.epochs},
         "dual_attention": {k: getattr(config.dual, k) for k in ("epochs", "dim", "topics")}}
  features = {k: v for k, v in to_json(config.features).items() if k != "n_jobs"}
  fields = {"data": to_json(config.data), "quick": config.quick, "features": features,
            "paper": paper, "options": own[paper]}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _cell(row: dict, m: str) -> str | None:
  if m not in row:
    return None
  fmt = ".2f" if m in CLS_METRICS else ".3f"
  return f"{row[m]:{fmt}} ± {row[m + '_std']:{fmt}}"


def _display(rows: list[dict]) -> list[dict]:
  """The printed table: mean ± std cells and the paper's numbers in one column."""
  out = []
  for r in rows:
    paper = {m: r[f"paper_{m}"] for m in metrics_of(r["paper"]) if f"paper_{m}" in r}
    out.append({"paper": r["paper"], "model": r["model"], "split": r["split"],
                "seeds": len(r["seeds"]),
                **{m: _cell(r, m) for m in ("accuracy", "f1", *REG_METRICS)},
                "paper's own": " ".join(f"{m} {x:g}" for m, x in paper.items()) or None})
  return out


COLUMNS = ("paper", "model", "split", "seeds", "accuracy", "f1", "mae", "mse", "srcc",
           "paper's own")


def reproduce_popularity(config: ReproduceConfig = ReproduceConfig(), *,
                         progress: bool = True) -> list[dict]:
  """Runs the tables of ``config`` (resuming from ``config.workdir``) and writes its result file.

  Args:
    config: the options (:class:`ReproduceConfig`).
    progress: a progress bar over the runs.

  Returns:
    This run's result rows (:func:`aggregate`), one per (paper, model, split) in file order;
    they are merged into ``config.out_path()``.

  Raises:
    MissingExtraError: scikit-learn or VADER is not installed.
    DataError: the posts cannot be read, or ``out`` holds rows of other posts.
  """
  from popdiff_jax._errors import require_extra
  from popdiff_jax.results import run_metadata

  require_extra("popularity", "popdiff reproduce popularity (random forest, LDA, sentiment)")
  t_start = time.perf_counter()
  workdir = pathlib.Path(config.workdir)
  out = config.out_path()
  base = _read_base(out, config.data.source, config.quick)
  run_name = f"popularity-{time.strftime('%Y%m%dT%H%M%S')}"
  plan = {(split, seed): jobs(config, seed, split) for split in config.splits
          for seed in config.seeds}
  stores = {p: workdir / "finished" / _store_key(config, p) for p in config.papers}

  def stored(job: Job, split: str, seed: int) -> pathlib.Path:
    return stores[job.paper] / f"{job.model}.{split}.seed{seed}.json"

  found: dict[tuple, dict] = {}
  feature_seconds: dict[str, float] = {}
  loader: dict[str, Any] = {}
  bar = tqdm(total=sum(map(len, plan.values())), desc="popularity", unit="run",
             disable=not progress)

  def save(split: str, seed: int) -> Callable[[Job, dict], None]:
    def on_row(job: Job, row: dict) -> None:
      path = stored(job, split, seed)
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_suffix(".tmp")
      tmp.write_text(json.dumps(row))
      tmp.replace(path)  # a run cut short never leaves half a row
      found[(job.paper, job.model, split, seed)] = row
      bar.set_postfix_str(f"{job.paper}/{job.model} {split} seed {seed}")
      bar.update(1)
    return on_row

  def write() -> list[dict]:
    groups: dict[tuple, list] = {}
    for (paper, model, split, seed), row in found.items():
      groups.setdefault((paper, model, split), []).append((seed, row))
    rows = [aggregate(paper, model, split, [r for _, r in sorted(g)], [s for s, _ in sorted(g)])
            for (paper, model, split), g in groups.items()]
    rows.sort(key=_row_order)
    if rows:
      meta = run_metadata(
          "popularity", config=config, packages=("scikit-learn",), run=run_name,
          posts=config.data.source,
          quick=config.quick, papers=sorted({r["paper"] for r in rows}), data=_data_note(config),
          loader_report=loader.get("report"), metric_notes=METRIC_NOTES, deviations=DEVIATIONS,
          feature_seconds=feature_seconds,
          wall_seconds=round(time.perf_counter() - t_start, 1))
      _write(out, rows, meta, base)
    return rows

  try:
    for (split, seed), todo in plan.items():
      pending = []
      for job in todo:
        path = stored(job, split, seed)
        if path.is_file():
          found[(job.paper, job.model, split, seed)] = json.loads(path.read_text())
          bar.update(1)
        else:
          pending.append(job)
      info = _run_jobs(config, seed, split, pending, workdir=workdir, progress=False,
                       on_row=save(split, seed))
      if info:
        feature_seconds[f"{split}/seed{seed}"] = info["seconds"]
        loader.setdefault("report", info["report"])
      write()  # after every split and seed: a run cut short keeps what it finished
  finally:
    bar.close()
  return write()


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """The ``popdiff reproduce popularity`` command (options from :class:`ReproduceConfig`;
  ``--quick`` starts from :data:`QUICK`)."""
  from popdiff_jax.utils.report import format_table

  args = list(args)
  default = QUICK if "--quick" in args else ReproduceConfig()
  opts = tyro.cli(ReproduceConfig, default=default, args=args, prog="popdiff reproduce popularity",
                  description=ReproduceConfig.__doc__.splitlines()[0],
                  config=(tyro.conf.AvoidSubcommands,))
  rows = reproduce_popularity(opts, progress=progress)
  shown = _display(rows)
  columns = [c for c in COLUMNS if any(r.get(c) is not None for r in shown)] or ["paper"]
  print(f"\nPopularity ({_data_note(opts).split(' (')[0]}; test posts; splits "
        f"{', '.join(opts.splits)}; seeds {' '.join(map(str, opts.seeds))}; mean ± std over "
        "seeds; accuracy/f1 in %: top vs bottom quarter per user; mae/mse/srcc on "
        "log(1 + likes); paper's: on the paper's own data)")
  print(format_table(shown, columns))
  print(f"\nresults: {opts.out_path()}")
  return 0
