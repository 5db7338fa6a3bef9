"""Hostile plugin: STRATEGY is a number."""
STRATEGY = 5
