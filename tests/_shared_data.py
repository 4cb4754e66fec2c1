"""Locating ../shared/data for tests that use datasets the package does not ship."""

import os
import pathlib

import pytest


def shared_data_dir() -> pathlib.Path | None:
  """The shared data directory: $POPDIFF_DATA_DIR, else ../shared/data beside the checkout."""
  env = os.environ.get("POPDIFF_DATA_DIR")
  candidates = [pathlib.Path(env)] if env else []
  candidates.append(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
  for c in candidates:
    if c.is_dir():
      return c
  return None


def require_shared(*parts: str) -> pathlib.Path:
  """Path under the shared data dir, or skip the test when it is not on this machine."""
  root = shared_data_dir()
  path = None if root is None else root.joinpath(*parts)
  if path is None or not path.exists():
    pytest.skip(f"shared dataset {'/'.join(parts)} not present (set POPDIFF_DATA_DIR)")
  return path
