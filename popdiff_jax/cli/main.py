"""The ``popdiff`` command: train, evaluate and reproduce; each command ends with a results table.

Long operations show tqdm progress bars (``--no-progress`` hides them). Errors are one clear line
on stderr (exit 2; bad input names the file and line); ``--debug`` shows the full traceback.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings

from popdiff_jax._errors import DataError


def _add_common(p: argparse.ArgumentParser) -> None:
  p.add_argument("--data-dir", default=None,
                 help="folder holding the dataset folders (default: $POPDIFF_DATA_DIR, else "
                      "../shared/data beside a checkout; the ndm/ sets are embedded)")
  p.add_argument("--no-progress", action="store_true", help="hide progress bars")
  p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _add_hparams(p: argparse.ArgumentParser) -> None:
  from popdiff_jax.experiments.next_user import LOSS_WEIGHTINGS, SELECT_METRICS, NextUserConfig

  d = NextUserConfig()
  p.add_argument("--epochs", type=int, default=d.num_epochs, help="maximum epochs (%(default)s)")
  p.add_argument("--patience", type=int, default=d.patience,
                 help="early stopping patience on validation NLL (%(default)s)")
  p.add_argument("--batch-size", type=int, default=d.batch_size,
                 help="cascades per training step (%(default)s, as the authors' code)")
  p.add_argument("--max-len", type=int, default=d.max_len,
                 help="cascades are cut to this many users (%(default)s)")
  p.add_argument("--dim", type=int, default=d.dim, help="embedding size d (%(default)s)")
  p.add_argument("--heads", type=int, default=d.num_heads, help="NDM attention heads h (%(default)s)")
  p.add_argument("--window", type=int, default=d.window, help="NDM window win (%(default)s)")
  p.add_argument("--f-init", type=int, choices=(0, 1), default=None,
                 help="NDM F_init (default: 1 on Twitter datasets, else 0, as in the paper)")
  p.add_argument("--schedule", choices=("noam", "constant"), default=d.schedule,
                 help="learning-rate schedule (%(default)s; noam: the authors' warm-up schedule)")
  p.add_argument("--lr", type=float, default=d.learning_rate,
                 help="learning rate for --schedule constant (%(default)s)")
  p.add_argument("--dropout", type=float, default=d.dropout_rate,
                 help="attention dropout (%(default)s, as in the paper)")
  p.add_argument("--embedding-dropout", type=float, default=d.embedding_dropout,
                 help="NDM: dropout on input user embeddings (%(default)s; not in the paper)")
  p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                 help="AdamW decoupled weight decay on matrices (%(default)s; not in the paper)")
  p.add_argument("--bias-init", choices=("zeros", "log_frequency"), default=d.bias_init,
                 help="output bias at initialisation: zeros (%(default)s) or the log training "
                      "frequency of each user (not in the paper)")
  p.add_argument("--output-init-scale", type=float, default=d.output_init_scale,
                 help="scale of NDM's W^C / the LSTM's output kernel at initialisation "
                      "(%(default)s; 0 with --bias-init log_frequency starts at the popularity "
                      "baseline; not in the paper)")
  p.add_argument("--select-by", default=d.select_by,
                 choices=SELECT_METRICS,
                 help="validation metric that keeps the best epoch and drives early stopping "
                      "(%(default)s)")
  p.add_argument("--loss-per", choices=LOSS_WEIGHTINGS, default=d.loss_per,
                 help="normalise each batch's NLL per prediction (%(default)s) or per cascade "
                      "(sum / batch rows: every prediction weighs alike across length buckets, "
                      "as the authors' summed loss; not in the paper)")
  p.add_argument("--max-train-seconds", type=float, default=None,
                 help="time budget per training run (ends the epoch in progress early)")
  p.add_argument("--seed", type=int, default=d.seed,
                 help="initialisation, shuffling and dropout seed (%(default)s); the same seed "
                      "gives the same bits on a CPU")
  p.add_argument("--split", choices=("files", "random", "time"), default="files",
                 help="the dataset's own split files (default), or a seeded random / time-ordered "
                      "re-split 80/10/10")
  g = p.add_argument_group("accelerators and memory (issue 6)")
  g.add_argument("--devices", type=int, default=d.num_devices, metavar="N",
                 help="data parallelism over N devices, 0 = all (across hosts with "
                      "--distributed); --batch-size is the global batch, split over the devices "
                      "(padded with masked rows when it does not divide) (%(default)s)")
  g.add_argument("--model-parallel", type=int, default=d.model_parallel, metavar="M",
                 help="split the user tables (embedding, output weights, their Adam moments) over "
                      "M of the devices, for vocabularies too large for one; M must divide "
                      "--devices (%(default)s)")
  g.add_argument("--steps-per-call", type=int, default=d.steps_per_call, metavar="K",
                 help="optimiser steps per dispatched call (a lax.scan over K same-shaped "
                      "batches; same trajectory, less launch overhead on GPUs) (%(default)s)")
  g.add_argument("--lean", action="store_true",
                 help="memory-lean loss and Hits@k/MAP@k (NDM, LSTM): stream over blocks of "
                      "users instead of building [batch, length, users] scores; equal to the "
                      "dense loss up to float rounding")
  g.add_argument("--lean-chunk", type=int, default=None, metavar="C",
                 help="users per block with --lean (default: sized per batch shape)")
  g.add_argument("--distributed", action="store_true",
                 help="multi-host: call jax.distributed.initialize() first (start the same "
                      "command on every host; on SLURM / TPU pods nothing else is needed, "
                      "otherwise give --coordinator, --num-processes and --process-id)")
  g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="with --distributed: address of process 0")
  g.add_argument("--num-processes", type=int, default=None,
                 help="with --distributed: number of processes (hosts)")
  g.add_argument("--process-id", type=int, default=None, help="with --distributed: this host's id")


def _overrides(a: argparse.Namespace) -> dict:
  return {"num_epochs": a.epochs, "patience": a.patience, "batch_size": a.batch_size,
          "max_len": a.max_len, "dim": a.dim, "num_heads": a.heads, "window": a.window,
          "f_init": a.f_init, "schedule": a.schedule, "learning_rate": a.lr, "seed": a.seed,
          "max_train_seconds": a.max_train_seconds, "dropout_rate": a.dropout,
          "embedding_dropout": a.embedding_dropout, "weight_decay": a.weight_decay,
          "bias_init": a.bias_init, "output_init_scale": a.output_init_scale,
          "select_by": a.select_by, "num_devices": a.devices, "model_parallel": a.model_parallel,
          "steps_per_call": a.steps_per_call, "loss": "lean" if a.lean else "dense",
          "lean_chunk": a.lean_chunk, "loss_per": a.loss_per}


def _maybe_distributed(a: argparse.Namespace) -> None:
  """``jax.distributed.initialize`` for ``--distributed`` (before anything touches a device)."""
  if not getattr(a, "distributed", False):
    return
  from popdiff_jax.train.parallel import init_distributed

  kwargs = {k: v for k, v in (("coordinator_address", a.coordinator),
                              ("num_processes", a.num_processes),
                              ("process_id", a.process_id)) if v is not None}
  init_distributed(**kwargs)


def build_parser() -> argparse.ArgumentParser:
  from popdiff_jax.data.cascades import DATASETS
  from popdiff_jax.experiments.next_user import MODELS
  from popdiff_jax.experiments.popularity_reproduce import PAPERS as POPULARITY_PAPERS
  from popdiff_jax.experiments.reproduce import EMBEDDED_NDM_DATASETS

  parser = argparse.ArgumentParser(prog="popdiff", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("train", help="train one next-user model on one dataset and test it")
  p.add_argument("--dataset", required=True, choices=sorted(DATASETS), metavar="NAME",
                 help="registered dataset: " + ", ".join(sorted(DATASETS)))
  p.add_argument("--model", default="ndm", choices=MODELS,
                 help="ndm (Yang et al.), lstm (baseline) or popularity (frequency floor) "
                      "(%(default)s)")
  p.add_argument("--workdir", required=True,
                 help="folder for config.json, metrics.jsonl, checkpoints/ and results.json; "
                      "rerunning with the same folder resumes after the last finished epoch")
  _add_hparams(p)
  _add_common(p)

  p = sub.add_parser("evaluate", help="test the best checkpoint of a training workdir")
  p.add_argument("--workdir", required=True,
                 help="a folder written by 'popdiff train' (its config.json rebuilds the model)")
  p.add_argument("--on", choices=("test", "valid", "train"), default="test",
                 help="which split to score (%(default)s)")
  _add_common(p)

  p = sub.add_parser("reproduce", help="run a paper's experiments and print the results table")
  papers = p.add_subparsers(dest="paper", required=True, metavar="{ndm,popularity}")
  q = papers.add_parser("ndm", help="NDM, LSTM and popularity floor: next-user Hits@k / MAP@k")
  q.add_argument("--datasets", nargs="+", default=list(EMBEDDED_NDM_DATASETS),
                 choices=sorted(DATASETS), metavar="NAME",
                 help="datasets to run (default: the embedded NDM datasets "
                      + " ".join(EMBEDDED_NDM_DATASETS) + ")")
  q.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                 help="models to run (default: %(default)s)")
  q.add_argument("--workdir", default="runs/reproduce_ndm",
                 help="one subfolder per dataset and model; reused = resumed (%(default)s)")
  q.add_argument("--out", default=None, help="also write the rows as JSON to this file")
  _add_hparams(q)
  _add_common(q)

  q = papers.add_parser("popularity",
                        help="dual attention, fusion DNN and multimodal SMP on Instagram posts")
  q.add_argument("--papers", nargs="+", default=list(POPULARITY_PAPERS),
                 choices=POPULARITY_PAPERS, help="which papers' models (default: all three)")
  q.add_argument("--synthetic", action="store_true",
                 help="generated Instagram-like posts with a planted signal instead of "
                      "instagram_likes (which is never shipped: it has no licence)")
  q.add_argument("--quick", action="store_true",
                 help="the test configuration: tiny models, few epochs (a minute or two on a CPU)")
  q.add_argument("--split", choices=("random", "time", "user"), default="random",
                 help="how posts are split into train / validation / test (%(default)s)")
  q.add_argument("--seed", type=int, default=0, help="split and initialisation seed (%(default)s)")
  q.add_argument("--no-studies", action="store_true",
                 help="skip the fusion DNN's univariate / ablation rows")
  q.add_argument("--workdir", default="runs/reproduce_popularity",
                 help="checkpoints, LDA cache and the synthetic archive (%(default)s)")
  q.add_argument("--out", default=None, help="also write the rows as JSON to this file")
  _add_common(q)

  p = sub.add_parser("trees", help="Diffusion-LSTM and its baselines on re-share trees")
  p.add_argument("--dataset", choices=("synthetic", "twitter15"), default="synthetic",
                 help="(%(default)s; twitter15 reads twitter15_16_trees/ under --data-dir)")
  p.add_argument("--models", nargs="+", default=None,
                 help="any of random FC content-only social-only Diffusion-LSTM (default: all)")
  p.add_argument("--workdir", default="runs/diffusion_lstm",
                 help="checkpoints of each model; reused = resumed (%(default)s)")
  p.add_argument("--tiny", action="store_true", help="the test configuration (seconds on a CPU)")
  p.add_argument("--devices", type=int, default=1, metavar="N",
                 help="data-parallel training over N devices, 0 = all (%(default)s)")
  _add_common(p)

  p = sub.add_parser("data", help="dataset summaries")
  p.add_argument("action", choices=("summary",), help="summary: one row per dataset")
  p.add_argument("names", nargs="*", default=sorted(DATASETS), metavar="NAME",
                 help="registered datasets to summarise (default: all)")
  _add_common(p)
  return parser


def _print_rows(rows: list[dict]) -> None:
  from popdiff_jax.experiments.reproduce import NEXT_USER_COLUMNS
  from popdiff_jax.utils.report import format_table

  print(format_table(rows, NEXT_USER_COLUMNS))


def _dispatch(a: argparse.Namespace) -> int:
  _maybe_distributed(a)  # before anything touches a device
  import dataclasses

  from popdiff_jax.data.cascades import load_dataset
  from popdiff_jax.experiments import next_user
  from popdiff_jax.experiments.reproduce import reproduce_next_user
  from popdiff_jax.utils.report import format_table

  if a.command == "train":
    data = load_dataset(a.dataset, a.data_dir, split=a.split)
    config = dataclasses.replace(next_user.NextUserConfig(model=a.model), **_overrides(a))
    row = next_user.run(data, config, a.workdir, progress=not a.no_progress)
    pathlib.Path(a.workdir).mkdir(parents=True, exist_ok=True)
    (pathlib.Path(a.workdir) / "results.json").write_text(json.dumps(row, indent=1))
    _print_rows([row])
  elif a.command == "evaluate":
    if not (pathlib.Path(a.workdir) / "config.json").is_file():
      raise DataError("no training run here (config.json is missing): pass the --workdir of a "
                      "'popdiff train' run", a.workdir)
    data, trained = next_user.load_trained(a.workdir, data_dir=a.data_dir)
    row = {"dataset": data.name, "model": trained.config.model, "on": a.on, **trained.info}
    row.update(next_user.test_metrics(data, trained, a.on))
    _print_rows([row])
  elif a.command == "reproduce" and a.paper == "popularity":
    from popdiff_jax.experiments.popularity_reproduce import COLUMNS, reproduce_popularity

    rows = reproduce_popularity(a.papers, data_dir=a.data_dir, synthetic=a.synthetic,
                                quick=a.quick, seed=a.seed, split=a.split, workdir=a.workdir,
                                studies=not a.no_studies, progress=not a.no_progress)
    if a.out:
      pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
      pathlib.Path(a.out).write_text(json.dumps(rows, indent=1))
    source = "synthetic posts" if a.synthetic else "instagram_likes"
    print(f"\nPopularity ({source}, {a.split} split, seed {a.seed}; test split; accuracy/f1: "
          "top vs bottom quarter per user; mae/mse/srcc on log(1 + likes))")
    print(format_table(rows, COLUMNS, floatfmt=".3f"))
  elif a.command == "reproduce":
    overrides = _overrides(a)
    rows = reproduce_next_user(a.datasets, a.models, workdir=a.workdir, data_dir=a.data_dir,
                               split=a.split, progress=not a.no_progress, **overrides)
    if a.out:
      pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
      pathlib.Path(a.out).write_text(json.dumps(rows, indent=1))
    print("\nNext-user prediction (test split; Hits@k and MAP@k over all users, infected masked)")
    _print_rows(rows)
  elif a.command == "trees":
    from popdiff_jax.data.cascades import resolve_data_dir
    from popdiff_jax.experiments import diffusion_lstm

    cfg = (diffusion_lstm.DiffusionLSTMConfig.tiny(num_devices=a.devices) if a.tiny
           else diffusion_lstm.DiffusionLSTMConfig(num_devices=a.devices))
    root = resolve_data_dir(a.data_dir)
    folder = None if root is None else str(root / "twitter15_16_trees")
    rows = diffusion_lstm.run(a.dataset, a.models or tuple(diffusion_lstm.MODELS), cfg=cfg,
                              workdir=a.workdir, data_dir=folder, progress=not a.no_progress)
    print(format_table(rows, ("dataset", "model", "ap_terminal", "map_prototypes", "map_all",
                              "depth_mae", "hist_intersection")))
  elif a.command == "data":
    rows = [load_dataset(n, a.data_dir).summary() for n in a.names]
    print(format_table(rows, ("dataset", "users", "train", "valid", "test", "avg_len", "max_len",
                              "graph_edges", "split"), floatfmt=".2f"))
  return 0


def _one_line(e: BaseException) -> str:
  """The error as one line: the library's own errors as they are, others with their type."""
  if isinstance(e, KeyError) and e.args:
    msg = str(e.args[0])
  elif isinstance(e, (DataError, ValueError, OSError)) or type(e).__name__ == "CheckpointError":
    msg = str(e)
  else:
    msg = f"{type(e).__name__}: {e}"
  msg = " ".join(msg.split())  # never more than one line
  return msg if len(msg) <= 2000 else msg[:2000] + "..."


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  a = parser.parse_args(argv)
  if not a.debug:
    warnings.simplefilter("default")
  try:
    return _dispatch(a)
  except KeyboardInterrupt:
    if a.debug:
      raise
    print("popdiff: interrupted (rerun with the same --workdir to resume)", file=sys.stderr)
    return 130
  except Exception as e:  # noqa: BLE001 - the CLI's contract: one line unless --debug
    if a.debug:
      raise
    hint = "" if isinstance(e, (DataError, FileNotFoundError)) else " (--debug shows the traceback)"
    print(f"popdiff: error: {_one_line(e)}{hint}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
