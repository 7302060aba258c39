"""Environments where agents act over many steps (see `apps`)."""
