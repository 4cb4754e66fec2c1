"""Field checks for the frozen config dataclasses, called from their ``__post_init__``.

Each check raises :class:`popdiff_jax.ConfigError` naming the config, the field, the value and
what is allowed, so a bad command-line option is one clear line.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from popdiff_jax._errors import ConfigError


def _name(cfg: Any) -> str:
  return type(cfg).__name__


def positive(cfg: Any, *fields: str, allow_none: bool = False) -> None:
  """Each field is an integer or float > 0 (or None with ``allow_none``)."""
  for f in fields:
    v = getattr(cfg, f)
    if v is None and allow_none:
      continue
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or (
        isinstance(v, float) and not math.isfinite(v)):
      raise ConfigError(_name(cfg), f, v, "must be a finite number > 0")


def non_negative(cfg: Any, *fields: str) -> None:
  """Each field is a finite number >= 0."""
  for f in fields:
    v = getattr(cfg, f)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or (
        isinstance(v, float) and not math.isfinite(v)):
      raise ConfigError(_name(cfg), f, v, "must be a finite number >= 0")


def probability(cfg: Any, *fields: str) -> None:
  """Each field is a rate in [0, 1) (dropout)."""
  for f in fields:
    v = getattr(cfg, f)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
      raise ConfigError(_name(cfg), f, v, "must be in [0, 1)")


def one_of(cfg: Any, field: str, choices: Iterable) -> None:
  """The field is one of ``choices``."""
  choices = tuple(choices)
  v = getattr(cfg, field)
  if v not in choices:
    raise ConfigError(_name(cfg), field, v, f"must be one of {', '.join(map(repr, choices))}")


def require(cfg: Any, field: str, ok: bool, allowed: str) -> None:
  """A custom rule: raises with ``allowed`` when ``ok`` is False."""
  if not ok:
    raise ConfigError(_name(cfg), field, getattr(cfg, field), allowed)
