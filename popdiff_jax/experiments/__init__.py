"""Experiment drivers: one module per paper (data preparation, training, evaluation), returning result rows."""
