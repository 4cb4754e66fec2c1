"""The layout of the package, checked: one home for each thing (docs/architecture.md).

* ``jax.jit`` is used only in ``training/``, ``simulate/``, ``metrics/`` and ``baselines/``;
* ``nnx.split`` / ``nnx.merge`` only in ``models/`` and ``training/``;
* every batch type (a class named ``*Batch``) is defined once, in ``popdiff_jax/types.py``;
* ``popdiff_jax.__all__`` has at most 40 names, each documented;
* the package, README.md and docs/ speak of the library, not of how it was made (no work-item
  numbers such as "issue 6", no "earlier runs").

The checks read the source with ``ast``, so a name in a docstring or comment does not count.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "popdiff_jax"
JIT_ALLOWED = ("training", "simulate", "metrics", "baselines")
SPLIT_MERGE_ALLOWED = ("models", "training")


def _modules():
  return sorted(p for p in PACKAGE.rglob("*.py") if "embedded" not in p.parts)


def _subpackage(path: pathlib.Path) -> str:
  rel = path.relative_to(PACKAGE).parts
  return rel[0] if len(rel) > 1 else ""


def _attribute_uses(tree: ast.AST, owner: str, names: set[str]) -> list[int]:
  """Lines that use ``owner.<name>`` (or import it from ``owner``)."""
  lines = []
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and node.attr in names
        and isinstance(node.value, ast.Name) and node.value.id == owner):
      lines.append(node.lineno)
    if isinstance(node, ast.ImportFrom) and node.module == owner:
      lines += [node.lineno for a in node.names if a.name in names]
  return lines


def test_jax_jit_only_in_the_allowed_subpackages():
  offenders = []
  for path in _modules():
    if _subpackage(path) in JIT_ALLOWED:
      continue
    for line in _attribute_uses(ast.parse(path.read_text()), "jax", {"jit"}):
      offenders.append(f"{path.relative_to(ROOT)}:{line}")
  assert not offenders, "jax.jit outside " + ", ".join(JIT_ALLOWED) + ": " + ", ".join(offenders)


def test_nnx_split_and_merge_only_in_models_and_training():
  offenders = []
  for path in _modules():
    if _subpackage(path) in SPLIT_MERGE_ALLOWED:
      continue
    for line in _attribute_uses(ast.parse(path.read_text()), "nnx", {"split", "merge"}):
      offenders.append(f"{path.relative_to(ROOT)}:{line}")
  assert not offenders, "nnx.split/merge outside models/ and training/: " + ", ".join(offenders)


def test_every_batch_type_is_defined_once_in_types():
  found: dict[str, list[str]] = {}
  for path in _modules():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ClassDef) and node.name.endswith("Batch"):
        found.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
  assert {"CascadeBatch", "TreeBatch", "PostBatch"} <= set(found)
  bad = {k: v for k, v in found.items() if v != ["popdiff_jax/types.py"]}
  assert not bad, f"batch types must be defined once, in popdiff_jax/types.py: {bad}"


def test_curated_top_level_api():
  import popdiff_jax

  names = popdiff_jax.__all__
  assert len(names) <= 40, f"popdiff_jax exports {len(names)} names (at most 40)"
  assert len(set(names)) == len(names)
  for name in names:
    obj = getattr(popdiff_jax, name)
    assert (getattr(obj, "__doc__", None) or "").strip(), f"popdiff_jax.{name} has no docstring"


_HISTORY = re.compile(r"\b(issue|work item|ticket)s?\s*#?\d+|\bearlier runs?\b|\bsession\s+\d+"
                      r"|\bprevious session", re.IGNORECASE)


def _texts():
  yield from _modules()
  yield ROOT / "README.md"
  for folder in (ROOT / "docs", PACKAGE / "projects"):
    yield from sorted(folder.rglob("*.md"))


@pytest.mark.parametrize("path", list(_texts()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_history_in_the_library_texts(path):
  hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()[:80]}"
          for i, line in enumerate(path.read_text().splitlines(), 1) if _HISTORY.search(line)]
  assert not hits, "history belongs in CHANGELOG.md: " + "; ".join(hits)
