"""Why NDM loses on the small next-user sets: named configurations x seeds, validation and test.

Each (dataset, name, seed) trains one model with ``experiments.next_user.run`` (selection and early
stopping on validation only) and appends a row to ``--out`` (JSON lines, so partial results survive):
the test metrics, the validation metrics of the kept epoch, the per-epoch validation curve, and the
trainable parameters per user (rows of the user tables) and in all; each row's ``run`` names its
entry in the meta. The meta lives in ``<out>.summary.json`` (``results.summary_path``), a result
file whose rows are the mean +- std over seeds per (dataset, name) and whose ``meta.runs`` records
every run that appended rows; it is rewritten when a run starts and ends. ``--summary`` only
rewrites and prints it.

  python benchmarks/ndm_small_sets.py --dataset ndm/irvine --seeds 0 1 2 \\
      --config 'ndm={}' --config 'ndm-map={"select_by": "map@10"}' --config 'lstm={"model": "lstm"}'
  python benchmarks/ndm_small_sets.py --summary --out benchmarks/results/ndm_small_sets.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shutil
import sys
import time

import jax
import numpy as np

from popdiff_jax.data.cascades import load_dataset
from popdiff_jax.experiments import next_user as nu
from popdiff_jax.results import (append_row, read_results, run_metadata, summary_path,
                                 write_results)
from popdiff_jax.utils.report import format_table

METRICS = ("hits@10", "hits@50", "hits@100", "map@10", "map@50", "map@100")
DEFAULT_OUT = pathlib.Path(__file__).parent / "results" / "ndm_small_sets.jsonl"


def parameter_counts(config: nu.NextUserConfig, num_items: int, f_init: int) -> dict:
  """Trainable parameters in all and per user (the entries of a row of every [U, ...] table)."""
  model = nu.build_model(config, num_items, f_init)
  from flax import nnx
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree.leaves(params)
  total = sum(int(np.prod(x.shape)) for x in leaves)
  per_user = sum(int(np.prod(x.shape)) // num_items for x in leaves if num_items in x.shape)
  return {"params_total": total, "params_per_user": per_user,
          "params_shared": total - per_user * num_items}


def summarize(rows: list[dict]) -> list[dict]:
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault((r["dataset"], r["name"]), []).append(r)
  out = []
  for (dataset, name), rs in groups.items():
    s = {"dataset": dataset, "name": name, "seeds": len(rs)}
    for m in METRICS + tuple(f"val_{m}" for m in ("hits@10", "map@10", "nll")) + ("best_epoch",):
      vals = np.array([r[m] for r in rs if r.get(m) is not None], float)
      if len(vals):
        s[m] = float(vals.mean())
        s[m + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    s["params_per_user"] = rs[0].get("params_per_user")
    out.append(s)
  return out


def write_summary(out: pathlib.Path, new_run: dict | None = None) -> list[dict]:
  """Rewrites ``<out>.summary.json`` from the rows in ``out``: summary rows and the runs' metas."""
  meta = read_results(summary_path(out))[0] if summary_path(out).exists() else {}
  rows = read_results(out)[1] if out.exists() else []
  runs = list(meta.get("runs", []))
  if new_run is not None:
    runs.append({"run": new_run["date"], **{k: v for k, v in new_run.items() if k != "benchmark"}})
  summary = summarize(rows)
  write_results(summary_path(out), summary,
                {**meta, "benchmark": "ndm_small_sets", "rows_file": out.name, "runs": runs})
  return summary


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dataset", nargs="+", default=["ndm/irvine"])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--config", action="append", default=[], metavar="NAME=JSON",
                 help="NextUserConfig overrides; 'model' defaults to ndm")
  p.add_argument("--seeds", nargs="+", type=int, default=[0])
  p.add_argument("--epochs", type=int, default=50)
  p.add_argument("--max-train-seconds", type=float, default=None)
  p.add_argument("--workdir", default="/tmp/popdiff_ndm_small_sets")
  p.add_argument("--out", default=str(DEFAULT_OUT))
  p.add_argument("--summary", action="store_true", help="only summarise --out")
  a = p.parse_args(argv)
  out = pathlib.Path(a.out)
  if not a.summary:
    done = set()
    if out.exists():  # rows already there are kept and not rerun
      done = {(r["dataset"], r["name"], r["seed"]) for r in read_results(out)[1]}
    meta = run_metadata("ndm_small_sets", config=vars(a))
    write_summary(out, new_run=meta)  # the run's meta is on file before its first row
    for dname in a.dataset:
      data = load_dataset(dname, a.data_dir)
      for spec in a.config:
        name, _, js = spec.partition("=")
        overrides = json.loads(js or "{}")
        for seed in a.seeds:
          if (dname, name, seed) in done:
            continue
          config = dataclasses.replace(nu.NextUserConfig(), num_epochs=a.epochs,
                                       max_train_seconds=a.max_train_seconds, seed=seed,
                                       **overrides)
          run_dir = pathlib.Path(a.workdir) / dname.replace("/", "_") / f"{name}_s{seed}"
          shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no resume across configs
          t0 = time.perf_counter()
          row = nu.run(data, config, run_dir, progress=False)
          row.update(name=name, seed=seed, overrides=overrides, wall_seconds=round(
              time.perf_counter() - t0, 1), device=meta["device"], commit=meta["commit"],
                     date=meta["date"], run=meta["date"])
          if config.model != "popularity":
            row.update(parameter_counts(config, len(data.vocab), row.get("f_init", 0)))
            hist = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().split("\n")
                    if line]
            row["curve"] = [{k: h.get(k) for k in ("epoch", "train_loss", "val_nll", "val_hits@10",
                                                   "val_map@10")} for h in hist]
          append_row(out, row)
          print(f"{dname} {name} seed {seed}: test hits@10 {row['hits@10']:.4f} map@10 "
                f"{row['map@10']:.4f} | val hits@10 {row.get('val_hits@10', float('nan')):.4f} "
                f"map@10 {row.get('val_map@10', float('nan')):.4f} nll "
                f"{row.get('val_nll', float('nan')):.4f} | best epoch {row.get('best_epoch')} "
                f"of {row.get('epochs')} | {row['wall_seconds']} s", flush=True)
  summary = write_summary(out)
  cols = ["dataset", "name", "seeds", "hits@10", "hits@10_std", "map@10", "map@10_std",
          "val_hits@10", "val_map@10", "best_epoch", "params_per_user"]
  print(format_table(summary, cols))
  return 0


if __name__ == "__main__":
  sys.exit(main())
