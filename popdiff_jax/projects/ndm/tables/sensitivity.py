"""``popdiff reproduce ndm-sensitivity``: parameter sensitivity (Sec. 5.6, Fig. 8).

NDM (``--config``, default ``ndm-patience3``) on one dataset (the paper's Lastfm) at the base
point (h = 8, win = 3, d = 64, F_init = 0) and with one axis changed at a time over Fig. 8's
values (``projects.ndm.analysis``), each scored by the Monte Carlo F1 (early stage, then full).
Rows of ``ndm_sensitivity.json``: ``param`` (h, win, d, F_init), ``value``, the four F1s, the
settings, the next-user metrics and the W^C norms of the model, ``seeds``, ``protocol``; the
base point serves every axis. ``ndm_sensitivity.png`` beside it plots the F1s per axis
(matplotlib; skipped, with a note, where it is not installed).

::

  XLA_FLAGS=--xla_gpu_autotune_level=0 popdiff reproduce ndm-sensitivity \\
      --parallel 13 --budget 465 --train.max-train-seconds 170        # 13 models, one GPU, ~8 min
  popdiff reproduce ndm-sensitivity --tiny
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from popdiff_jax import _validate as v
from popdiff_jax.projects.ndm import analysis
from popdiff_jax.projects.ndm import configs as C
from popdiff_jax.projects.ndm.tables import common
from popdiff_jax.results import read_results

__all__ = ["SensitivityConfig", "TABLE", "plot", "reproduce_main"]

F1_KEYS = ("macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5")
_SHORT = {"num_heads": "h", "window": "win", "dim": "d", "f_init": "F"}


@dataclasses.dataclass(frozen=True)
class SensitivityConfig(common.AnalysisConfig):
  """``popdiff reproduce ndm-sensitivity``: one axis at a time from the base point
  (``ndm_sensitivity.json`` and ``ndm_sensitivity.png``).

  Attributes:
    dataset: the dataset (the paper's: Lastfm).
    num_heads: the values of the axis h (Fig. 8's); an empty axis is not swept.
    window: the values of the axis win.
    dim: the values of the axis d.
    f_init: the values of the axis F_init.
    base: the base point: h, win, d, F_init.
    runs: Monte Carlo runs per test cascade.
    plot: also draw the figure (``<out>.png``).
  """

  dataset: str = analysis.SENSITIVITY_DATASET
  num_heads: tuple[int, ...] = analysis.SENSITIVITY_GRID["num_heads"]
  window: tuple[int, ...] = analysis.SENSITIVITY_GRID["window"]
  dim: tuple[int, ...] = analysis.SENSITIVITY_GRID["dim"]
  f_init: tuple[int, ...] = analysis.SENSITIVITY_GRID["f_init"]
  base: tuple[int, int, int, int] = tuple(analysis.SENSITIVITY_BASE.values())
  runs: int = 200
  plot: bool = True

  def __post_init__(self):
    super().__post_init__()
    v.positive(self, "runs")

  @property
  def grid(self) -> dict:
    """axis -> the values swept."""
    return {k: getattr(self, k) for k in analysis.SENSITIVITY_GRID}

  @property
  def base_point(self) -> dict:
    """axis -> the base model's value."""
    return dict(zip(analysis.SENSITIVITY_GRID, self.base))


def _job(point: dict, seed: int) -> str:
  return ",".join(f"{_SHORT[k]}={x}" for k, x in point.items()) + f"|s{seed}"


def jobs(opts: SensitivityConfig) -> list[str]:
  return [_job(p, s) for p in analysis.sensitivity_configs(opts.grid, opts.base_point)
          for s in opts.seeds]


def run_job(opts: SensitivityConfig, job: str, ctx: common.Context) -> None:
  settings, seed = job.rsplit("|", 1)
  long = {x: k for k, x in _SHORT.items()}
  point = {long[k]: int(x) for k, x in (kv.split("=") for kv in settings.split(","))}
  common.train_and_score(TABLE, opts, ctx, opts.dataset, int(seed[1:]),
                         {"job": f"sens:{settings}", **point}, model=point, runs=opts.runs)


def collect(opts: SensitivityConfig, rows: list[dict]) -> list[dict]:
  points = common.average_seeds(rows, ("num_heads", "window", "dim", "f_init", "protocol"))
  return analysis.sensitivity_rows(points, opts.grid, opts.base_point)


def plot(rows: list[dict], out: str | pathlib.Path) -> pathlib.Path:
  """Fig. 8: the four F1s against each hyperparameter, one panel per axis (matplotlib)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  params = [p for p in ("h", "win", "d", "F_init") if any(r["param"] == p for r in rows)]
  fig, axes = plt.subplots(1, max(len(params), 1), figsize=(3.5 * max(len(params), 1), 3.2),
                           sharey=True, squeeze=False)
  labels = {"macro_f1": "Macro-F1", "micro_f1": "Micro-F1",
            "macro_f1_first5": "Macro-F1 (Early)", "micro_f1_first5": "Micro-F1 (Early)"}
  for ax, param in zip(axes[0], params):
    sub = sorted((r for r in rows if r["param"] == param), key=lambda r: r["value"])
    xs = list(range(len(sub)))
    for key, marker in zip(F1_KEYS, "osD^"):
      ax.plot(xs, [r.get(key, float("nan")) for r in sub], marker=marker, label=labels[key])
    ax.set_xticks(xs, [str(r["value"]) for r in sub])
    ax.set_xlabel(param)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("F1")
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  out = pathlib.Path(out)
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out


def finish(opts: SensitivityConfig, out: pathlib.Path, rows: list[dict]) -> None:
  if not opts.plot:
    return
  try:
    path = plot(read_results(out)[1], out.with_suffix(".png"))
  except ImportError:
    print("ndm-sensitivity: matplotlib is not installed: no figure", file=sys.stderr)
    return
  print(f"figure: {path}")


def tiny() -> SensitivityConfig:
  cfg = C.get_config("ndm-tiny-examples")
  # Two axes whose only value is the base point's: one training serves both rows.
  return SensitivityConfig(dataset=cfg.data.source, config="ndm-tiny-examples", num_heads=(),
                           window=(3,), dim=(), f_init=(1,), base=(2, 3, 8, 1), runs=8,
                           max_rows=128, workdir=None, tiny=True,
                           data=dataclasses.replace(cfg.data, source=C.DataConfig().source))


TABLE = common.Table(
    command="ndm-sensitivity", file="ndm_sensitivity.json", options=SensitivityConfig(),
    tiny=tiny, jobs=jobs, run_job=run_job, collect=collect,
    key=("param", "value", "protocol"), key_defaults={"protocol": "project"},
    columns=("param", "value", *F1_KEYS, "epochs", "stopped_by", "seeds"),
    title="Parameter sensitivity (test split; one axis at a time from the base point)",
    meta=lambda opts: {"dataset": opts.dataset, "base": opts.base_point}, finish=finish)


def reproduce_main(args: list[str], progress: bool = True) -> int:
  """``popdiff reproduce ndm-sensitivity [options]`` (:class:`SensitivityConfig`)."""
  return common.main(TABLE, args, progress)
