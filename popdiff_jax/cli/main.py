"""The ``popdiff`` command: train a named config, evaluate, reproduce a paper's table, data.

::

  popdiff configs                                   # every named config, one line each
  popdiff train NAME [--workdir W] [--FIELD VALUE ...]  # e.g. popdiff train ndm-prior --train.seed 1
  popdiff evaluate --workdir W [--on test]
  popdiff reproduce {ndm,ndm-protocol,ndm-social,...,popularity,diffusion-lstm} [...]
  popdiff data summary [NAME ...] [--kind trees] [--data PATH --format F]

``train`` takes every field of the named config as an option (``--data``,
``--model.dim``, ``--train.learning-rate``, ...): the options are generated from the config
dataclasses (tyro), so each is written once, in its config. Long operations show progress bars
(``--no-progress`` hides them); every command ends with a results table. Errors are one line on
stderr (exit 2; bad input names the file and line); ``--debug`` shows the traceback; Ctrl-C ends
with exit status 130 and says how to resume. ``train``, ``evaluate`` and ``reproduce`` keep their
compiled programs in a persistent cache (``compile_cache_dir``: ``~/.cache/popdiff_jax/xla``;
``POPDIFF_COMPILE_CACHE=0`` turns it off), so a rerun of the same shapes does not compile again.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings
from typing import Any

from popdiff_jax._errors import ConfigError, DataError, MissingExtraError

COMMON_HELP = ("common options: --workdir W (checkpoints, metrics.jsonl, results.json; rerun = "
               "resume), --overwrite / --resume (W holds another config's run), --no-progress, "
               "--debug")


def _version() -> str:
  from popdiff_jax import __version__
  return __version__


def _common(p: argparse.ArgumentParser, workdir: str | None = None) -> None:
  if workdir is not None:
    p.add_argument("--workdir", default=workdir,
                   help="run folder: checkpoints/, metrics.jsonl, results.json; reused = resumed "
                        "(%(default)s)")
  p.add_argument("--no-progress", action="store_true", help="hide progress bars")
  p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _parse_config(default: Any, args: list[str], prog: str, description: str) -> Any:
  """``default`` with the fields given in ``args`` replaced (tyro, generated from the dataclass)."""
  import tyro

  return tyro.cli(type(default), default=default, args=args, prog=prog, description=description,
                  config=(tyro.conf.AvoidSubcommands,))


def _print_table(rows: list[dict], columns, floatfmt: str = ".4f") -> None:
  from popdiff_jax.utils.report import format_table

  print(format_table(rows, columns, floatfmt=floatfmt))


def _project_module(project: str, module: str):
  import importlib
  return importlib.import_module(f"popdiff_jax.projects.{project}.{module}")


# ----------------------------------------------------------------------------- commands


def cmd_configs(_: argparse.Namespace, rest: list[str]) -> int:
  """``popdiff configs``: every named config of every project, one line each."""
  from popdiff_jax.projects import named_configs

  del rest
  rows = []
  for name, (project, factory) in sorted(named_configs().items(), key=lambda x: (x[1][0], x[0])):
    doc = (factory.__doc__ or "").strip().splitlines()
    rows.append({"config": name, "project": project, "what": doc[0] if doc else ""})
  _print_table(rows, ("config", "project", "what"))
  return 0


def cmd_train(a: argparse.Namespace, rest: list[str]) -> int:
  """``popdiff train NAME``: the named config with the options given, trained and tested."""
  from popdiff_jax.projects import find_config

  project, default = find_config(a.name)
  config = _parse_config(default, rest, prog=f"popdiff train {a.name}",
                         description=f"Train and test the named config {a.name!r} "
                                     f"(project {project}); {COMMON_HELP}.")
  experiment = _project_module(project, "experiment")
  workdir = a.workdir or f"runs/{a.name}"
  _maybe_distributed(config)
  rows = experiment.main(config, workdir=workdir, progress=not a.no_progress, name=a.name,
                         overwrite=a.overwrite, resume=a.resume)
  _print_table(rows, experiment.TABLE_COLUMNS)
  print(f"\nresults: {pathlib.Path(workdir) / 'results.json'}")
  return 0


def cmd_evaluate(a: argparse.Namespace, rest: list[str]) -> int:
  """``popdiff evaluate``: the best checkpoint of a next-user workdir, scored on a split."""
  from popdiff_jax.projects.ndm import experiment

  if rest:
    raise ConfigError("evaluate", "options", " ".join(rest), "unknown options")
  if not (pathlib.Path(a.workdir) / "config.json").is_file():
    raise DataError("no training run here (config.json is missing): pass the --workdir of a "
                    "'popdiff train' run", a.workdir)
  data, trained = experiment.load_trained(a.workdir, data_dir=a.data_dir)
  row = {"dataset": data.name, "model": trained.config.model.name, "on": a.on, **trained.info}
  row.update(experiment.test_metrics(data, trained, a.on))
  _print_table([row], experiment.TABLE_COLUMNS)
  return 0


# ``popdiff reproduce NAME``: a module with ``reproduce_main(args, progress)``.
_REPRODUCE = {"ndm": "popdiff_jax.projects.ndm.tables.next_user",
              "ndm-small-sets": "popdiff_jax.projects.ndm.tables.small_sets",
              "ndm-cooccurrence": "popdiff_jax.projects.ndm.tables.cooccurrence",
              "ndm-protocol": "popdiff_jax.projects.ndm.tables.paper_protocol",
              "ic-baselines": "popdiff_jax.projects.ndm.tables.ic_baselines",
              "ndm-social": "popdiff_jax.projects.ndm.tables.ndm_sn",
              "ndm-sensitivity": "popdiff_jax.projects.ndm.tables.sensitivity",
              "ndm-norms": "popdiff_jax.projects.ndm.tables.norms",
              "popularity": "popdiff_jax.projects.popularity_table",
              "diffusion-lstm": "popdiff_jax.projects.diffusion_lstm.experiment"}


def cmd_reproduce(a: argparse.Namespace, rest: list[str]) -> int:
  """``popdiff reproduce PAPER``: a paper's table (the project's ``reproduce_main``)."""
  import importlib

  return importlib.import_module(_REPRODUCE[a.paper]).reproduce_main(rest,
                                                                     progress=not a.no_progress)


_TREE_COLUMNS = ("dataset", "format", "trees", "nodes", "users", "mean_size", "max_size",
                 "mean_depth", "max_depth", "labelled", "labels", "dropped_edges", "dropped_nodes")


def _tree_summary(a: argparse.Namespace) -> int:
  """``popdiff data summary --kind trees``: registered tree datasets, or trees given by path."""
  from popdiff_jax.data.trees import TREE_DATASETS, load_tree_dataset

  if a.graph is not None:
    raise ConfigError("data", "graph", a.graph, "is a social graph of cascades, not of trees")
  if a.data is not None:
    ts = load_tree_dataset(a.data, a.data_dir, format=a.format, labels=a.labels)
    _print_table([ts.summary()], _TREE_COLUMNS, floatfmt=".2f")
    return 0
  names = a.names or sorted(TREE_DATASETS)
  unknown = [n for n in names if n not in TREE_DATASETS]
  if unknown:
    raise DataError(f"unknown tree dataset(s) {', '.join(unknown)}; registered: "
                    f"{', '.join(sorted(TREE_DATASETS))}")
  rows, missing = [], []
  for n in names:
    try:
      rows.append(load_tree_dataset(n, a.data_dir).summary())
    except DataError as e:
      if "not shipped" not in str(e):
        raise
      missing.append(n)
  _print_table(rows, _TREE_COLUMNS, floatfmt=".2f")
  if missing:
    print(f"\nnot found (pass --data-dir or set POPDIFF_DATA_DIR): {', '.join(missing)}")
  return 0


def cmd_data(a: argparse.Namespace, rest: list[str]) -> int:
  """``popdiff data summary``: registered datasets, or one file or folder given by path
  (cascades, or trees with ``--kind trees``)."""
  from popdiff_jax.data.cascades import DATASETS, FORMATS, load_dataset
  from popdiff_jax.data.trees import TREE_FORMATS

  if rest:
    raise ConfigError("data", "options", " ".join(rest), "unknown options")
  if a.kind == "trees":
    return _tree_summary(a)
  if a.labels is not None:
    raise ConfigError("data", "labels", a.labels, "labels trees: add --kind trees")
  if a.format in TREE_FORMATS and a.format not in FORMATS:
    raise ConfigError("data", "format", a.format, "is a tree format: add --kind trees")
  if a.data is not None:
    ds = load_dataset(a.data, a.data_dir, format=a.format, graph=a.graph)
    _print_table([ds.summary()], ("dataset", "format", "users", "train", "valid", "test",
                                  "avg_len", "max_len", "graph_edges", "split"), floatfmt=".2f")
    return 0
  names = a.names or sorted(DATASETS)
  unknown = [n for n in names if n not in DATASETS]
  if unknown:
    raise DataError(f"unknown dataset(s) {', '.join(unknown)}; registered: "
                    f"{', '.join(sorted(DATASETS))}")
  rows, missing = [], []
  for n in names:
    try:
      rows.append(load_dataset(n, a.data_dir).summary())
    except DataError as e:
      if "not shipped" not in str(e):
        raise
      missing.append(n)
  _print_table(rows, ("dataset", "users", "train", "valid", "test", "avg_len", "max_len",
                      "graph_edges", "split"), floatfmt=".2f")
  if missing:
    print(f"\nnot found (pass --data-dir or set POPDIFF_DATA_DIR): {', '.join(missing)}")
  return 0


#: Values of ``POPDIFF_COMPILE_CACHE`` that turn the persistent compilation cache off / on.
_CACHE_OFF = ("0", "off", "false", "no", "none")
_CACHE_ON = ("", "1", "on", "true", "yes")


def compile_cache_dir() -> str | None:
  """Turns on JAX's persistent compilation cache for the commands that compile; returns its folder.

  A training run compiles one program per batch shape (a length bucket of NDM, a (K, S) bucket of
  the tree LSTM), 2-10 s each on a GPU, and would pay it again on every run of the same config.
  With the cache on, a later run of the same shapes loads them from disk. The folder, in order:
  ``JAX_COMPILATION_CACHE_DIR`` if set (JAX's own variable: left as it is), else
  ``POPDIFF_COMPILE_CACHE`` if it is a path, else ``$XDG_CACHE_HOME/popdiff_jax/xla`` (default
  ``~/.cache/popdiff_jax/xla``). ``POPDIFF_COMPILE_CACHE=0`` turns it off (None). Every program
  is kept, not only those that took a second to compile (JAX's default, which
  ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` restores). The variables are exported, so
  subprocesses of ``reproduce`` share the cache.
  """
  import os

  own = os.environ.get("JAX_COMPILATION_CACHE_DIR")
  if own:
    return own
  setting = os.environ.get("POPDIFF_COMPILE_CACHE", "").strip()
  if setting.lower() in _CACHE_OFF:
    return None
  if setting.lower() in _CACHE_ON:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    setting = os.path.join(base, "popdiff_jax", "xla")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = setting
  import jax

  jax.config.update("jax_compilation_cache_dir", setting)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    # JAX keeps only programs that took a second or more; a run's small ones add up as well.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return setting


def _maybe_distributed(config: Any) -> None:
  """``jax.distributed.initialize`` before anything touches a device, when a run spans hosts
  (``POPDIFF_DISTRIBUTED=1``; on SLURM / TPU pods JAX finds the cluster by itself)."""
  import os

  if os.environ.get("POPDIFF_DISTRIBUTED") == "1":
    from popdiff_jax.training.mesh import init_distributed
    init_distributed()


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
  """The top-level parser; ``train`` and ``reproduce`` leave their options to tyro."""
  parser = argparse.ArgumentParser(prog="popdiff", description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.splitlines()[2:9]))
  parser.add_argument("--version", action="version", version=f"popdiff_jax {_version()}")
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("configs", help="list every named config")
  _common(p)
  p.set_defaults(fn=cmd_configs)

  p = sub.add_parser("train", help="train and test a named config; any field as --FIELD VALUE",
                     add_help=False)
  p.add_argument("name", help="a named config (popdiff configs lists them)")
  p.add_argument("--workdir", default=None,
                 help="run folder: checkpoints/, metrics.jsonl, results.json; reused = resumed "
                      "(default: runs/NAME)")
  g = p.add_mutually_exclusive_group()
  g.add_argument("--overwrite", action="store_true",
                 help="the workdir holds a run of another config: delete it and start over")
  g.add_argument("--resume", action="store_true",
                 help="the workdir holds a run of another config: continue it with this one")
  p.add_argument("--no-progress", action="store_true", help="hide progress bars")
  p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  p.set_defaults(fn=cmd_train)

  p = sub.add_parser("evaluate", help="test the best checkpoint of a training workdir")
  p.add_argument("--workdir", required=True, help="a folder written by 'popdiff train'")
  p.add_argument("--on", choices=("test", "valid", "train"), default="test",
                 help="which split to score (%(default)s)")
  p.add_argument("--data-dir", default=None, help="where the dataset is, if not embedded")
  _common(p)
  p.set_defaults(fn=cmd_evaluate)

  p = sub.add_parser("reproduce", help="run a paper's table and print it", add_help=False)
  p.add_argument("paper", choices=tuple(_REPRODUCE))
  p.add_argument("--no-progress", action="store_true", help="hide progress bars")
  p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  p.set_defaults(fn=cmd_reproduce)

  p = sub.add_parser("data", help="dataset summaries")
  p.add_argument("action", choices=("summary",), help="summary: one row per dataset")
  p.add_argument("names", nargs="*", metavar="NAME",
                 help="registered datasets (default: all; those not found are named at the end)")
  p.add_argument("--kind", choices=("cascades", "trees"), default="cascades",
                 help="what --data holds, and which registered datasets to list: cascades "
                      "(formats csv, ndm, forest, mshgat, infvae, topolstm) or propagation trees "
                      "(formats csv, twitter15, weibo, parent_arrays); %(default)s")
  p.add_argument("--data", default=None, metavar="PATH",
                 help="summarise this file or folder instead of registered datasets")
  p.add_argument("--format", default=None,
                 help="the format of --data, one of --kind's formats; default: detected from "
                      "the files")
  p.add_argument("--graph", default=None, metavar="PATH", help="a social graph file for --data")
  p.add_argument("--labels", default=None, metavar="PATH",
                 help="a label file for trees (--kind trees): a CSV 'tree,label', or "
                      "'label:tree' lines")
  p.add_argument("--data-dir", default=None, help="folder holding the dataset folders")
  _common(p)
  p.set_defaults(fn=cmd_data)
  return parser


def _one_line(e: BaseException) -> str:
  """The error as one line: the library's own errors as they are, others with their type."""
  if isinstance(e, KeyError) and e.args:
    msg = str(e.args[0])
  elif isinstance(e, (DataError, ValueError, OSError, MissingExtraError)) or type(e).__name__ in (
      "CheckpointError", "WorkdirError", "TrainingDiverged"):
    msg = str(e)
  else:
    msg = f"{type(e).__name__}: {e}"
  msg = " ".join(msg.split())
  return msg if len(msg) <= 2000 else msg[:2000] + "..."


def main(argv: list[str] | None = None) -> int:
  """The ``popdiff`` entry point: runs a command, returns its exit status (0, 2, 130)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  a, rest = parser.parse_known_args(argv)
  if a.command in ("train", "reproduce") and any(x in ("-h", "--help") for x in rest):
    rest = ["--help"]
  elif a.command not in ("train", "reproduce") and rest:
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  if not a.debug:
    warnings.simplefilter("default")
  if a.command in ("train", "evaluate", "reproduce") and "--help" not in rest:
    compile_cache_dir()
  try:
    return a.fn(a, rest)
  except KeyboardInterrupt as e:
    if a.debug:
      raise
    detail = f" ({e})" if str(e) else ""
    print(f"popdiff: interrupted{detail}; rerun the same command (same --workdir) to resume",
          file=sys.stderr)
    return 130
  except Exception as e:  # noqa: BLE001 - the CLI's contract: one line unless --debug
    if a.debug:
      raise
    hint = "" if isinstance(e, (DataError, ConfigError, FileNotFoundError,
                                MissingExtraError)) else \
        " (--debug shows the traceback)"
    print(f"popdiff: error: {_one_line(e)}{hint}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
