"""Test configuration: strict promotion rules and four host CPU devices, as STYLE.md asks."""

import os

# Must be set before JAX initialises its backends: multi-device tests need several CPU devices.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
# The CLI's persistent compilation cache writes under ~/.cache: off in tests (one test turns it on).
os.environ.setdefault("POPDIFF_COMPILE_CACHE", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

# Rank promotion is an error everywhere. Strict dtype promotion cannot be global: optax's Adam bias
# correction mixes a Python float with its int32 step count, which "strict" rejects. Tests of our own
# functions opt in with the `strict_dtypes` fixture instead.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def strict_dtypes():
  """Runs the test under jax_numpy_dtype_promotion='strict' (no implicit dtype promotion)."""
  with jax.numpy_dtype_promotion("strict"):
    yield


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False,
                   help="run tests marked slow (each is covered by a benchmark script)")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip_slow = pytest.mark.skip(reason="slow; covered by benchmarks/, run with --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip_slow)
