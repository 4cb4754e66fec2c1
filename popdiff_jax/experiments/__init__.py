"""Experiment drivers: one function per experiment, returning result rows."""
