"""The documentation site builds with no warning (``mkdocs build --strict``): every page, the
API reference from the docstrings, and the pages and figures generated from the result files."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mkdocs_builds_strictly(tmp_path):
  pytest.importorskip("mkdocs")
  pytest.importorskip("mkdocstrings")
  env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-4000:]
  site = tmp_path / "site"
  for page in ("papers/ndm", "configs", "results/speed", "notebooks/cascades", "api/models"):
    assert (site / page / "index.html").exists(), page
  configs = (site / "configs" / "index.html").read_text()
  assert "dropout_rate" in configs and "in [0, 1)" in configs  # fields and their rules
  assert (site / "results" / "ndm_sensitivity_curves.png").stat().st_size > 1000
