"""The chat worker: one process serving chat turns and comparisons for checkpoints of a lineage."""
