"""The compiled side of lbbench, imported once by the process the sweep workers are forked from
(`lbbench sweep` itself, or a fork server: see pool.py), so that each worker starts with numba
loaded and initialised.

Nothing here may start a thread (a fork keeps only the forking thread, and any lock another
thread held stays locked in the child): polars, which starts threads when imported, is left to
each worker, and the import runs with a single-threaded OpenBLAS (pool.prepare)."""
from ..engine import specialise
from ..model import cluster, faults, scenario, workload  # noqa: F401
from ..plugins import strategy

try:
    strategy.registry()   # entry points and built-in plugins
    specialise.warm_up()      # numba's compiler and its cache, initialised once for all workers
except Exception:         # a worker meets (and reports) the same problem on its own
    pass
