"""Stage workers: one module per stage kind, each run as `python -m workers.stages.<kind> spec.json`."""
