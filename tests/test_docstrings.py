"""Every public module, class, method and function of the package has a docstring (ruff's
pydocstyle rules D100-D106, configured in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_public_api_is_documented():
  ruff = shutil.which("ruff") or (pathlib.Path(sys.executable).parent / "ruff")
  if not pathlib.Path(ruff).exists():
    pytest.skip("ruff is not installed (it is in the test extra)")
  out = subprocess.run([str(ruff), "check", "--no-cache", "popdiff_jax"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
