"""MkDocs hooks: the pages that are generated from the repository when the site is built.

* ``papers/<project>.md``: each project's README.md (one source for the GitHub page and the site);
* ``configs.md``: every config dataclass, field by field (type, default, what is allowed, what it
  means), and every named config, read from the classes themselves;
* ``results/*.md`` and their figures: the tables of ``docs/tables.py`` and matplotlib plots of the
  result files under ``benchmarks/results/``;
* ``notebooks/*.md``: the notebooks' Markdown and code cells;
* ``changelog.md``: CHANGELOG.md.

Nothing here is typed by hand: rebuilding the site after a result file changes updates every
table and figure.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import json
import pathlib
import re
import sys
import typing

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
PROJECTS = ("ndm", "diffusion_lstm", "dual_attention", "fusion_dnn", "multimodal_smp")


def _tables():
  """``docs/tables.py``, the table generator (loaded by path: ``docs`` is no package)."""
  import importlib.util

  if "popdiff_doc_tables" not in sys.modules:
    spec = importlib.util.spec_from_file_location("popdiff_doc_tables", ROOT / "docs" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["popdiff_doc_tables"] = module
    spec.loader.exec_module(module)
  return sys.modules["popdiff_doc_tables"]


def _add(files, config, uri: str, content) -> None:
  files.append(File.generated(config, uri, content=content))


# ----------------------------------------------------------------------------- paper pages


def _paper_page(project: str, images: set[str]) -> str:
  text = (ROOT / "popdiff_jax" / "projects" / project / "README.md").read_text()

  def image(match):
    images.add(match.group(2))
    return f"{match.group(1)}../results/{match.group(2)})"

  text = re.sub(r"(!\[[^\]]*\]\()(?:\.\./)+benchmarks/results/([\w.-]+)\)", image, text)
  # Links to repository files become plain code (the site has no copy of them).
  text = re.sub(r"\[([^\]]+)\]\((?!http)(?!#)([^)]+\.(?:py|json|jsonl|sh|toml))\)", r"`\1`", text)
  return text


# ----------------------------------------------------------------------------- configs page


_RULES = {"positive": "> 0", "non_negative": ">= 0", "probability": "in [0, 1)"}


def _rules(cls) -> dict[str, str]:
  """``{field: what is allowed}`` read from the ``_validate`` calls of ``__post_init__``."""
  try:
    source = inspect.getsource(cls.__post_init__)
  except (AttributeError, OSError, TypeError):
    return {}
  module = sys.modules[cls.__module__]
  tree = ast.parse(inspect.cleandoc("\n" + source))
  out: dict[str, str] = {}
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
      continue
    rule = node.func.attr
    args = node.args[1:]
    names = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if rule in _RULES:
      none = any(k.arg == "allow_none" for k in node.keywords)
      for n in names:
        out[n] = _RULES[rule] + (" or None" if none else "")
    elif rule == "one_of" and names:
      try:
        choices = eval(compile(ast.Expression(args[1]), "<rule>", "eval"), vars(module))  # noqa: S307
        out[names[0]] = "one of " + ", ".join(f"`{c}`" for c in choices)
      except Exception:  # noqa: BLE001 - a rule we cannot evaluate statically
        out[names[0]] = "one of the listed choices"
    elif rule == "require" and names and len(node.args) >= 4:
      msg = node.args[3]
      if isinstance(msg, ast.Constant):
        out[names[0]] = msg.value
      elif isinstance(msg, ast.JoinedStr):
        out[names[0]] = "".join(v.value if isinstance(v, ast.Constant) else "…"
                                for v in msg.values)
  return out


def _field_docs(cls) -> dict[str, str]:
  """The ``Attributes:`` section of a class docstring as ``{field: text}``."""
  doc = inspect.getdoc(cls) or ""
  if "Attributes:" not in doc:
    return {}
  out, current = {}, None
  for line in doc.split("Attributes:", 1)[1].splitlines():
    m = re.match(r"^\s{2}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
    if m:
      current = m.group(1)
      out[current] = m.group(2)
    elif current and line.startswith("    "):
      out[current] += " " + line.strip()
    elif line.strip() and not line.startswith(" "):
      break
  return out


def _type_name(tp) -> str:
  text = str(tp) if not isinstance(tp, type) else tp.__name__
  text = text.replace("typing.", "").replace("NoneType", "None")
  return re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).split(".")[-1], text)


def _config_table(cls) -> str:
  hints = typing.get_type_hints(cls, include_extras=False)
  rules = _rules(cls)
  docs = _field_docs(cls)
  rows = ["| field | type | default | allowed | meaning |", "|---|---|---|---|---|"]
  for f in dataclasses.fields(cls):
    if f.default is not dataclasses.MISSING:
      default = f.default
    elif f.default_factory is not dataclasses.MISSING:
      default = f.default_factory()
    else:
      default = "(required)"
    if dataclasses.is_dataclass(default):
      default = type(default).__name__ + "()"
    cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    rows.append(f"| `{f.name}` | {cell(_type_name(hints.get(f.name, f.type)))} | "
                f"`{cell(default)}` | {cell(rules.get(f.name, ''))} | "
                f"{cell(docs.get(f.name, ''))} |")
  return "\n".join(rows)


def _configs_page() -> str:
  out = ["# Configs", "",
         "Every config is a frozen dataclass, checked when it is built (a bad value is one "
         "error naming the field, the value and what is allowed). Every field is an option of "
         "`popdiff train NAME`: the options naming the data without a prefix (NDM and "
         "Diffusion-LSTM: `--data`, `--format`, `--data-dir`; NDM's other data fields too), the "
         "others as "
         "`--data.FIELD`, `--model.FIELD`, `--train.FIELD`, `--eval.FIELD`. This page is "
         "generated from the classes.", ""]
  for project in PROJECTS:
    module = importlib.import_module(f"popdiff_jax.projects.{project}.configs")
    out += [f"## {project}", "", "| named config | what it is |", "|---|---|"]
    for name, factory in module.CONFIGS.items():
      first = (inspect.getdoc(factory) or "").split("\n\n")[0].replace("\n", " ")
      out.append(f"| `{name}` | {first.replace('|', '/')} |")
    out.append("")
    seen = set()
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c)
               and c.__module__.startswith("popdiff_jax")]
    for cls in classes:
      if cls in seen:
        continue
      seen.add(cls)
      out += [f"### `{cls.__name__}`", "", (inspect.getdoc(cls) or "").split("\n\n")[0], "",
              _config_table(cls), ""]
  return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- results pages


def _rows(name: str):
  from popdiff_jax.results import read_results

  path = RESULTS / name
  if not path.exists():
    return {}, []
  return read_results(path)


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  return buf.getvalue()


def _results_index() -> str:
  T = _tables()

  out = ["# Results", "", "Every number on this site is read from a file under "
         "`benchmarks/results/` (one schema: `meta` with device, versions, commit, date and "
         "config; `rows`). The tables of the project pages are the same tables.", "",
         "| file | benchmark | device | date | commit |", "|---|---|---|---|---|"]
  for path in sorted(RESULTS.glob("*.json")):
    meta, _ = _rows(path.name)
    out.append(f"| `{path.name}` | {meta.get('benchmark', '')} | {meta.get('device', '')} | "
               f"{str(meta.get('date', ''))[:10]} | `{meta.get('commit', '')}` |")
  out.append("")
  for name in T.TABLES:
    out += [f"## {name}", "", T.table(name), ""]
  return "\n".join(out) + "\n"


def _speed_page(files, config) -> str:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  out = ["# Speed", "", "Speed against problem size on log-log axes, from the speed benchmarks' "
         "result files (`benchmarks/README.md` says how each is measured).", ""]
  _, ic = _rows("ic_simulation.json")
  scaling = [r for r in ic if r.get("kind") == "scaling" and r.get("sims_per_s")]
  if scaling:
    fig, ax = plt.subplots(figsize=(6, 4))
    for (impl, p) in sorted({(r["impl"], r["p"]) for r in scaling}):
      pts = sorted((r["edges"], r["sims_per_s"]) for r in scaling
                   if r["impl"] == impl and r["p"] == p)
      ax.plot(*zip(*pts), marker="o", label=f"{impl}, p = {p}")
    ax.set(xscale="log", yscale="log", xlabel="edges", ylabel="simulations / s",
           title="Independent Cascade")
    ax.legend(fontsize=7)
    _add(files, config, "results/ic_scaling.png", _png(fig))
    plt.close(fig)
    out += ["![IC scaling](ic_scaling.png)", ""]
  else:
    out += ["IC scaling: no rows of kind `scaling` in `ic_simulation.json` yet.", ""]
  _, tree = _rows("tree_lstm_speed.json")
  timing = [r for r in tree if r.get("kind", "timing") == "timing" and r.get("nodes_per_s_fwd")]
  if timing:
    fig, ax = plt.subplots(figsize=(6, 4))
    for impl in sorted({r["impl"] for r in timing})[:12]:
      pts = sorted({(r["nodes"], r["nodes_per_s_fwd_bwd"]) for r in timing
                    if r["impl"] == impl and r.get("nodes_per_s_fwd_bwd")})
      if len(pts) > 1:
        ax.plot(*zip(*pts), marker="o", label=impl)
    ax.set(xscale="log", yscale="log", xlabel="nodes in the batch",
           ylabel="nodes / s (forward + backward)", title="Tree LSTM")
    ax.legend(fontsize=6)
    _add(files, config, "results/tree_lstm_scaling.png", _png(fig))
    plt.close(fig)
    out += ["![Tree LSTM scaling](tree_lstm_scaling.png)", ""]
  _, gpu = _rows("gpu_suite.json")
  users = [r for r in gpu if r.get("kind") == "scaling_users" and r.get("throughput")]
  if users:
    fig, ax = plt.subplots(figsize=(6, 4))
    for impl in sorted({r["impl"] for r in users}):
      pts = sorted((r["num_users"], r["throughput"]) for r in users if r["impl"] == impl)
      ax.plot(*zip(*pts), marker="o", label=impl)
    ax.set(xscale="log", yscale="log", xlabel="users", ylabel="cascades / s", title="NDM")
    ax.legend(fontsize=7)
    _add(files, config, "results/ndm_scaling.png", _png(fig))
    plt.close(fig)
    out += ["![NDM scaling](ndm_scaling.png)", ""]
  return "\n".join(out) + "\n"


def _sensitivity_page(files, config) -> str:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  _, rows = _rows("ndm_sensitivity.json")
  out = ["# NDM parameter sensitivity", "", "Fig. 8 of the NDM paper on Lastfm: one axis at a "
         "time from h = 8, win = 3, d = 64, F_init = 0 (`ndm_sensitivity.json`).", ""]
  params = [p for p in ("h", "win", "d", "F_init") if any(r.get("param") == p for r in rows)]
  if params:
    fig, axes = plt.subplots(1, len(params), figsize=(3 * len(params), 3), sharey=True)
    for ax, p in zip(list(axes) if len(params) > 1 else [axes], params):
      pts = sorted((r["value"], r.get("macro_f1"), r.get("micro_f1")) for r in rows
                   if r.get("param") == p)
      x = [a for a, _, _ in pts]
      ax.plot(x, [b for _, b, _ in pts], marker="o", label="Macro-F1")
      ax.plot(x, [c for _, _, c in pts], marker="s", label="Micro-F1")
      ax.set(xlabel=p, xscale="log" if p in ("h", "d") else "linear")
    axes_list = list(axes) if len(params) > 1 else [axes]
    axes_list[0].set_ylabel("F1")
    axes_list[0].legend(fontsize=7)
    _add(files, config, "results/ndm_sensitivity_curves.png", _png(fig))
    plt.close(fig)
    out += ["![sensitivity](ndm_sensitivity_curves.png)", ""]
  T = _tables()
  out += [T.table("ndm_sensitivity"), ""]
  return "\n".join(out) + "\n"


def _trees_page(files, config) -> str:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  _, rows = _rows("diffusion_lstm.json")
  out = ["# Generated trees", "", "Tree generation from the test roots (Diffusion-LSTM Table 2; "
         "`diffusion_lstm.json`).", ""]
  hist = [r for r in rows if r.get("gen_depth_hist") and r.get("true_depth_hist")]
  if hist:
    fig, axes = plt.subplots(1, len(hist), figsize=(3 * len(hist), 3), sharey=True)
    for ax, r in zip(np.atleast_1d(axes), hist):
      depth = np.arange(len(r["true_depth_hist"]))
      ax.bar(depth - 0.2, r["true_depth_hist"], width=0.4, label="true")
      ax.bar(depth + 0.2, r["gen_depth_hist"][:len(depth)], width=0.4, label="generated")
      ax.set(title=f"{r['dataset']} {r['model']}", xlabel="depth")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    _add(files, config, "results/tree_depths.png", _png(fig))
    plt.close(fig)
    out += ["![depth histograms](tree_depths.png)", ""]
  elif rows:
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"{r['dataset']}\n{r['model']}" for r in rows]
    ax.bar(range(len(rows)), [r.get("gen_mean_depth", 0) for r in rows], label="generated")
    ax.set_xticks(range(len(rows)), labels, fontsize=6, rotation=60)
    ax.set(ylabel="mean depth of the generated trees")
    _add(files, config, "results/tree_depths.png", _png(fig))
    plt.close(fig)
    out += ["![mean generated depth](tree_depths.png)", "",
            "The rows hold the mean depth of the generated trees; per-depth histograms come "
            "with rows that carry `gen_depth_hist` and `true_depth_hist`.", ""]
  T = _tables()
  out += [T.table("diffusion_lstm"), ""]
  return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- notebooks


def _notebook_page(path: pathlib.Path) -> str:
  nb = json.loads(path.read_text())
  out = [f"*Notebook `notebooks/{path.name}`: it runs as part of the test suite; open it in "
         "Jupyter to see its figures.*", ""]
  for cell in nb.get("cells", []):
    src = "".join(cell.get("source", []))
    if cell.get("cell_type") == "markdown":
      out += [src, ""]
    elif cell.get("cell_type") == "code" and src.strip():
      out += ["```python", src, "```", ""]
  return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- the hook


def on_files(files, config):
  images: set[str] = set()
  for project in PROJECTS:
    _add(files, config, f"papers/{project}.md", _paper_page(project, images))
  for name in sorted(images):
    if (RESULTS / name).exists():
      _add(files, config, f"results/{name}", (RESULTS / name).read_bytes())
  _add(files, config, "configs.md", _configs_page())
  _add(files, config, "results/index.md", _results_index())
  _add(files, config, "results/speed.md", _speed_page(files, config))
  _add(files, config, "results/ndm_sensitivity.md", _sensitivity_page(files, config))
  _add(files, config, "results/trees.md", _trees_page(files, config))
  for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
    _add(files, config, f"notebooks/{nb.stem}.md", _notebook_page(nb))
  _add(files, config, "changelog.md", (ROOT / "CHANGELOG.md").read_text())
  return files
