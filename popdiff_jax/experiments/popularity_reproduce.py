"""``popdiff reproduce popularity``: the three popularity papers' main rows in one call.

A compact driver over the experiment functions of :mod:`popdiff_jax.experiments.popularity` (the
full three-seed tables with every ablation are ``benchmarks/popularity.py``). It reads
``instagram_likes`` from a data directory (never shipped: the data has no licence) or, with
``synthetic=True``, generates Instagram-like users with a planted signal
(:mod:`popdiff_jax.data.synthetic_posts`) so that it runs anywhere. ``quick=True`` is the test
configuration: small widths, few epochs, seconds to a minute on a CPU.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

from tqdm.auto import tqdm

PAPERS = ("multimodal_smp", "fusion_dnn", "dual_attention")
COLUMNS = ("paper", "model", "split", "accuracy", "f1", "mae", "mse", "srcc", "n_test")
# Fusion DNN ablations run by default (Ding et al. Tables 2-3 use the time split; here: the chosen one).
FUSION_STUDIES = (("only_user", "user", None), ("only_text", "text", None),
                  ("only_deep_image", "deep_image", None), ("drop_user", None, "user"),
                  ("drop_deep_text", None, "deep_text"))
DUAL_VARIANTS = ("visual", "textual", "early_fusion", "dual_attention")


def load_posts(data_dir: str | None = None, *, synthetic: bool = False, quick: bool = False,
               seed: int = 0, workdir: str | pathlib.Path = "runs/reproduce_popularity"):
  """The post table: ``instagram_likes`` from ``data_dir``, or synthetic users (written under
  ``workdir/synthetic_posts``, 120 users when ``quick`` else 600, 12 posts each)."""
  from popdiff_jax.data import instagram as ig
  from popdiff_jax.data import synthetic_posts as sp

  if synthetic:
    users = sp.generate_users(120 if quick else 600, 12, seed=seed)
    data_dir = sp.write_archive(pathlib.Path(workdir) / "synthetic_posts", users)
  elif data_dir is not None and (pathlib.Path(data_dir) / "instagram_likes").is_dir():
    data_dir = pathlib.Path(data_dir) / "instagram_likes"  # the shared/data root was given
  elif data_dir is None:
    data_dir = ig.default_data_dir(None)
  return ig.load_instagram(data_dir)


def reproduce_popularity(papers: Sequence[str] = PAPERS, *, data_dir: str | None = None,
                         synthetic: bool = False, quick: bool = False, seed: int = 0,
                         split: str = "random", workdir: str | pathlib.Path =
                         "runs/reproduce_popularity", studies: bool = True,
                         progress: bool = True) -> list[dict]:
  """Trains and tests the popularity models; returns one results row per model.

  Args:
    papers: any of ``multimodal_smp`` (random forest, Conv1d, multimodal Conv1d, image model,
      gradient boosting), ``fusion_dnn`` (full model and, with ``studies``, univariate / ablation
      rows) and ``dual_attention`` (visual, textual, early fusion and the full model).
    data_dir: folder holding ``UserData.tar.gz`` or a ``shared/data``-like root (default: the
      ``POPDIFF_DATA_DIR`` rule of ``instagram.default_data_dir``).
    synthetic: use generated posts instead (no data needed).
    quick: the test configuration (tiny models, few epochs, 6 LDA topics).
    seed: split and initialisation seed (the benchmark reports three).
    split: ``random``, ``time`` or ``user``.
    workdir: checkpoints and the synthetic archive.
    studies: also run the fusion DNN's feature-group rows.
    progress: a progress bar over the runs.

  Returns:
    Rows with ``paper``, ``model``, ``split`` and the test metrics (classification:
    ``accuracy``, ``precision``, ``recall``, ``f1`` as fractions; regression on log(1 + likes):
    ``mae``, ``mse``, ``srcc``).
  """
  from popdiff_jax.data import instagram as ig
  from popdiff_jax.experiments import popularity as ex
  from popdiff_jax.features import build_features

  unknown = sorted(set(papers) - set(PAPERS))
  if unknown:
    raise ValueError(f"unknown popularity paper(s) {unknown}; choose from {PAPERS}")
  workdir = pathlib.Path(workdir)
  table, _ = load_posts(data_dir, synthetic=synthetic, quick=quick, seed=seed, workdir=workdir)
  parts = ig.make_split(table, split, seed)
  topics = (6 if quick else 400) if "dual_attention" in papers else 0
  feats, _ = build_features(table, parts.train, n_topics=topics, lda_iter=2 if quick else 5,
                            lsa_dim=8 if quick else 128, max_len=20 if quick else 48, seed=seed,
                            cache_dir=workdir / "lda_cache")
  if quick:
    smp_cfg = ex.SMPConfig(batch_size=32, epochs=4, rf_trees=20, gb_iter=50)
    fusion_cfg = ex.FusionConfig(hidden=(32, 16), batch_size=32, epochs=4, lr=1e-3)
    dual_cfg = ex.DualAttentionConfig(embed_dim=16, hidden_dim=16, attn_dim=8, out_dim=16,
                                      batch_size=32, epochs=4, patience=4, lr_high=3e-3,
                                      high_epochs=4)
  else:
    smp_cfg, fusion_cfg, dual_cfg = ex.SMPConfig(), ex.FusionConfig(), ex.DualAttentionConfig()

  jobs = []
  if "multimodal_smp" in papers:
    jobs += [("multimodal_smp", "trees"), ("multimodal_smp", "conv1d"),
             ("multimodal_smp", "conv1d_multimodal")]
  if "fusion_dnn" in papers:
    jobs += [("fusion_dnn", "fusion_dnn")]
    jobs += [("fusion_dnn", name) for name, _, _ in FUSION_STUDIES] if studies else []
  if "dual_attention" in papers:
    jobs += [("dual_attention", v) for v in DUAL_VARIANTS]
  studies_by_name = {name: (only, drop) for name, only, drop in FUSION_STUDIES}
  runs = workdir / "runs" / f"{split}_seed{seed}"
  rows = []
  for paper, name in tqdm(jobs, desc="popularity", disable=not progress, unit="run"):
    if (paper, name) == ("multimodal_smp", "trees"):
      for model, r in ex.run_smp_trees(feats, parts, seed=seed, config=smp_cfg).items():
        rows.append({"paper": paper, "model": model, "split": split, **r})
      continue
    if paper == "multimodal_smp":
      r, _ = ex.run_smp_conv1d(feats, parts, seed=seed, with_image=name.endswith("multimodal"),
                               config=smp_cfg, workdir=runs)
    elif paper == "fusion_dnn":
      only, drop = studies_by_name.get(name, (None, None))
      r, _ = ex.run_fusion_dnn(feats, parts, seed=seed, config=fusion_cfg, only=only, drop=drop,
                               workdir=runs)
    else:
      r, _ = ex.run_dual_attention(feats, parts, name, seed=seed, config=dual_cfg, workdir=runs)
    rows.append({"paper": paper, "model": name, "split": split, **r})
  return rows
