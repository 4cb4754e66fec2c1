"""The notebooks are committed without outputs (CI executes them through nbmake: see pyproject)."""

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
  assert {p.stem for p in NOTEBOOKS} >= {"cascades", "trees", "popularity"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_stripped(path):
  nb = json.loads(path.read_text())
  for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] == "code":
      assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
          f"{path.name} cell {i} has outputs: clear them before committing")
  source = "".join("".join(c["source"]) for c in nb["cells"])
  assert "import popdiff_jax" in source or "from popdiff_jax" in source  # imports, never copies
