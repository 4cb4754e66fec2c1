"""Offline features for the popularity models: tokens, alt-text image input, LDA/LSA, sentiment,
tag/title dictionaries and numerical features, all fitted on training posts only."""

from popdiff_jax.features.pipeline import (FeatureSet, FittedStats, NUMERIC_GROUPS, NUMERIC_NAMES,
                                           SMP_NAMES, build_features)

__all__ = ["FeatureSet", "FittedStats", "NUMERIC_GROUPS", "NUMERIC_NAMES", "SMP_NAMES",
           "build_features"]
