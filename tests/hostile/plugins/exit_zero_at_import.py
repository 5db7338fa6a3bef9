"""Hostile plugin: ends the interpreter with status 0 as it is imported."""
import sys

sys.exit(0)
