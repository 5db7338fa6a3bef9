"""Experiments over the engine: sweeps (grids of runs), the worker pools and executors that run
them, and the behavioural checker of strategy plugins (`lbbench check`)."""
