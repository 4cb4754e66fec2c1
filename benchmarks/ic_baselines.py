"""Embedded IC and NetRate on an NDM dataset, scored with NDM's diffusion-identification protocol
and its cascade-size MSLE (first five users given, Sec. 5.5).

Trains both IC baselines on the training cascades (`popdiff_jax.models.ic_baselines`), simulates
`--sims` IC runs per test cascade from its first user through the IC engine, and reports Macro/Micro-F1
for the full protocol (Table 2) and the early stage (first five users, Table 3) of Yang et al.

Usage:
  python benchmarks/ic_baselines.py --dataset ndm/irvine      # writes benchmarks/results/ic_baselines_irvine.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from popdiff_jax.data.cascades import load_dataset  # noqa: E402
from popdiff_jax.models import ic_baselines as icb  # noqa: E402


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--dataset", default="ndm/irvine")
  ap.add_argument("--sims", type=int, default=1000)
  ap.add_argument("--steps", type=int, default=300)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--data-dir", default=None, help="folder with forest/, infvae/ (ndm/ is embedded)")
  ap.add_argument("--out", default=None)
  args = ap.parse_args(argv)
  ds = load_dataset(args.dataset, args.data_dir)
  u = len(ds.vocab)
  # NDM's protocol trains on 90% and tests on 10%: our train + valid files are the training part.
  train = list(ds.train) + list(ds.valid)
  key = jax.random.key(args.seed)
  results = {}
  for name, fit in (("embedded_ic", icb.fit_embedded_ic), ("netrate", icb.fit_netrate)):
    t0 = time.perf_counter()
    model = fit(train, u, jax.random.fold_in(key, 1), steps=args.steps)
    fit_s = time.perf_counter() - t0
    row = {"candidate_edges": int(model.edges.shape[0]), "mean_prob": float(model.probs.mean()),
           "final_loss": float(model.losses[-10:].mean()), "fit_s": fit_s}
    for proto, k in (("full", None), ("early5", 5)):
      t0 = time.perf_counter()
      f1, _ = icb.evaluate_ic_baseline(model, ds.test, u, jax.random.fold_in(key, 2), num_sims=args.sims,
                                       first_k=k)
      row[proto] = {"macro_f1": float(f1.macro_f1), "micro_f1": float(f1.micro_f1),
                    "scored_cascades": int(np.asarray(f1.scored).sum()),
                    "eval_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    err, _, _ = icb.ic_size_msle(model, ds.test, u, jax.random.fold_in(key, 3), num_sims=args.sims)
    row["size_msle"] = {"msle": float(err), "given": 5, "eval_s": time.perf_counter() - t0}
    results[name] = row
    print(name, json.dumps(row), flush=True)
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
  except Exception:  # noqa: BLE001
    commit = None
  out = {"benchmark": "ic_baselines", "dataset": args.dataset, "users": u, "train_cascades": len(train),
         "test_cascades": len(ds.test), "sims_per_cascade": args.sims, "steps": args.steps,
         "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "git_commit": commit, "device": str(jax.devices()[0]), "versions": {
             "jax": jax.__version__, "numpy": np.__version__, "python": platform.python_version()},
         "results": results}
  path = pathlib.Path(args.out or ROOT / f"benchmarks/results/ic_baselines_{args.dataset.split('/')[-1]}.json")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=1))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
