"""Local worker processes of a sweep.

On Linux the workers are forked, ready to run, from a process that has imported lbbench's
compiled side and initialised numba's compiler once (`lbbench.worker_init`): a worker starts in a
fraction of a second instead of the ~2 s a fresh interpreter needs. A fork keeps only the forking
thread, and a lock that another thread held stays locked in the child, so the process forked from
must have no other thread:
- `lbbench sweep` forks the workers from itself. It loads the compiled side first (it needs
  numba to read the sweep's strategies anyway), with a single-threaded OpenBLAS (`prepare`), and
  starts the pool before it imports polars or draws the progress bar, both of which start threads.
- Any other caller (a notebook that has imported polars, numpy with its OpenBLAS threads) gets
  its workers from a fork server (multiprocessing's `forkserver`): a clean process that preloads
  the same modules.
Without fork (not Linux) the workers are spawned.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from contextlib import contextmanager

PRELOAD = ["lbbench.worker_init"]


def single_threaded() -> bool:
    """Whether this process has one thread (counted by the kernel: polars' threads included)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


@contextmanager
def _single_threaded_blas():
    # OpenBLAS starts a thread per core when numpy loads; the engine does no linear algebra.
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def prepare() -> None:
    """Called first by a command that will start local workers (Linux): load the compiled side
    into this process, single-threaded, so that the workers can be forked from it."""
    if not sys.platform.startswith("linux") or "numpy" in sys.modules:
        return
    import importlib
    with _single_threaded_blas():
        for mod in PRELOAD:
            importlib.import_module(mod)


def context():
    """The multiprocessing context of local sweep workers, for this process as it is now."""
    if sys.platform.startswith("linux"):
        if "lbbench.worker_init" in sys.modules and single_threaded():
            return multiprocessing.get_context("fork")
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            return ctx
    return multiprocessing.get_context("spawn")


def executor(workers: int):
    """A pool of `workers` local worker processes. With fork they all start here and now."""
    from concurrent.futures import ProcessPoolExecutor
    ctx = context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver
        with _single_threaded_blas():
            forkserver.ensure_running()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    if ctx.get_start_method() == "fork":
        pool.submit(int)    # forks every worker now, while this process has one thread
    return pool
