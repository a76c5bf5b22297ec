"""A model file that cannot be imported: the local target's server fails to load it."""

raise RuntimeError("weights file churn-v3.bin is corrupt (checksum mismatch)")
