"""Hostile plugin: asks for more memory than any machine has as it is imported."""
BIG = bytearray(1 << 62)
