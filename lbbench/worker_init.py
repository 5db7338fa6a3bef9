"""Imported once by the sweep workers' fork server (see pool.py): the compiled side of lbbench,
so that each worker forked from the server starts with numba loaded and initialised.

Nothing here may start a thread (a fork keeps only the forking thread, and any lock another
thread held stays locked in the child): polars, which starts threads when imported, is left to
each worker, and the server runs with a single-threaded OpenBLAS (pool.start_early)."""
from . import cluster, engine, faults, scenario, strategy, workload  # noqa: F401

try:
    strategy.registry()   # entry points and built-in plugins
    engine.warm_up()      # numba's compiler and its cache, initialised once for all workers
except Exception:         # a worker meets (and reports) the same problem on its own
    pass
