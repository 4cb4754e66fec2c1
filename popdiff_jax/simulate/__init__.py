"""Monte Carlo cascade simulation: the bit-parallel Independent Cascade engine and its graphs."""

from popdiff_jax.simulate.graph import GraphReport, ICGraph, InBucket, build_graph, random_graph
from popdiff_jax.simulate.ic import ICResult, check_seeds, exact_ic, simulate_ic

__all__ = ["GraphReport", "ICGraph", "InBucket", "build_graph", "random_graph", "ICResult",
           "check_seeds", "exact_ic", "simulate_ic"]
