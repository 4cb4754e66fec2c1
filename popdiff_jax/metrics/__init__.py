"""metrics."""

from popdiff_jax.metrics.infection import InfectionF1, infection_f1, msle, truth_masks

__all__ = ["InfectionF1", "infection_f1", "msle", "truth_masks"]
