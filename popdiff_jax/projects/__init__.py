"""The five papers, one folder each: the protocol, the named configs and a README.

=================  ===========================================================================
project            paper
=================  ===========================================================================
``ndm``            Yang et al., Neural Diffusion Model for Microscopic Cascade Study (TKDE)
``diffusion_lstm`` Hu et al., Diffusion-LSTM: top-down tree LSTM over re-share trees (WSDM 2018)
``dual_attention`` Zhang et al., dual-attention popularity classifier (2019)
``fusion_dnn``     Ding, Wang & Wang, multi-feature fusion regressor (ACM MM 2019)
``multimodal_smp`` Meghawat et al., multimodal social-media popularity (MIPR 2018)
=================  ===========================================================================

Every project has ``configs.CONFIGS`` (name -> function returning the named config) and
``experiment.main(config, workdir=, progress=, name=, overwrite=, resume=)`` (train, test,
return result rows) with ``experiment.TABLE_COLUMNS``. :func:`named_configs` lists all of them;
``popdiff train NAME`` runs one.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
from typing import Any, Callable

__all__ = ["PROJECTS", "named_configs", "find_config", "run_in_workdir"]

PROJECTS = ("ndm", "diffusion_lstm", "dual_attention", "fusion_dnn", "multimodal_smp")


def named_configs() -> dict[str, tuple[str, Callable[[], Any]]]:
  """``{config name: (project, factory)}`` over every project."""
  out = {}
  for project in PROJECTS:
    module = importlib.import_module(f"popdiff_jax.projects.{project}.configs")
    for name, factory in module.CONFIGS.items():
      out[name] = (project, factory)
  return out


def find_config(name: str) -> tuple[str, Any]:
  """``(project, config)`` of a named config.

  Raises:
    ValueError: an unknown name (the message lists the known ones).
  """
  known = named_configs()
  if name not in known:
    raise ValueError(f"unknown config {name!r}; choose from: {', '.join(sorted(known))}")
  project, factory = known[name]
  return project, factory()


def run_in_workdir(workdir: str | pathlib.Path, config: Any, body: Callable[[], list[dict]], *,
                   overwrite: bool = False, resume: bool = False) -> list[dict]:
  """Runs ``body()`` with ``workdir`` claimed for ``config`` (``training.workdir.claim``: a lock,
  and a refusal when the folder holds another config's run), then writes ``results.json``.

  Returns:
    ``body()``'s rows.
  """
  from popdiff_jax.training.workdir import claim, write_config

  record = {"config": dataclasses.asdict(config), "kind": type(config).__module__}
  with claim(workdir, record, overwrite=overwrite, resume=resume):
    write_config(workdir, record)
    rows = body()
  (pathlib.Path(workdir) / "results.json").write_text(json.dumps(rows, indent=1))
  return rows
