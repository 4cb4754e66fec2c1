"""Markdown tables quoted from the result files in ``benchmarks/results/``.

A table in ``README.md``, ``benchmarks/README.md``, ``docs/*.md`` or
``popdiff_jax/projects/*/README.md`` sits between two marker lines::

  <!-- table: NAME -->

  | ... written by this script ... |

  <!-- /table -->

``TABLES`` holds one spec per NAME: the result file, which rows (``where``), the columns (header,
row key, number format, optionally the paper's number beside ours) and the order (``sort``).
Everything between the markers comes from the result file; the text around them is left alone.

  python docs/tables.py --check           # exit 1 and print a diff where a table differs
  python docs/tables.py --write           # rewrite every table from its file
  python docs/tables.py --print NAME ...  # print tables (no file changes)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import pathlib
import re
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from popdiff_jax.results import read_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BEGIN = re.compile(r"^<!-- table: (\S+) -->$")
END = "<!-- /table -->"
MISSING = "–"


class TableError(ValueError):
  """A marker without its end, a nested marker, or a NAME without a spec."""


# --------------------------------------------------------------------------------------- specs

@dataclasses.dataclass(frozen=True)
class Col:
  """One column.

  key: a row key (``"a.b"`` walks into a nested dict), a tuple of keys (cells joined by `` / ``)
    or a function of the row.
  fmt: a format spec for numbers (``".3f"``, ``",.0f"``, ``"+.1%"``) or a function of the value.
  std: the key of a standard deviation shown as ``mean ± std`` (same format).
  paper: the key of the paper's number, shown as ``ours / paper`` when the row has it.
  labels: text for raw values (e.g. model names).
  bold: ``"max"`` or ``"min"``: bold the best value within each group of ``Table.group``.
  """

  header: str
  key: str | tuple[str, ...] | Callable[[dict], Any]
  fmt: str | Callable[[Any], str] = ""
  std: str | None = None
  paper: str | None = None
  labels: Mapping[Any, str] | None = None
  bold: str | None = None


@dataclasses.dataclass(frozen=True)
class Table:
  """One table: rows of ``file`` (under benchmarks/results/) that pass ``where`` (a dict of
  key -> value or tuple of values, or a function of the row), sorted by ``sort`` (a function of
  the row; None keeps the file's order)."""

  file: str
  columns: tuple[Col, ...]
  where: Mapping[str, Any] | Callable[[dict], bool] | None = None
  sort: Callable[[dict], Any] | None = None
  group: tuple[str, ...] = ()
  picks: tuple["Pick", ...] = ()


@dataclasses.dataclass(frozen=True)
class Pick:
  """One row of a table drawn from several result files (``Table.picks``; ``Table.file`` is
  then unused): the first row of ``file`` that passes ``where``, its metric ``ours`` (with
  ``<ours>_std`` where the row has one), the paper's number (a row key, or a number when the
  row does not carry it) and the constant cells ``cells``. ``leak_free`` selects the row of the
  leak-free protocol in the same file (none: the cell is –).

  The row handed to the columns has ``ours``, ``ours_std``, ``paper``, ``protocol``
  (the row's, else ``project``), ``ours_leak_free``, ``seeds``, ``device`` (short), ``fmt``
  and the ``cells``.
  """

  file: str
  where: Mapping[str, Any]
  ours: str
  paper: str | float | None
  cells: Mapping[str, Any]
  leak_free: Mapping[str, Any] | None = None
  fmt: str = ".3f"

  def row(self, results: pathlib.Path) -> dict:
    """The table row (cells of a missing result row are None, shown as –)."""
    _, rows = read_results(results / self.file)
    spec = Table(self.file, (), where=self.where)
    found = select(spec, rows)
    r = found[0] if found else {}
    free = select(Table(self.file, (), where=self.leak_free), rows) if self.leak_free else []
    paper = get(r, self.paper) if isinstance(self.paper, str) else self.paper
    seeds = r.get("seeds")
    device = str(r.get("device") or "").removeprefix("gpu:").removeprefix("NVIDIA ")
    return {"device": device.split(" ")[0] or None, "fmt": self.fmt, **self.cells,
            "ours": get(r, self.ours), "ours_std": get(r, f"{self.ours}_std"),
            "paper": paper, "protocol": r.get("protocol", "project") if r else None,
            "ours_leak_free": get(free[0], self.ours) if free else None,
            "seeds": len(seeds) if isinstance(seeds, (list, tuple)) else seeds}


def get(row: Mapping, key: str) -> Any:
  """``row[key]``, walking ``a.b`` into nested dicts; None when absent."""
  if key in row:
    return row[key]
  value: Any = row
  for part in key.split("."):
    if not isinstance(value, Mapping) or part not in value:
      return None
    value = value[part]
  return value


def fmt_value(value: Any, fmt: str | Callable[[Any], str] = "") -> str:
  if value is None:
    return MISSING
  if callable(fmt):
    return fmt(value)
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, (int, float)):
    return format(value, fmt) if fmt else str(value)
  return str(value)


def _value(col: Col, row: dict) -> Any:
  if callable(col.key):
    return col.key(row)
  if isinstance(col.key, tuple):
    return tuple(get(row, k) for k in col.key)
  return get(row, col.key)


def _cell(col: Col, row: dict, best: Any) -> str:
  value = _value(col, row)
  if isinstance(value, tuple):
    text = " / ".join(fmt_value(v, col.fmt) for v in value)
  elif col.labels is not None and value in col.labels:
    text = col.labels[value]
  else:
    text = fmt_value(value, col.fmt)
  if col.std and value is not None and get(row, col.std) is not None:
    text += " ± " + fmt_value(get(row, col.std), col.fmt)
  if best is not None and value == best:
    text = f"**{text}**"
  if col.paper and get(row, col.paper) is not None:
    text += " / " + fmt_value(get(row, col.paper), col.fmt)
  return text.replace("|", "\\|")


def select(spec: Table, rows: Iterable[dict]) -> list[dict]:
  """The rows of a spec, filtered and sorted."""
  where = spec.where
  if where is None:
    keep = list(rows)
  elif callable(where):
    keep = [r for r in rows if where(r)]
  else:
    def ok(r):
      return all(get(r, k) in (v if isinstance(v, (tuple, list, set, frozenset)) else (v,))
                 for k, v in where.items())
    keep = [r for r in rows if ok(r)]
  return sorted(keep, key=spec.sort) if spec.sort else keep


def render(spec: Table, rows: Sequence[dict]) -> str:
  """The Markdown table of ``rows`` (already selected)."""
  best: list[dict] = []
  for col in spec.columns:
    per_group: dict = {}
    if col.bold:
      pick = max if col.bold == "max" else min
      for r in rows:
        v = _value(col, r)
        if isinstance(v, (int, float)):
          g = tuple(get(r, k) for k in spec.group)
          per_group[g] = v if g not in per_group else pick(per_group[g], v)
    best.append(per_group)
  lines = ["| " + " | ".join(c.header for c in spec.columns) + " |",
           "|" + "---|" * len(spec.columns)]
  for r in rows:
    g = tuple(get(r, k) for k in spec.group)
    lines.append("| " + " | ".join(_cell(c, r, b.get(g)) for c, b in zip(spec.columns, best))
                 + " |")
  return "\n".join(lines)


def table(name: str, specs: Mapping[str, Table] | None = None,
          results: pathlib.Path = RESULTS) -> str:
  """The Markdown of table ``name`` from its result file."""
  specs = TABLES if specs is None else specs
  if name not in specs:
    raise TableError(f"unknown table {name!r} (known: {', '.join(sorted(specs))})")
  spec = specs[name]
  if spec.picks:
    return render(spec, [pick.row(results) for pick in spec.picks])
  _, rows = read_results(results / spec.file)
  return render(spec, select(spec, rows))


# ------------------------------------------------------------------------------ marker rewriting

def rewrite(text: str, make: Callable[[str], str], where: str = "<text>") -> str:
  """``text`` with the lines between every ``<!-- table: NAME -->`` and ``<!-- /table -->``
  replaced by ``make(NAME)``; every other line is kept as it is."""
  lines = text.splitlines(keepends=True)
  out: list[str] = []
  i = 0
  while i < len(lines):
    line = lines[i]
    out.append(line)
    m = BEGIN.match(line.strip())
    if line.strip() == END:
      raise TableError(f"{where}:{i + 1}: {END} without a table marker")
    if m:
      j = i + 1
      while j < len(lines) and lines[j].strip() != END:
        if BEGIN.match(lines[j].strip()):
          raise TableError(f"{where}:{j + 1}: table marker inside table {m.group(1)!r}")
        j += 1
      if j == len(lines):
        raise TableError(f"{where}:{i + 1}: table {m.group(1)!r} has no {END}")
      try:
        body = make(m.group(1))
      except TableError as e:
        raise TableError(f"{where}:{i + 1}: {e}") from None
      newline = "\r\n" if line.endswith("\r\n") else "\n"
      out.append(newline + body.replace("\n", newline) + newline + newline)  # blank lines around
      out.append(lines[j])
      i = j
    i += 1
  return "".join(out)


def markdown_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
  """The Markdown files whose tables this script keeps."""
  files = [root / "README.md", root / "benchmarks" / "README.md",
           *sorted((root / "docs").glob("*.md")),
           *sorted((root / "popdiff_jax" / "projects").glob("*/README.md"))]
  return [f for f in files if f.exists()]


def update(paths: Iterable[pathlib.Path], *, write: bool, specs: Mapping[str, Table] | None = None,
           results: pathlib.Path = RESULTS, root: pathlib.Path = ROOT) -> list[str]:
  """Diffs (one unified diff per file whose tables differ from their result files); with
  ``write`` the files are rewritten."""
  cache: dict[str, str] = {}

  def make(name):
    if name not in cache:
      cache[name] = table(name, specs, results)
    return cache[name]

  diffs = []
  for path in paths:
    old = path.read_text(encoding="utf-8")
    try:
      rel = str(path.relative_to(root))
    except ValueError:
      rel = str(path)
    new = rewrite(old, make, rel)
    if new != old:
      diffs.append("".join(difflib.unified_diff(old.splitlines(keepends=True),
                                                new.splitlines(keepends=True), rel, rel + " (from "
                                                "the result files)")))
      if write:
        path.write_text(new, encoding="utf-8")
  return diffs


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  g = p.add_mutually_exclusive_group(required=True)
  g.add_argument("--check", action="store_true", help="exit 1 and print a diff if a table differs")
  g.add_argument("--write", action="store_true", help="rewrite the tables in the Markdown files")
  g.add_argument("--print", nargs="+", metavar="NAME", dest="names", help="print these tables")
  p.add_argument("files", nargs="*", type=pathlib.Path,
                 help="Markdown files (default: README.md, benchmarks/README.md, docs/*.md, "
                      "popdiff_jax/projects/*/README.md)")
  a = p.parse_args(argv)
  try:
    if a.names:
      print("\n\n".join(table(n) for n in a.names))
      return 0
    diffs = update(a.files or markdown_files(), write=a.write)
  except (TableError, OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if a.write:
    print(f"rewrote {len(diffs)} file(s)" + "".join(f"\n  {d.splitlines()[0][4:]}" for d in diffs))
    return 0
  for d in diffs:
    print(d, end="" if d.endswith("\n") else "\n")
  if diffs:
    print(f"{len(diffs)} file(s) differ from the result files: python docs/tables.py --write",
          file=sys.stderr)
    return 1
  return 0


# ------------------------------------------------------------------------------------ the tables

def _order(*values: Any) -> Callable[[Any], int]:
  """A sort key: the position of a value in ``values`` (others last)."""
  pos = {v: i for i, v in enumerate(values)}
  return lambda v: pos.get(v, len(pos))


def _runs_and_reason(r: dict) -> str:
  """``epochs (stopped_by)`` of a next-user row; – for the popularity floor (no training)."""
  if not r.get("epochs"):
    return MISSING
  epochs, why = format(r["epochs"], ".3g"), r.get("stopped_by")
  if isinstance(why, list):  # the seeds of a mean row: each reason once
    why = ", ".join(dict.fromkeys(map(str, why)))
  return f"{epochs} ({why})" if why else epochs


def _ks_chi2(r: dict) -> str:
  test = r.get("vs_cynetdiff")
  return MISSING if not test else f"{test['ks_pvalue']:.2f} / {test['chi2_pvalue']:.2f}"


def _norm(key: str) -> Col:
  """``ours (at initialisation) / paper`` of a squared Frobenius norm."""
  def cell(r):
    ours, init, paper = (fmt_value(r.get(k), ".1f") for k in (key, f"init_{key}", f"paper_{key}"))
    return f"{ours} ({init}) / {paper}"
  return Col(f"W^C{key[1:]}", cell)


def _smp_paper(r: dict) -> str:
  """Meghawat et al. report SMP-T1's random split only."""
  if r.get("split") != "random" or r.get("paper_srcc") is None:
    return MISSING
  return " / ".join(format(r[f"paper_{k}"], ".2f") for k in ("srcc", "mae", "mse"))


NEXT_USER_DATASETS = _order("ndm/memetracker", "ndm/irvine", "ndm/lastfm", "forest/twitter",
                            "forest/memetracker", "infvae/christianity", "infvae/android")
F1 = (Col("Macro-F1", "macro_f1", ".3f"), Col("Micro-F1", "micro_f1", ".3f"),
      Col("Macro-F1 (first 5)", "macro_f1_first5", ".3f"),
      Col("Micro-F1 (first 5)", "micro_f1_first5", ".3f"))
PROTOCOL = tuple(c for k in ("macro_f1", "micro_f1", "macro_f1_first5", "micro_f1_first5")
                 for c in (Col(k, k, ".3f", std=f"{k}_std"),
                           Col(f"paper_{k}", f"paper_{k}", ".3f")))


def _number(fmt: str) -> Callable[[Any], str]:
  """``fmt`` for a number, – for NaN (a metric a row does not score, e.g. ``msle_note``)."""
  return lambda v: MISSING if isinstance(v, float) and v != v else format(v, fmt)


IC_GRAPH = Col("graph (nodes/edges)", lambda r: f"{r['nodes'] // 1000}k/{r['edges'] // 1000}k")
IC = (IC_GRAPH, Col("p", "p"), Col("impl", "impl"), Col("S", "sims", ","),
      Col("sims/s", "sims_per_s", ",.0f"), Col("mean spread", "mean_spread", ".1f"))
DUAL_ATTENTION = {"visual": "visual", "textual": "textual", "early_fusion": "early fusion",
                  "late_fusion": "late fusion", "ccr": "CCR", "similarity": "similarity",
                  "e_attn": "E-attn", "env": "Env", "env_iattn": "Env + I-attn",
                  "e_attn_env": "E-attn + Env", "dual_attention": "dual attention (full)"}
FUSION = {("fusion_dnn", "time"): "Set-I time", ("fusion_dnn", "user"): "Set-II user",
          ("fusion_dnn", "random"): "Set-III random",
          ("only_user", "time"): "only user information (time)",
          ("only_visual", "time"): "only visual", ("only_text", "time"): "only text",
          ("only_time_location", "time"): "only time & location",
          ("only_deep_image", "time"): "only deep image",
          ("only_deep_text", "time"): "only deep text",
          ("only_tags_count", "time"): "only tags count",
          ("only_caption_length", "time"): "only caption length",
          ("drop_user", "time"): "without user information",
          ("drop_deep_text", "time"): "without deep text",
          ("drop_deep_image", "time"): "without deep image",
          ("drop_tags_count", "time"): "without tags count"}
SMP = {"random_forest": "random forest", "conv1d": "Conv1d", "image_model": "image model",
       "conv1d_multimodal": "Conv1d multimodal", "gradient_boosting": "gradient boosting",
       "random_forest_no_comments": "RF without comments"}
REGRESSION = tuple(Col(h, k, ".3f", std=f"{k}_std") for h, k in (("MAE", "mae"), ("MSE", "mse"),
                                                                    ("SRCC", "srcc")))

def _ours(r: dict) -> str | None:
  """``mean ± std (protocol)`` of a headline row."""
  if r["ours"] is None:
    return None
  std = f" ± {r['ours_std']:{r['fmt']}}" if r.get("ours_std") is not None else ""
  return f"{r['ours']:{r['fmt']}}{std} ({r['protocol']})"


HEADLINE = (Col("paper", "paper_name"), Col("data (the paper's)", "data"),
            Col("metric", "metric"),
            Col("paper", lambda r: None if r["paper"] is None else f"{r['paper']:{r['fmt']}}"),
            Col("ours (protocol)", _ours),
            Col("ours, leak-free", lambda r: None if r["ours_leak_free"] is None
                else f"{r['ours_leak_free']:{r['fmt']}}"),
            Col("seeds", "seeds"),
            Col("command", lambda r: f"`{r['command']}`"))


TABLES: dict[str, Table] = {
    # README: one headline number per paper, ours beside the paper's.
    "readme_papers": Table("", HEADLINE, picks=(
        Pick("ndm_paper_protocol.json",
             {"dataset": "ndm/memetracker", "recipe": "paper-recipe", "protocol": "paper"},
             "macro_f1", "paper_macro_f1",
             {"paper_name": "NDM (Yang et al.)", "data": "ndm/memetracker",
              "metric": "Macro-F1 (Table 2)", "command": "popdiff reproduce ndm-protocol"}),
        Pick("diffusion_lstm.json", {"dataset": "twitter15", "model": "Diffusion-LSTM"},
             "map_prototypes", 0.214,
             {"paper_name": "Diffusion-LSTM (Hu et al.)", "data": "Twitter15 trees (Pinterest)",
              "metric": "mAP over prototypes (Table 1)",
              "command": "popdiff reproduce diffusion-lstm"}),
        Pick("popularity.json", {"paper": "dual_attention", "model": "dual_attention",
                                 "split": "random"}, "accuracy", "paper_accuracy",
             {"paper_name": "dual attention (Zhang et al.)",
              "data": "instagram_likes (Instagram)", "metric": "accuracy, % (Table 3)",
              "command": "popdiff reproduce popularity"}, fmt=".1f"),
        Pick("popularity.json", {"paper": "fusion_dnn", "model": "fusion_dnn", "split": "random"},
             "srcc", "paper_srcc",
             {"paper_name": "fusion DNN (Ding et al.)", "data": "instagram_likes (SMPD2019)",
              "metric": "Spearman, random split", "command": "popdiff reproduce popularity"},
             leak_free={"paper": "fusion_dnn", "model": "fusion_dnn", "split": "time"}),
        Pick("popularity.json", {"paper": "multimodal_smp", "model": "conv1d_multimodal",
                                 "split": "random"}, "srcc", "paper_srcc",
             {"paper_name": "multimodal SMP (Meghawat et al.)",
              "data": "instagram_likes (SMP-T1, Flickr)", "metric": "Spearman, random split",
              "command": "popdiff reproduce popularity"},
             leak_free={"paper": "multimodal_smp", "model": "conv1d_multimodal",
                        "split": "time"}),
    )),
    # README: the speed of the library's entry points against their anchors, same call.
    "readme_speed": Table("", (
        Col("what", "what"), Col("size", "size"), Col("anchor", "anchor"),
        Col("ours", "ours", lambda v: v if isinstance(v, str) else f"{v:,.1f}x"),
        Col("device", "device"), Col("result file", lambda r: f"`{r['file']}`")), picks=(
        Pick("ic_simulation.json", {"kind": "scaling", "run": "gpu-h200", "edges": 1_000_000,
                                    "p": 0.01, "impl": "popdiff_jax"},
             "ratio_vs_cynetdiff", None,
             {"what": "IC Monte Carlo (`simulate_ic`)", "size": "100k nodes, 1M edges, p = 0.01",
              "anchor": "cynetdiff (1 CPU core)", "file": "ic_simulation.json"}),
        Pick("ic_simulation.json", {"kind": "scaling", "run": "gpu-h200", "edges": 1_000_000,
                                    "p": 0.1, "impl": "popdiff_jax"},
             "ratio_vs_cynetdiff", None,
             {"what": "IC Monte Carlo (`simulate_ic`)", "size": "100k nodes, 1M edges, p = 0.1",
              "anchor": "cynetdiff (1 CPU core)", "file": "ic_simulation.json"}),
        Pick("tree_lstm_speed.json", {"kind": "best", "trees": 1490, "precision": "fp32"},
             "ratio_fwd_bwd_vs_torch_levelwise", None,
             {"what": "tree LSTM, forward + backward", "size": "1,490 Twitter15 trees",
              "anchor": "PyTorch level-wise", "file": "tree_lstm_speed.json"}),
        Pick("tree_lstm_speed.json", {"kind": "fit", "run": "h100-fit-one-bucket",
                                      "impl": "jax_fit[diffusion-lstm]-tf32"},
             "ratio_fwd_bwd_vs_torch_levelwise", None,
             {"what": "Diffusion-LSTM training through `experiment.train` (epoch)",
              "size": "300 Twitter15 trees, one shape bucket, tf32",
              "anchor": "PyTorch level-wise loop", "file": "tree_lstm_speed.json"}),
        Pick("gpu_suite.json", {"bench": "ndm_train/memetracker", "impl": "jax",
                                "kind": "summary", "run": "h100-fit-3rep"},
             "ratio_vs_anchor_same_call", None,
             {"what": "NDM training through `fit` (cascades/s)",
              "size": "ndm/memetracker, 500 users",
              "anchor": "PyTorch recipe", "file": "gpu_suite.json"}),
        Pick("gpu_suite.json", {"bench": "ndm_train/forest_twitter", "impl": "jax",
                                "kind": "summary", "run": "h100-fit-3rep"},
             "ratio_vs_anchor_same_call", None,
             {"what": "NDM training through `fit` (cascades/s)",
              "size": "forest/twitter, 12,629 users",
              "anchor": "PyTorch recipe", "file": "gpu_suite.json"}),
    )),
    # NDM (Yang et al.): next-user prediction of the named configs, the rows the file holds now:
    # users only (the field's convention) and with Terminate (T), mean ± std over seeds.
    "ndm_next_user": Table(
        "ndm_next_user.json",
        (Col("dataset", "dataset"), Col("model", "model"),
         Col("protocol", lambda r: r.get("protocol") or "files"),
         Col("hits@10", "hits@10", ".3f", std="hits@10_std"),
         Col("map@10", "map@10", ".3f", std="map@10_std"),
         Col("hits@10 (T)", "hits@10_with_terminate", ".3f"),
         Col("map@10 (T)", "map@10_with_terminate", ".3f"),
         Col("hits@100 (T)", "hits@100_with_terminate", ".3f"),
         Col("epochs", _runs_and_reason),
         Col("seeds", lambda r: len(r["seeds"]) if isinstance(r.get("seeds"), list) else 1),
         Col("run", "run")),
        where=lambda r: (r.get("protocol") == "leak_free"
                         or r["model"] in ("ndm", "lstm", "popularity", "ndm-prior")),
        sort=lambda r: (NEXT_USER_DATASETS(r["dataset"]), r.get("protocol") or "files",
                        _order("ndm", "ndm-casc", "ndm-prior", "ndm-prior-casc", "paper-recipe",
                               "lstm", "lstm-casc", "popularity")(r["model"]))),
    # NDM's Monte Carlo protocol (Tables 2-3): ours beside the paper's NDM numbers.
    "ndm_paper_protocol": Table(
        "ndm_paper_protocol.json",
        (Col("dataset", "dataset"), Col("model", "model"),
         Col("protocol", lambda r: r.get("protocol") or "project"), *PROTOCOL,
         Col("msle", "msle", _number(".3f")), Col("epochs", "epochs", _number(".3g")),
         Col("seeds", lambda r: len(r["seeds"]) if isinstance(r.get("seeds"), list) else 1))),
    "ndm_sn": Table(
        "ndm_sn.json",
        (Col("dataset", "dataset"), Col("model", "model"),
         Col("Hits@10 (T)", "hits@10_with_terminate", ".3f"),
         Col("MAP@10 (T)", "map@10_with_terminate", ".3f"), *F1,
         Col("Micro-F1 change", "micro_f1_rel_change", "+.1%"), Col("runs", "runs_per_cascade"))),
    "ndm_sensitivity": Table(
        "ndm_sensitivity.json",
        (Col("param", "param"), Col("value", "value"), *F1, Col("epochs", "epochs"))),
    "ndm_norms": Table(
        "ndm_norms.json",
        (Col("dataset", "dataset"), *(_norm(k) for k in ("W_init", "W_0", "W_1", "W_2")),
         Col("epochs", "epochs"))),
    # IC simulation speed against cynetdiff / ndlib, and the NDM sampler.
    "ic_simulation_gpu": Table(
        "ic_simulation.json",
        (Col("edges", "edges", ",.0f"), Col("p", "p"), Col("impl", "impl"),
         Col("method", "method"), Col("S", "sims", ","), Col("sims/s", "sims_per_s", ",.0f"),
         Col("× cynetdiff", "ratio_vs_cynetdiff", ".1f"),
         Col("edge tests/s", "edge_tests_per_s", ".2e"),
         Col("bound", ("bound_edge_tests_per_s", "bound"), lambda v: v if isinstance(v, str)
             else format(v, ".2e")),
         Col("KS p", "ks_p", ".2f"), Col("compile + first s", "compile_and_first_s", ".1f")),
        where={"kind": "scaling", "run": "gpu-h200"}, sort=lambda r: (r["edges"], r["p"])),
    # NDM training through the library's experiment.train / fit against the PyTorch recipe.
    "gpu_suite_summary": Table(
        "gpu_suite.json",
        (Col("bench", "bench"), Col("impl", "impl"), Col("loss", "loss"),
         Col("repeats", lambda r: f"{r.get('measured')}/{r.get('repeats')}"),
         Col("cascades/s [min, max]", lambda r: f"{r['throughput']:,.0f} "
             f"[{r['throughput_min']:,.0f}, {r['throughput_max']:,.0f}]"),
         Col("× recipe [min, max]", lambda r: f"{r['ratio_vs_anchor_same_call']:.2f} "
             f"[{r['ratio_vs_anchor_same_call_min']:.2f}, "
             f"{r['ratio_vs_anchor_same_call_max']:.2f}]"),
         Col("val Hits@10", "val_hits@10", ".3f"),
         Col("compile s (cold)", "compile_s_cold", ".1f"),
         Col("peak GiB", lambda r: r["peak_mem_bytes"] / 2 ** 30, ".2f"), Col("run", "run")),
        where={"kind": "summary", "run": "h100-fit-3rep"}),
    "gpu_suite_scaling": Table(
        "gpu_suite.json",
        (Col("users", "num_users", ","), Col("impl", "impl"),
         Col("cascades/s", "throughput", ",.0f"),
         Col("× recipe", "ratio_vs_anchor_same_call", ".2f"),
         Col("peak GiB", lambda r: r["peak_mem_bytes"] / 2 ** 30, ".2f"),
         Col("val Hits@10", "val_hits@10", ".3f"), Col("compile s", "compile_s", ".1f"),
         Col("run", "run")),
        where=lambda r: r.get("kind") == "scaling_users" and r.get("throughput") is not None,
        sort=lambda r: (r["num_users"], r["impl"], r["run"])),
    "ic_simulation_cpu": Table(
        "ic_simulation.json",
        (*IC, Col("× cynetdiff", "ratio_vs_cynetdiff", ".3f"),
         Col("KS p / χ² p vs cynetdiff", _ks_chi2)),
        where={"kind": "ic", "run": "cpu"}),
    "ic_simulation_ndm_sampler": Table(
        "ic_simulation.json",
        (Col("NDM sampler", "impl"), Col("users", "users", ","), Col("runs together", "runs", ","),
         Col("steps", "steps"), Col("runs/s", "runs_per_s", ",.0f"),
         Col("× recompute", "ratio_vs_recompute", ".1f")),
        where={"kind": "ndm_sampler"}),
    # Diffusion-LSTM (Hu et al.) and its baselines, mean ± std over seeds; the best mAP per dataset
    # in bold.
    "diffusion_lstm": Table(
        "diffusion_lstm.json",
        (Col("dataset", "dataset"), Col("model", "model"),
         Col("AP terminal", "ap_terminal", ".3f", std="ap_terminal_std"),
         Col("mAP prototypes", "map_prototypes", ".4f", std="map_prototypes_std", bold="max"),
         Col("mAP all", "map_all", ".4f", std="map_all_std", bold="max"),
         Col("depth MAE", "depth_mae", ".2f", std="depth_mae_std"),
         Col("HI", "hist_intersection", ".3f", std="hist_intersection_std"),
         Col("epochs", "epochs", ".3g"), Col("seeds", lambda r: len(r.get("seeds") or [0]))),
        group=("dataset",)),
    # Tree-LSTM speed on the H100: the fastest JAX variant per batch, ratios within its own run.
    "tree_lstm_best": Table(
        "tree_lstm_speed.json",
        (Col("trees", "trees", ","), Col("precision", "precision"),
         Col("fastest fwd", "fwd_impl"),
         Col("fwd x torch level-wise", "ratio_fwd_vs_torch_levelwise", ".2f"),
         Col("fwd x node-by-node", "ratio_fwd_vs_node_by_node", ",.0f"),
         Col("fastest fwd+bwd", "fwd_bwd_impl"),
         Col("f+b x torch level-wise", "ratio_fwd_bwd_vs_torch_levelwise", ".2f"),
         Col("f+b x node-by-node", "ratio_fwd_bwd_vs_node_by_node", ",.0f"),
         Col("compile s", "compile_s", ".1f")),
        where={"kind": "best"}, sort=lambda r: (r["trees"], r.get("precision", "fp32"))),
    # Diffusion-LSTM training through experiment.train against a PyTorch level-wise loop.
    "tree_lstm_fit": Table(
        "tree_lstm_speed.json",
        (Col("run", "run"), Col("precision", "precision"),
         Col("K x S buckets", lambda r: f"{'/'.join(map(str, r['buckets']))} x "
             f"{'/'.join(map(str, r['parent_buckets']))}"),
         Col("cache", lambda r: "warm" if r["run"].endswith("-warm") else "cold"),
         Col("programs compiled / loaded", lambda r: f"{r['programs_compiled']} / "
             f"{r['programs_from_cache']}"),
         Col("compile s", "compile_s", ".1f"),
         Col("epoch s (JAX)", lambda r: ", ".join(f"{x:.2f}" for x in r["epoch_seconds"])),
         Col("f+b x torch loop", "ratio_fwd_bwd_vs_torch_levelwise", ".2f"),
         Col("whole run x torch", "ratio_total_vs_torch_levelwise", ".2f"),
         Col("val loss (JAX / torch)", lambda r: f"{r['final_val_loss']:.4f} / "
             f"{r['torch_val_loss']:.4f}")),
        where=lambda r: (r.get("kind") == "fit" and r["impl"].startswith("jax")
                         and "programs_compiled" in r),
        sort=lambda r: (r["precision"] != "tf32", len(r["buckets"]), r["run"])),
    # Popularity (three papers on instagram_likes): mean ± std over seeds, the paper's numbers.
    "popularity_dual_attention": Table(
        "popularity.json",
        (Col("model", "model", labels=DUAL_ATTENTION), Col("split", "split"),
         *(Col(h, k, ".2f", std=f"{k}_std") for h, k in (("precision", "precision"),
                                                          ("recall", "recall"), ("F1", "f1"),
                                                          ("accuracy", "accuracy"))),
         Col("paper P / R / F / Acc", tuple(f"paper_{k}" for k in
                                            ("precision", "recall", "f1", "accuracy")), ".2f")),
        where={"paper": "dual_attention"},
        sort=lambda r: (_order("random", "time", "user")(r["split"]),
                        _order(*DUAL_ATTENTION)(r["model"]))),
    "popularity_fusion_dnn": Table(
        "popularity.json",
        (Col("split / features", lambda r: FUSION.get((r["model"], r["split"]), r["model"])),
         *REGRESSION,
         Col("paper MAE / MSE / SRCC", tuple(f"paper_{k}" for k in ("mae", "mse", "srcc")),
             ".3f")),
        where={"paper": "fusion_dnn"}, sort=lambda r: _order(*FUSION)((r["model"], r["split"]))),
    "popularity_multimodal_smp": Table(
        "popularity.json",
        (Col("model", "model", labels=SMP), Col("split", "split"),
         Col("SRCC", "srcc", ".3f", std="srcc_std"), *REGRESSION[:2],
         Col("paper SRCC / MAE / MSE (SMP-T1 test)", _smp_paper)),
        where={"paper": "multimodal_smp"},
        sort=lambda r: (_order("random", "time", "user")(r["split"]), _order(*SMP)(r["model"]))),
}

if __name__ == "__main__":
  sys.exit(main())
