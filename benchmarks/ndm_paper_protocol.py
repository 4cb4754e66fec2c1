"""NDM's Monte Carlo protocol (paper Tables 2-3, Sec. 5.5) for trained NDM and LSTM models.

Writes ``benchmarks/results/ndm_paper_protocol.json``: ``{"meta": ..., "rows": [...]}``, one row per
(dataset, model) with ``macro_f1``, ``micro_f1``, ``macro_f1_first5``, ``micro_f1_first5``, ``msle``,
``runs_per_cascade``, ``device`` and the paper's numbers beside them (``paper_*``).

Models are loaded from the workdirs of ``benchmarks/ndm_next_user.py`` (same ``--workdir``) when
present, else trained here.

  python benchmarks/ndm_paper_protocol.py --data-dir ../shared/data --workdir /tmp/popdiff_bench_next_user
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.experiments import next_user
from popdiff_jax.experiments.ndm_protocol import PAPER_TABLES, evaluate_protocol
from popdiff_jax.results import merge_runs, read_results, run_metadata, write_results
from popdiff_jax.utils.report import format_table

COLUMNS = ("dataset", "model", "macro_f1", "paper_macro_f1", "micro_f1", "paper_micro_f1",
           "macro_f1_first5", "paper_macro_f1_first5", "micro_f1_first5", "paper_micro_f1_first5",
           "msle", "runs_per_cascade")


def _runs(spec: str) -> dict[str, int]:
  out = {}
  for item in spec.split(","):
    name, n = item.split("=")
    out[name] = int(n)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--datasets", nargs="+", default=list(PAPER_TABLES))
  p.add_argument("--models", nargs="+", default=["ndm", "lstm"])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--runs", type=int, default=1000, help="runs per cascade (paper: 1000)")
  p.add_argument("--runs-override", type=_runs, default={},
                 help="per-dataset runs, e.g. ndm/lastfm=200,forest/twitter=50 (CPU budgets)")
  p.add_argument("--size-runs", type=int, default=100, help="runs per cascade for the size MSLE")
  p.add_argument("--max-train-seconds", type=float, default=None)
  p.add_argument("--workdir", default="/tmp/popdiff_bench_next_user")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" /
                                      "ndm_paper_protocol.json"))
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                 help="only merge: result files of this script (one process per dataset and "
                      "model, e.g. benchmarks/ndm_protocol_device.sh) and ic_baselines.py files "
                      "into --out")
  a = p.parse_args(argv)
  if a.merge:
    return merge(a.merge, pathlib.Path(a.out))
  meta = run_metadata("ndm_paper_protocol", config=vars(a))
  out = pathlib.Path(a.out)
  rows = []
  for name in a.datasets:
    data = load_dataset(name, a.data_dir)
    for model in a.models:
      run_dir = pathlib.Path(a.workdir) / name.replace("/", "_") / model
      if (run_dir / "config.json").exists():
        _, trained = next_user.load_trained(run_dir, dataset=data)
        source = f"loaded from {run_dir}"
      else:
        config = dataclasses.replace(next_user.NextUserConfig(model=model),
                                     max_train_seconds=a.max_train_seconds)
        trained = next_user.train(data, config, run_dir, progress=not a.no_progress)
        source = "trained here"
      runs = a.runs_override.get(name, a.runs)
      row = {"dataset": name, "model": model.upper(),
             "device": meta["device"], "f_init": trained.f_init, "model_source": source,
             "epochs": trained.info.get("epochs")}
      row.update(evaluate_protocol(data, trained, runs=runs, size_runs=min(a.size_runs, runs),
                                   progress=not a.no_progress))
      if model == "ndm":
        row.update({f"paper_{k}": v for k, v in PAPER_TABLES.get(name, {}).items()})
      rows.append(row)
      write_results(out, rows, meta)
      print(format_table([row], COLUMNS), flush=True)
  print("\n" + format_table(rows, COLUMNS, floatfmt=".3f"))
  return 0


IC_MODELS = {"embedded_ic": "EmbeddedIC", "netrate": "NetRate"}


def ic_rows(meta: dict, rows: list[dict]) -> list[dict]:
  """The rows of an ``ic_baselines.py`` file as rows of this table."""
  keys = ("macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5", "msle", "fit_s")
  return [{"dataset": r.get("dataset", meta.get("dataset")), "model": IC_MODELS[r["model"]],
           "device": meta.get("device"), **{k: r.get(k) for k in keys},
           "runs_per_cascade": meta.get("sims_per_cascade"),
           "model_source": f"fitted by ic_baselines.py ({meta.get('steps')} steps)"}
          for r in rows if r.get("model") in IC_MODELS]


def merge(paths: list[str], out: pathlib.Path) -> int:
  """One result file from per-process protocol files and IC-baseline files (``ic_baselines.py``):
  rows tagged with the file (``run``) they came from, each file's meta under ``meta.runs``."""
  parts, names = [], []
  for path in map(pathlib.Path, paths):
    meta, rows = read_results(path)
    if meta.get("benchmark") == "ic_baselines":
      rows = ic_rows(meta, rows)
    if not isinstance(meta.get("runs"), list):
      meta = dict(meta, file=path.name)
    parts.append((meta, rows))
    names.append(path.stem)
  meta, rows = merge_runs(parts, names)
  order = {name: i for i, name in enumerate(PAPER_TABLES)}
  models = {m: i for i, m in enumerate(("NDM", "LSTM", *IC_MODELS.values()))}
  rows.sort(key=lambda r: (order.get(r["dataset"], 99), models.get(r["model"], 99)))
  meta = {"benchmark": "ndm_paper_protocol", **{k: v for k, v in meta.items() if k != "benchmark"}}
  write_results(out, rows, meta)
  print(format_table(rows, COLUMNS, floatfmt=".3f"))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
