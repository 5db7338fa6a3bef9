"""Hostile plugin: imports a module that does not exist."""
import lbbench_no_such_module  # noqa: F401
