"""Hostile plugin: raises as it is imported."""
raise RuntimeError("this plugin refuses to load")
