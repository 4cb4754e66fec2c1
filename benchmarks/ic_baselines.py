"""Embedded IC and NetRate on an NDM dataset, scored with NDM's diffusion-identification protocol
and its cascade-size MSLE (first five users given, Sec. 5.5).

Trains both IC baselines on the training cascades (`popdiff_jax.models.ic_baselines`), simulates
`--sims` IC runs per test cascade from its first user through the IC engine, and reports Macro/Micro-F1
for the full protocol (Table 2) and the early stage (first five users, Table 3) of Yang et al.: one
row per model with ``macro_f1``, ``micro_f1``, ``macro_f1_first5``, ``micro_f1_first5`` and the size
``msle`` (the keys of ``ndm_paper_protocol.json``, which ``ndm_paper_protocol.py --merge`` joins).

Usage:
  python benchmarks/ic_baselines.py --dataset ndm/irvine      # writes benchmarks/results/ic_baselines_irvine.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from popdiff_jax.data.cascades import load_dataset  # noqa: E402
from popdiff_jax.models import ic_baselines as icb  # noqa: E402
from popdiff_jax.results import run_metadata, write_results  # noqa: E402


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
  meta = run_metadata("ic_baselines", config=vars(args), dataset=args.dataset, users=u,
                      train_cascades=len(train), test_cascades=len(ds.test),
                      sims_per_cascade=args.sims, steps=args.steps)
  rows = []
  for name, fit in (("embedded_ic", icb.fit_embedded_ic), ("netrate", icb.fit_netrate)):
    t0 = time.perf_counter()
    model = fit(train, u, jax.random.fold_in(key, 1), steps=args.steps)
    fit_s = time.perf_counter() - t0
    row = {"dataset": args.dataset, "model": name, "candidate_edges": int(model.edges.shape[0]),
           "mean_prob": float(model.probs.mean()), "final_loss": float(model.losses[-10:].mean()),
           "fit_s": fit_s}
    for suffix, k in (("", None), ("_first5", 5)):  # full protocol, then the first five users
      t0 = time.perf_counter()
      f1, _ = icb.evaluate_ic_baseline(model, ds.test, u, jax.random.fold_in(key, 2), num_sims=args.sims,
                                       first_k=k)
      row.update({f"macro_f1{suffix}": float(f1.macro_f1), f"micro_f1{suffix}": float(f1.micro_f1),
                  f"scored_cascades{suffix}": int(np.asarray(f1.scored).sum()),
                  f"eval_s{suffix}": time.perf_counter() - t0})
    t0 = time.perf_counter()
    err, _, _ = icb.ic_size_msle(model, ds.test, u, jax.random.fold_in(key, 3), num_sims=args.sims)
    row.update({"msle": float(err), "msle_given": 5, "msle_eval_s": time.perf_counter() - t0})
    rows.append(row)
    print(name, json.dumps(row), flush=True)
  path = pathlib.Path(args.out or ROOT / f"benchmarks/results/ic_baselines_{args.dataset.split('/')[-1]}.json")
  write_results(path, rows, meta)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
