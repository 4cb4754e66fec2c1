"""Experiment drivers: data preparation, training, evaluation, one module per paper."""
