"""``popdiff reproduce popularity``: the three popularity papers' main rows in one call.

One driver over the three projects (``projects.multimodal_smp``, ``projects.fusion_dnn``,
``projects.dual_attention``): the posts are loaded and their features built once
(``data.posts``), then each model runs through its project's ``experiment.train_and_test``
(the full three-seed tables with every ablation are ``benchmarks/popularity.py``). It reads
``instagram_likes`` from a data directory (never shipped: the data has no licence) or, with
``synthetic=True``, generates Instagram-like users with a planted signal
(``data.synthetic_posts``) so that it runs anywhere. ``quick=True`` runs each project's test
config (``configs.tiny()``): small widths, few epochs, about two minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal, Sequence

from tqdm.auto import tqdm

from popdiff_jax import _validate as v

__all__ = ["PAPERS", "COLUMNS", "FUSION_STUDIES", "DUAL_VARIANTS", "SMP_MODELS",
           "reproduce_popularity"]

PAPERS = ("multimodal_smp", "fusion_dnn", "dual_attention")
COLUMNS = ("paper", "model", "split", "accuracy", "f1", "mae", "mse", "srcc", "n_test")
#: Fusion DNN studies run by default: (row, only, drop). Ding et al. Tables 2-3 use the time
#: split; here they use the chosen one.
FUSION_STUDIES = (("only_user", "user", None), ("only_text", "text", None),
                  ("only_deep_image", "deep_image", None), ("drop_user", None, "user"),
                  ("drop_deep_text", None, "deep_text"))
DUAL_VARIANTS = ("visual", "textual", "early_fusion", "dual_attention")
#: SMP rows in order: (row, model kind, image score as an input, comment count kept).
SMP_MODELS = (("random_forest", "random_forest", False, True),
              ("random_forest_no_comments", "random_forest", False, False),
              ("image_model", "image_model", False, True),
              ("gradient_boosting", "gradient_boosting", True, True),
              ("conv1d", "smp_conv1d", False, True),
              ("conv1d_multimodal", "smp_conv1d", True, True))


def _smp_jobs(quick: bool, seed: int) -> list:
  from popdiff_jax.baselines.regressors import GradientBoostingConfig, ImageModelConfig
  from popdiff_jax.projects.multimodal_smp import configs, experiment

  base = configs.tiny() if quick else configs.ExperimentConfig()
  base = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
  kinds = {"random_forest": configs.RandomForestConfig(n_estimators=20 if quick else 200),
           "image_model": ImageModelConfig(),
           "gradient_boosting": GradientBoostingConfig(max_iter=50 if quick else 300),
           "smp_conv1d": base.model}
  return [("multimodal_smp", row, experiment, dataclasses.replace(
      base, model=kinds[kind], data=dataclasses.replace(base.data, image_score=image,
                                                        comments=comments)))
          for row, kind, image, comments in SMP_MODELS]


def _fusion_jobs(quick: bool, seed: int, studies: bool) -> list:
  from popdiff_jax.projects.fusion_dnn import configs, experiment

  base = configs.tiny() if quick else configs.ExperimentConfig()
  base = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
  runs = [("fusion_dnn", None, None)] + (list(FUSION_STUDIES) if studies else [])
  return [("fusion_dnn", row, experiment, dataclasses.replace(
      base, data=dataclasses.replace(base.data, only=only, drop=drop)))
          for row, only, drop in runs]


def _dual_jobs(quick: bool, seed: int) -> list:
  from popdiff_jax.projects.dual_attention import configs, experiment

  base = configs.tiny() if quick else configs.ExperimentConfig()
  base = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
  return [("dual_attention", variant, experiment, dataclasses.replace(
      base, model=dataclasses.replace(base.model, variant=variant)))
          for variant in DUAL_VARIANTS]


def reproduce_popularity(papers: Sequence[str] = PAPERS, *, data_dir: str | None = None,
                         synthetic: bool = False, quick: bool = False, seed: int = 0,
                         split: str = "random", workdir: str | pathlib.Path =
                         "runs/reproduce_popularity", studies: bool = True,
                         progress: bool = True) -> list[dict]:
  """Trains and tests the popularity models; returns one results row per model.

  Args:
    papers: any of ``multimodal_smp`` (random forest, random forest without comments, image
      model, gradient boosting, Conv1d, multimodal Conv1d), ``fusion_dnn`` (full model and, with
      ``studies``, univariate / ablation rows) and ``dual_attention`` (visual, textual, early
      fusion and the full model).
    data_dir: folder holding ``UserData.tar.gz`` or a ``shared/data``-like root (default: the
      ``POPDIFF_DATA_DIR`` rule of ``data.instagram.default_data_dir``).
    synthetic: use generated posts instead (no data needed).
    quick: each project's test config (tiny models, few epochs, 6 LDA topics, 120 synthetic
      users).
    seed: the seed of the synthetic users, the split, the features' fits and every model (the
      benchmark reports three).
    split: ``random``, ``time`` or ``user``.
    workdir: checkpoints (``runs/<split>_seed<seed>/``), the synthetic archive and the LDA cache.
    studies: also run the fusion DNN's feature-group rows.
    progress: a progress bar over the runs.

  Returns:
    Rows with ``paper``, ``model``, ``split`` and the test metrics (classification:
    ``accuracy``, ``precision``, ``recall``, ``f1`` as fractions; regression on log(1 + likes):
    ``mae``, ``mse``, ``srcc``), ``n_train``, ``n_test`` and, for the trained networks,
    ``epochs_run`` (and ``best_epoch`` for the classifiers).
  """
  from popdiff_jax.data.posts import PostsConfig, load_posts

  unknown = sorted(set(papers) - set(PAPERS))
  if unknown:
    raise ValueError(f"unknown popularity paper(s) {unknown}; choose from {PAPERS}")
  workdir = pathlib.Path(workdir)
  # One feature build serves the three papers; only the dual attention reads LDA topics.
  topics = (6 if quick else 400) if "dual_attention" in papers else 0
  data = PostsConfig(synthetic=synthetic, data_dir=None if data_dir is None else str(data_dir),
                     synthetic_users=120 if quick else 600, split=split, n_topics=topics,
                     lda_iter=2 if quick else 5, lsa_dim=8 if quick else 128,
                     max_len=20 if quick else 48)
  posts = load_posts(data, seed=seed, workdir=workdir)
  jobs = []
  if "multimodal_smp" in papers:
    jobs += _smp_jobs(quick, seed)
  if "fusion_dnn" in papers:
    jobs += _fusion_jobs(quick, seed, studies)
  if "dual_attention" in papers:
    jobs += _dual_jobs(quick, seed)
  runs = workdir / "runs" / f"{split}_seed{seed}"
  rows = []
  for paper, name, experiment, config in tqdm(jobs, desc="popularity", disable=not progress,
                                              unit="run"):
    row, _ = experiment.train_and_test(posts.feats, posts.split, config, workdir=runs)
    rows.append({"paper": paper, "model": name, "split": split, **row})
  return rows


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
  """``popdiff reproduce popularity``: the three popularity papers' main rows, one table.

  Attributes:
    papers: which papers' models (``multimodal_smp``, ``fusion_dnn``, ``dual_attention``).
    synthetic: generated Instagram-like posts with a planted signal instead of instagram_likes
      (which is never shipped: it has no licence).
    quick: each project's test configuration (tiny models, few epochs; a minute or two on a
      CPU).
    split: how posts are split into train / validation / test (``user``: no user in two parts).
    seed: the split, feature and initialisation seed.
    studies: also run the fusion DNN's univariate / ablation rows.
    data_dir: folder holding ``instagram_likes/`` (or ``UserData.tar.gz``); default
      ``$POPDIFF_DATA_DIR``.
    workdir: checkpoints, the LDA cache and the synthetic archive.
    out: also write the rows as JSON to this file.
  """

  papers: tuple[str, ...] = PAPERS
  synthetic: bool = False
  quick: bool = False
  split: Literal["random", "time", "user"] = "random"
  seed: int = 0
  studies: bool = True
  data_dir: str | None = None
  workdir: str = "runs/reproduce_popularity"
  out: str | None = None

  def __post_init__(self):
    unknown = sorted(set(self.papers) - set(PAPERS))
    v.require(self, "papers", not unknown, f"unknown paper(s) {unknown}; choose from {PAPERS}")
    v.one_of(self, "split", ("random", "time", "user"))


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """The ``popdiff reproduce popularity`` command (options from :class:`ReproduceConfig`)."""
  import json

  import tyro

  from popdiff_jax.utils.report import format_table

  opts = tyro.cli(ReproduceConfig, args=args, prog="popdiff reproduce popularity",
                  description=ReproduceConfig.__doc__.splitlines()[0])
  rows = reproduce_popularity(opts.papers, data_dir=opts.data_dir, synthetic=opts.synthetic,
                              quick=opts.quick, seed=opts.seed, split=opts.split,
                              workdir=opts.workdir, studies=opts.studies, progress=progress)
  if opts.out:
    pathlib.Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(opts.out).write_text(json.dumps(rows, indent=1))
  source = "synthetic posts" if opts.synthetic else "instagram_likes"
  print(f"\nPopularity ({source}, {opts.split} split, seed {opts.seed}; test split; accuracy/f1: "
        "top vs bottom quarter per user; mae/mse/srcc on log(1 + likes))")
  print(format_table(rows, COLUMNS, floatfmt=".3f"))
  return 0
