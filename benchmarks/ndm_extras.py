"""NDM's remaining experiments: NDM+SN (5.4), parameter sensitivity (5.6) and W^C norms (5.7).

Writes three result files (``{"meta": ..., "rows": [...]}``):

* ``ndm_sn.json``: rows ``dataset``, ``model`` (NDM, NDM+SN), next-user ``hits@k``/``map@k``
  (k = 10, 50, 100), ``nll``, Monte Carlo ``macro_f1``, ``micro_f1``, ``macro_f1_first5``,
  ``micro_f1_first5``, ``runs_per_cascade`` (NDM+SN rows also DeepWalk's graph coverage).
* ``ndm_sensitivity.json``: rows ``param`` (h, win, d, F_init), ``value`` and the four F1s on
  ndm/lastfm, one axis at a time from h = 8, win = 3, d = 64, F_init = 0.
* ``ndm_norms.json``: rows ``dataset``, ``W_init``, ``W_0``, ``W_1``, ``W_2`` (squared Frobenius
  norms, F_init = 1) beside the paper's Table 4 (``paper_W_*``).

Subcommands:

* ``all``: every job as its own process (``--parallel`` at once), each with a hard timeout and the
  common deadline ``--budget`` seconds from the start; each job writes its row to ``--parts`` after
  every stage (trained, early-stage F1, full F1), so a job cut short still leaves what it finished;
  then ``collect``. The device run (one H100, results under $OUT)::

    XLA_PYTHON_CLIENT_PREALLOCATE=false python3 benchmarks/ndm_extras.py all \\
        --data-dir .carry_data --out-dir $OUT --budget 400

* ``job``: one job (``sens:h=8,win=3,d=64,F=0``, ``norms:ndm/irvine``,
  ``sn:infvae/android:NDM+SN``).
* ``collect``: the three JSON files from the parts.
* ``plot``: Fig. 8 from ``ndm_sensitivity.json`` (matplotlib).
* ``readme``: the Markdown tables of the README section from the three files (``docs/tables.py``).

Tiny CPU check: ``python benchmarks/ndm_extras.py all --tiny --out-dir /tmp/x --budget 300``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).parent / "results"
F1_KEYS = ("macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5")
NEXT_USER_KEYS = ("hits@10", "hits@50", "hits@100", "map@10", "map@50", "map@100", "nll")
SETTING_KEYS = {"h": "num_heads", "win": "window", "d": "dim", "F": "f_init"}


# --------------------------------------------------------------------------------------- jobs


def job_list(tiny: bool = False) -> list[str]:
  """Every job of the three experiments, the slowest (Lastfm sweep) first."""
  from popdiff_jax.experiments import ndm_extras as ex
  sens = [f"sens:h={c['num_heads']},win={c['window']},d={c['dim']},F={c['f_init']}"
          for c in ex.sensitivity_configs()]
  norms = [f"norms:{d}" for d in ex.NORM_DATASETS if d != ex.SENSITIVITY_DATASET]
  sn = [f"sn:{d}:{m}" for d in ex.SOCIAL_DATASETS for m in ("NDM", "NDM+SN")]
  if tiny:  # one of each kind on small data
    return [sens[0], sens[-1], "norms:ndm/irvine", "sn:infvae/christianity:NDM",
            "sn:infvae/christianity:NDM+SN"]
  return sens + sn + norms


def _job_name(job: str) -> str:
  return "".join(ch if ch.isalnum() or ch in "=-+" else "_" for ch in job)


def run_job(job: str, a: argparse.Namespace) -> None:
  """Trains and scores one job, rewriting ``parts/<job>.json`` after every stage."""
  import jax
  from popdiff_jax.data.cascades import load_dataset
  from popdiff_jax.experiments import ndm_extras as ex
  from popdiff_jax.experiments import next_user as nu
  from popdiff_jax.models.deepwalk import DeepWalkConfig

  t_start = time.time()
  deadline = a.deadline or (t_start + 1e9)
  kind, _, rest = job.partition(":")
  config = nu.NextUserConfig(model="ndm", num_epochs=a.epochs, patience=a.patience, seed=a.seed,
                             **json.loads(a.config_json))
  if a.tiny:
    config = dataclasses.replace(config, dim=16, num_heads=2, max_len=30)
  row: dict = {"job": job, "device": jax.devices()[0].device_kind}
  frozen = None
  if kind == "sens":
    settings = {SETTING_KEYS[k]: int(v) for k, v in (kv.split("=") for kv in rest.split(","))}
    row.update(settings)  # the nominal point of the sweep
    if a.tiny:
      settings = {**settings, "dim": min(settings["dim"], 16), "num_heads": 2}
    config = dataclasses.replace(config, **settings)
    name = ex.SENSITIVITY_DATASET
  elif kind == "norms":
    name = rest
    config = dataclasses.replace(config, f_init=1)
  elif kind == "sn":
    name, _, model = rest.rpartition(":")
    row["model"] = model
  else:
    raise ValueError(f"unknown job {job!r}")
  data = load_dataset(name, a.data_dir)
  if a.tiny:  # a fraction of the cascades: a smoke test of the pipeline, not a result
    data = dataclasses.replace(data, train=data.train[:200], valid=data.valid[:40],
                               test=data.test[:30])
  row["dataset"] = name
  if kind == "sn" and row["model"] == "NDM+SN":
    dw = DeepWalkConfig(dim=config.dim // 2, seed=a.seed)
    if a.tiny:
      dw = dataclasses.replace(dw, walks_per_node=2, walk_length=10)
    frozen, info = ex.social_embedding(data, a.data_dir, dw)
    row.update({k: v for k, v in info.items() if k != "deepwalk"})
  reserve = 0.0 if kind == "norms" else a.eval_reserve
  budget = min(a.max_train_seconds, deadline - time.time() - reserve)
  config = dataclasses.replace(config, max_train_seconds=max(budget, 1.0))
  trained = ex.train(data, config, pathlib.Path(a.workdir) / _job_name(job),
                     frozen_embedding=frozen, progress=False)
  row["f_init"] = trained.f_init
  row.update({k: trained.info[k] for k in ("epochs", "best_epoch", "stopped_by", "train_seconds")})
  row["train_budget_seconds"] = round(budget, 1)
  row.update(nu.test_metrics(data, trained))
  row.update(ex.wc_norms(trained.params))
  row.update({f"init_{k}": v for k, v in ex.initial_wc_norms(config, len(data.vocab),
                                                            trained.f_init).items()})
  out = pathlib.Path(a.parts) / f"{_job_name(job)}.json"

  def save():
    row["wall_seconds"] = round(time.time() - t_start, 1)
    out.write_text(json.dumps(row, indent=1))

  save()
  if kind == "norms":
    return
  runs = a.sens_runs if kind == "sens" else a.sn_runs
  row["runs_per_cascade"] = runs
  for first_k in (5, None):  # the cheap early-stage protocol first
    row.update(ex.evaluate_f1(data, trained, runs=runs, first_k=first_k, seed=a.seed,
                              max_rows=a.max_rows))
    save()


# --------------------------------------------------------------------------------------- driver


def run_all(a: argparse.Namespace) -> int:
  """Runs every job in parallel processes under one deadline, then collects."""
  start = time.time()
  deadline = start + a.budget - a.collect_reserve
  parts = pathlib.Path(a.parts)
  parts.mkdir(parents=True, exist_ok=True)
  logs = parts / "logs"
  logs.mkdir(exist_ok=True)
  jobs = [j for j in job_list(a.tiny)
          if not a.only or any(j.startswith(prefix) for prefix in a.only.split(","))]
  status: dict[str, str] = {}
  if a.resume:  # jobs whose part already holds their last stage (from an earlier call) are kept
    for job in list(jobs):
      part = parts / f"{_job_name(job)}.json"
      if part.exists() and (job.startswith("norms:")
                            or "macro_f1" in json.loads(part.read_text())):
        status[job] = "done earlier"
        jobs.remove(job)
  pending = list(jobs)
  running: list[tuple[str, subprocess.Popen, object]] = []
  root = str(pathlib.Path(__file__).resolve().parents[1])
  env = dict(os.environ, PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  passthrough = ["--data-dir", a.data_dir or "", "--parts", str(parts), "--workdir", a.workdir,
                 "--deadline", str(deadline), "--epochs", str(a.epochs), "--patience",
                 str(a.patience), "--max-train-seconds", str(a.max_train_seconds),
                 "--eval-reserve", str(a.eval_reserve), "--sens-runs", str(a.sens_runs),
                 "--sn-runs", str(a.sn_runs), "--max-rows", str(a.max_rows), "--seed",
                 str(a.seed), "--config-json", a.config_json] + (["--tiny"] if a.tiny else [])
  while pending or running:
    while pending and len(running) < a.parallel and time.time() < deadline:
      job = pending.pop(0)
      log = open(logs / f"{_job_name(job)}.log", "w")
      cmd = [sys.executable, __file__, "job", job] + passthrough
      running.append((job, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                      log))
    if time.time() >= deadline:
      for job in pending:
        status[job] = "not started"
      pending = []
    for job, proc, log in list(running):
      code = proc.poll()
      if code is None and time.time() >= deadline + a.grace:
        proc.kill()
        code = "killed at the deadline"
        proc.wait()
      if code is not None:
        status[job] = "ok" if code == 0 else f"exit {code}"
        log.close()
        running.remove((job, proc, log))
    time.sleep(1.0)
  print(json.dumps(status, indent=1), flush=True)
  (parts / "status.json").write_text(json.dumps(status, indent=1))
  a.meta_extra = {"jobs": status, "wall_seconds": round(time.time() - start, 1)}
  return collect(a)


def _meta(a: argparse.Namespace, benchmark: str, **extra) -> dict:
  from popdiff_jax.results import run_metadata
  meta = run_metadata(
      benchmark, config={k: v for k, v in vars(a).items() if k != "meta_extra"},
      epochs_max=a.epochs, patience=a.patience,
      config_overrides=json.loads(a.config_json), max_train_seconds=a.max_train_seconds,
      sens_runs_per_cascade=a.sens_runs, sn_runs_per_cascade=a.sn_runs, tiny=a.tiny, **extra)
  meta.update(getattr(a, "meta_extra", {}))
  return meta


def collect(a: argparse.Namespace) -> int:
  """The three result files from the job parts."""
  from popdiff_jax.experiments import ndm_extras as ex
  from popdiff_jax.results import write_results
  from popdiff_jax.utils.report import format_table
  parts = [json.loads(p.read_text()) for p in sorted(pathlib.Path(a.parts).glob("*.json"))
           if p.name != "status.json"]
  out_dir = pathlib.Path(a.out_dir)

  sn = [r for r in parts if r["job"].startswith("sn:")]
  order = {d: i for i, d in enumerate(ex.SOCIAL_DATASETS)}
  sn.sort(key=lambda r: (order.get(r["dataset"], 99), r["model"]))
  for r in sn:
    base = next((b for b in sn if b["dataset"] == r["dataset"] and b["model"] == "NDM"), None)
    if r["model"] == "NDM+SN" and base and base.get("micro_f1") and r.get("micro_f1") is not None:
      r["micro_f1_rel_change"] = round(r["micro_f1"] / base["micro_f1"] - 1.0, 4)
  write_results(out_dir / "ndm_sn.json", sn, _meta(
      a, "ndm_sn", paper="NDM+SN: relative Micro-F1 improvement about 4% (Sec. 5.4)"))

  sens = ex.sensitivity_rows([r for r in parts if r["job"].startswith("sens:")])
  write_results(out_dir / "ndm_sensitivity.json", sens, _meta(
      a, "ndm_sensitivity", dataset=ex.SENSITIVITY_DATASET, base=ex.SENSITIVITY_BASE))

  norms = []
  for name in ex.NORM_DATASETS:
    if name == ex.SENSITIVITY_DATASET:  # the sweep's F_init = 1 run is the Lastfm model
      found = [r for r in parts if r["job"].startswith("sens:")
               and all(r.get(k) == v for k, v in dict(ex.SENSITIVITY_BASE, f_init=1).items())]
    else:
      found = [r for r in parts if r["job"] == f"norms:{name}"]
    if found:
      r = found[0]
      keys = ("W_init", "W_0", "W_1", "W_2")
      norms.append({"dataset": name, **{k: r.get(k) for k in keys},
                    **{f"init_{k}": r.get(f"init_{k}") for k in keys},
                    **{f"paper_{k}": v for k, v in ex.PAPER_NORMS[name].items()},
                    "epochs": r.get("epochs"), "best_epoch": r.get("best_epoch"),
                    "hits@10": r.get("hits@10"), "source_job": r["job"]})
  write_results(out_dir / "ndm_norms.json", norms, _meta(a, "ndm_norms", f_init=1))

  print(format_table(sn, ("dataset", "model", "hits@10", "map@10", *F1_KEYS, "runs_per_cascade",
                          "epochs"), floatfmt=".4f"))
  print()
  print(format_table(sens, ("param", "value", *F1_KEYS, "epochs", "stopped_by"), floatfmt=".4f"))
  print()
  print(format_table(norms, ("dataset", "W_init", "paper_W_init", "W_0", "paper_W_0", "W_1",
                             "paper_W_1", "W_2", "paper_W_2"), floatfmt=".1f"))
  print(f"wrote {out_dir}/ndm_sn.json, ndm_sensitivity.json, ndm_norms.json")
  return 0


# --------------------------------------------------------------------------------------- reports


def plot(a: argparse.Namespace) -> int:
  """Fig. 8: the four F1s against each hyperparameter, one panel per axis."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from popdiff_jax.results import read_results
  _, rows = read_results(a.sensitivity)
  params = ("h", "win", "d", "F_init")
  fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
  labels = {"macro_f1": "Macro-F1", "micro_f1": "Micro-F1", "macro_f1_first5": "Macro-F1 (Early)",
            "micro_f1_first5": "Micro-F1 (Early)"}
  for ax, param in zip(axes, params):
    sub = sorted((r for r in rows if r["param"] == param), key=lambda r: r["value"])
    xs = list(range(len(sub)))
    for key, marker in zip(F1_KEYS, "osD^"):
      ax.plot(xs, [r.get(key, float("nan")) for r in sub], marker=marker, label=labels[key])
    ax.set_xticks(xs, [str(r["value"]) for r in sub])
    ax.set_xlabel(param)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("F1 (Lastfm)")
  axes[-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(a.out, dpi=120)
  print(f"wrote {a.out}")
  return 0


def readme(a: argparse.Namespace) -> int:
  """The README tables of the three result files: ``docs/tables.py``'s ``ndm_sn``,
  ``ndm_sensitivity`` and ``ndm_norms`` (``python docs/tables.py --write`` puts them in place)."""
  import importlib.util
  from popdiff_jax.results import read_results
  spec = importlib.util.spec_from_file_location(
      "doc_tables", pathlib.Path(__file__).resolve().parents[1] / "docs" / "tables.py")
  tables = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = tables
  spec.loader.exec_module(tables)
  for name in ("ndm_sn", "ndm_sensitivity", "ndm_norms"):
    meta, _ = read_results(pathlib.Path(a.results) / tables.TABLES[name].file)
    print(f"{name} ({meta.get('device')}, {meta.get('date')}):\n")
    print(tables.table(name, results=pathlib.Path(a.results)) + "\n")
  return 0


# --------------------------------------------------------------------------------------- CLI


def _add_run_args(p: argparse.ArgumentParser) -> None:
  p.add_argument("--data-dir", default=None, help="folder with infvae/, topolstm_twitter/, forest/")
  p.add_argument("--parts", default="/tmp/ndm_extras_parts", help="per-job rows")
  p.add_argument("--workdir", default="/tmp/ndm_extras_runs", help="checkpoints")
  p.add_argument("--epochs", type=int, default=50)
  p.add_argument("--patience", type=int, default=3)
  p.add_argument("--max-train-seconds", type=float, default=150.0)
  p.add_argument("--eval-reserve", type=float, default=110.0,
                 help="seconds before the deadline kept for the Monte Carlo F1")
  p.add_argument("--sens-runs", type=int, default=200, help="MC runs per cascade, Lastfm sweep")
  p.add_argument("--sn-runs", type=int, default=500, help="MC runs per cascade, NDM+SN sets")
  p.add_argument("--max-rows", type=int, default=1024, help="MC runs advanced together")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--tiny", action="store_true", help="small models and data: a CPU smoke test")
  p.add_argument("--config-json", default="{}",
                 help='NextUserConfig overrides for every job, e.g. \'{"weight_decay": 1.0}\'')


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  p_all = sub.add_parser("all", help="every job in parallel, then collect")
  _add_run_args(p_all)
  p_all.add_argument("--budget", type=float, default=400.0, help="wall seconds for everything")
  p_all.add_argument("--collect-reserve", type=float, default=20.0)
  p_all.add_argument("--grace", type=float, default=5.0)
  p_all.add_argument("--parallel", type=int, default=6,
                     help="jobs at once (each compiles its own programs: more than ~8 on a "
                          "16-core host spend the budget compiling)")
  p_all.add_argument("--only", default="",
                     help="comma-separated job-name prefixes to run (e.g. 'norms:,sn:')")
  p_all.add_argument("--resume", action="store_true",
                     help="skip jobs whose part in --parts already has its last stage")
  p_all.add_argument("--out-dir", default=str(RESULTS))
  p_job = sub.add_parser("job", help="one job")
  p_job.add_argument("name")
  _add_run_args(p_job)
  p_job.add_argument("--deadline", type=float, default=None, help="Unix time to finish by")
  p_col = sub.add_parser("collect", help="result files from the parts")
  _add_run_args(p_col)
  p_col.add_argument("--out-dir", default=str(RESULTS))
  p_plot = sub.add_parser("plot", help="Fig. 8 from ndm_sensitivity.json")
  p_plot.add_argument("--sensitivity", default=str(RESULTS / "ndm_sensitivity.json"))
  p_plot.add_argument("--out", default=str(RESULTS / "ndm_sensitivity.png"))
  p_md = sub.add_parser("readme", help="README tables from the result files")
  p_md.add_argument("--results", default=str(RESULTS))
  a = p.parse_args(argv)
  if getattr(a, "data_dir", None) == "":
    a.data_dir = None
  if a.cmd == "all":
    return run_all(a)
  if a.cmd == "job":
    pathlib.Path(a.parts).mkdir(parents=True, exist_ok=True)
    run_job(a.name, a)
    return 0
  if a.cmd == "collect":
    return collect(a)
  if a.cmd == "plot":
    return plot(a)
  return readme(a)


if __name__ == "__main__":
  sys.exit(main())
