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
``experiment.main(config, workdir=, progress=, name=)`` (train, test, return result rows).
:func:`named_configs` lists all of them; ``popdiff train NAME`` runs one.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["PROJECTS", "named_configs", "find_config"]

PROJECTS = ("ndm", "diffusion_lstm", "dual_attention", "fusion_dnn", "multimodal_smp")


def _configs(project: str) -> dict[str, Callable[[], Any]]:
  try:
    module = importlib.import_module(f"popdiff_jax.projects.{project}.configs")
  except ModuleNotFoundError as e:  # a project whose optional dependencies are missing
    if e.name and e.name.startswith("popdiff_jax"):
      raise
    return {}
  return dict(getattr(module, "CONFIGS", {}))


def named_configs() -> dict[str, tuple[str, Callable[[], Any]]]:
  """``{config name: (project, factory)}`` over every project."""
  out = {}
  for project in PROJECTS:
    try:
      found = _configs(project)
    except ModuleNotFoundError:
      found = {}
    for name, factory in found.items():
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
