"""Local worker processes of a sweep.

On Linux the workers are forked from a fork server (multiprocessing's `forkserver`) that has
imported lbbench's compiled side and initialised numba's compiler once (`lbbench.worker_init`),
so that a worker is ready in well under a second instead of the ~2 s a freshly spawned interpreter
needs. The server is a clean process: nothing in it has started a thread pool (polars) that a
fork could leave locked. `lbbench sweep` starts it before its own imports, so that both run at
once. Elsewhere (no forkserver) the workers are spawned.
"""
from __future__ import annotations

import multiprocessing
import sys

PRELOAD = ["lbbench.worker_init"]


def context():
    """The multiprocessing context of local sweep workers."""
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_early() -> None:
    """Start the fork server now (it loads in the background while the caller goes on)."""
    if context().get_start_method() != "forkserver":
        return
    import os
    from multiprocessing import forkserver
    # The server must stay single-threaded (see worker_init); OpenBLAS would start a thread per
    # core when numpy loads. The workers inherit the setting: the engine does no linear algebra.
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def executor(workers: int):
    from concurrent.futures import ProcessPoolExecutor
    start_early()
    return ProcessPoolExecutor(max_workers=workers, mp_context=context())
