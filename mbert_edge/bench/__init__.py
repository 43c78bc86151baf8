"""Measuring bundles on this machine: `mbert-edge bench` (measure.py, report.py) and the scripts in benchmarks/."""
