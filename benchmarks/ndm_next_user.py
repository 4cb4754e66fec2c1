"""Next-user prediction table (Hits@k, MAP@k) for NDM, LSTM and popularity on seven datasets.

Writes ``benchmarks/results/ndm_next_user.json`` (``popdiff_jax.results`` schema) with one row per
(dataset, model) and keys ``dataset``, ``model``, ``split``, ``hits@10/50/100``, ``map@10/50/100``,
``train_seconds``, ``device`` (plus epochs, best epoch and validation metrics).

  python benchmarks/ndm_next_user.py --data-dir ../shared/data            # everything, ~minutes on a GPU
  python benchmarks/ndm_next_user.py --datasets ndm/irvine --epochs 2     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

from popdiff_jax.experiments.next_user import MODELS
from popdiff_jax.experiments.reproduce import NEXT_USER_COLUMNS, reproduce_next_user
from popdiff_jax.results import (merge_results, merge_runs, read_results, run_metadata,
                                 write_results)
from popdiff_jax.utils.report import format_table

DATASETS = ("ndm/memetracker", "ndm/irvine", "ndm/lastfm", "forest/twitter", "forest/memetracker",
            "infvae/christianity", "infvae/android")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--datasets", nargs="+", default=list(DATASETS))
  p.add_argument("--models", nargs="*", default=list(MODELS))
  p.add_argument("--data-dir", default=None)
  p.add_argument("--epochs", type=int, default=50)
  p.add_argument("--max-train-seconds", type=float, default=None,
                  help="time budget per (dataset, model) training run (for CPU runs)")
  p.add_argument("--workdir", default="/tmp/popdiff_bench_next_user")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" /
                                      "ndm_next_user.json"))
  p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                 help="an extra row named NAME with these NextUserConfig overrides (NDM unless they "
                      "set \"model\"), e.g. "
                      "'ndm-reg={\"bias_init\": \"log_frequency\", \"weight_decay\": 1.0}'")
  p.add_argument("--combine", nargs="+", default=None, metavar="PART",
                 help="only merge these result files (from parallel runs) into --out: rows tagged "
                      "with their file (run), the files' metas under meta.runs")
  p.add_argument("--merge", action="store_true",
                 help="keep the rows of other datasets already in --out, with their runs (replace "
                      "only these datasets)")
  p.add_argument("--no-progress", action="store_true")
  a = p.parse_args(argv)
  if a.combine:  # rows tagged with their part (run), the parts' metas under meta.runs
    meta, rows = merge_results(a.combine)
    write_results(a.out, rows, meta)
    print(format_table(rows, NEXT_USER_COLUMNS))
    return 0
  variants = []
  for v in a.variant:
    name, _, cfg = v.partition("=")
    variants.append((name, json.loads(cfg)))
  meta = run_metadata(
      "ndm_next_user", config=vars(a), variants=dict(variants),
      env={k: os.environ.get(k) for k in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR",
                                          "XLA_PYTHON_CLIENT_PREALLOCATE")})
  rows = []
  out = pathlib.Path(a.out)
  kept = None  # with --merge: the file's runs and its rows of the other datasets
  if a.merge and out.exists():
    old_meta, old_rows = read_results(out)
    kept = (old_meta, [r for r in old_rows if r["dataset"] not in a.datasets])
  out_rows = [] if kept is None else kept[1]
  t0 = time.perf_counter()
  for name in a.datasets:
    rows += reproduce_next_user([name], a.models, workdir=a.workdir, data_dir=a.data_dir,
                                progress=not a.no_progress, num_epochs=a.epochs,
                                max_train_seconds=a.max_train_seconds)
    for vname, overrides in variants:
      vrows = reproduce_next_user([name], ["ndm"], workdir=pathlib.Path(a.workdir) / vname,
                                  data_dir=a.data_dir, progress=not a.no_progress,
                                  num_epochs=a.epochs, max_train_seconds=a.max_train_seconds,
                                  **overrides)
      rows += [dict(r, model=vname, config=overrides) for r in vrows]
    meta["wall_seconds"] = round(time.perf_counter() - t0, 1)
    part = (meta, rows)
    out_meta, out_rows = part if kept is None else merge_runs([kept, part])
    write_results(out, out_rows, out_meta)  # after every dataset: partial results survive
    print(format_table([r for r in rows if r["dataset"] == name], NEXT_USER_COLUMNS), flush=True)
  print("\n" + format_table(out_rows, NEXT_USER_COLUMNS))
  return 0


if __name__ == "__main__":
  sys.exit(main())
