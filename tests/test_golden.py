"""Golden tests: the current code path's metrics, recorded in tests/golden/<project>.json.

Each test re-runs one project's calls (``tests/golden/record.py``, ``run_<project>``) and compares
every recorded value: dict keys and list lengths must match, strings, booleans and integers
(epochs, best epochs, counts, IC spreads) exactly, floats within ``rtol=1e-5, atol=1e-6``. These
recordings are the behaviour a restructured package must keep; re-record only for an intended
change of behaviour (see tests/golden/README.md).

Reproducibility, measured on the 2-core CPU machine the recordings were made on: every value was
bit-identical to the recording when run twice in one process, in new processes, and in a new
process pinned to one core (``taskset -c 0``: another XLA thread count); three serial runs and
one ``pytest -n 2`` run passed. No key needs a tolerance of its own: the default one is the
margin for other CPUs and XLA builds.
"""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

_GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_record", _GOLDEN / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module", autouse=True)
def _recording_environment(tmp_path_factory):
  """The recordings' environment (``record.recording_environment``: XLA optimisation level 0, a
  compilation cache for this module, one native thread)."""
  with record.recording_environment(tmp_path_factory.mktemp("jax_compilation_cache")):
    yield


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _shape(x):
  """The shape of a number or a rectangular nested list of numbers, else None."""
  if _is_number(x):
    return ()
  if not isinstance(x, list) or not x:
    return None
  shapes = {_shape(v) for v in x}
  if len(shapes) != 1 or None in shapes:
    return None
  return (len(x),) + shapes.pop()


def _numeric_array(x):
  """A (nested, rectangular) list of numbers as an int64 array if every entry is an int, else
  float64; None for anything else."""
  shape = _shape(x)
  if not shape:
    return None
  flat = np.asarray(x, dtype=object).ravel().tolist()
  if all(isinstance(v, int) for v in flat):
    return np.asarray(flat, np.int64).reshape(shape)
  return np.asarray(flat, np.float64).reshape(shape)


def _compare(got, want, path: str, errors: list) -> None:
  """Appends to ``errors`` a line for every difference between ``got`` and ``want``."""
  if isinstance(want, dict):
    if not isinstance(got, dict):
      errors.append(f"{path}: expected a dict, got {type(got).__name__}")
      return
    for key in sorted(set(want) | set(got)):
      if key not in got:
        errors.append(f"{path}/{key}: missing")
      elif key not in want:
        errors.append(f"{path}/{key}: not in the recording (value {got[key]!r})")
      else:
        _compare(got[key], want[key], f"{path}/{key}", errors)
    return
  if isinstance(want, list):
    if not isinstance(got, list) or len(got) != len(want):
      errors.append(f"{path}: expected a list of {len(want)}, got "
                    f"{len(got) if isinstance(got, list) else type(got).__name__}")
      return
    w, g = _numeric_array(want), _numeric_array(got)
    if w is not None and g is not None and w.shape == g.shape:
      if w.dtype == np.int64 or g.dtype == np.int64:
        if w.dtype != g.dtype or not np.array_equal(w, g):
          bad = np.flatnonzero(w.ravel() != g.ravel()) if w.dtype == g.dtype else []
          errors.append(f"{path}: integer array differs ({w.dtype} vs {g.dtype}; "
                        f"{len(bad)} entries, first at flat index {bad[:5]})")
        return
      try:
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
      except AssertionError as e:
        errors.append(f"{path}: {str(e).strip()}")
      return
    for i, (gi, wi) in enumerate(zip(got, want)):
      _compare(gi, wi, f"{path}[{i}]", errors)
    return
  if isinstance(want, int):  # and bool
    if type(got) is not type(want) or got != want:
      errors.append(f"{path}: expected {want!r}, got {got!r}")
    return
  if isinstance(want, float):
    if not isinstance(got, float):
      errors.append(f"{path}: expected a float {want!r}, got {got!r}")
    elif math.isnan(want) or math.isnan(got):
      if not (math.isnan(want) and math.isnan(got)):
        errors.append(f"{path}: expected {want!r}, got {got!r}")
    elif not abs(got - want) <= ATOL + RTOL * abs(want):
      errors.append(f"{path}: expected {want!r}, got {got!r} (difference {got - want:.3g})")
    return
  if got != want:
    errors.append(f"{path}: expected {want!r}, got {got!r}")


@pytest.mark.parametrize("project", record.PROJECTS)
def test_golden(project):
  want = json.loads(record.path_of(project).read_text())
  got = json.loads(json.dumps(record.RUNNERS[project]()))  # the recording's JSON round trip
  errors = []
  _compare(got, want, project, errors)
  assert not errors, (f"{len(errors)} difference(s) from tests/golden/{project}.json:\n"
                      + "\n".join(errors[:40]))
