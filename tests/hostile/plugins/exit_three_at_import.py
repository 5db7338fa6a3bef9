"""Hostile plugin: ends the interpreter with status 3 as it is imported."""
raise SystemExit(3)
