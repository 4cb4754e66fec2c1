"""Without the ``popularity`` extra (scikit-learn, VADER) the popularity commands fail with one
line naming ``pip install "popdiff_jax[popularity]"``, and the CLI prints it without a traceback."""

import builtins
import sys

import pytest

from popdiff_jax._errors import EXTRAS, MissingExtraError, require_extra
from popdiff_jax.cli.main import main

PIP = 'pip install "popdiff_jax[popularity]"'


@pytest.fixture(params=["sys.modules", "__import__"])
def no_sklearn(request, monkeypatch):
  """scikit-learn cannot be imported: a None entry in sys.modules, or an __import__ that fails."""
  if request.param == "sys.modules":
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
      monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
  else:
    real = builtins.__import__

    def fake(name, *args, **kwargs):
      if name == "sklearn" or name.startswith("sklearn."):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
      return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
      monkeypatch.delitem(sys.modules, name)


def test_the_extra_is_declared_in_pyproject():
  import pathlib
  import tomllib

  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
  packages = " ".join(extras["popularity"])
  for _, package in EXTRAS["popularity"]:
    assert package in packages


def test_require_extra_names_the_extra_in_one_line(no_sklearn):
  with pytest.raises(MissingExtraError) as e:
    require_extra("popularity", "the popularity models")
  msg = str(e.value)
  assert "\n" not in msg and PIP in msg and "scikit-learn" in msg and e.value.extra == "popularity"
  assert isinstance(e.value, ImportError)


def test_require_extra_passes_when_installed():
  require_extra("popularity", "the popularity models")


@pytest.mark.parametrize("argv", [
    ["reproduce", "popularity", "--data", "synthetic", "--quick", "--papers", "fusion_dnn"],
    ["train", "fusion-dnn-tiny"],
])
def test_the_commands_print_one_line_and_exit_2(no_sklearn, tmp_path, capsys, argv):
  assert main([*argv, "--workdir", str(tmp_path / "w"), "--no-progress"]) == 2
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("popdiff: error: "), captured.err
  assert PIP in lines[0] and "Traceback" not in captured.err and "--debug" not in lines[0]
