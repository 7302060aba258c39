"""Environments: the Env noun (`base`) and the worlds where agents act over many steps (`apps`)."""
