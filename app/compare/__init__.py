"""Comparing runs: overlaid curves, a metrics table, the configuration diff, the best run."""
